"""Runs the cocotb link-pair bench: two link layers over lossy channels, all VCs at once.

Every case takes its seed from ``UNIFAB_SEED`` (default per case), prints it and can be
repeated with it. Both simulators run the same bench; Icarus with fewer flits (it is slower).
"""

import pytest

from unifab.tb.benches import default_seed, link_bench

CASES = {
    # name: settings
    "clean": dict(p_err=0.0, latency=32, flits=4000),
    "lossy-backpressure": dict(p_err=1e-2, latency=32, flits=4000, inject=0.7, ready=0.6),
    "bursts-stalls": dict(p_err=2e-3, latency=8, flits=3000, burst=True, stall=True),
    "short-heavy-loss": dict(p_err=5e-2, latency=1, flits=2000, inject=0.9, ready=0.8),
    "reset-recovery": dict(p_err=1e-3, latency=16, flits=4000, reset=True),
}


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
@pytest.mark.parametrize("case", list(CASES))
def test_link_pair(case: str, sim: str) -> None:
    settings = dict(CASES[case])
    if sim == "icarus":
        settings["flits"] = settings["flits"] // 4
    seed = default_seed(fallback=11 + list(CASES).index(case))
    print(f"seed={seed} (repeat with UNIFAB_SEED={seed})")
    result = link_bench(seed=seed, sim=sim, **settings)
    print({k: v for k, v in result.items() if k != "counters"})
    assert result["flits"] == 2 * settings["flits"]
    assert result["received"] == result["flits"] - result["reset_lost"]
    if settings["p_err"] > 0 and not settings.get("reset"):
        # The channel really did damage flits and the link really did recover from it.
        assert result["dropped"] + result["corrupted"] > 0
        assert result["replays"] > 0
    if case == "clean":
        assert result["replays"] == 0 and result["crc_errors"] == 0
        assert result["goodput"] > 0.95
    if settings.get("reset"):
        assert result["downs"] >= 1
