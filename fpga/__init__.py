"""Open FPGA build flow: board tops, the on-chip self-test and the build/report driver.

Run from the repository root: ``python -m fpga.build --board ulx3s`` (or ``make fpga``).
"""
