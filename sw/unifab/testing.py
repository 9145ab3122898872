"""Helpers shared by the test suite and the benches: seeds and Amaranth simulation runs."""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["seed_from_env", "simulate"]


def seed_from_env(default: int, *, label: str = "") -> int:
    """``UNIFAB_SEED`` when set (any int literal), else ``default``; printed for replay."""
    env = os.environ.get("UNIFAB_SEED", "").strip()
    seed = int(env, 0) if env else default
    print(f"UNIFAB_SEED={seed}" + (f" case={label}" if label else ""))
    return seed


def simulate(dut, bench: Callable, *, name: str, clock: bool = True) -> None:
    """Run ``bench`` on ``dut`` with Amaranth's simulator (1 MHz clock unless ``clock`` is
    False); ``UNIFAB_VCD=dir`` writes ``dir/<name>.vcd`` for GTKWave."""
    from amaranth.sim import Simulator

    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    vcd_dir = os.environ.get("UNIFAB_VCD")
    if vcd_dir:
        os.makedirs(vcd_dir, exist_ok=True)
        with sim.write_vcd(os.path.join(vcd_dir, f"{name}.vcd")):
            sim.run()
    else:
        sim.run()
