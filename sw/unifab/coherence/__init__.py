"""Coherent global memory: parameters and the transaction-level golden model.

The protocol is specified in ``docs/coherence.md``.
"""
