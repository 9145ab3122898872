"""Coherent home agent RTL: directory, transaction table, atomic ALU and the agent itself.

The protocol is specified in ``docs/coherence.md``; :class:`~unifab.hdl.coherence.home.HomeAgent`
is the top.
"""
