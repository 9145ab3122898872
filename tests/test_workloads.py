"""The workload generators and the message-semantics cost model (pure Python)."""

import itertools
from collections import Counter

import pytest

from unifab.coherence.params import AddressWindow
from unifab.message import MessageCosts, completion_steps, read_steps, write_steps
from unifab.workloads import LINE, PAGE, WORKLOAD_NAMES, WorkloadSpec, plan_workload

POOL = (AddressWindow(base=0x1_0010_0000, size=0x10_0000),)
TWO = (
    AddressWindow(base=0x1_0008_0000, size=0x8_0000),
    AddressWindow(base=0x1_0018_0000, size=0x8_0000),
)


def _inside(addr: int, n: int, pool) -> bool:
    return any(w.base <= addr and addr + n <= w.base + w.size for w in pool)


@pytest.mark.parametrize("name", WORKLOAD_NAMES)
def test_plans_are_seeded_and_inside_the_pool(name):
    spec = WorkloadSpec(name=name).scaled(0.5)
    a = plan_workload(spec, endpoints=8, pool=POOL, seed=3)
    b = plan_workload(spec, endpoints=8, pool=POOL, seed=3)
    c = plan_workload(spec, endpoints=8, pool=POOL, seed=4)
    assert a.phases == b.phases and a.preload == b.preload
    assert a.phases != c.phases
    assert len(a.phases) == 8 and a.transfers > 0
    for phases in a.phases:
        for phase in phases:
            for t in phase:
                assert _inside(t.addr, t.nbytes, POOL), t
    assert a.pool_bytes_used <= sum(w.size for w in POOL)


def _gets_read_known_data(plan) -> None:
    """Every get reads lines preloaded or put by an earlier phase of the same endpoint, and no
    two endpoints write the same line (the bench's data check relies on both)."""
    writer: dict[int, int] = {}
    for ep, phases in enumerate(plan.phases):
        for phase in phases:
            for t in phase:
                if t.kind == "put":
                    for a in range(t.addr, t.addr + t.nbytes, LINE):
                        assert writer.setdefault(a, ep) == ep
    for phases in plan.phases:
        known = set(plan.preload)
        for phase in phases:
            for t in phase:
                if t.kind == "get":
                    assert all(a in known for a in range(t.addr, t.addr + t.nbytes, LINE)), t
            for t in phase:
                if t.kind == "put":
                    known.update(range(t.addr, t.addr + t.nbytes, LINE))


@pytest.mark.parametrize("name", WORKLOAD_NAMES)
@pytest.mark.parametrize("pool", [POOL, TWO], ids=["one-window", "two-windows"])
def test_gets_read_known_data(name, pool):
    _gets_read_known_data(plan_workload(WorkloadSpec(name=name), endpoints=8, pool=pool, seed=1))


def test_kv_cache_turns_reuse_the_prefix():
    spec = WorkloadSpec(name="kv_cache", turns=4)
    plan = plan_workload(spec, endpoints=2, pool=POOL, seed=1)
    for phases in plan.phases:
        puts = [p[0] for p in phases if p[0].kind == "put"]
        gets = [p for p in phases if p[0].kind == "get"]
        assert len(puts) == 4 and len(gets) == 3
        for turn, phase in enumerate(gets, 1):  # turn k gets the k earlier blocks
            assert [(t.addr, t.nbytes) for t in phase] == [(t.addr, t.nbytes) for t in puts[:turn]]
        for t in puts:
            assert 16 * 1024 <= t.nbytes <= 64 * 1024 and t.nbytes % PAGE == 0
    blocks = sorted(
        (t.addr, t.nbytes) for ph in plan.phases for p in ph for t in p if t.kind == "put"
    )
    for (a, n), (b, _) in itertools.pairwise(blocks):
        assert a + n <= b, "KV blocks overlap"


def test_embedding_lookups_are_zipf_skewed():
    spec = WorkloadSpec(name="embedding_gather", batches=64, lookups=32)
    plan = plan_workload(spec, endpoints=2, pool=POOL, seed=5)
    rows = Counter(t.addr for ph in plan.phases for p in ph for t in p)
    total = sum(rows.values())
    assert {t.nbytes for ph in plan.phases for p in ph for t in p} == {64, 128, 256, 512}
    # Uniform over the 4 tables' 256+128+64+32 rows would give the top row ~0.3 %; Zipf(1.05)
    # gives it several per cent.
    assert rows.most_common(1)[0][1] / total > 0.03
    assert all(t.kind == "get" for ph in plan.phases for p in ph for t in p)
    assert len(plan.preload) == 4 * spec.table_bytes // LINE


def test_pool_full_is_a_clear_error():
    tiny = (AddressWindow(base=0x1_0000_8000, size=0x8000),)
    with pytest.raises(ValueError, match=r"memory pool \(32 KiB\) is full"):
        plan_workload(WorkloadSpec(name="kv_cache"), endpoints=8, pool=tiny, seed=1)
    with pytest.raises(ValueError, match="no memory pool"):
        plan_workload(WorkloadSpec(name="page_swap"), endpoints=1, pool=(), seed=1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="bogus"), "workload must be one of"),
        (dict(name="kv_cache", turns=0), "turns must be a positive integer"),
        (dict(name="kv_cache", block_min=1000), "4 KiB multiples"),
        (dict(name="embedding_gather", row_bytes=(96,)), "row size 96"),
        (dict(name="embedding_gather", zipf_s=0.0), "zipf_s must be positive"),
    ],
)
def test_spec_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WorkloadSpec(**kwargs)


def test_scaled_keeps_sizes_in_range():
    s = WorkloadSpec(name="kv_cache").scaled(0.1)
    assert s.turns == 2  # one turn reusing the other's prefix, at any scale
    assert PAGE <= s.block_min <= s.block_max <= 8 * 1024
    with pytest.raises(ValueError, match="scale must be positive"):
        WorkloadSpec(name="kv_cache").scaled(0)


def test_message_costs():
    c = MessageCosts()
    assert c.cycles(250.0) == 250 and MessageCosts(clock_ghz=2.0).cycles(250.0) == 500
    assert c.pcie_cycles(4096) == 164  # 4096 B at 25 B/ns
    assert c.packets(10_000) == [4096, 4096, 1808] and c.packets(64) == [64]
    assert c.header_cycles() == 5  # 78 header bytes at 16 B per cycle
    before, after = read_steps(c, 64)
    modelled = sum(s.cycles for s in [*before, *after, *completion_steps(c)])
    assert modelled == 250 + 500 + 50 + 5 + 50 + 100 + 50 + 5 + 50 + 250 + 250 + 50
    before, after = write_steps(c, 4096)
    assert [s.name for s in before][:3] == [
        "doorbell (MMIO write)",
        "WQE fetch (DMA read)",
        "copy out of device memory (DMA read latency)",
    ]
    assert [s.name for s in after] == ["ACK (target NIC tx)", "ACK (NIC rx)"]


def test_message_cost_overrides():
    c = MessageCosts.from_overrides("clock_ghz=2, mtu=1024")
    assert c.clock_ghz == 2.0 and c.mtu == 1024 and c.doorbell_ns == 250.0
    with pytest.raises(ValueError, match="expected name=value with name one of"):
        MessageCosts.from_overrides("speed=3")
    with pytest.raises(ValueError, match="is not a number"):
        MessageCosts.from_overrides("mtu=big")
    with pytest.raises(ValueError, match="must be positive"):
        MessageCosts(clock_ghz=0)
    with pytest.raises(ValueError, match="non-negative"):
        MessageCosts(doorbell_ns=-1)


def test_cost_table_in_the_docs_matches_the_defaults():
    """docs/workloads.md lists every modelled cost with its default value."""
    from dataclasses import fields
    from pathlib import Path

    from unifab.message import COST_SOURCES

    text = (Path(__file__).parents[1] / "docs" / "workloads.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for name in cells[0].replace("`", "").split(","):
                rows[name.strip()] = cells[1]
    c = MessageCosts()
    for f in fields(MessageCosts):
        assert f.name in COST_SOURCES, f.name
        assert f.name in rows, f"{f.name} missing from docs/workloads.md"
        assert float(rows[f.name]) == getattr(c, f.name), f.name
