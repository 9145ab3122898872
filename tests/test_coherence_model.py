"""The coherence golden model and its checkers (docs/coherence.md).

The stress tests run every workload over several seeds (well over 100,000 operations in all)
with every checker on; the mutation tests show that the checkers catch a broken protocol.
"""

import random

import pytest

from unifab.codec import Message, header
from unifab.coherence.model import (
    CacheModel,
    CoreOp,
    HomeModel,
    Network,
    ProtocolError,
    atomic_result,
)
from unifab.coherence.params import AddressWindow, CacheParams, HomeParams
from unifab.coherence.system import (
    WORKLOADS,
    CoherenceCheckers,
    CoherenceError,
    ModelSystem,
    SystemConfig,
)
from unifab.flit import CacheState, ErrorCode, MsgClass, Opcode
from unifab.testing import seed_from_env

OPS_PER_AGENT = 1500  # x 4 agents x 6 workloads x 3 seeds = 108,000 operations


@pytest.mark.parametrize("seed_offset", range(3))
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_stress(workload: str, seed_offset: int) -> None:
    seed = seed_from_env(1, label=workload) + seed_offset
    system = ModelSystem(SystemConfig(), seed=seed)
    result = system.run(workload, ops_per_agent=OPS_PER_AGENT)
    print(workload, seed, result)
    assert result["violations"] == 0
    assert result["home_unexpected"] == 0
    assert result["ops"] >= OPS_PER_AGENT  # sequential programs issue at least this many
    if workload == "spin_lock":
        cfg = system.config
        counter = cfg.home_base + (cfg.noncacheable_lines + 3 + 5) * 64
        assert system.counter_value(counter) == cfg.agents * (OPS_PER_AGENT // 6)


def test_races_are_exercised() -> None:
    """The races of docs/coherence.md 3.3 and back-invalidation happen in the stress mix."""
    seed = seed_from_env(7)
    totals: dict[str, int] = {}
    for workload in ("hot_lines", "many_lines"):
        result = ModelSystem(SystemConfig(), seed=seed).run(workload, ops_per_agent=1000)
        for key, value in result.items():
            totals[key] = totals.get(key, 0) + value
    for key in ("upgrade_lost", "snoop_in_eviction", "forwarded", "home_stale"):
        assert totals[key] > 0, key
    assert totals["home_back_invalidations"] > 0


def test_no_cache_agents_use_non_coherent_requests() -> None:
    cfg = SystemConfig(cache=None)
    result = ModelSystem(cfg, seed=seed_from_env(3)).run("hot_lines", ops_per_agent=500)
    assert result["violations"] == 0
    assert result["misses"] == 0 and result["hits"] == 0


# -- mutations: the checkers must catch a broken protocol --------------------------------------


def test_checker_catches_cache_ignoring_invalidation(monkeypatch) -> None:
    original = CacheModel._snoop

    def lazy_snoop(self, msg):
        if msg.header.opcode is Opcode.SNP_INV:  # answer, but keep the copy
            h = msg.header
            ack = header(Opcode.SNP_RESP_I, src=self.node, dst=h.src, tag=h.tag, addr=h.addr)
            return [Message(header=ack)]
        return original(self, msg)

    monkeypatch.setattr(CacheModel, "_snoop", lazy_snoop)
    with pytest.raises(CoherenceError):
        ModelSystem(SystemConfig(), seed=1).run("hot_lines", ops_per_agent=500)


def test_checker_catches_home_skipping_snoops(monkeypatch) -> None:
    original = HomeModel._after_snoops

    def no_snoops(self, msg, snoops, then):
        if msg.header.opcode is Opcode.READ_UNIQUE:
            snoops = [s for s in snoops if s[0] is not Opcode.SNP_INV]
        return original(self, msg, snoops, then)

    monkeypatch.setattr(HomeModel, "_after_snoops", no_snoops)
    with pytest.raises((CoherenceError, ProtocolError)):
        ModelSystem(SystemConfig(), seed=1).run("false_sharing", ops_per_agent=500)


def test_checker_catches_lost_comp_ack(monkeypatch) -> None:
    original = CacheModel._fill

    def drop_some_acks(self, m, msg):
        out = original(self, m, msg)
        return [] if self.node == 1 else out

    monkeypatch.setattr(CacheModel, "_fill", drop_some_acks)
    system = ModelSystem(SystemConfig(), seed=2)
    system.checkers.watchdog = 5000
    with pytest.raises(CoherenceError, match=r"no operation completed|leak"):
        system.run("migratory", ops_per_agent=200)


# -- checkers on their own ------------------------------------------------------------------------


def test_swmr_checker() -> None:
    ck = CoherenceCheckers()
    ck.state_changed(0, 0x40, CacheState.S)
    ck.state_changed(1, 0x40, CacheState.S)
    ck.state_changed(1, 0x40, CacheState.I)
    ck.state_changed(0, 0x40, CacheState.M)
    with pytest.raises(CoherenceError, match="SWMR"):
        ck.state_changed(2, 0x40, CacheState.S)


def test_data_value_checker() -> None:
    ck = CoherenceCheckers()
    ck.performed_write(0x100, 8, 0x1122334455667788)
    ck.performed_read(0, 0x104, 4, 0x11223344)
    with pytest.raises(CoherenceError, match="data value"):
        ck.performed_read(0, 0x100, 8, 0)


def test_completion_and_watchdog_checkers() -> None:
    ck = CoherenceCheckers(watchdog=10)
    op = CoreOp(kind="load", addr=0, ident=1)
    ck.issued(op)
    ck.completed(op)
    with pytest.raises(CoherenceError, match="twice"):
        ck.completed(op)
    ck = CoherenceCheckers(watchdog=10)
    ck.issued(CoreOp(kind="load", addr=0, ident=2))
    ck.progress(5)
    with pytest.raises(CoherenceError, match="no operation completed"):
        ck.progress(20)
    ck = CoherenceCheckers()
    ck.issued(CoreOp(kind="load", addr=0, ident=3))
    with pytest.raises(CoherenceError, match="never completed"):
        ck.finish([])


# -- the home model, directed ----------------------------------------------------------------------

WINDOW = AddressWindow(base=0x1000, size=0x1000)


def _home(**kw) -> HomeModel:
    return HomeModel(HomeParams(node_id=16, window=WINDOW, **kw))


def _req(opcode: Opcode, src: int, addr: int, *, tag: int = 0, **kw) -> Message:
    data = kw.pop("data", b"")
    be = kw.pop("be", None)
    return Message(
        header=header(opcode, src=src, tag=tag, addr=addr, **kw), data=data, byte_enable=be
    )


def test_home_read_shared_grants_exclusive_then_forwards() -> None:
    home = _home()
    (grant,) = home.receive(_req(Opcode.READ_SHARED, 1, 0x1040, tag=5))
    assert grant.header.opcode is Opcode.COMP_DATA and grant.header.state is CacheState.E
    assert grant.header.dst == 1 and grant.header.tag == 5
    # A second reader waits until the first COMP_ACK.
    assert home.receive(_req(Opcode.READ_SHARED, 2, 0x1040, tag=9)) == []
    (snoop,) = home.receive(Message(header=header(Opcode.COMP_ACK, src=1, tag=5, addr=0x1040)))
    assert snoop.header.opcode is Opcode.SNP_SHARED
    assert (snoop.header.dst, snoop.header.fwd, snoop.header.tag) == (1, 2, 9)
    assert home.receive(Message(header=header(Opcode.SNP_RESP_S, src=1, addr=0x1040))) == []
    home.receive(Message(header=header(Opcode.COMP_ACK, src=2, tag=9, addr=0x1040)))
    assert home.directory() == {0x1040: ("S", frozenset({1, 2}))}
    assert home.idle


def test_home_errors() -> None:
    home = _home(max_sharers=4)
    cases = [
        (_req(Opcode.READ_SHARED, 1, 0x3000), ErrorCode.WINDOW),
        (_req(Opcode.READ_SHARED, 1, 0x1008), ErrorCode.MALFORMED),
        (_req(Opcode.READ_SHARED, 9, 0x1000), ErrorCode.UNSUPPORTED),
        (_req(Opcode.ATOMIC_ADD, 1, 0x1000, size=4, data=bytes(16)), ErrorCode.UNSUPPORTED),
        (_req(Opcode.ATOMIC_ADD, 1, 0x1002, size=2, data=bytes(16)), ErrorCode.MALFORMED),
        (_req(Opcode.NC_READ, 1, 0x1004, size=3), ErrorCode.MALFORMED),
    ]
    for msg, err in cases:
        (reply,) = home.receive(msg)
        assert reply.header.opcode is Opcode.ERROR and reply.header.err is err, msg.header
    home.poisoned.add(0x1000)
    (reply,) = home.receive(_req(Opcode.READ_UNIQUE, 1, 0x1000))
    assert reply.header.err is ErrorCode.POISON and reply.header.poison == 1
    assert home.idle and home.directory() == {}


def test_home_stale_write_back_is_dropped() -> None:
    home = _home()
    home.receive(_req(Opcode.READ_UNIQUE, 1, 0x1000, tag=1))
    home.receive(Message(header=header(Opcode.COMP_ACK, src=1, tag=1, addr=0x1000)))
    (snoop,) = home.receive(_req(Opcode.READ_UNIQUE, 2, 0x1000, tag=2))
    assert snoop.header.opcode is Opcode.SNP_UNIQUE and snoop.header.fwd == 2
    home.receive(Message(header=header(Opcode.SNP_RESP_I, src=1, addr=0x1000)))
    home.receive(Message(header=header(Opcode.COMP_ACK, src=2, tag=2, addr=0x1000)))
    (comp,) = home.receive(_req(Opcode.WRITE_BACK, 1, 0x1000, tag=0x80, data=b"\xff" * 64))
    assert comp.header.opcode is Opcode.COMP
    assert home.counters["stale"] == 1
    assert bytes(home.memory[:64]) == bytes(64)


@pytest.mark.parametrize(
    ("opcode", "old", "operand", "compare", "size", "expect"),
    [
        (Opcode.ATOMIC_ADD, 0xFF, 1, 0, 0, 0x00),
        (Opcode.ATOMIC_SWAP, 5, 9, 0, 2, 9),
        (Opcode.ATOMIC_CAS, 5, 9, 5, 3, 9),
        (Opcode.ATOMIC_CAS, 5, 9, 4, 3, 5),
        (Opcode.ATOMIC_AND, 0b1100, 0b1010, 0, 1, 0b1000),
        (Opcode.ATOMIC_OR, 0b1100, 0b1010, 0, 1, 0b1110),
        (Opcode.ATOMIC_XOR, 0b1100, 0b1010, 0, 1, 0b0110),
        (Opcode.ATOMIC_MIN, 0xFFFF_FFFF, 1, 0, 2, 0xFFFF_FFFF),  # -1 < 1
        (Opcode.ATOMIC_MAX, 0xFFFF_FFFF, 1, 0, 2, 1),
        (Opcode.ATOMIC_MIN, 0x7F, 0x80, 0, 0, 0x80),  # 127 > -128
    ],
)
def test_atomic_result(opcode, old, operand, compare, size, expect) -> None:
    assert atomic_result(opcode, old, operand, compare, size) == expect


def test_home_atomic_invalidates_owner_and_returns_old_value() -> None:
    home = _home()
    home.receive(_req(Opcode.READ_UNIQUE, 1, 0x1000, tag=1))
    home.receive(Message(header=header(Opcode.COMP_ACK, src=1, tag=1, addr=0x1000)))
    operand = (3).to_bytes(8, "little") + bytes(8)
    (snoop,) = home.receive(_req(Opcode.ATOMIC_ADD, 2, 0x1008, tag=4, size=3, data=operand))
    assert snoop.header.opcode is Opcode.SNP_INV and snoop.header.dst == 1
    dirty = bytes(8) + (40).to_bytes(8, "little") + bytes(48)
    (reply,) = home.receive(
        Message(
            header=header(Opcode.SNP_RESP_DATA, src=1, addr=0x1000, state=CacheState.I),
            data=dirty,
        )
    )
    assert reply.header.opcode is Opcode.ATOMIC_DATA
    assert int.from_bytes(reply.data[:8], "little") == 40
    assert int.from_bytes(home.memory[8:16], "little") == 43
    assert home.directory() == {}


def test_cache_model_rejects_unexpected_messages() -> None:
    cache = CacheModel(node_id=1, cache=CacheParams(sets=2, ways=1))
    with pytest.raises(ProtocolError):
        cache.receive(Message(header=header(Opcode.COMP, src=16, tag=3, addr=0)))
    with pytest.raises(ProtocolError):
        cache.receive(Message(header=header(Opcode.SNP_UNIQUE, src=16, fwd=2, addr=0)))


def test_network_keeps_order_per_channel() -> None:
    net = Network(home_of=lambda addr: 16, rng=random.Random(seed_from_env(4)))
    for i in range(50):
        net.send(1, Message(header=header(Opcode.NC_READ, src=1, tag=i, addr=64 * i)))
        net.send(2, Message(header=header(Opcode.COMP_ACK, src=2, dst=16, tag=i)))
    seen: dict[tuple[int, MsgClass], list[int]] = {}
    while (msg := net.deliver_one()) is not None:
        assert msg.header.dst == 16
        seen.setdefault((msg.header.src, msg.header.cls), []).append(msg.header.tag)
    assert all(tags == list(range(50)) for tags in seen.values())


def test_versioned_memory() -> None:
    from unifab.coherence.versioned import DataValueError, VersionedMemory

    mem = VersionedMemory()
    mem.check_load(0x40, 0, 0, 5)  # initial value
    a = mem.begin_store(0x40, 1, 10)
    mem.check_load(0x40, 0, 11, 12)  # the store may not have taken effect yet
    mem.check_load(0x40, 1, 11, 12)
    mem.end_store(a, 20)
    with pytest.raises(DataValueError):
        mem.check_load(0x40, 0, 21, 25)  # overwritten before the load began
    b = mem.begin_store(0x40, 2, 30)
    mem.end_store(b, 32)
    mem.check_load(0x40, 2, 40, 41)
    with pytest.raises(DataValueError):
        mem.check_load(0x40, 1, 40, 41)
    with pytest.raises(DataValueError):
        mem.check_load(0x40, 3, 40, 41)  # never written
    mem.prune(50)
    assert [v.value for v in mem.words[0x40]] == [2]
    mem.check_load(0x40, 2, 60, 61)


def test_parameters_are_validated() -> None:
    from unifab.coherence.params import SYSTEM_PRESETS, EndpointParams, SystemParams

    with pytest.raises(ValueError, match="aligned"):
        AddressWindow(base=0x1010, size=0x1000)
    with pytest.raises(ValueError, match="dir_sets"):
        HomeParams(node_id=16, window=WINDOW, dir_sets=3)
    with pytest.raises(ValueError, match="mshrs"):
        EndpointParams(node_id=1, mshrs=0)
    with pytest.raises(ValueError, match="homes"):
        SystemParams(homes=3)
    with pytest.raises(ValueError, match="switch ports"):
        SystemParams(endpoints=14, homes=4)
    with pytest.raises(ValueError, match=r"switch_islip_iterations must be 1\.\.4, not 0"):
        SystemParams(switch_islip_iterations=0)
    assert SystemParams(switch_islip_iterations=1).switch_params().islip_iterations == 1
    with pytest.raises(ValueError, match=r"switch_registered_grant must be True or False, not 1"):
        SystemParams(switch_registered_grant=1)
    assert SystemParams(switch_registered_grant=True).switch_params().registered_grant
    with pytest.raises(ValueError, match=r"switch_registered_route must be True or False"):
        SystemParams(switch_registered_route="yes")
    assert SystemParams(switch_registered_route=True).switch_params().registered_route
    with pytest.raises(ValueError, match=r"agent_registered_rx must be True or False, not 0"):
        SystemParams(agent_registered_rx=0)
    with pytest.raises(ValueError, match=r"registered_rx must be True or False, not 'no'"):
        EndpointParams(node_id=1, registered_rx="no")
    with pytest.raises(ValueError, match=r"registered_rx must be True or False, not None"):
        HomeParams(node_id=16, window=WINDOW, registered_rx=None)
    both = SystemParams(agent_registered_rx=True)
    assert both.endpoint_params(0).registered_rx and both.home_params(0).registered_rx
    assert not SystemParams().home_params(0).registered_rx
    p = SYSTEM_PRESETS["default"]
    assert {p.home_of(p.base + k * p.granularity) for k in range(4)} == {16, 17}
    assert not p.endpoint_params(0).cacheable(p.base)
    assert p.endpoint_params(0).cacheable(p.base + 0x400)
