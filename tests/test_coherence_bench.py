"""Runs the cocotb benches of the whole coherent system (endpoints, homes, switch) on RTL.

cocotbext-axi's AxiMaster drives every endpoint's AXI port and AxiRam serves every home, with
random pauses on every AXI channel. Every coherence checker runs during the stress: single
writer / multiple readers from the endpoints' line-state events, the data-value invariant with
a versioned memory, exactly-once completion with a watchdog, and no agent busy at the end.
CI runs the ``small`` preset (one build shared by every case) for about 50,000 operations;
``make sim`` runs ``default`` (four endpoints, two homes). Seeds come from ``UNIFAB_SEED``
(default per case) and are printed.
"""

import pytest

from unifab.coherence.system import WORKLOADS
from unifab.tb.benches import coherence_bench, default_seed

PRESET = "small"
# Per endpoint per workload: 2 endpoints x 6 workloads x 2,100 ~ 25,000 operations per seed,
# about 50,000 on the RTL in all (about 72 s of simulation per seed on the development machine;
# 4,200 took 165 s per seed and pushed `make test` to 19 of its 20 minutes in CI).
OPS = 2100


@pytest.mark.heavy
@pytest.mark.parametrize("case_seed", [31, 32])
def test_stress_every_workload_with_checkers(case_seed: int) -> None:
    seed = default_seed(fallback=case_seed)
    print(f"seed={seed} (repeat with UNIFAB_SEED={seed})")
    r = coherence_bench(preset=PRESET, ops=OPS, seed=seed, p_idle=0.2, p_stall=0.2)
    print(r)
    assert r["violations"] == 0
    assert set(r["workloads"]) == set(WORKLOADS)
    assert r["ops"] >= 2 * len(WORKLOADS) * OPS * 0.9  # sequential programs vary a little
    assert r["checked_loads"] > r["ops"] // 3
    # Every AXI channel of the managers and of the memories was held about a fifth of the
    # cycles (idle on the requests, back-pressure on the responses and the memory side).
    assert r["pause_steps"] >= r["cycles"]
    held = [n / r["pause_steps"] for n in r["paused"]]
    assert len(held) == 5 * (2 + 1), held  # two endpoints and one home in the small preset
    assert all(0.18 < f < 0.22 for f in held), held


def test_latency_figures() -> None:
    """Each kind of access on an idle system; the contended fetch-adds must all land."""
    seed = default_seed(fallback=33)
    r = coherence_bench(preset=PRESET, test="coherence_latency", seed=seed)
    print(r)
    assert r["violations"] == 0
    # Orders that hold whatever the pipeline depths: a hit is cheaper than any miss, a
    # clean miss pays the memory read, and the fabric part is what is left.
    assert 0 < r["load_hit"] < r["remote_read_clean"]
    assert r["memory_read"] > 0
    assert r["remote_read_clean_fabric"] == r["remote_read_clean"] - r["memory_read"]
    assert r["remote_read_forward"] > r["load_hit"]
    assert r["upgrade"] > r["store_hit"]
    assert r["atomic_contended"] > 0
