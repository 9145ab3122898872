"""Caching endpoint (hdl/endpoint/) in Amaranth's simulator.

The Python side plays the home agent and other caches through :class:`FabricPeer`; the AXI
side is :class:`AxiManager`. Directed tests assert exact messages (docs/coherence.md §3, §4);
one seeded random test runs loads, stores and atomics against a Python home model.
"""

import random

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from unifab.codec import Message, header, message
from unifab.coherence.params import AddressWindow, CacheParams, EndpointParams
from unifab.flit import ATOMIC_OPCODES, CacheState, ErrorCode, FabricParams, Opcode
from unifab.hdl.endpoint import Endpoint
from unifab.hdl.lib.axi import AxiBurst, AxiResp
from unifab.tb.axi_manager_sim import AxiManager
from unifab.tb.fabric_sim import FabricPeer
from unifab.testing import seed_from_env, simulate

NODE = 1  # the endpoint
HOME = 5  # the home agent played by the test
PEER = 2  # another cache
FAB = FabricParams()
LINE = 64
FULL = (1 << 16) - 1
S, E, M, I = CacheState.S, CacheState.E, CacheState.M, CacheState.I  # noqa: E741


def params(**kw) -> EndpointParams:
    kw.setdefault("cache", CacheParams(sets=4, ways=2))
    return EndpointParams(node_id=NODE, **kw)


def line_bytes(seed: int) -> bytes:
    return random.Random(seed).randbytes(LINE)


def beat(data: bytes, i: int) -> int:
    return int.from_bytes(data[16 * i : 16 * i + 16], "little")


class Env:
    """DUT + fabric peer + AXI manager + recorded state changes."""

    def __init__(self, p: EndpointParams, *, rng=None, on_message=None, gaps=0.0):
        self.p = p
        self.dut = Endpoint(p)
        self.rng = rng or random.Random(1)
        self.peer = FabricPeer(
            params=p.fabric,
            to_dut=self.dut.fabric_in,
            from_dut=self.dut.fabric_out,
            dut_rx_depth=p.rx_depth,
            rx_depth=p.tx_credits,
            rng=self.rng,
            send_idle=gaps,
            accept_stall=gaps,
            on_message=on_message,
        )
        self.axi = AxiManager(self.dut.axi, rng=self.rng, valid_gap=gaps, ready_stall=gaps)
        self.seen = 0  # messages of peer.received already consumed by next()
        self.states: list[tuple[int, CacheState]] = []

    async def _watch(self, ctx):
        sc = self.dut.state_change
        while True:
            _, _, valid, addr, state = await ctx.tick().sample(sc.valid, sc.addr, sc.state)
            if valid:
                self.states.append((addr, CacheState(state)))

    async def _check_no_forwarding(self, ctx):
        """The endpoint's cache arrays forward nothing: no lookup is used in the cycle after a
        tag write, and no data read in the cycle after a write of that word."""
        arrays, lookup_used, data_used = self.dut._probe
        tag_we = wstrb = waddr = 0
        while True:
            await ctx.tick()
            assert not (tag_we and ctx.get(lookup_used)), "lookup used after a tag write"
            assert not (wstrb and ctx.get(data_used) and ctx.get(arrays.data_raddr) == waddr), (
                "data read after a write of that word"
            )
            tag_we, wstrb = ctx.get(arrays.tag_we), ctx.get(arrays.data_wstrb)
            waddr = ctx.get(arrays.data_waddr)

    def run(self, bench) -> None:
        sim = Simulator(self.dut)
        sim.add_clock(1e-6)
        sim.add_testbench(self._check_no_forwarding, background=True)
        sim.add_testbench(self.peer.run, background=True)
        sim.add_testbench(self.axi.run, background=True)
        sim.add_testbench(self._watch, background=True)
        sim.add_testbench(bench)
        sim.run()

    async def next(self, ctx, timeout: int = 400) -> Message:
        """The next message the endpoint sends."""
        for _ in range(timeout):
            if len(self.peer.received) > self.seen:
                msg = self.peer.received[self.seen][0]
                self.seen += 1
                return msg
            await ctx.tick()
        raise AssertionError("no message from the endpoint")

    async def quiet(self, ctx, cycles: int = 40) -> None:
        """Nothing is sent for ``cycles``."""
        for _ in range(cycles):
            await ctx.tick()
        extra = self.peer.received[self.seen :]
        assert not extra, f"unexpected messages: {extra}"

    def send(self, h, data: bytes = b"", be: int | None = None) -> None:
        self.peer.send(message(h, data, be))

    def state_of(self, addr: int) -> CacheState:
        for a, s in reversed(self.states):
            if a == addr:
                return s
        return I


def req(opcode, addr, tag, size=None):
    return header(opcode, src=NODE, dst=0, tag=tag, addr=addr, size=size)


def home(opcode, addr, tag, state=I, **kw):
    return header(opcode, src=HOME, dst=NODE, tag=tag, addr=addr, state=state, **kw)


def ack(addr, tag, dst=HOME):
    return message(header(Opcode.COMP_ACK, src=NODE, dst=dst, tag=tag, addr=addr))


async def fill(env, ctx, addr, *, write=False, grant=E, data=None, tag=0, strb=FULL, value=0):
    """Load (or store) miss on ``addr`` answered by COMP_DATA(grant); returns the txn."""
    data = data if data is not None else line_bytes(addr)
    t = env.axi.write(addr, [value], [strb]) if write else env.axi.read(addr)
    op = Opcode.READ_UNIQUE if write else Opcode.READ_SHARED
    assert await env.next(ctx) == message(req(op, addr & ~63, tag))
    env.send(home(Opcode.COMP_DATA, addr & ~63, tag, grant), data)
    assert await env.next(ctx) == ack(addr & ~63, tag)
    await env.axi.wait(ctx, t)
    return t


# ------------------------------------------------------------------------------------------
# Cache: loads, stores, upgrades


def test_load_miss_then_hit():
    env = Env(params())
    data = line_bytes(7)

    async def bench(ctx):
        t = await fill(env, ctx, 0x1010, data=data)
        assert t.data == [beat(data, 1)] and t.resps == [AxiResp.OKAY]
        t2 = env.axi.read(0x1000, 4)
        await env.axi.wait(ctx, t2)
        assert t2.data == [beat(data, i) for i in range(4)]
        await env.quiet(ctx, 10)
        assert ctx.get(env.dut.hits) == 4 and ctx.get(env.dut.misses) == 1
        assert env.states == [(0x1000, E)]
        # A store to E is a silent hit: E -> M.
        t3 = env.axi.write(0x1020, [0xAB], [0x1])
        await env.axi.wait(ctx, t3)
        await env.quiet(ctx, 10)
        assert env.states[-1] == (0x1000, M)

    env.run(bench)


def test_store_to_shared_upgrades():
    env = Env(params())
    data = line_bytes(3)

    async def bench(ctx):
        await fill(env, ctx, 0x2000, grant=S, data=data)
        t = env.axi.write(0x2000, [0x1122], [0x3])
        assert await env.next(ctx) == message(req(Opcode.UPGRADE, 0x2000, 0))
        env.send(home(Opcode.COMP, 0x2000, 0, E))
        assert await env.next(ctx) == ack(0x2000, 0)
        await env.axi.wait(ctx, t)
        assert t.resp == AxiResp.OKAY
        r = env.axi.read(0x2000)
        await env.axi.wait(ctx, r)
        expect = bytearray(data)
        expect[0:2] = (0x1122).to_bytes(2, "little")
        assert r.data == [beat(bytes(expect), 0)]
        assert env.states == [(0x2000, S), (0x2000, M)]

    env.run(bench)


def test_upgrade_loses_race():
    env = Env(params())
    old, new = line_bytes(1), line_bytes(2)

    async def bench(ctx):
        await fill(env, ctx, 0x2040, grant=S, data=old)
        t = env.axi.write(0x2050, [0xFF << 8], [0x2])
        assert await env.next(ctx) == message(req(Opcode.UPGRADE, 0x2040, 0))
        # Another writer wins: SNP_INV to the S copy, then the upgrade is answered with data.
        env.send(home(Opcode.SNP_INV, 0x2040, 9))
        assert await env.next(ctx) == message(
            header(Opcode.SNP_RESP_I, src=NODE, dst=HOME, tag=9, addr=0x2040)
        )
        env.send(home(Opcode.COMP_DATA, 0x2040, 0, E), new)
        assert await env.next(ctx) == ack(0x2040, 0)
        await env.axi.wait(ctx, t)
        r = env.axi.read(0x2050)
        await env.axi.wait(ctx, r)
        expect = bytearray(new)
        expect[0x11] = 0xFF
        assert r.data == [beat(bytes(expect), 1)]
        assert env.states == [(0x2040, S), (0x2040, I), (0x2040, M)]

    env.run(bench)


def test_store_miss_forwarded_by_owner():
    env = Env(params())
    data = line_bytes(5)

    async def bench(ctx):
        t = env.axi.write(0x3030, [0x5A << 24], [0x8])
        assert await env.next(ctx) == message(req(Opcode.READ_UNIQUE, 0x3000, 0))
        # The owner forwards (src = owner, fwd = home node by this endpoint's convention).
        env.send(
            header(Opcode.FWD_DATA, src=PEER, dst=NODE, tag=0, fwd=HOME, addr=0x3000, state=M),
            data,
        )
        assert await env.next(ctx) == ack(0x3000, 0)
        await env.axi.wait(ctx, t)
        r = env.axi.read(0x3030)
        await env.axi.wait(ctx, r)
        expect = bytearray(data)
        expect[0x33] = 0x5A
        assert r.data == [beat(bytes(expect), 3)]
        assert env.states == [(0x3000, M)]

    env.run(bench)


# ------------------------------------------------------------------------------------------
# Snoops (§3.2)


def snp(opcode, addr, tag=0x33, fwd=0):
    return header(opcode, src=HOME, dst=NODE, tag=tag, fwd=fwd, addr=addr)


def fwd_msg(addr, state, data, tag=0x33):
    return message(
        header(Opcode.FWD_DATA, src=NODE, dst=PEER, tag=tag, fwd=HOME, addr=addr, state=state),
        data,
    )


def resp(opcode, addr, state=I, data=b"", tag=0x33):
    return message(header(opcode, src=NODE, dst=HOME, tag=tag, addr=addr, state=state), data)


SNOOP_ROWS = [
    # (held, snoop, expected messages (builder of (addr, data)), new state)
    ("M", Opcode.SNP_INV, lambda a, d: [resp(Opcode.SNP_RESP_DATA, a, I, d)], I),
    ("E", Opcode.SNP_INV, lambda a, d: [resp(Opcode.SNP_RESP_I, a)], I),
    ("S", Opcode.SNP_INV, lambda a, d: [resp(Opcode.SNP_RESP_I, a)], I),
    ("I", Opcode.SNP_INV, lambda a, d: [resp(Opcode.SNP_RESP_I, a)], I),
    (
        "M",
        Opcode.SNP_SHARED,
        lambda a, d: [fwd_msg(a, S, d), resp(Opcode.SNP_RESP_DATA, a, S, d)],
        S,
    ),
    ("E", Opcode.SNP_SHARED, lambda a, d: [fwd_msg(a, S, d), resp(Opcode.SNP_RESP_S, a, S)], S),
    ("I", Opcode.SNP_SHARED, lambda a, d: [resp(Opcode.SNP_RESP_I, a)], I),
    ("M", Opcode.SNP_UNIQUE, lambda a, d: [fwd_msg(a, M, d), resp(Opcode.SNP_RESP_I, a)], I),
    ("E", Opcode.SNP_UNIQUE, lambda a, d: [fwd_msg(a, E, d), resp(Opcode.SNP_RESP_I, a)], I),
    ("I", Opcode.SNP_UNIQUE, lambda a, d: [resp(Opcode.SNP_RESP_I, a)], I),
]


@pytest.mark.parametrize(
    "held,snoop,expect,new",
    SNOOP_ROWS,
    ids=[f"{r[1].name}-{r[0]}" for r in SNOOP_ROWS],
)
def test_snoop(held, snoop, expect, new):
    env = Env(params())
    addr = 0x4080
    data = bytearray(line_bytes(addr))

    async def bench(ctx):
        if held == "M":
            await fill(env, ctx, addr, write=True, strb=0x1, value=0x77)
            data[0] = 0x77
        elif held in ("E", "S"):
            await fill(env, ctx, addr, grant=CacheState[held], data=bytes(data))
        env.send(snp(snoop, addr, fwd=PEER if snoop != Opcode.SNP_INV else 0))
        for m_ in expect(addr, bytes(data)):
            assert await env.next(ctx) == m_
        await env.quiet(ctx, 20)
        assert env.state_of(addr) == new
        assert ctx.get(env.dut.snoops) == 1

    env.run(bench)


# ------------------------------------------------------------------------------------------
# Evictions (§3, §3.3)


SET_STRIDE = 4 * LINE  # 4 sets


@pytest.mark.parametrize("victim", ["M", "E", "S"])
def test_eviction(victim):
    env = Env(params())
    a, b_, c = 0x10000, 0x10000 + SET_STRIDE, 0x10000 + 2 * SET_STRIDE  # all in set 0
    data = bytearray(line_bytes(a))

    async def bench(ctx):
        if victim == "M":
            await fill(env, ctx, a, write=True, strb=0x1, value=0x99, data=bytes(data))
            data[0] = 0x99
        else:
            await fill(env, ctx, a, grant=CacheState[victim], data=bytes(data))
        await fill(env, ctx, b_)
        t = env.axi.read(c)
        msgs = [await env.next(ctx), await env.next(ctx)]
        ev = (
            message(req(Opcode.WRITE_BACK, a, 0x80), bytes(data))
            if victim == "M"
            else message(req(Opcode.CLEAN_EVICT, a, 0x80))
        )
        assert message(req(Opcode.READ_SHARED, c, 0)) in msgs and ev in msgs
        assert (a, I) in env.states
        assert ctx.get(env.dut.evict_busy) == 1
        # Another access to the evicted line waits for the eviction's COMP.
        t2 = env.axi.read(a)
        env.send(home(Opcode.COMP_DATA, c, 0, E), line_bytes(c))
        assert await env.next(ctx) == ack(c, 0)
        await env.axi.wait(ctx, t)
        await env.quiet(ctx, 30)
        env.send(home(Opcode.COMP, a, 0x80))
        # Now the load of `a` misses (victim: way of b, round robin).
        m1, m2 = await env.next(ctx), await env.next(ctx)
        assert message(req(Opcode.READ_SHARED, a, 0)) in (m1, m2)
        assert message(req(Opcode.CLEAN_EVICT, b_, 0x80)) in (m1, m2)
        env.send(home(Opcode.COMP_DATA, a, 0, S), bytes(data))
        env.send(home(Opcode.COMP, b_, 0x80))
        assert await env.next(ctx) == ack(a, 0)
        await env.axi.wait(ctx, t2)
        assert t2.data == [beat(bytes(data), 0)]
        await env.quiet(ctx, 10)
        assert ctx.get(env.dut.evict_busy) == 0 and ctx.get(env.dut.mshr_busy) == 0
        assert ctx.get(env.dut.writebacks) == (1 if victim == "M" else 0)

    env.run(bench)


@pytest.mark.parametrize("snoop", [Opcode.SNP_SHARED, Opcode.SNP_UNIQUE, Opcode.SNP_INV])
def test_snoop_hits_eviction_buffer(snoop):
    """A write-back crossing a snoop: answered from the eviction buffer (§3.2, §3.3)."""
    env = Env(params())
    a, b_, c = 0x20000, 0x20000 + SET_STRIDE, 0x20000 + 2 * SET_STRIDE
    data = bytearray(line_bytes(a))

    async def bench(ctx):
        await fill(env, ctx, a, write=True, strb=0x1, value=0x42, data=bytes(data))
        data[0] = 0x42
        await fill(env, ctx, b_)
        t = env.axi.read(c)
        msgs = [await env.next(ctx), await env.next(ctx)]
        assert message(req(Opcode.WRITE_BACK, a, 0x80), bytes(data)) in msgs
        env.send(snp(snoop, a, fwd=PEER if snoop != Opcode.SNP_INV else 0))
        d = bytes(data)
        if snoop == Opcode.SNP_SHARED:
            assert await env.next(ctx) == fwd_msg(a, S, d)
            assert await env.next(ctx) == resp(Opcode.SNP_RESP_DATA, a, I, d)
        elif snoop == Opcode.SNP_UNIQUE:
            assert await env.next(ctx) == fwd_msg(a, M, d)
            assert await env.next(ctx) == resp(Opcode.SNP_RESP_I, a)
        else:
            assert await env.next(ctx) == resp(Opcode.SNP_RESP_DATA, a, I, d)
        # A second snoop finds the slot no longer holding the line.
        env.send(snp(Opcode.SNP_INV, a, tag=0x34))
        assert await env.next(ctx) == resp(Opcode.SNP_RESP_I, a, tag=0x34)
        env.send(home(Opcode.COMP, a, 0x80))  # the stale write-back is dropped by the home
        env.send(home(Opcode.COMP_DATA, c, 0, E), line_bytes(c))
        assert await env.next(ctx) == ack(c, 0)
        await env.axi.wait(ctx, t)
        await env.quiet(ctx, 10)
        assert ctx.get(env.dut.evict_busy) == 0 and ctx.get(env.dut.mshr_busy) == 0

    env.run(bench)


# ------------------------------------------------------------------------------------------
# Several misses outstanding


def test_four_misses_outstanding():
    env = Env(params(mshrs=4))
    addrs = [0x5000, 0x5040, 0x5080, 0x50C0]  # four sets

    async def bench(ctx):
        ts = [env.axi.read(a + 0x10, id=i) for i, a in enumerate(addrs)]
        reqs = [await env.next(ctx) for _ in addrs]
        assert reqs == [message(req(Opcode.READ_SHARED, a, i)) for i, a in enumerate(addrs)]
        ts.append(env.axi.write(0x6000, [1], id=5))  # a fifth miss must wait for an MSHR
        await env.quiet(ctx, 30)
        assert not any(t.done for t in ts)
        assert ctx.get(env.dut.mshr_busy) == 0xF
        for i in reversed(range(4)):  # answered out of order
            env.send(home(Opcode.COMP_DATA, addrs[i], i, S), line_bytes(addrs[i]))
            assert await env.next(ctx) == ack(addrs[i], i)
        await env.axi.wait(ctx, *ts[:4])
        for i, t in enumerate(ts[:4]):
            assert t.data == [beat(line_bytes(addrs[i]), 1)] and t.rid == [i]
        # AXI answers leave in request order although the fills came in reverse.
        assert [t.done_cycle for t in ts[:4]] == sorted(t.done_cycle for t in ts[:4])
        m5 = await env.next(ctx)
        assert m5.header.opcode == Opcode.READ_UNIQUE and m5.header.addr == 0x6000
        env.send(home(Opcode.COMP_DATA, 0x6000, m5.header.tag, E), line_bytes(0))
        assert await env.next(ctx) == ack(0x6000, m5.header.tag)
        await env.axi.wait(ctx, ts[4])
        assert ts[4].bid == 5

    env.run(bench)


# ------------------------------------------------------------------------------------------
# Non-cacheable, atomics, errors, unsupported bursts


NC_WIN = AddressWindow(base=0x8000_0000, size=0x1000)


@pytest.mark.parametrize("cache", ["window", "none"])
def test_noncacheable(cache):
    p = params(noncacheable=(NC_WIN,)) if cache == "window" else params(cache=None)
    env = Env(p)
    addr = 0x8000_0070
    data = line_bytes(11)

    async def bench(ctx):
        t = env.axi.read(addr)
        assert await env.next(ctx) == message(req(Opcode.NC_READ, 0x8000_0070, 0, size=4))
        env.send(home(Opcode.COMP_DATA, 0x8000_0070, 0), data, FULL << 48)
        await env.axi.wait(ctx, t)
        assert t.data == [beat(data, 3)] and t.resps == [AxiResp.OKAY]
        w = env.axi.write(0x8000_0090, [0x0102030405060708], [0x00F0])
        expect = bytearray(LINE)
        expect[0x14:0x18] = bytes([0x04, 0x03, 0x02, 0x01])
        assert await env.next(ctx) == message(
            req(Opcode.NC_WRITE, 0x8000_0080, 0), bytes(expect), 0x00F0 << 16
        )
        env.send(home(Opcode.COMP, 0x8000_0080, 0))
        await env.axi.wait(ctx, w)
        assert w.resp == AxiResp.OKAY
        await env.quiet(ctx, 10)
        assert env.states == [] and ctx.get(env.dut.mshr_busy) == 0

    env.run(bench)


def test_noncacheable_burst_beats_all_outstanding():
    """The beats of a non-cacheable burst to one line are all in flight at once (one NC
    request per beat, a tag each), answers may come back in any order, data leaves in order."""
    env = Env(params(noncacheable=(NC_WIN,), mshrs=4))
    base = 0x8000_0100
    data = line_bytes(5)

    async def bench(ctx):
        t = env.axi.read(base, 4, id=3)
        reqs = [await env.next(ctx) for _ in range(4)]
        assert [(m.header.opcode, m.header.addr, m.header.tag) for m in reqs] == [
            (Opcode.NC_READ, base + 16 * k, k) for k in range(4)
        ]
        for k in (2, 0, 3, 1):
            env.send(home(Opcode.COMP_DATA, base + 16 * k, k), data, FULL << 48)
        await env.axi.wait(ctx, t)
        assert t.data == [beat(data, k) for k in range(4)] and t.resps == [AxiResp.OKAY] * 4
        w = env.axi.write(base, [k + 1 for k in range(4)], [0xFFFF] * 4, id=1)
        writes = [await env.next(ctx) for _ in range(4)]
        assert [(m.header.opcode, m.header.tag) for m in writes] == [
            (Opcode.NC_WRITE, k) for k in range(4)
        ]
        for k in (3, 1, 2, 0):
            env.send(home(Opcode.COMP, base, k))
        await env.axi.wait(ctx, w)
        assert w.resp == AxiResp.OKAY
        await env.quiet(ctx, 10)
        assert ctx.get(env.dut.mshr_busy) == 0

    env.run(bench)


ATOMICS = [
    # (awuser op, opcode, size, addr, operand, compare)
    (1, Opcode.ATOMIC_ADD, 3, 0x9008, 0x1111_2222_3333_4444, None),
    (2, Opcode.ATOMIC_SWAP, 2, 0x9004, 0xDEAD_BEEF, None),
    (3, Opcode.ATOMIC_CAS, 3, 0x9010, 0xAAAA_BBBB_CCCC_DDDD, 0x0123_4567_89AB_CDEF),
    (3, Opcode.ATOMIC_CAS, 1, 0x9004, 0xBEEF, 0x1234),
    (4, Opcode.ATOMIC_AND, 0, 0x9003, 0x5A, None),
    (5, Opcode.ATOMIC_OR, 1, 0x900E, 0x8001, None),
    (6, Opcode.ATOMIC_XOR, 2, 0x9000, 0x0F0F_0F0F, None),
    (7, Opcode.ATOMIC_MIN, 3, 0x9000, 0xFFFF_FFFF_FFFF_FFFE, None),
    (8, Opcode.ATOMIC_MAX, 0, 0x900F, 0x7F, None),
]


@pytest.mark.parametrize("aop,opcode,size,addr,operand,compare", ATOMICS)
def test_atomic(aop, opcode, size, addr, operand, compare):
    env = Env(params())
    n = 1 << size
    old = random.Random(aop).getrandbits(8 * n)

    async def bench(ctx):
        lane = addr % 16
        wdata = operand << (8 * lane)
        strb = ((1 << n) - 1) << lane
        if compare is not None:
            wdata |= compare << (8 * (lane + n))
            strb |= ((1 << n) - 1) << (lane + n)
        t = env.axi.write(addr, [wdata], [strb], user=aop | size << 4)
        payload = bytearray(16)
        payload[0:n] = operand.to_bytes(n, "little")
        be = (1 << n) - 1
        if compare is not None:
            payload[8 : 8 + n] = compare.to_bytes(n, "little")
            be |= ((1 << n) - 1) << 8
        assert await env.next(ctx) == message(req(opcode, addr, 0, size=size), bytes(payload), be)
        env.send(
            home(Opcode.ATOMIC_DATA, addr, 0, size=size),
            old.to_bytes(16, "little"),
            (1 << n) - 1,
        )
        await env.axi.wait(ctx, t)
        assert t.resp == AxiResp.OKAY and t.buser == old

    env.run(bench)


def test_bad_atomics_and_bursts():
    env = Env(params())

    async def bench(ctx):
        ts = [
            env.axi.write(0x9001, [0], user=1 | 3 << 4),  # misaligned 8-byte add
            env.axi.write(0x9008, [0], user=3 | 3 << 4),  # CAS-64 needs 16-byte alignment
            env.axi.write(0x9000, [0], user=9),  # no such op
            env.axi.write(0x9000, [0, 0], user=1),  # atomic burst of 2
            env.axi.read(0x9000, 4, burst=AxiBurst.WRAP),
            env.axi.read(0x9000, 2, burst=AxiBurst.FIXED),
            env.axi.read(0x9000, 2, size=2),  # narrow
            env.axi.write(0x9000, [1, 2, 3], size=3),  # narrow
        ]
        await env.axi.wait(ctx, *ts)
        for t in ts:
            if t.write:
                assert t.resp == AxiResp.SLVERR
            else:
                assert t.resps == [AxiResp.SLVERR] * t.length
        await env.quiet(ctx, 10)
        assert ctx.get(env.dut.errors) >= len(ts)

    env.run(bench)


def test_error_responses():
    env = Env(params(noncacheable=(NC_WIN,)))

    async def bench(ctx):
        t1 = env.axi.read(0x8000_0000)
        assert (await env.next(ctx)).header.opcode == Opcode.NC_READ
        env.send(home(Opcode.ERROR, 0x8000_0000, 0, err=ErrorCode.DECODE))
        await env.axi.wait(ctx, t1)
        assert t1.resps == [AxiResp.DECERR]
        t2 = env.axi.write(0x7000, [5])
        assert await env.next(ctx) == message(req(Opcode.READ_UNIQUE, 0x7000, 0))
        env.send(home(Opcode.ERROR, 0x7000, 0, err=ErrorCode.POISON, poison=1))
        await env.axi.wait(ctx, t2)
        assert t2.resp == AxiResp.SLVERR
        t3 = env.axi.write(0x9000, [5], user=1)
        assert (await env.next(ctx)).header.opcode == Opcode.ATOMIC_ADD
        env.send(home(Opcode.ERROR, 0x9000, 0, err=ErrorCode.UNSUPPORTED))
        await env.axi.wait(ctx, t3)
        assert t3.resp == AxiResp.SLVERR
        # The refused miss left nothing behind: the line misses again.
        t4 = env.axi.read(0x7000)
        assert await env.next(ctx) == message(req(Opcode.READ_SHARED, 0x7000, 0))
        env.send(home(Opcode.COMP_DATA, 0x7000, 0, E), line_bytes(1))
        assert await env.next(ctx) == ack(0x7000, 0)
        await env.axi.wait(ctx, t4)
        assert ctx.get(env.dut.mshr_busy) == 0

    env.run(bench)


def test_verilog():
    for p in (params(), params(cache=None, mshrs=2), params(noncacheable=(NC_WIN,))):
        text = verilog.convert(Endpoint(p), name="ep")
        assert "module ep" in text and "axi__awuser" in text


# ------------------------------------------------------------------------------------------
# Random traffic against a Python home model


ATOMIC_OPS = {o: i + 1 for i, o in enumerate(sorted(ATOMIC_OPCODES, key=lambda o: o.value))}


def atomic_result(op: Opcode, old: int, opd: int, cmp: int, n: int) -> int:
    """The value an atomic of ``n`` bytes leaves in memory."""
    mask = (1 << 8 * n) - 1

    def sx(v: int) -> int:
        return v - (1 << 8 * n) if v >> (8 * n - 1) else v

    return {
        Opcode.ATOMIC_ADD: (old + opd) & mask,
        Opcode.ATOMIC_SWAP: opd,
        Opcode.ATOMIC_AND: old & opd,
        Opcode.ATOMIC_OR: old | opd,
        Opcode.ATOMIC_XOR: old ^ opd,
        Opcode.ATOMIC_MIN: opd if sx(opd) < sx(old) else old,
        Opcode.ATOMIC_MAX: opd if sx(opd) > sx(old) else old,
        Opcode.ATOMIC_CAS: opd if old == cmp else old,
    }[op]


class HomeModel:
    """The home agent of docs/coherence.md §2.1 for one caching endpoint, plus a virtual
    second cache (PEER) that takes lines away with snoops at random times.

    Memory is a dict of lines; the directory is ``held`` (line -> state of NODE). A line with
    a snoop outstanding is busy: requests for it wait in ``deferred`` (arrival order).
    Messages to the endpoint leave after a random delay, in order per class.
    """

    def __init__(self, env: Env, rng: random.Random):
        self.env, self.rng = env, rng
        self.mem: dict[int, bytearray] = {}
        self.held: dict[int, CacheState] = {}
        self.snooping: set[int] = set()
        self.acking: set[int] = set()  # granted, COMP_ACK not yet back
        self.fwd_due: dict[int, bool] = {}
        self.resp_due: set[int] = set()
        self.deferred: dict[int, list[Message]] = {}
        self.queues: dict[int, list[tuple[int, Message]]] = {2: [], 3: [], 1: []}
        self.now = 0
        self.snoops_sent = 0

    def line(self, a: int) -> bytearray:
        return self.mem.setdefault(a & ~63, bytearray(LINE))

    def send(self, msg: Message) -> None:
        q = self.queues[msg.header.cls.value]
        at = max(q[-1][0] if q else 0, self.now + self.rng.randrange(12))
        q.append((at, msg))

    def snoop(self, kind: Opcode, line: int) -> None:
        self.snooping.add(line)
        # A holder (in its cache or eviction buffer) always forwards for SHARED/UNIQUE: the
        # snoop closes once both the forward and the response have arrived.
        self.fwd_due[line] = kind != Opcode.SNP_INV
        self.resp_due.add(line)
        self.snoops_sent += 1
        self.send(message(snp(kind, line, tag=0x70, fwd=PEER if kind != Opcode.SNP_INV else 0)))

    async def run(self, ctx) -> None:
        """Background: release delayed messages, steal held lines now and then."""
        while True:
            await ctx.tick()
            self.now += 1
            for q in self.queues.values():
                while q and q[0][0] <= self.now:
                    self.env.peer.send(q.pop(0)[1])
            idle = [ln for ln in self.held if not self.busy(ln)]
            if idle and self.rng.random() < 0.01:
                kind = self.rng.choice([Opcode.SNP_INV, Opcode.SNP_SHARED, Opcode.SNP_UNIQUE])
                self.snoop(kind, self.rng.choice(idle))

    def on_message(self, msg: Message, vc: int) -> None:
        h = msg.header
        op, a = h.opcode, h.addr
        line = a & ~63
        if h.cls.value == 0:  # requests wait while their line is being snooped
            if self.busy(line):
                self.deferred.setdefault(line, []).append(msg)
            else:
                self.request(msg)
        elif op == Opcode.COMP_ACK:
            assert h.dst == HOME and line in self.acking, f"unexpected {h}"
            self.acking.discard(line)
            if self.rng.random() < 0.2:  # PEER wants the line right after the grant
                self.snoop(self.rng.choice(list(SNOOPS)), line)
            else:
                self.release(line)
        elif op == Opcode.FWD_DATA:
            assert h.dst == PEER and h.fwd == HOME
            self.line(a)[:] = msg.data  # PEER takes the line and writes it back at once
            assert self.fwd_due.get(line), f"unexpected {h}"
            self.fwd_due[line] = False
            self.close_snoop(line)
        elif op in (Opcode.SNP_RESP_DATA, Opcode.SNP_RESP_I, Opcode.SNP_RESP_S):
            assert line in self.snooping, f"snoop response without a snoop: {h}"
            if op == Opcode.SNP_RESP_DATA:
                self.line(a)[:] = msg.data
            if op == Opcode.SNP_RESP_S or h.state == S:
                self.held[line] = S
            else:
                self.held.pop(line, None)
            self.resp_due.discard(line)
            self.close_snoop(line)
        else:
            raise AssertionError(f"unexpected message {h}")

    def close_snoop(self, line: int) -> None:
        if line not in self.resp_due and not self.fwd_due.get(line):
            self.snooping.discard(line)
            self.release(line)

    def busy(self, line: int) -> bool:
        return line in self.snooping or line in self.acking

    def release(self, line: int) -> None:
        """The line's transaction closed: run the requests that waited for it."""
        waiting = self.deferred.pop(line, [])
        while waiting and not self.busy(line):
            self.request(waiting.pop(0))
        if waiting:
            self.deferred[line] = waiting

    def request(self, msg: Message) -> None:
        h = msg.header
        op, a = h.opcode, h.addr
        line = a & ~63
        if op in (Opcode.READ_SHARED, Opcode.READ_UNIQUE, Opcode.UPGRADE):
            assert op == Opcode.UPGRADE or line not in self.held, f"request for held line {h}"
            if op == Opcode.UPGRADE and self.held.get(line) == S:
                self.send(message(home(Opcode.COMP, a, h.tag, E)))
            else:
                self.send(message(home(Opcode.COMP_DATA, a, h.tag, E), bytes(self.line(a))))
            self.held[line] = E
            self.acking.add(line)
        elif op == Opcode.WRITE_BACK:
            if self.held.get(line) in (E, M):
                self.line(a)[:] = msg.data
                del self.held[line]
            self.send(message(home(Opcode.COMP, a, h.tag)))
        elif op == Opcode.CLEAN_EVICT:
            self.held.pop(line, None)
            self.send(message(home(Opcode.COMP, a, h.tag)))
        elif op in ATOMIC_OPS:
            if line in self.held:  # make it uncached first, then run it
                self.deferred.setdefault(line, []).append(msg)
                self.snoop(Opcode.SNP_INV, line)
                return
            n = 1 << h.size
            ln = self.line(a)
            off = a % 64
            old = int.from_bytes(ln[off : off + n], "little")
            opd = int.from_bytes(msg.data[0:n], "little")
            cmp = int.from_bytes(msg.data[8 : 8 + n], "little")
            ln[off : off + n] = atomic_result(op, old, opd, cmp, n).to_bytes(n, "little")
            self.send(
                message(
                    home(Opcode.ATOMIC_DATA, a, h.tag, size=h.size),
                    old.to_bytes(16, "little"),
                    (1 << n) - 1,
                )
            )
        else:
            raise AssertionError(f"unexpected request {h}")


SNOOPS = (Opcode.SNP_INV, Opcode.SNP_SHARED, Opcode.SNP_UNIQUE)
OPS = 500


@pytest.mark.parametrize("registered_rx", [False, True], ids=["ram_rx", "registered_rx"])
def test_random_traffic(registered_rx):
    seed = seed_from_env(2024, label="endpoint random")
    rng = random.Random(seed)
    env = Env(params(registered_rx=registered_rx), rng=random.Random(seed + 1), gaps=0.2)
    model = HomeModel(env, random.Random(seed + 2))
    env.peer.on_message = model.on_message
    lines = [0x10000 + i * LINE for i in range(12)]  # 3 lines per set: evictions
    shadow: dict[int, int] = {}  # byte address -> value (the AXI-visible memory)

    def value(a: int, n: int) -> int:
        return sum(shadow.get(a + i, 0) << (8 * i) for i in range(n))

    def store(a: int, v: int, n: int, strb: int | None = None) -> None:
        for i in range(n):
            if strb is None or strb >> i & 1:
                shadow[a + i] = v >> (8 * i) & 0xFF

    def check(kind_, a_, t, exp):
        if kind_ == "r":
            assert t.resps == [AxiResp.OKAY]
            assert t.data[0] == exp, f"load {a_:#x}: {t.data[0]:#x} != {exp:#x}"
        elif kind_ == "w":
            assert t.resp == AxiResp.OKAY
        else:
            assert t.resp == AxiResp.OKAY and t.buser == exp, f"atomic {a_:#x}"

    async def bench(ctx):
        pending = []

        async def drain(keep: int) -> None:
            while len(pending) > keep:
                kind_, a_, t, exp = pending.pop(0)
                await env.axi.wait(ctx, t, timeout=4000)
                check(kind_, a_, t, exp)

        for _ in range(OPS):
            a = rng.choice(lines) + 16 * rng.randrange(4)
            kind = rng.random()
            group = "r" if kind < 0.45 else "w"
            if pending and pending[-1][0].replace("a", "w") != group:
                await drain(0)  # AXI orders nothing between the read and write channels
            if kind < 0.45:
                pending.append(("r", a, env.axi.read(a, id=rng.randrange(16)), value(a, 16)))
            elif kind < 0.88:
                val, strb = rng.getrandbits(128), rng.getrandbits(16)
                store(a, val, 16, strb)
                pending.append(("w", a, env.axi.write(a, [val], [strb], id=rng.randrange(16)), 0))
            else:
                op = rng.choice(list(ATOMIC_OPS))
                size = rng.randrange(4)
                n = 1 << size
                cas = op == Opcode.ATOMIC_CAS
                span = 2 * n if cas else n
                aa = a + span * rng.randrange(16 // span)
                old = value(aa, n)
                opd = rng.getrandbits(8 * n)
                cmp = old if cas and rng.random() < 0.5 else rng.getrandbits(8 * n)
                store(aa, atomic_result(op, old, opd, cmp, n), n)
                wdata = (opd | cmp << (8 * n)) << (8 * (aa % 16))
                t = env.axi.write(aa, [wdata], user=ATOMIC_OPS[op] | size << 4)
                pending.append(("a", aa, t, old))
            if len(pending) > 8 or rng.random() < 0.05:
                await drain(rng.randrange(len(pending)))
        await drain(0)
        for _ in range(300):
            await ctx.tick()
            fabric_idle = env.peer.idle and not any(model.queues.values())
            dut_idle = ctx.get(env.dut.mshr_busy) == 0 and ctx.get(env.dut.evict_busy) == 0
            if fabric_idle and not model.snooping and dut_idle:
                break
        assert ctx.get(env.dut.mshr_busy) == 0 and ctx.get(env.dut.evict_busy) == 0
        assert not model.deferred or not any(model.deferred.values())
        print(
            f"random: {env.axi.cycle} cycles, hits={ctx.get(env.dut.hits)}"
            f" misses={ctx.get(env.dut.misses)} wb={ctx.get(env.dut.writebacks)}"
            f" snoops={ctx.get(env.dut.snoops)}/{model.snoops_sent}"
        )
        assert ctx.get(env.dut.snoops) == model.snoops_sent
        # Quiescent: the endpoint's line states (from state_change) agree with the directory.
        final = {}
        for a, st in env.states:
            final[a] = st
        for a, st in final.items():
            granted = model.held.get(a)
            if st in (E, M):
                assert granted == E, f"{a:#x} is {st.name} but the directory says {granted}"
            elif st == S:
                assert granted in (S, E), f"{a:#x} is S but the directory says {granted}"
        assert len([a for a, st in final.items() if st != I]) <= 8  # 4 sets x 2 ways

    sim_env_run(env, model, bench)
    assert len(env.axi.completed) == OPS


def sim_env_run(env: Env, model: HomeModel, bench) -> None:
    sim = Simulator(env.dut)
    sim.add_clock(1e-6)
    sim.add_testbench(env.peer.run, background=True)
    sim.add_testbench(env.axi.run, background=True)
    sim.add_testbench(env._watch, background=True)
    sim.add_testbench(model.run, background=True)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("forwarding", [True, False], ids=["forwarding", "no_forwarding"])
@pytest.mark.parametrize("sets,ways", [(4, 2), (1, 1), (8, 3)])
def test_cache_arrays_against_model(sets, ways, forwarding):
    """CacheArrays against a Python model: the tag lookup shows, from registers, the set given
    a cycle earlier as it is now (a tag write to it in that same cycle included, whatever the
    controller does), with each way's hit on the tag given with it, and the data array reads
    the words written before, byte by byte (the previous cycle's write, still in the write
    register, included). Without forwarding, both show the arrays as they were before the
    previous cycle's writes."""
    from amaranth import Value

    from unifab.hdl.endpoint.cache import CacheArrays, CacheGeometry

    seed = seed_from_env(7, label=f"cache arrays {sets}x{ways}")
    rng = random.Random(seed)
    geom = CacheGeometry(CacheParams(sets=sets, ways=ways), FAB)
    dut = CacheArrays(geom, forwarding=forwarding)
    entry_bits = len(Value.cast(dut.tag_data))
    w = FAB.data_width
    tags = [[0] * ways for _ in range(sets)]  # what a combinational read would give
    words = [0] * geom.words
    forwarded = 0
    forwarded_data = 0
    hits = forwarded_hits = 0

    async def bench(ctx):
        nonlocal forwarded, forwarded_data, hits, forwarded_hits
        looked_up = looked_tag = last_tag_write = None
        old_tags, old_words = [row[:] for row in tags], words[:]  # before the last writes
        last_write = None  # (word, strobe) of the previous cycle's data write
        for cyc in range(600):
            s = rng.randrange(sets)
            # The tag to compare: mostly one held in the set (a hit if valid), else any.
            tb = geom.tag_bits
            held = [tags[s][k] & ((1 << tb) - 1) for k in range(ways)]
            t = rng.choice(held) if rng.random() < 0.7 else rng.getrandbits(tb)
            we = rng.random() < 0.5
            ws, ww, wd = rng.randrange(sets), rng.randrange(ways), rng.getrandbits(entry_bits)
            if rng.random() < 0.3:
                wd = t | rng.randrange(4) << tb  # the tag being looked up (a forwarded hit)
            ra, wa = rng.randrange(geom.words), rng.randrange(geom.words)
            if last_write is not None and rng.random() < 0.3:
                ra = last_write[0]  # read the word written a cycle ago (forwarded)
            strb, wdata = rng.getrandbits(w // 8), rng.getrandbits(w)
            ctx.set(dut.lookup_set, s)
            ctx.set(dut.lookup_tag, t)
            ctx.set(dut.tag_we, we)
            ctx.set(dut.tag_set, ws)
            ctx.set(dut.tag_way, ww)
            ctx.set(Value.cast(dut.tag_data), wd)
            ctx.set(dut.data_raddr, ra)
            ctx.set(dut.data_waddr, wa)
            ctx.set(dut.data_wdata, wdata)
            ctx.set(dut.data_wstrb, strb)
            ref_tags, ref_words = (tags, words) if forwarding else (old_tags, old_words)
            if looked_up is not None:
                got = ctx.get(Value.cast(dut.lookup))
                want = sum(ref_tags[looked_up][k] << (k * entry_bits) for k in range(ways))
                assert got == want, f"seed {seed} cycle {cyc}: set {looked_up}"
                want_hit = sum(
                    1 << k
                    for k in range(ways)
                    if ref_tags[looked_up][k] >> tb != I.value
                    and ref_tags[looked_up][k] & ((1 << tb) - 1) == looked_tag
                )
                assert ctx.get(dut.lookup_hit) == want_hit, f"seed {seed} cycle {cyc}: hits"
                hits += want_hit != 0
                forwarded_hits += want_hit != 0 and last_tag_write == looked_up
            got = ctx.get(dut.data_rdata)
            assert got == ref_words[ra], f"seed {seed} cycle {cyc}: word {ra}"
            if last_write is not None and last_write[0] == ra and last_write[1]:
                forwarded_data += 1
            await ctx.tick()
            last_tag_write = ws if we else None
            old_tags, old_words = [row[:] for row in tags], words[:]
            if we:
                forwarded += ws == s
                tags[ws][ww] = wd
            mask = sum(0xFF << (8 * i) for i in range(w // 8) if strb >> i & 1)
            words[wa] = (words[wa] & ~mask) | (wdata & mask)
            last_write = (wa, strb)
            looked_up, looked_tag = s, t

    simulate(dut, bench, name=f"cache_arrays_{sets}x{ways}")
    assert forwarded > 20, "tag writes to the set being looked up were exercised"
    assert forwarded_data > 50, "reads of the word written the cycle before were exercised"
    assert hits > 100 and forwarded_hits > 10, (hits, forwarded_hits)
