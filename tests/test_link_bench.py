"""Runs the cocotb link-pair bench: two link layers over lossy channels, all VCs at once.

Every case takes its seed from ``UNIFAB_SEED`` (default per case), prints it and can be
repeated with it. Both simulators run the same bench (Icarus one case, with fewer flits: it is
slower).
"""

import pytest

from unifab.params import LinkParams
from unifab.tb.benches import default_seed, link_bench

CASES = {
    # name: settings
    "clean": dict(p_err=0.0, latency=32, flits=4000),
    "lossy-backpressure": dict(p_err=1e-2, latency=32, flits=4000, inject=0.7, ready=0.6),
    "bursts-stalls": dict(p_err=2e-3, latency=8, flits=3000, burst=True, stall=True),
    "short-heavy-loss": dict(p_err=5e-2, latency=1, flits=2000, inject=0.9, ready=0.8),
    "reset-recovery": dict(p_err=1e-3, latency=16, flits=4000, reset=True),
}


# Every case on Verilator; Icarus runs the case that exercises the most (corruption, replays,
# idle and back-pressure) to show the bench and the RTL behave the same on both simulators.
# The other cases on Icarus took about 90 s of the suite and test nothing simulator-specific.
SIM_CASES = [(case, "verilator") for case in CASES] + [("lossy-backpressure", "icarus")]


@pytest.mark.heavy
@pytest.mark.parametrize(("case", "sim"), SIM_CASES)
def test_link_pair(case: str, sim: str) -> None:
    settings = dict(CASES[case])
    if sim == "icarus":
        settings["flits"] = settings["flits"] // 4
    seed = default_seed(fallback=11 + list(CASES).index(case))
    print(f"seed={seed} (repeat with UNIFAB_SEED={seed})")
    result = link_bench(seed=seed, sim=sim, **settings)
    check_link_result(result, settings, clean=case == "clean")


def check_link_result(result: dict, settings: dict, *, clean: bool) -> None:
    """Every flit sent arrived (less those lost to a reset); a damaging channel really did
    damage flits and the link recovered by replays; a clean one ran at full goodput."""
    print({k: v for k, v in result.items() if k != "counters"})
    assert result["flits"] == 2 * settings["flits"]
    assert result["received"] == result["flits"] - result["reset_lost"]
    if settings["p_err"] > 0 and not settings.get("reset"):
        assert result["dropped"] + result["corrupted"] > 0
        assert result["replays"] > 0
    if clean:
        assert result["replays"] == 0 and result["crc_errors"] == 0
        assert result["goodput"] > 0.95
    if settings.get("reset"):
        assert result["downs"] >= 1


#: The board's link options (transmitter choice of VC and receiver CRC verdict registered) on
#: the default buffers. Flit counts differ from ``CASES`` so each run has its own build tag.
BOARD_CASES = {
    "clean": dict(p_err=0.0, latency=32, flits=3500),
    "lossy-backpressure": dict(p_err=1e-2, latency=32, flits=3500, inject=0.7, ready=0.6),
    "short-heavy-loss": dict(p_err=5e-2, latency=1, flits=1500, inject=0.9, ready=0.8),
    "reset-recovery": dict(p_err=1e-3, latency=16, flits=3500, reset=True),
}


@pytest.mark.heavy
@pytest.mark.parametrize("case", list(BOARD_CASES))
def test_link_pair_registered_select(case: str) -> None:
    """The same bench with ``registered_select`` and ``registered_crc`` on (Verilator)."""
    settings = dict(BOARD_CASES[case])
    seed = default_seed(fallback=30 + list(BOARD_CASES).index(case))
    print(f"seed={seed} (repeat with UNIFAB_SEED={seed})")
    params = LinkParams(registered_crc=True, registered_select=True)
    result = link_bench(params=params, seed=seed, sim="verilator", **settings)
    # Clean: one flit per cycle still (the registered choice costs latency, not throughput).
    check_link_result(result, settings, clean=case == "clean")
