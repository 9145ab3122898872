"""The whole super node (``small`` topology) running every workload in both modes, with random
idle and back-pressure on every AXI channel and every byte read checked (Verilator)."""

import pytest

from unifab.message import MessageCosts, completion_steps, read_steps
from unifab.tb.benches import workload_bench
from unifab.tb.coherence_bench import SystemView
from unifab.testing import seed_from_env
from unifab.topology import load_topology
from unifab.workloads import WORKLOAD_NAMES, WorkloadSpec, plan_workload

SCALE = 0.25
# kv_cache at 1/8: two turns of 4-8 KiB blocks per endpoint fit the small preset's 32 KiB pool.
SCALES = {"kv_cache": 0.125}
SEED = seed_from_env(1)


def _plan(workload: str, mode: str, seed: int):
    view = SystemView.of_topology(load_topology("small"))
    cached = mode == "memory" and workload in ("embedding_gather", "remote_read_64")
    spec = WorkloadSpec(name=workload).scaled(SCALES.get(workload, SCALE))
    return plan_workload(
        spec, endpoints=2, pool=view.cached_pool if cached else view.pool, seed=seed
    )


@pytest.mark.heavy
@pytest.mark.parametrize("mode", ["memory", "message"])
@pytest.mark.parametrize("workload", WORKLOAD_NAMES)
def test_workload(workload, mode):
    print(f"seed {SEED} (rerun with UNIFAB_SEED={SEED})")
    r = workload_bench(
        workload=workload,
        mode=mode,
        preset="small",
        scale=SCALES.get(workload, SCALE),
        p_idle=0.2,
        p_stall=0.2,
        seed=SEED,
    )
    plan = _plan(workload, mode, SEED)
    assert r["violations"] == 0
    assert r["ops"] == plan.transfers == len(r["latencies"])
    assert r["bytes"] == plan.bytes
    assert r["latency_p50"] <= r["latency_p99"] <= max(r["latencies"])
    assert 0 < r["bandwidth"] == pytest.approx(plan.bytes / r["cycles"])
    if mode == "memory":
        assert r["modelled_cycles_mean"] == 0
    else:
        assert r["rtl_cycles_mean"] > 0 and r["modelled_cycles_mean"] > 0


@pytest.mark.heavy
def test_message_read_is_the_modelled_steps_plus_the_rtl():
    """A 64-byte RDMA READ costs exactly its modelled steps plus the RTL part it waited for,
    and the RTL part is no faster than the same read made with memory semantics."""
    message = workload_bench(workload="remote_read_64", mode="message", preset="small", scale=SCALE)
    memory = workload_bench(workload="remote_read_64", mode="memory", preset="small", scale=SCALE)
    c = MessageCosts()
    before, after = read_steps(c, 64)
    pcie = c.pcie_cycles(64)
    modelled = sum(s.cycles for s in [*before, *after, *completion_steps(c)]) + pcie
    # (within a cycle or two: a wait starts on the clock edge after the step before it ends)
    assert message["modelled_cycles_mean"] == pytest.approx(modelled, abs=2)
    assert message["latency_mean"] == pytest.approx(modelled + message["rtl_cycles_mean"], abs=2)
    assert memory["latency_mean"] < message["rtl_cycles_mean"] + modelled
    assert [s["cycles"] for s in message["message_steps"]] == [
        s.cycles for s in [*before, *after, *completion_steps(c)]
    ]


@pytest.mark.parametrize("mode", ["memory", "message"])
def test_corrupted_memory_is_caught(mode):
    """One byte flipped in a home's memory behind the bench's back fails the data check."""
    with pytest.raises(AssertionError):
        workload_bench(
            workload="embedding_gather",
            mode=mode,
            preset="small",
            scale=SCALE,
            fault="memory_byte",
        )


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="mode must be one of memory, message"):
        workload_bench(workload="kv_cache", mode="rdma", preset="small")
    with pytest.raises(ValueError, match="workload must be one of"):
        workload_bench(workload="gather", preset="small")
    with pytest.raises(ValueError, match="non-negative"):
        workload_bench(workload="kv_cache", preset="small", costs={"nic_tx_ns": -5})
