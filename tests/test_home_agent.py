"""The directory home agent (hdl/coherence) in Amaranth's simulator, against docs/coherence.md.

Python caching agents (:class:`Agents`) stand around the home through a :class:`FabricPeer`:
they answer snoops per §3.2 from a dict of cache lines (forwarded data goes straight to the
requester, in Python), send ``COMP_ACK`` after a grant, and record every response. The home's
memory is an :class:`AxiRamSim`. Directed tests check every row of §2.1 and §2.4 with exact
messages; one seeded random test checks the coherence invariants under stalls.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from unifab.codec import Flit, Message, MsgHeader, header, pack_fields, pack_header
from unifab.coherence.params import AddressWindow, HomeParams
from unifab.flit import (
    ATOMIC_OPCODES,
    LINE_BYTES,
    CacheState,
    ErrorCode,
    FabricParams,
    Header,
    MsgClass,
    Opcode,
)
from unifab.hdl.coherence.atomics import AtomicAlu
from unifab.hdl.coherence.home import HomeAgent, home_geometry
from unifab.tb.axi_ram_sim import AxiRamSim
from unifab.tb.fabric_sim import FabricPeer
from unifab.testing import seed_from_env

HOME = 9
BASE = 0x4_0000
WINDOW = AddressWindow(base=BASE, size=4096)
PARAMS = HomeParams(
    node_id=HOME,
    window=WINDOW,
    dir_sets=4,
    dir_ways=2,
    table_entries=4,
    max_sharers=4,
    rx_depth=4,
    tx_credits=4,
)
FULL = (1 << LINE_BYTES) - 1
S, E, M, I = CacheState.S, CacheState.E, CacheState.M, CacheState.I  # noqa: E741


def line_addr(n: int) -> int:
    return BASE + n * LINE_BYTES


def pattern(seed: int) -> bytes:
    return random.Random(seed).randbytes(LINE_BYTES)


# --------------------------------------------------------------------------------------------
# Python caching agents


@dataclass
class Pending:
    node: int
    tag: int
    opcode: Opcode
    addr: int
    store: bytes | None = None  # READ_UNIQUE / UPGRADE: bytes stored at `store_at` on grant
    store_at: int = 0
    info: dict = field(default_factory=dict)


class Agents:
    """Caching agents: lines ``{node: {line: [state, bytearray]}}`` and eviction buffers."""

    def __init__(self, peer: FabricPeer, params: HomeParams) -> None:
        self.peer = peer
        self.params = params
        self.lines: dict[int, dict[int, list]] = {}
        self.evicting: dict[int, dict[int, list]] = {}  # node -> line -> [dirty, data]
        self.pending: dict[tuple[int, int], Pending] = {}
        self.done: list[tuple[Pending, Message]] = []  # requests answered, in order
        self.forwards: list[Message] = []  # FWD_DATA messages (cache to cache)
        self.snoops: list[Message] = []
        self.hold_ack: set[int] = set()  # nodes that keep their COMP_ACK back
        self.held_acks: list[Message] = []
        self.tags: dict[int, int] = {}
        self.on_done: Callable[[Pending, Message], None] | None = None
        self.on_change: Callable[[], None] | None = None

    # -- the core side ---------------------------------------------------------------------

    def cache(self, node: int) -> dict[int, list]:
        return self.lines.setdefault(node, {})

    def state(self, node: int, line: int) -> CacheState:
        entry = self.cache(node).get(line)
        return entry[0] if entry else I

    def request(
        self,
        node: int,
        opcode: Opcode,
        addr: int,
        *,
        data: bytes = b"",
        be: int | None = None,
        size: int | None = None,
        store: bytes | None = None,
        store_at: int = 0,
        tag: int | None = None,
        info: dict | None = None,
    ) -> Pending:
        if tag is None:
            tag = self.tags.get(node, 0)
            while (node, tag) in self.pending:
                tag = (tag + 1) & 0xFF
            self.tags[node] = (tag + 1) & 0xFF
        assert (node, tag) not in self.pending
        if opcode is Opcode.WRITE_BACK and not data:
            data = bytes(self.cache(node)[addr][1])
        if opcode in (Opcode.WRITE_BACK, Opcode.CLEAN_EVICT):
            entry = self.cache(node).pop(addr, None)
            dirty = entry is not None and entry[0] is M
            self.evicting.setdefault(node, {})[addr] = [dirty, bytes(entry[1]) if entry else data]
        h = header(opcode, src=node, dst=HOME, tag=tag, addr=addr, size=size)
        p = Pending(node, tag, opcode, addr, store, store_at, info or {})
        self.pending[(node, tag)] = p
        self.peer.send(Message(header=h, data=data, byte_enable=be))
        return p

    def release_acks(self, node: int) -> None:
        self.hold_ack.discard(node)
        for msg in self.held_acks:
            self.peer.send(msg)
        self.held_acks.clear()

    # -- messages from the home (and forwarded data) --------------------------------------

    def on_message(self, msg: Message, vc: int) -> None:
        h = msg.header
        assert h.src == HOME, f"message from {h.src}, not the home"
        if h.cls is MsgClass.SNP:
            assert vc == 1
            self.snoops.append(msg)
            self._snoop(msg)
        else:
            assert vc == h.cls.value
            self._response(h.dst, msg)
        if self.on_change:
            self.on_change()

    def _snoop(self, msg: Message) -> None:
        h = msg.header
        node, line = h.dst, h.addr

        def to_home(opcode: Opcode, state: CacheState = I, data: bytes = b"") -> None:
            rh = header(opcode, src=node, dst=HOME, tag=h.tag, addr=line, state=state)
            self.peer.send(Message(header=rh, data=data))

        def forward(state: CacheState, data: bytes) -> None:
            fh = header(Opcode.FWD_DATA, src=node, dst=h.fwd, tag=h.tag, addr=line, state=state)
            fmsg = Message(header=fh, data=bytes(data))
            self.forwards.append(fmsg)
            self._response(h.fwd, fmsg)

        entry = self.cache(node).get(line)
        buffered = self.evicting.get(node, {}).get(line)
        if h.opcode is Opcode.SNP_INV:
            if entry is not None:
                del self.cache(node)[line]
                if entry[0] is M:
                    to_home(Opcode.SNP_RESP_DATA, I, bytes(entry[1]))
                else:
                    to_home(Opcode.SNP_RESP_I)
            elif buffered is not None and buffered[0]:
                buffered[0] = False
                to_home(Opcode.SNP_RESP_DATA, I, buffered[1])
            else:
                to_home(Opcode.SNP_RESP_I)
        elif h.opcode is Opcode.SNP_SHARED:
            if entry is not None:
                assert entry[0] in (M, E), f"SNP_SHARED to node {node} holding {entry[0]}"
                forward(S, entry[1])
                if entry[0] is M:
                    to_home(Opcode.SNP_RESP_DATA, S, bytes(entry[1]))
                else:
                    to_home(Opcode.SNP_RESP_S)
                entry[0] = S
            else:
                assert buffered is not None, f"SNP_SHARED to node {node}, which has no copy"
                forward(S, buffered[1])
                if buffered[0]:
                    to_home(Opcode.SNP_RESP_DATA, I, buffered[1])
                    buffered[0] = False
                else:
                    to_home(Opcode.SNP_RESP_I)
        elif h.opcode is Opcode.SNP_UNIQUE:
            if entry is not None:
                assert entry[0] in (M, E), f"SNP_UNIQUE to node {node} holding {entry[0]}"
                del self.cache(node)[line]
                forward(M if entry[0] is M else E, entry[1])
            else:
                assert buffered is not None, f"SNP_UNIQUE to node {node}, which has no copy"
                forward(M if buffered[0] else E, buffered[1])
                buffered[0] = False
            to_home(Opcode.SNP_RESP_I)
        else:
            raise AssertionError(f"unknown snoop {h.opcode}")

    def _ack(self, node: int, p: Pending) -> None:
        h = header(Opcode.COMP_ACK, src=node, dst=HOME, tag=p.tag, addr=p.addr)
        msg = Message(header=h)
        if node in self.hold_ack:
            self.held_acks.append(msg)
        else:
            self.peer.send(msg)

    def _fill(self, node: int, p: Pending, state: CacheState, data: bytes) -> None:
        buf = bytearray(data)
        if p.store is not None:
            buf[p.store_at : p.store_at + len(p.store)] = p.store
            state = M
        self.cache(node)[p.addr] = [state, buf]

    def _response(self, node: int, msg: Message) -> None:
        h = msg.header
        key = (node, h.tag)
        assert key in self.pending, (
            f"response {h.opcode.name} to node {node} tag {h.tag}: no request"
        )
        p = self.pending.pop(key)
        op = p.opcode
        assert h.addr == p.addr, f"{h.opcode.name} addr {h.addr:#x} for request at {p.addr:#x}"
        if h.opcode is Opcode.ERROR:
            if op in (Opcode.WRITE_BACK, Opcode.CLEAN_EVICT):
                self.evicting[node].pop(p.addr, None)
        elif op in (Opcode.READ_SHARED, Opcode.READ_UNIQUE, Opcode.UPGRADE):
            if h.opcode is Opcode.COMP:
                assert op is Opcode.UPGRADE and h.state is E
                entry = self.cache(node).get(p.addr)
                assert entry is not None and entry[0] is S, "COMP(E) for an upgrade without S"
                self._fill(node, p, E, entry[1])
            else:
                assert h.opcode in (Opcode.COMP_DATA, Opcode.FWD_DATA), h.opcode
                if op is Opcode.READ_SHARED:
                    assert h.state in (S, E)
                else:
                    assert h.state in (E, M)
                self._fill(node, p, h.state, msg.data)
            self._ack(node, p)
        elif op in (Opcode.WRITE_BACK, Opcode.CLEAN_EVICT):
            assert h.opcode is Opcode.COMP
            self.evicting[node].pop(p.addr)
        elif op is Opcode.NC_READ:
            assert h.opcode is Opcode.COMP_DATA and h.state is I
        elif op is Opcode.NC_WRITE:
            assert h.opcode is Opcode.COMP
        else:
            assert op in ATOMIC_OPCODES and h.opcode is Opcode.ATOMIC_DATA
        self.done.append((p, msg))
        if self.on_done:
            self.on_done(p, msg)


# --------------------------------------------------------------------------------------------
# The bench


class Bench:
    """A home agent with its fabric peer, Python agents and AXI RAM, in one simulation."""

    def __init__(
        self,
        params: HomeParams = PARAMS,
        *,
        rng: random.Random | None = None,
        send_idle: float = 0.0,
        accept_stall: float = 0.0,
        ram_stall: float = 0.0,
        poison_read: set[int] | None = None,
        poison_write: set[int] | None = None,
    ) -> None:
        self.params = params
        self.rng = rng or random.Random(1)
        self.dut = HomeAgent(params)
        self.peer = FabricPeer(
            params=params.fabric,
            to_dut=self.dut.fabric_in,
            from_dut=self.dut.fabric_out,
            dut_rx_depth=params.rx_depth,
            rx_depth=params.tx_credits,
            rng=self.rng,
            send_idle=send_idle,
            accept_stall=accept_stall,
        )
        self.ram = AxiRamSim(
            self.dut.mem,
            size=params.window.size,
            data_width=params.fabric.data_width,
            rng=random.Random(self.rng.getrandbits(32)),
            stall=ram_stall,
            poison_read={a - params.window.base for a in poison_read or ()},
            poison_write={a - params.window.base for a in poison_write or ()},
        )
        self.agents = Agents(self.peer, params)
        self.peer.on_message = self.agents.on_message
        self.ctx = None
        self._seen = 0

    def run(self, scenario) -> None:
        sim = Simulator(self.dut)
        sim.add_clock(1e-6)
        sim.add_testbench(self.peer.run, background=True)
        sim.add_testbench(self.ram.run, background=True)

        async def bench(ctx):
            self.ctx = ctx
            await scenario(self)

        sim.add_testbench(bench)
        sim.run()

    # -- helpers used by scenarios ---------------------------------------------------------

    def mem(self, addr: int, n: int = LINE_BYTES) -> bytes:
        o = addr - self.params.window.base
        return bytes(self.ram.mem[o : o + n])

    def preload(self, addr: int, data: bytes) -> None:
        o = addr - self.params.window.base
        self.ram.mem[o : o + len(data)] = data

    async def ticks(self, n: int) -> None:
        for _ in range(n):
            await self.ctx.tick()

    async def settle(self, *, timeout: int = 3000, quiet: int = 30) -> None:
        """Run until nothing is pending, the fabric is idle and the home is quiet."""
        calm = 0
        for _ in range(timeout):
            await self.ctx.tick()
            busy = self.agents.pending or not self.peer.idle or self.agents.held_acks
            calm = 0 if busy else calm + 1
            if calm >= quiet:
                return
        raise AssertionError(f"not settled: pending {sorted(self.agents.pending)}")

    async def wait_until(self, cond: Callable[[], bool], *, timeout: int = 3000) -> None:
        for _ in range(timeout):
            if cond():
                return
            await self.ctx.tick()
        raise AssertionError("condition not reached")

    def take(self) -> list[Message]:
        """Messages the home sent since the last call."""
        msgs = [m for m, _ in self.peer.received[self._seen :]]
        self._seen = len(self.peer.received)
        return msgs

    def counter(self, name: str) -> int:
        return self.ctx.get(getattr(self.dut, name))

    def directory(self) -> dict[int, tuple[str, frozenset[int]]]:
        """``{line address: ("S" | "EM", holders)}`` read from the directory memory."""
        p = self.params
        _, set_bits, _ = home_geometry(p)
        out = {}
        for s in range(p.dir_sets):
            row = self.ctx.get(self.dut.directory.memory.data[s])
            for w in range(p.dir_ways):
                e = row.ways[w]
                if not e.valid:
                    continue
                line = p.window.base + ((int(e.tag) << set_bits | s) * LINE_BYTES)
                assert line not in out, f"line {line:#x} in two directory ways"
                if e.em:
                    out[line] = ("EM", frozenset({int(e.owner)}))
                else:
                    sharers = int(e.sharers)
                    holders = frozenset(n for n in range(p.max_sharers) if sharers >> n & 1)
                    assert holders, f"S entry without sharers for {line:#x}"
                    out[line] = ("S", holders)
        return out


def hdr(opcode: Opcode, dst: int, tag: int, addr: int, **kw) -> MsgHeader:
    """A header the home sends."""
    return header(opcode, src=HOME, dst=dst, tag=tag, addr=addr, **kw)


def snp(opcode: Opcode, dst: int, req: Pending | None, line: int) -> MsgHeader:
    if req is None:  # back-invalidation
        return hdr(opcode, dst, 0, line, fwd=HOME)
    return hdr(opcode, dst, req.tag, line, fwd=req.node)


def heads(msgs: list[Message]) -> list[MsgHeader]:
    return [m.header for m in msgs]


def run(scenario, **kw) -> Bench:
    b = Bench(**kw)
    b.run(scenario)
    return b


# --------------------------------------------------------------------------------------------
# Conversion


@pytest.mark.parametrize(
    "params",
    [
        PARAMS,
        HomeParams(node_id=0, window=WINDOW, dir_sets=1, dir_ways=1, table_entries=1),
        HomeParams(
            fabric=FabricParams(data_width=256, vcs=5),
            node_id=200,
            window=AddressWindow(base=1 << 40, size=1 << 20),
            max_sharers=64,
            dir_ways=3,
        ),
    ],
    ids=["small", "tiny", "w256"],
)
def test_converts_to_verilog(params: HomeParams) -> None:
    text = verilog.convert(HomeAgent(params), name="home")
    assert "module home" in text and "mem__awaddr" in text


# --------------------------------------------------------------------------------------------
# §2.1 coherent requests


def test_read_shared_rows() -> None:
    A = line_addr(1)

    async def scenario(b: Bench) -> None:
        ag = b.agents
        b.preload(A, pattern(1))
        # I -> COMP_DATA(E), EM owner 0.
        r0 = ag.request(0, Opcode.READ_SHARED, A)
        await b.settle()
        [msg] = b.take()
        assert msg.header == hdr(Opcode.COMP_DATA, 0, r0.tag, A, state=E)
        assert msg.data == pattern(1) and msg.byte_enable == FULL
        assert b.directory() == {A: ("EM", frozenset({0}))}
        # EM (clean owner) -> SNP_SHARED(fwd=1) to 0; FWD_DATA(S); S {0, 1}.
        r1 = ag.request(1, Opcode.READ_SHARED, A)
        await b.settle()
        assert heads(b.take()) == [snp(Opcode.SNP_SHARED, 0, r1, A)]
        assert ag.forwards[-1].header.state is S and ag.forwards[-1].data == pattern(1)
        assert ag.state(0, A) is S and ag.state(1, A) is S
        assert b.directory() == {A: ("S", frozenset({0, 1}))}
        # S -> COMP_DATA(S), sharers + 2.
        r2 = ag.request(2, Opcode.READ_SHARED, A)
        await b.settle()
        [msg] = b.take()
        assert msg.header == hdr(Opcode.COMP_DATA, 2, r2.tag, A, state=S)
        assert msg.data == pattern(1)
        assert b.directory() == {A: ("S", frozenset({0, 1, 2}))}
        # EM with a dirty owner: SNP_RESP_DATA(S) is written to memory, S {3, owner}.
        B = line_addr(2)
        ag.request(0, Opcode.READ_UNIQUE, B, store=b"\xaa" * 8)
        await b.settle()
        b.take()
        assert ag.state(0, B) is M
        r3 = ag.request(3, Opcode.READ_SHARED, B)
        await b.settle()
        assert heads(b.take()) == [snp(Opcode.SNP_SHARED, 0, r3, B)]
        assert b.mem(B)[:8] == b"\xaa" * 8
        assert ag.cache(3)[B][1][:8] == b"\xaa" * 8
        assert b.directory()[B] == ("S", frozenset({0, 3}))
        assert b.counter("table_used") == 0
        assert b.counter("snoops") == 2

    run(scenario)


def test_read_unique_rows() -> None:
    A = line_addr(3)

    async def scenario(b: Bench) -> None:
        ag = b.agents
        b.preload(A, pattern(3))
        # Build S {0, 1, 2}: 0 reads (E), 1 reads (forward), 2 reads (memory).
        for n in (0, 1, 2):
            ag.request(n, Opcode.READ_SHARED, A)
            await b.settle()
        b.take()
        assert b.directory() == {A: ("S", frozenset({0, 1, 2}))}
        # S -> SNP_INV to each other sharer, memory read, COMP_DATA(E).
        r = ag.request(1, Opcode.READ_UNIQUE, A, store=b"\x11" * 8, store_at=8)
        await b.settle()
        msgs = b.take()
        assert heads(msgs) == [
            snp(Opcode.SNP_INV, 0, r, A),
            snp(Opcode.SNP_INV, 2, r, A),
            hdr(Opcode.COMP_DATA, 1, r.tag, A, state=E),
        ]
        assert msgs[-1].data == pattern(3)
        assert b.directory() == {A: ("EM", frozenset({1}))}
        assert ag.state(0, A) is I and ag.state(2, A) is I and ag.state(1, A) is M
        # EM -> SNP_UNIQUE(fwd=3) to the owner, FWD_DATA(M) from it, nothing from the home.
        r = ag.request(3, Opcode.READ_UNIQUE, A)
        await b.settle()
        assert heads(b.take()) == [snp(Opcode.SNP_UNIQUE, 1, r, A)]
        assert ag.forwards[-1].header.state is M
        assert ag.cache(3)[A][1][8:16] == b"\x11" * 8
        assert b.directory() == {A: ("EM", frozenset({3}))}
        # I -> COMP_DATA(E).
        B = line_addr(4)
        r = ag.request(2, Opcode.READ_UNIQUE, B)
        await b.settle()
        assert heads(b.take()) == [hdr(Opcode.COMP_DATA, 2, r.tag, B, state=E)]
        assert b.counter("table_used") == 0

    run(scenario)


def test_upgrade_rows() -> None:
    A, B = line_addr(5), line_addr(6)

    async def scenario(b: Bench) -> None:
        ag = b.agents
        for n in (0, 1, 2):
            ag.request(n, Opcode.READ_SHARED, A)
            await b.settle()
        b.take()
        # S with R a sharer -> SNP_INV to the others, COMP(E), no memory access.
        reads = len(b.ram.reads)
        r = ag.request(2, Opcode.UPGRADE, A, store=b"\x22")
        await b.settle()
        assert heads(b.take()) == [
            snp(Opcode.SNP_INV, 0, r, A),
            snp(Opcode.SNP_INV, 1, r, A),
            hdr(Opcode.COMP, 2, r.tag, A, state=E),
        ]
        assert len(b.ram.reads) == reads and not b.ram.writes
        assert b.directory() == {A: ("EM", frozenset({2}))}
        assert ag.state(2, A) is M
        # Anything else -> as READ_UNIQUE: EM owned by 2 -> SNP_UNIQUE, FWD_DATA(M).
        r = ag.request(0, Opcode.UPGRADE, A, store=b"\x33")
        await b.settle()
        assert heads(b.take()) == [snp(Opcode.SNP_UNIQUE, 2, r, A)]
        assert ag.cache(0)[A][1][0] == 0x33
        assert b.directory() == {A: ("EM", frozenset({0}))}
        # I -> COMP_DATA(E) (the upgrade lost its S copy).
        b.preload(B, pattern(6))
        r = ag.request(1, Opcode.UPGRADE, B)
        await b.settle()
        [msg] = b.take()
        assert msg.header == hdr(Opcode.COMP_DATA, 1, r.tag, B, state=E)
        assert msg.data == pattern(6)
        assert b.directory()[B] == ("EM", frozenset({1}))

    run(scenario)


def test_write_back_and_clean_evict() -> None:
    A, B, C = line_addr(7), line_addr(8), line_addr(9)

    async def scenario(b: Bench) -> None:
        ag = b.agents
        # WRITE_BACK by the owner: memory written, COMP, I.
        ag.request(0, Opcode.READ_UNIQUE, A, store=b"\x44" * 64)
        await b.settle()
        b.take()
        r = ag.request(0, Opcode.WRITE_BACK, A)
        await b.settle()
        assert heads(b.take()) == [hdr(Opcode.COMP, 0, r.tag, A)]
        assert b.mem(A) == b"\x44" * 64
        assert A not in b.directory()
        # Stale WRITE_BACK (not the owner): data dropped, COMP, unchanged.
        stale = b.counter("stale")
        r = ag.request(1, Opcode.WRITE_BACK, A, data=b"\x55" * 64)
        await b.settle()
        assert heads(b.take()) == [hdr(Opcode.COMP, 1, r.tag, A)]
        assert b.mem(A) == b"\x44" * 64 and A not in b.directory()
        assert b.counter("stale") == stale + 1
        # CLEAN_EVICT by an E owner: I.
        ag.request(2, Opcode.READ_SHARED, B)
        await b.settle()
        r = ag.request(2, Opcode.CLEAN_EVICT, B)
        await b.settle()
        b.take()
        assert B not in b.directory()
        # CLEAN_EVICT by sharers: sharers - R, then I.
        for n in (0, 1):
            ag.request(n, Opcode.READ_SHARED, C)
            await b.settle()
        assert b.directory()[C] == ("S", frozenset({0, 1}))
        r = ag.request(0, Opcode.CLEAN_EVICT, C)
        await b.settle()
        b.take()
        assert b.directory()[C] == ("S", frozenset({1}))
        # Stale CLEAN_EVICT from a non-sharer: unchanged.
        r = ag.request(3, Opcode.CLEAN_EVICT, C)
        await b.settle()
        assert heads(b.take()) == [hdr(Opcode.COMP, 3, r.tag, C)]
        assert b.directory()[C] == ("S", frozenset({1}))
        assert b.counter("stale") == stale + 2
        r = ag.request(1, Opcode.CLEAN_EVICT, C)
        await b.settle()
        assert C not in b.directory()
        # Write-back crossing a snoop: the snoop is answered from the eviction buffer, the
        # WRITE_BACK arrives later and is stale.
        ag.request(0, Opcode.READ_UNIQUE, A, store=b"\x66" * 4)
        await b.settle()
        b.take()
        r1 = ag.request(1, Opcode.READ_SHARED, A)
        wb = ag.request(0, Opcode.WRITE_BACK, A)  # leaves the cache before the snoop comes
        await b.settle()
        assert heads(b.take()) == [
            snp(Opcode.SNP_SHARED, 0, r1, A),
            hdr(Opcode.COMP, 0, wb.tag, A),
        ]
        assert b.mem(A)[:4] == b"\x66" * 4  # written from SNP_RESP_DATA
        assert b.directory()[A] == ("S", frozenset({1}))
        assert b.counter("stale") == stale + 3

    run(scenario)


# --------------------------------------------------------------------------------------------
# Non-coherent accesses and atomics


def test_nc_read_byte_enables() -> None:
    A = line_addr(10)

    async def scenario(b: Bench) -> None:
        ag = b.agents
        b.preload(A, pattern(10))
        for size in range(7):
            for offset in sorted({0, (1 << size) * 3 % 64, 64 - (1 << size)}):
                r = ag.request(6, Opcode.NC_READ, A + offset, size=size)
                await b.settle()
                [msg] = b.take()
                assert msg.header == hdr(Opcode.COMP_DATA, 6, r.tag, A + offset)
                assert msg.data == pattern(10)
                assert msg.byte_enable == ((1 << (1 << size)) - 1) << offset
        # S: unchanged; EM with a dirty owner: SNP_INV, data written, then read; I.
        ag.request(0, Opcode.READ_SHARED, A)
        ag.request(1, Opcode.READ_SHARED, A)
        await b.settle()
        b.take()
        r = ag.request(5, Opcode.NC_READ, A + 4, size=2)
        await b.settle()
        assert heads(b.take()) == [hdr(Opcode.COMP_DATA, 5, r.tag, A + 4)]
        assert b.directory()[A] == ("S", frozenset({0, 1}))
        ag.request(2, Opcode.READ_UNIQUE, A, store=b"\x77" * 8, store_at=8)
        await b.settle()
        b.take()
        r = ag.request(5, Opcode.NC_READ, A + 8, size=3)
        await b.settle()
        msgs = b.take()
        assert heads(msgs) == [snp(Opcode.SNP_INV, 2, r, A), hdr(Opcode.COMP_DATA, 5, r.tag, A + 8)]
        assert msgs[1].data[8:16] == b"\x77" * 8 and msgs[1].byte_enable == 0xFF << 8
        assert A not in b.directory() and ag.state(2, A) is I

    run(scenario)


def test_nc_write_partial_byte_enables() -> None:
    A = line_addr(11)

    async def scenario(b: Bench) -> None:
        ag = b.agents
        b.preload(A, pattern(11))
        new = pattern(111)
        be = 0x8000_0000_0F00_00F1
        r = ag.request(7, Opcode.NC_WRITE, A, data=new, be=be)
        await b.settle()
        assert heads(b.take()) == [hdr(Opcode.COMP, 7, r.tag, A)]
        expect = bytes(new[i] if be >> i & 1 else pattern(11)[i] for i in range(64))
        assert b.mem(A) == expect
        # Holders are invalidated first; dirty data is written before the NC write.
        ag.request(0, Opcode.READ_SHARED, A)
        ag.request(1, Opcode.READ_SHARED, A)
        await b.settle()
        b.take()
        r = ag.request(7, Opcode.NC_WRITE, A, data=bytes(64), be=0b11)
        await b.settle()
        assert heads(b.take()) == [
            snp(Opcode.SNP_INV, 0, r, A),
            snp(Opcode.SNP_INV, 1, r, A),
            hdr(Opcode.COMP, 7, r.tag, A),
        ]
        assert b.mem(A) == bytes(2) + expect[2:]
        ag.request(3, Opcode.READ_UNIQUE, A, store=b"\x99" * 64)
        await b.settle()
        b.take()
        r = ag.request(7, Opcode.NC_WRITE, A, data=b"\x01" * 64, be=0xF0)
        await b.settle()
        assert heads(b.take()) == [snp(Opcode.SNP_INV, 3, r, A), hdr(Opcode.COMP, 7, r.tag, A)]
        assert b.mem(A) == b"\x99" * 4 + b"\x01" * 4 + b"\x99" * 56
        assert b.directory() == {}

    run(scenario)


def ref_atomic(op: Opcode, old: int, operand: int, compare: int, size: int) -> int:
    bits = 8 << size
    mask = (1 << bits) - 1

    def signed(v: int) -> int:
        return v - (1 << bits) if v >> (bits - 1) else v

    return {
        Opcode.ATOMIC_ADD: (old + operand) & mask,
        Opcode.ATOMIC_SWAP: operand,
        Opcode.ATOMIC_CAS: operand if old == compare else old,
        Opcode.ATOMIC_AND: old & operand,
        Opcode.ATOMIC_OR: old | operand,
        Opcode.ATOMIC_XOR: old ^ operand,
        Opcode.ATOMIC_MIN: old if signed(old) < signed(operand) else operand,
        Opcode.ATOMIC_MAX: old if signed(old) > signed(operand) else operand,
    }[op]


@pytest.mark.parametrize("stages", [1, 2])
def test_atomic_alu(stages: int) -> None:
    """The home's ALU alone: for random operations, sizes and values, with
    garbage in the unused upper bytes of the operand and compare value, ``result`` and
    ``old_value`` are right (upper bytes zero) one cycle after the operands settle and, from
    then on, at once (``stages=1``) or one cycle (``stages=2``) after the old value settles;
    a CAS whose compare value equals the old value in the access's bytes only is a hit."""
    alu = AtomicAlu(stages=stages)
    rng = random.Random(11)
    ops = sorted(ATOMIC_OPCODES, key=lambda o: o.value)
    checked = {"n": 0, "cas_hits": 0}

    async def bench(ctx) -> None:
        for _ in range(400):
            op, size = rng.choice(ops), rng.randrange(4)
            bits = 8 << size
            mask = (1 << bits) - 1
            old = rng.getrandbits(bits)
            if rng.random() < 0.3:
                old |= 1 << (bits - 1)  # negative: sign-extended upper bytes all ones
            operand, compare = rng.getrandbits(64), rng.getrandbits(64)
            if op is Opcode.ATOMIC_CAS and rng.random() < 0.5:
                compare = compare & ~mask | old  # equal in the access's bytes only
                checked["cas_hits"] += 1
            ctx.set(alu.opcode, op)
            ctx.set(alu.size, size)
            ctx.set(alu.operand, operand)
            ctx.set(alu.compare, compare)
            ctx.set(alu.old, 0)
            await ctx.tick()  # the operand side is registered
            negative = old >> (bits - 1) & 1
            ctx.set(alu.old, old | (((1 << 64) - 1) & ~mask if negative else 0))
            for _ in range(stages - 1):
                await ctx.tick()
            expect = ref_atomic(op, old, operand & mask, compare & mask, size)
            assert ctx.get(alu.result) == expect, (op, size, hex(old), hex(operand))
            assert ctx.get(alu.old_value) == old, (op, size)
            checked["n"] += 1

    sim = Simulator(alu)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert checked["n"] == 400 and checked["cas_hits"] > 10


@pytest.mark.parametrize("stages", [0, 3, "2"])
def test_atomic_alu_rejects_bad_stages(stages) -> None:
    with pytest.raises(ValueError, match=r"stages must be 1 or 2, not "):
        AtomicAlu(stages=stages)


@pytest.mark.parametrize("width", [128, 256, 512])
def test_atomics_every_op_and_size(width: int) -> None:
    """Also at 256 and 512 bits: the ALU has two stages when a line takes two beats or more
    (256 bits: just enough cycles between the old value's read beat and its write beat) and
    one stage with a single beat (512 bits)."""
    A = line_addr(12)
    params = replace(PARAMS, fabric=FabricParams(data_width=width))
    rng = random.Random(5)

    async def scenario(b: Bench) -> None:
        ag = b.agents
        b.preload(A, pattern(12))
        cases = []
        for op in sorted(ATOMIC_OPCODES, key=lambda o: o.value):
            for size in range(4):
                n = 1 << size
                top = 1 << (8 * n - 1)
                variants = [("rand", None)]
                if op in (Opcode.ATOMIC_MIN, Opcode.ATOMIC_MAX):
                    variants = [("neg-pos", (top | 1, 5)), ("pos-neg", (3, top | 7))]
                if op is Opcode.ATOMIC_CAS:
                    variants = [("hit", "hit"), ("miss", "miss")]
                for _, v in variants:
                    cases.append((op, size, v))
        for i, (op, size, variant) in enumerate(cases):
            n = 1 << size
            offset = (i * n * 3) % 64 // n * n
            addr = A + offset
            old = int.from_bytes(b.mem(addr, n), "little")
            operand = rng.getrandbits(8 * n)
            compare = rng.getrandbits(8 * n)
            if isinstance(variant, tuple):
                b.preload(addr, variant[0].to_bytes(n, "little"))
                old, operand = variant
            elif variant == "hit":
                compare = old
            elif variant == "miss":
                compare = old ^ 1
            beat = operand.to_bytes(8, "little") + compare.to_bytes(8, "little")
            beat = beat.ljust(width // 8, b"\0")  # one data beat
            before = b.mem(A)
            r = ag.request(4, op, addr, data=beat, size=size)
            await b.settle()
            [msg] = b.take()
            assert msg.header == hdr(Opcode.ATOMIC_DATA, 4, r.tag, addr, size=size), (op, size)
            assert msg.data == old.to_bytes(8, "little").ljust(width // 8, b"\0"), (
                op,
                size,
                variant,
            )
            assert msg.byte_enable == (1 << n) - 1
            new = ref_atomic(op, old, operand, compare, size)
            expect = before[:offset] + new.to_bytes(n, "little") + before[offset + n :]
            assert b.mem(A) == expect, (op, size, variant)
        # A cached line is invalidated first (dirty data written back), then the atomic runs.
        ag.request(1, Opcode.READ_UNIQUE, A, store=(5).to_bytes(8, "little"))
        await b.settle()
        b.take()
        r = ag.request(
            1, Opcode.ATOMIC_ADD, A, data=(3).to_bytes(8, "little").ljust(width // 8, b"\0")
        )
        await b.settle()
        msgs = b.take()
        assert heads(msgs) == [
            snp(Opcode.SNP_INV, 1, r, A),
            hdr(Opcode.ATOMIC_DATA, 1, r.tag, A, size=3),
        ]
        assert msgs[1].data[:8] == (5).to_bytes(8, "little")
        assert b.mem(A, 8) == (8).to_bytes(8, "little")
        assert b.directory() == {}

    run(scenario, params=params)


# --------------------------------------------------------------------------------------------
# §2.2 back-invalidation, busy lines and the table


def test_back_invalidation_one_way() -> None:
    params = HomeParams(
        node_id=HOME, window=WINDOW, dir_sets=1, dir_ways=1, table_entries=2, max_sharers=4
    )
    A, B = line_addr(1), line_addr(2)

    async def scenario(b: Bench) -> None:
        ag = b.agents
        ag.request(0, Opcode.READ_UNIQUE, A, store=b"\x5a" * 64)
        await b.settle()
        b.take()
        r = ag.request(1, Opcode.READ_SHARED, B)
        await b.settle()
        msgs = b.take()
        assert heads(msgs) == [
            snp(Opcode.SNP_INV, 0, None, A),
            hdr(Opcode.COMP_DATA, 1, r.tag, B, state=E),
        ]
        assert b.mem(A) == b"\x5a" * 64
        assert b.directory() == {B: ("EM", frozenset({1}))}
        assert b.counter("back_invalidations") == 1
        # The stale write-back of a back-invalidated line.
        assert ag.state(0, A) is I
        # Every way busy: the request waits until the COMP_ACK frees the line.
        ag.request(2, Opcode.READ_SHARED, B)  # snoops 1 (forward), keeps B busy
        ag.hold_ack.add(2)
        await b.wait_until(lambda: ag.held_acks)
        await b.ticks(50)
        b.take()
        r = ag.request(3, Opcode.READ_SHARED, A)
        await b.ticks(300)
        assert b.take() == [] and (3, r.tag) in ag.pending
        ag.release_acks(2)
        await b.settle()
        msgs = b.take()
        assert heads(msgs)[-1] == hdr(Opcode.COMP_DATA, 3, r.tag, A, state=E)
        assert b.directory() == {A: ("EM", frozenset({3}))}
        assert b.counter("back_invalidations") == 2

    run(scenario, params=params)


def test_back_invalidation_round_robin_two_ways() -> None:
    params = HomeParams(
        node_id=HOME, window=WINDOW, dir_sets=1, dir_ways=2, table_entries=2, max_sharers=4
    )
    lines = [line_addr(n) for n in range(4)]

    async def scenario(b: Bench) -> None:
        ag = b.agents
        ag.request(0, Opcode.READ_SHARED, lines[0])
        await b.settle()
        ag.request(1, Opcode.READ_SHARED, lines[0])
        await b.settle()
        ag.request(2, Opcode.READ_SHARED, lines[1])
        await b.settle()
        b.take()
        victims = []
        for n in (2, 3):
            r = ag.request(3, Opcode.READ_SHARED, lines[n])
            await b.settle()
            msgs = heads(b.take())
            victims.append(msgs[:-1])
            assert msgs[-1] == hdr(Opcode.COMP_DATA, 3, r.tag, lines[n], state=E)
        # Way 0 (line 0, sharers 0 and 1) goes first, then way 1 (line 1, owner 2).
        assert victims == [
            [snp(Opcode.SNP_INV, 0, None, lines[0]), snp(Opcode.SNP_INV, 1, None, lines[0])],
            [snp(Opcode.SNP_INV, 2, None, lines[1])],
        ]
        assert b.directory() == {
            lines[2]: ("EM", frozenset({3})),
            lines[3]: ("EM", frozenset({3})),
        }
        # A CLEAN_EVICT of a back-invalidated line is stale.
        ag.cache(2)[lines[1]] = [E, bytearray(64)]
        r = ag.request(2, Opcode.CLEAN_EVICT, lines[1])
        await b.settle()
        assert heads(b.take()) == [hdr(Opcode.COMP, 2, r.tag, lines[1])]
        assert b.counter("stale") == 1

    run(scenario, params=params)


def test_conflicting_request_waits_for_comp_ack() -> None:
    A = line_addr(13)

    async def scenario(b: Bench) -> None:
        ag = b.agents
        ag.hold_ack.add(0)
        r0 = ag.request(0, Opcode.READ_SHARED, A)
        await b.wait_until(lambda: ag.held_acks)
        r1 = ag.request(1, Opcode.READ_UNIQUE, A)
        await b.ticks(300)
        assert heads(b.take()) == [hdr(Opcode.COMP_DATA, 0, r0.tag, A, state=E)]
        assert (1, r1.tag) in ag.pending and b.counter("table_used") == 1
        ag.release_acks(0)
        await b.settle()
        assert heads(b.take()) == [snp(Opcode.SNP_UNIQUE, 0, r1, A)]
        assert b.directory() == {A: ("EM", frozenset({1}))}
        assert b.counter("table_used") == 0

    run(scenario)


def test_table_full_back_pressure() -> None:
    params = HomeParams(
        node_id=HOME, window=WINDOW, dir_sets=4, dir_ways=2, table_entries=1, max_sharers=4
    )
    A, B = line_addr(1), line_addr(2)

    async def scenario(b: Bench) -> None:
        ag = b.agents
        ag.hold_ack.add(0)
        ag.request(0, Opcode.READ_SHARED, A)
        await b.wait_until(lambda: ag.held_acks)
        b.take()
        assert b.counter("table_used") == 1
        # A coherent read of another line waits (table full); so does what comes after it.
        r1 = ag.request(1, Opcode.READ_SHARED, B)
        C = line_addr(3)
        r2 = ag.request(2, Opcode.NC_READ, C, size=6)
        for n in range(6):  # more than the home's REQ buffer: credits run out, nothing lost
            ag.request(3, Opcode.NC_READ, C + 8 * n, size=3)
        await b.ticks(400)
        assert b.take() == []
        assert b.peer.credits[0] == 0
        ag.release_acks(0)
        await b.settle()
        msgs = heads(b.take())
        assert msgs[0] == hdr(Opcode.COMP_DATA, 1, r1.tag, B, state=E)
        assert msgs[1] == hdr(Opcode.COMP_DATA, 2, r2.tag, C)
        assert len(msgs) == 8 and not ag.pending
        assert b.counter("requests") == 9

    run(scenario, params=params)


# --------------------------------------------------------------------------------------------
# §2.4 errors


def raw_request(**fields) -> Flit:
    values = {"opcode": Opcode.READ_SHARED.value, "cls": 0, "src": 1, "tag": 0x42}
    values.update(fields)
    return Flit(head=True, tail=True, payload=pack_fields(Header, values))


def test_errors_and_recovery() -> None:
    A = line_addr(14)
    P = line_addr(15)  # poisoned for reads
    Q = line_addr(16)  # poisoned for writes

    async def scenario(b: Bench) -> None:
        ag, peer = b.agents, b.peer

        async def expect_error(flits, vc, err, addr, tag=0x42, src=1) -> None:
            ag.pending[(src, tag)] = Pending(src, tag, Opcode.NC_READ, addr)
            peer.send_flits(flits, vc)
            await b.settle()
            assert heads(b.take()) == [
                hdr(Opcode.ERROR, src, tag, addr, err=err, poison=int(err is ErrorCode.POISON))
            ]

        mal = ErrorCode.MALFORMED
        # Outside the window.
        await expect_error([raw_request(addr=BASE - 64)], 0, ErrorCode.WINDOW, BASE - 64)
        await expect_error([raw_request(addr=WINDOW.end)], 0, ErrorCode.WINDOW, WINDOW.end)
        # Unknown opcode, wrong class, reserved bits, bad error code, size 7, misaligned.
        await expect_error([raw_request(opcode=0x3F, addr=A)], 0, mal, A)
        await expect_error([raw_request(opcode=0, addr=A)], 0, mal, A)
        await expect_error([raw_request(cls=1, addr=A)], 0, mal, A)
        await expect_error([raw_request(opcode=Opcode.COMP.value, cls=2, addr=A)], 0, mal, A)
        await expect_error([raw_request(rsvd=1 << 5, addr=A)], 0, mal, A)
        await expect_error([raw_request(err=7, addr=A)], 0, mal, A)
        await expect_error(
            [Flit(head=True, tail=True, payload=raw_request(addr=A).payload | 1 << 140)],
            0,
            mal,
            A,
        )
        await expect_error([raw_request(opcode=Opcode.NC_READ.value, size=7, addr=A)], 0, mal, A)
        await expect_error([raw_request(addr=A + 8)], 0, mal, A + 8)
        await expect_error(
            [raw_request(opcode=Opcode.NC_READ.value, size=3, addr=A + 4)], 0, mal, A + 4
        )
        # A misaligned NC_WRITE: its four data flits are consumed.
        bad = header(Opcode.NC_WRITE, src=1, tag=0x42, addr=A + 16)
        flits = peer_flits(Message(header=bad, data=bytes(64)))
        await expect_error(flits, 0, mal, A + 16)
        # Atomic: size > 3 is unsupported, misaligned is malformed.
        atomic = Opcode.ATOMIC_ADD
        beat = bytes(16)
        for size, addr, err in ((4, A, ErrorCode.UNSUPPORTED), (2, A + 2, mal)):
            h = header(atomic, src=1, tag=0x42, addr=addr, size=size)
            await expect_error(peer_flits(Message(header=h, data=beat)), 0, err, addr)
        # Coherent requests from a node >= max_sharers.
        for op in (Opcode.READ_SHARED, Opcode.UPGRADE, Opcode.CLEAN_EVICT):
            await expect_error(
                [raw_request(opcode=op.value, src=4, addr=A)], 0, ErrorCode.UNSUPPORTED, A, src=4
            )
        # ... but non-coherent ones are served.
        r = ag.request(200, Opcode.NC_READ, A, size=0)
        await b.settle()
        assert heads(b.take()) == [hdr(Opcode.COMP_DATA, 200, r.tag, A)]
        assert b.directory() == {} and b.counter("table_used") == 0
        assert not b.ram.writes
        errors = b.counter("errors")
        assert errors == 18

        # Memory read error: ERROR(POISON), no grant, no table entry.
        r = ag.request(0, Opcode.READ_SHARED, P)
        await b.settle()
        assert heads(b.take()) == [hdr(Opcode.ERROR, 0, r.tag, P, err=ErrorCode.POISON, poison=1)]
        assert ag.state(0, P) is I and P not in b.directory()
        assert b.counter("table_used") == 0
        # READ_UNIQUE from S with a read error: the sharers stay invalidated, line I.
        b.ram.poison_read.discard(P - BASE)
        for n in (1, 2):
            ag.request(n, Opcode.READ_SHARED, P)
            await b.settle()
        b.take()
        b.ram.poison_read.add(P - BASE)
        r = ag.request(3, Opcode.READ_UNIQUE, P)
        await b.settle()
        assert heads(b.take()) == [
            snp(Opcode.SNP_INV, 1, r, P),
            snp(Opcode.SNP_INV, 2, r, P),
            hdr(Opcode.ERROR, 3, r.tag, P, err=ErrorCode.POISON, poison=1),
        ]
        assert P not in b.directory() and b.counter("table_used") == 0
        # Atomic and NC_READ on a poisoned line: ERROR(POISON), nothing written.
        writes = len(b.ram.writes)
        for op, size, data in ((Opcode.ATOMIC_OR, 3, bytes(16)), (Opcode.NC_READ, 6, b"")):
            r = ag.request(7, op, P, size=size, data=data)
            await b.settle()
            assert heads(b.take()) == [
                hdr(Opcode.ERROR, 7, r.tag, P, err=ErrorCode.POISON, poison=1)
            ]
        assert len(b.ram.writes) == writes
        # Memory write error: ERROR(POISON); the directory change stands.
        r = ag.request(7, Opcode.NC_WRITE, Q, data=bytes(64))
        await b.settle()
        assert heads(b.take()) == [hdr(Opcode.ERROR, 7, r.tag, Q, err=ErrorCode.POISON, poison=1)]
        ag.request(0, Opcode.READ_UNIQUE, Q, store=b"\x01")
        await b.settle()
        b.take()
        r = ag.request(0, Opcode.WRITE_BACK, Q)
        await b.settle()
        assert heads(b.take()) == [hdr(Opcode.ERROR, 0, r.tag, Q, err=ErrorCode.POISON, poison=1)]
        assert Q not in b.directory()
        assert b.counter("errors") == errors + 6

        # Messages nobody expects are discarded and counted; the home keeps working.
        unexpected = b.counter("unexpected")
        junk = [
            header(Opcode.SNP_INV, src=1, tag=1, addr=A),
            header(Opcode.COMP_ACK, src=1, tag=0x77, addr=A),
            header(Opcode.SNP_RESP_I, src=1, tag=1, addr=A),
            header(Opcode.COMP, src=1, tag=1, addr=A),
        ]
        for h in junk:
            peer.send(Message(header=h))
        for op in (Opcode.SNP_RESP_DATA, Opcode.FWD_DATA):
            peer.send(Message(header=header(op, src=1, addr=A), data=bytes(64)))
        peer.send(Message(header=header(Opcode.ATOMIC_DATA, src=1, addr=A), data=bytes(16)))
        peer.send_flits([Flit(head=False, tail=True, payload=0)], 0)  # a data flit alone
        await b.settle()
        assert b.take() == []
        assert b.counter("unexpected") == unexpected + 8
        b.preload(A, pattern(14))
        r = ag.request(1, Opcode.READ_SHARED, A)
        await b.settle()
        [msg] = b.take()
        assert msg.header == hdr(Opcode.COMP_DATA, 1, r.tag, A, state=E)
        assert msg.data == pattern(14)
        assert b.counter("table_used") == 0

    run(scenario, poison_read={P}, poison_write={Q})


def peer_flits(msg: Message) -> list[Flit]:
    from unifab.codec import message_to_flits

    return message_to_flits(msg, PARAMS.fabric, strict=False)


def test_header_encoding_sanity() -> None:
    """The raw request helper builds the same bits as the codec for a good header."""
    good = header(Opcode.READ_SHARED, src=1, tag=0x42, addr=BASE)
    assert raw_request(addr=BASE).payload == pack_header(good)


@pytest.mark.parametrize("case", ["another_line", "not_a_snoop_answer"])
def test_strays_for_the_snooped_line_are_not_taken(case: str) -> None:
    """While the home snoops a line, flits that look like its answer but are not are
    discarded and counted, and the real answer completes the request:

    * ``another_line``: an SNP_RESP_DATA and an SNP_RESP_I for an address that differs from
      the snooped line only above the window's address bits (the home compares those bits
      with the window's, not with the snooped address register);
    * ``not_a_snoop_answer``: a FWD_DATA and a COMP_DATA for that very line on the DAT VC
      (only an SNP_RESP_DATA answers a snoop: the opcode is decided as the flit enters the
      receive buffer).
    """
    B = line_addr(2)
    strays = {
        "another_line": [
            (Opcode.SNP_RESP_DATA, B + (1 << PARAMS.mem_addr_width), bytes(64)),
            (Opcode.SNP_RESP_I, B + (1 << PARAMS.mem_addr_width), b""),
        ],
        "not_a_snoop_answer": [(Opcode.FWD_DATA, B, bytes(64)), (Opcode.COMP_DATA, B, bytes(64))],
    }[case]

    async def scenario(b: Bench) -> None:
        ag = b.agents
        ag.request(0, Opcode.READ_UNIQUE, B, store=b"\xaa" * 8)
        await b.settle()
        b.take()
        assert ag.state(0, B) is M
        answer = ag._snoop

        def strays_first(msg: Message) -> None:
            h = msg.header
            for opcode, addr, data in strays:
                stray = header(opcode, src=h.dst, dst=HOME, tag=h.tag, addr=addr, state=I)
                b.peer.send(Message(header=stray, data=data))
            answer(msg)

        ag._snoop = strays_first
        unexpected = b.counter("unexpected")
        r = ag.request(3, Opcode.READ_SHARED, B)
        await b.settle()
        assert heads(b.take()) == [snp(Opcode.SNP_SHARED, 0, r, B)]
        assert b.counter("unexpected") == unexpected + len(strays)
        assert b.mem(B)[:8] == b"\xaa" * 8
        assert b.directory()[B] == ("S", frozenset({0, 3}))
        assert b.counter("table_used") == 0

    run(scenario)


def test_unexpected_counts_each_cycles_discards_the_next_cycle() -> None:
    """``unexpected`` is counted a cycle late inside (the discard pulses end at a small
    register) with the pending pulses added back at the output: every cycle it must still be
    its previous value plus the previous cycle's pulses. Random flits on every VC but REQ
    (all drained at once while the engine is idle)."""
    from amaranth import Value

    from unifab.tb.formal.props import peek

    dut = HomeAgent(PARAMS)
    mod, sigs = peek(dut)
    pulses = [sig for name, sig in sigs.items() if name.startswith("unexpected_")]
    assert len(pulses) >= 4
    f = PARAMS.fabric
    vcs = [v for v in range(f.vcs) if v != MsgClass.REQ.value]
    flit_bits = len(Value.cast(dut.fabric_in.flit))
    rng = random.Random(7)
    checked = {"cycles": 0, "counted": 0}

    async def bench(ctx) -> None:
        for _ in range(300):
            send = rng.random() < 0.8
            ctx.set(dut.fabric_in.valid, send)
            ctx.set(dut.fabric_in.vc, rng.choice(vcs))
            ctx.set(Value.cast(dut.fabric_in.flit), rng.getrandbits(flit_bits))
            before = ctx.get(dut.unexpected)
            pulsed = sum(ctx.get(p) for p in pulses)
            await ctx.tick()
            assert ctx.get(dut.unexpected) == before + pulsed
            assert not ctx.get(dut.rx_overflow)
            checked["cycles"] += 1
            checked["counted"] += pulsed

    sim = Simulator(mod)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert checked["counted"] > 50


# --------------------------------------------------------------------------------------------
# Seeded random traffic: coherence invariants under idle cycles and back-pressure

SLOT = {0: 0, 1: 1, 2: 2, 6: 3}  # each node writes only its own 8-byte slot of every line
COHERENT_NODES = (0, 1, 2)


@pytest.mark.parametrize("registered_rx", [False, True], ids=["ram_rx", "registered_rx"])
def test_random_traffic_invariants(registered_rx: bool) -> None:
    seed = seed_from_env(2024)
    rng = random.Random(seed)
    params = HomeParams(
        registered_rx=registered_rx,
        node_id=HOME,
        window=WINDOW,
        dir_sets=2,
        dir_ways=2,
        table_entries=3,
        max_sharers=4,
        rx_depth=4,
        tx_credits=4,
    )
    lines = [line_addr(n) for n in range(6)]
    total_ops = 600
    bench = Bench(
        params,
        rng=random.Random(rng.getrandbits(32)),
        send_idle=0.2,
        accept_stall=0.3,
        ram_stall=0.3,
    )
    ag = bench.agents
    # history[line][slot]: every value the slot has had, in order.
    history: dict[int, list[list[bytes]]] = {}
    for a in lines:
        data = rng.randbytes(LINE_BYTES)
        bench.preload(a, data)
        history[a] = [[data[8 * s : 8 * s + 8]] for s in range(4)]
    stats = {"issued": 0, "answered": 0, "local": 0}

    def snapshot(a: int) -> list[int]:
        return [len(h) - 1 for h in history[a]]

    def check_bytes(p: Pending, data: bytes, enables: int, what: str) -> None:
        """Each slot shows a value it had between issue and answer (own slot: the latest)."""
        a = p.addr - p.addr % LINE_BYTES
        for s in range(4):
            sl = slice(8 * s, 8 * s + 8)
            mask = enables >> (8 * s) & 0xFF
            if not mask:
                continue

            def seen(v: bytes, mask=mask, sl=sl) -> bool:
                return all(v[i] == data[sl][i] for i in range(8) if mask >> i & 1)

            values = history[a][s][p.info["snap"][s] :]
            if SLOT.get(p.node) == s:
                values = values[-1:]
            assert any(seen(v) for v in values), (
                f"seed {seed}: {what} by node {p.node} at {p.addr:#x}: slot {s} shows"
                f" {data[sl].hex()}, never written ({[v.hex() for v in values]})"
            )

    def write_slot(a: int, node: int, new: bytes) -> None:
        history[a][SLOT[node]].append(bytes(new))

    def on_done(p: Pending, msg: Message) -> None:
        h = msg.header
        stats["answered"] += 1
        assert h.opcode is not Opcode.ERROR, f"seed {seed}: unexpected {h}"
        a = p.addr - p.addr % LINE_BYTES
        slot = SLOT[p.node]
        if p.opcode in (Opcode.READ_SHARED, Opcode.READ_UNIQUE, Opcode.UPGRADE):
            if msg.data:
                check_bytes(p, msg.data, FULL, "fill")
            if p.store is not None:
                write_slot(a, p.node, p.store)
        elif p.opcode is Opcode.NC_READ:
            assert msg.byte_enable == p.info["be"]
            check_bytes(p, msg.data, msg.byte_enable, "NC_READ")
        elif p.opcode is Opcode.NC_WRITE:
            old = bytearray(history[a][slot][-1])
            for i in range(8):
                if p.info["be"] >> (8 * slot + i) & 1:
                    old[i] = p.info["data"][8 * slot + i]
            write_slot(a, p.node, old)
        elif p.opcode in ATOMIC_OPCODES:
            size, offset = p.info["size"], p.addr % LINE_BYTES - 8 * slot
            n = 1 << size
            cur = history[a][slot][-1]
            old = int.from_bytes(cur[offset : offset + n], "little")
            got = int.from_bytes(msg.data[:8], "little")
            assert got == old, f"seed {seed}: {p.opcode.name} old value {got:#x}, expected {old:#x}"
            new = ref_atomic(p.opcode, old, p.info["operand"], p.info["compare"], size)
            value = bytearray(cur)
            value[offset : offset + n] = new.to_bytes(n, "little")
            write_slot(a, p.node, value)

    def check_swmr() -> None:
        for a in lines:
            states = [ag.state(n, a) for n in COHERENT_NODES]
            owners = sum(st in (E, M) for st in states)
            sharers = sum(st is S for st in states)
            assert owners <= 1 and not (owners and sharers), f"seed {seed}: {a:#x} {states}"

    ag.on_done = on_done
    ag.on_change = check_swmr

    def busy(node: int, a: int) -> bool:
        return a in ag.evicting.get(node, {}) or any(
            p.node == node and p.addr - p.addr % LINE_BYTES == a for p in ag.pending.values()
        )

    def issue(node: int) -> None:
        a = rng.choice(lines)
        if busy(node, a) or sum(p.node == node for p in ag.pending.values()) >= 2:
            return
        slot = SLOT[node]
        kinds = ["nc_read", "nc_write", "atomic"]
        if node in COHERENT_NODES:
            kinds += ["load", "store", "store", "evict", "load"]
        kind = rng.choice(kinds)
        state = ag.state(node, a) if node in COHERENT_NODES else I
        info = {"snap": snapshot(a)}
        value = rng.randbytes(8)
        if kind == "load":
            if state is not I:
                return
            ag.request(node, Opcode.READ_SHARED, a, info=info)
        elif kind == "store":
            if state in (E, M):  # hit: a silent local store
                entry = ag.cache(node)[a]
                entry[0] = M
                entry[1][8 * slot : 8 * slot + 8] = value
                write_slot(a, node, value)
                stats["local"] += 1
                check_swmr()
                return
            op = Opcode.UPGRADE if state is S else Opcode.READ_UNIQUE
            ag.request(node, op, a, store=value, store_at=8 * slot, info=info)
        elif kind == "evict":
            if state is I:
                return
            op = Opcode.WRITE_BACK if state is M else Opcode.CLEAN_EVICT
            ag.request(node, op, a, info=info)
        elif kind == "nc_read":
            size = rng.randrange(7)
            offset = rng.randrange(0, LINE_BYTES, 1 << size)
            info["be"] = ((1 << (1 << size)) - 1) << offset
            ag.request(node, Opcode.NC_READ, a + offset, size=size, info=info)
        elif kind == "nc_write":
            data = rng.randbytes(LINE_BYTES)
            be = rng.getrandbits(8) << (8 * slot)
            info.update(be=be, data=data)
            ag.request(node, Opcode.NC_WRITE, a, data=data, be=be, info=info)
        else:
            op = rng.choice(sorted(ATOMIC_OPCODES, key=lambda o: o.value))
            size = rng.randrange(4)
            n = 1 << size
            offset = 8 * slot + rng.randrange(0, 8, n)
            operand, compare = rng.getrandbits(8 * n), rng.getrandbits(8 * n)
            if op is Opcode.ATOMIC_CAS and rng.random() < 0.5:
                cur = history[a][slot][-1]
                compare = int.from_bytes(cur[offset - 8 * slot :][:n], "little")
            info.update(size=size, operand=operand, compare=compare)
            beat = operand.to_bytes(8, "little") + compare.to_bytes(8, "little")
            ag.request(node, op, a + offset, data=beat, size=size, info=info)
        stats["issued"] += 1

    async def scenario(b: Bench) -> None:
        nodes = (*COHERENT_NODES, 6)
        cycles = 0
        while stats["issued"] < total_ops:
            for node in nodes:
                if rng.random() < 0.08:
                    issue(node)
            await b.ctx.tick()
            cycles += 1
            assert cycles < 40000, f"seed {seed}: stuck, pending {sorted(ag.pending)}"
        await b.settle(timeout=20000)
        print(f"random traffic: {stats} in ~{cycles} cycles")
        assert not ag.pending and stats["answered"] == stats["issued"]
        assert not any(ag.evicting.values())
        assert b.counter("table_used") == 0 and b.counter("busy") == 0
        assert b.counter("unexpected") == 0 and b.counter("errors") == 0
        assert not b.peer.overflow and not b.ctx.get(b.dut.rx_overflow)
        assert b.counter("requests") == stats["issued"]
        # Directory == the caches.
        directory = b.directory()
        for a in lines:
            held = {n: ag.state(n, a) for n in COHERENT_NODES if ag.state(n, a) is not I}
            owners = {n for n, st in held.items() if st in (E, M)}
            if owners:
                assert directory.get(a) == ("EM", frozenset(owners)), (a, held, directory.get(a))
            elif held:
                assert directory.get(a) == ("S", frozenset(held)), (a, held, directory.get(a))
            else:
                assert a not in directory, (a, directory[a])
            # The latest value of every slot is in the owner's cache, or in memory.
            data = b.mem(a)
            for n, st in held.items():
                if st is M:
                    data = bytes(ag.cache(n)[a][1])
                else:
                    assert bytes(ag.cache(n)[a][1]) == b.mem(a), f"clean copy of {a:#x} differs"
            for s in range(4):
                assert data[8 * s : 8 * s + 8] == history[a][s][-1], (hex(a), s)
        assert b.counter("back_invalidations") > 0 and b.counter("snoops") > 0

    bench.run(scenario)


@pytest.mark.parametrize("registered_rx", [False, True], ids=["ram_rx", "registered_rx"])
def test_against_golden_home_model(registered_rx: bool) -> None:
    """One request at a time, the home's messages equal :class:`HomeModel`'s, and so do the
    directories. The model gets the same messages the Python agents sent the home, in order."""
    model_module = pytest.importorskip("unifab.coherence.model")
    seed = seed_from_env(77, label="golden")
    rng = random.Random(seed)
    params = HomeParams(
        node_id=HOME,
        window=WINDOW,
        dir_sets=2,
        dir_ways=2,
        table_entries=2,
        max_sharers=4,
        registered_rx=registered_rx,
    )
    lines = [line_addr(n) for n in range(6)]
    poisoned = {lines[5]}
    bench = Bench(params, rng=random.Random(seed), poison_read=poisoned)
    model = model_module.HomeModel(params, poisoned=set(poisoned))
    for a in lines:
        data = rng.randbytes(LINE_BYTES)
        bench.preload(a, data)
        model.memory[a - BASE : a - BASE + LINE_BYTES] = data
    to_home: list[Message] = []
    send = bench.peer.send

    def recording_send(msg: Message, vc=None, *, strict=True) -> None:
        to_home.append(msg)
        send(msg, vc, strict=strict)

    bench.peer.send = recording_send
    ag = bench.agents

    def one_request() -> None:
        node = rng.choice((0, 1, 2, 6))
        a = rng.choice(lines)
        state = ag.state(node, a) if node != 6 else I
        choices = ["nc_read", "nc_write", "atomic"]
        if node != 6:
            choices += ["read", "write", "write", "evict", "read"]
        kind = rng.choice(choices)
        if kind == "read" and state is I:
            ag.request(node, Opcode.READ_SHARED, a)
        elif kind == "write" and state in (S, I):
            op = Opcode.UPGRADE if state is S else Opcode.READ_UNIQUE
            ag.request(node, op, a, store=rng.randbytes(8), store_at=8 * SLOT[node])
        elif kind == "evict" and state is not I:
            ag.request(node, Opcode.WRITE_BACK if state is M else Opcode.CLEAN_EVICT, a)
        elif kind == "nc_read":
            size = rng.randrange(7)
            ag.request(node, Opcode.NC_READ, a + rng.randrange(0, 64, 1 << size), size=size)
        elif kind == "nc_write":
            ag.request(node, Opcode.NC_WRITE, a, data=rng.randbytes(64), be=rng.getrandbits(64))
        elif kind == "atomic":
            size = rng.randrange(4)
            op = rng.choice(sorted(ATOMIC_OPCODES, key=lambda o: o.value))
            beat = rng.randbytes(16)
            ag.request(node, op, a + rng.randrange(0, 64, 1 << size), data=beat, size=size)
        elif state in (E, M):  # a store hit
            ag.cache(node)[a][0] = M
            ag.cache(node)[a][1][8 * SLOT[node]] ^= 0xFF

    def key(msg: Message) -> tuple:
        return (msg.header, msg.data, msg.byte_enable)

    async def scenario(b: Bench) -> None:
        for step in range(300):
            one_request()
            await b.settle()
            got = [key(m) for m in b.take()]
            expected = []
            for msg in to_home:
                expected += [key(m) for m in model.receive(msg)]
            to_home.clear()
            assert got == expected, f"seed {seed} step {step}:\nRTL   {got}\nmodel {expected}"
            assert b.directory() == model.directory(), f"seed {seed} step {step}"
            assert b.mem(BASE, 6 * LINE_BYTES) == bytes(model.memory[: 6 * LINE_BYTES])
        for name in ("requests", "snoops", "errors", "stale", "back_invalidations"):
            assert b.counter(name) == model.counters[name], name
        assert b.counter("back_invalidations") > 0

    bench.run(scenario)
