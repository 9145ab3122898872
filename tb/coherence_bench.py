"""cocotb benches of the coherent system top (:class:`unifab.hdl.top.coherent.CoherentSystem`).

Standard AXI4 verification IP attaches without adapters: a cocotbext-axi ``AxiMaster`` drives
each endpoint's ``ep{i}_axi`` port and an ``AxiRam`` serves each home's ``home{j}_mem`` port,
with seeded random pauses on every AXI channel (idle on the manager side, back-pressure on the
memory side).

``coherence_stress`` runs the workloads of :mod:`unifab.coherence.system` (the same generators
the golden model is stressed with) and checks, while it runs: single writer / multiple
readers from the endpoints' line-state events; the data-value invariant with a versioned
reference memory (every load and atomic old value must be a value some store could have left
there); every operation completing exactly once within a watchdog; and at the end no agent
busy (no leaked MSHR, eviction or table entry). ``coherence_latency`` measures the latency
figures of ``unifab bench coherence`` at the AXI ports.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import AxiBus, AxiMaster, AxiRam

from unifab.coherence.model import ATOMIC_OF_AXI, CoreOp, atomic_result
from unifab.coherence.params import FIRST_HOME_NODE, SYSTEM_PRESETS, AddressWindow, SystemParams
from unifab.coherence.system import WORKLOADS, CoherenceCheckers, Fire, SystemConfig
from unifab.coherence.versioned import VersionedMemory
from unifab.flit import CacheState, Opcode
from unifab.tb.common import (
    CLOCK_PERIOD_NS,
    BenchSettings,
    Pausable,
    PauseDriver,
    ScoreboardError,
    log_seed,
    read,
    start_clock,
)
from unifab.topology import Topology, load_topology

AXI_OF_ATOMIC = {op: code for code, op in ATOMIC_OF_AXI.items()}
# hot_lines first: it is the workload that uses the non-cacheable lines at the window's start.
BENCH_WORKLOADS = ("hot_lines", *sorted(set(WORKLOADS) - {"hot_lines"}))


def bench_system_params(preset: str, agents: int | None = None) -> SystemParams:
    """A :data:`SYSTEM_PRESETS` system, with ``agents`` endpoints when given."""
    if preset not in SYSTEM_PRESETS:
        raise ValueError(f"preset must be one of {', '.join(SYSTEM_PRESETS)}, not {preset!r}")
    params = SYSTEM_PRESETS[preset]
    return params if agents is None else replace(params, endpoints=agents)


# A non-cacheable window at least this large is part of the workloads' memory pool; smaller
# ones (the coherence benches' put/get lines) are not.
POOL_MIN_BYTES = 4096


@dataclass(frozen=True)
class SystemView:
    """What a bench needs to know of a system top, whichever class elaborated it.

    ``endpoints`` are node IDs (the top's ports are ``ep{ID}_axi``, ``ep{ID}_state``,
    ``ep{ID}_busy``); home ``j`` is ``home{j}_mem`` with an AXI RAM of ``ram_sizes[j]`` bytes
    at ``home_bases[j]`` (AXI address = global address - base). ``[base, base + size)`` is
    the area the coherence workloads use, starting with the ``noncacheable`` put/get lines;
    ``pool`` are the non-cacheable windows the data-movement workloads use.
    """

    endpoints: tuple[int, ...]
    home_nodes: tuple[int, ...]
    home_bases: tuple[int, ...]
    ram_sizes: tuple[int, ...]
    base: int
    size: int
    noncacheable: tuple[AddressWindow, ...]
    home_of: Callable[[int], int | None]
    pool: tuple[AddressWindow, ...] = ()

    @property
    def cached_pool(self) -> tuple[AddressWindow, ...]:
        """The cacheable part of ``[base, base + size)``, 4 KiB aligned: where memory-mode
        workloads keep data they read through the caches."""
        start = max([self.base, *(w.base + w.size for w in self.noncacheable)])
        start = -(-start // 4096) * 4096
        end = (self.base + self.size) // 4096 * 4096
        return (AddressWindow(base=start, size=end - start),) if end > start else ()

    @property
    def homes(self) -> int:
        return len(self.home_nodes)

    @classmethod
    def of_params(cls, p: SystemParams) -> SystemView:
        homes = tuple(FIRST_HOME_NODE + j for j in range(p.homes))
        return cls(
            endpoints=tuple(range(p.endpoints)),
            home_nodes=homes,
            home_bases=(p.base,) * p.homes,
            ram_sizes=(p.size,) * p.homes,
            base=p.base,
            size=p.size,
            noncacheable=p.noncacheable,
            home_of=p.home_of,
        )

    @classmethod
    def of_topology(cls, t: Topology) -> SystemView:
        homes = tuple(n.id for n in t.homes)
        windows = [t.home_window(n) for n in homes]
        base = min(r.base for r in t.ranges)
        pool = tuple(w for w in t.noncacheable if w.size >= POOL_MIN_BYTES)
        end = base
        while any(r.contains(end) for r in t.ranges) and not any(
            w.base <= end < w.base + w.size for w in pool
        ):
            end += 64
        return cls(
            endpoints=tuple(n.id for n in t.endpoints),
            home_nodes=homes,
            home_bases=tuple(w.base for w in windows),
            ram_sizes=tuple(w.size for w in windows),
            base=base,
            size=end - base,
            noncacheable=tuple(w for w in t.noncacheable if w.size < POOL_MIN_BYTES),
            home_of=t.home_of,
            pool=pool,
        )

    def ram_address(self, addr: int) -> tuple[int, int]:
        """``(home index, AXI address)`` holding global address ``addr`` (the decode of the
        system's own address map)."""
        node = self.home_of(addr)
        if node is None or node not in self.home_nodes:
            raise ValueError(f"address {addr:#x} is not mapped to a home")
        j = self.home_nodes.index(node)
        return j, addr - self.home_bases[j]


def system_view(settings: BenchSettings) -> SystemView:
    """The system a bench runs on: a topology file (``topology``) or a ``SYSTEM_PRESETS``
    entry (``preset``, ``agents``)."""
    name = settings.get("topology", None)
    if name is not None:
        return SystemView.of_topology(load_topology(name))
    return SystemView.of_params(
        bench_system_params(settings.get("preset", "default"), settings.get("agents", None))
    )


def _pauses(rng: random.Random, p: float):
    """An endless seeded pause pattern: paused with probability ``p`` each cycle."""
    while True:
        yield rng.random() < p


class TB:
    """The coherent system with AXI VIP on every port, a clock and the checkers."""

    def __init__(self, dut, settings: BenchSettings) -> None:
        self.dut = dut
        self.settings = settings
        self.params = p = system_view(settings)
        self.rng = random.Random(settings.seed)
        self.masters = [
            AxiMaster(AxiBus.from_prefix(dut, f"ep{node}_axi_"), dut.clk, dut.rst)
            for node in p.endpoints
        ]
        self.rams = [
            AxiRam(AxiBus.from_prefix(dut, f"home{j}_mem_"), dut.clk, dut.rst, size=size)
            for j, size in enumerate(p.ram_sizes)
        ]
        # The VIP logs every burst at INFO: keep the bench's own lines readable.
        for vip in (*self.masters, *self.rams):
            for interface in (vip.write_if, vip.read_if):
                interface.log.setLevel(logging.WARNING)
        self.checkers = CoherenceCheckers(raise_at_once=True)
        self.memory = VersionedMemory(word_bytes=1)
        self.cycle = 0
        self.pauses: PauseDriver | None = None  # set_pauses with a non-zero probability
        self.ops: list[tuple[int, CoreOp]] = []  # (node, completed operation)
        self.unchecked: list[tuple[int, CoreOp]] = []  # loads and atomics not yet checked
        self.checked = 0
        self._ident = 0

    def next_ident(self) -> int:
        self._ident += 1
        return self._ident

    def set_pauses(self, p_idle: float, p_stall: float) -> None:
        """Random idle cycles on the managers' request channels and back-pressure on their
        response channels and on every memory channel (each channel its own seeded pattern,
        all stepped by one task)."""
        if not p_idle and not p_stall:
            return
        channels: list[tuple[Pausable, float]] = []
        for m in self.masters:
            channels += [
                (m.write_if.aw_channel, p_idle),
                (m.write_if.w_channel, p_idle),
                (m.read_if.ar_channel, p_idle),
                (m.write_if.b_channel, p_stall),
                (m.read_if.r_channel, p_stall),
            ]
        for r in self.rams:
            channels += [
                (r.write_if.aw_channel, p_stall),
                (r.write_if.w_channel, p_stall),
                (r.write_if.b_channel, p_stall),
                (r.read_if.ar_channel, p_stall),
                (r.read_if.r_channel, p_stall),
            ]
        self.pauses = PauseDriver(
            self.dut.clk,
            [(ch, _pauses(random.Random(self.rng.getrandbits(32)), p)) for ch, p in channels],
        )

    async def start(self) -> None:
        await start_clock(self.dut)
        cocotb.start_soon(self._monitor())
        await ClockCycles(self.dut.clk, 2)

    async def _monitor(self) -> None:
        """Line-state events into the SWMR checker (downgrades of a cycle first), and the
        crossbar's one-hot check."""
        dut = self.dut
        states = [getattr(dut, f"ep{node}_state") for node in self.params.endpoints]
        addr_bits = 48
        while True:
            await RisingEdge(dut.clk)
            self.cycle += 1
            self.checkers.now = self.cycle
            events = []
            for i, handle in enumerate(states):
                v = int(handle.value)
                if v & 1:
                    addr = v >> 1 & ((1 << addr_bits) - 1)
                    state = CacheState(v >> (1 + addr_bits) & 3)
                    events.append(
                        (state is not CacheState.I and state is not CacheState.S, i, addr, state)
                    )
            for _, i, addr, state in sorted(events, key=lambda e: e[0]):
                self.checkers.state_changed(i, addr & ~63, state)
            if read(dut.xbar_error):
                raise ScoreboardError(f"crossbar one-hot check failed at cycle {self.cycle}")

    # -- operations through the AXI ports ---------------------------------------------------------

    async def do(self, node: int, op: CoreOp) -> CoreOp:
        """Perform one core operation through endpoint ``node``'s AXI port."""
        axi = self.masters[node]
        n = 1 << op.size
        start = self.cycle
        op.issued_at = start
        self.checkers.issued(op)
        versions = []
        if op.kind == "load":
            resp = await axi.read(op.addr, n)
            op.result = int.from_bytes(resp.data, "little")
            ok = int(resp.resp) == 0
        elif op.kind == "store":
            data = op.value.to_bytes(n, "little")
            versions = [self.memory.begin_store(op.addr + b, data[b], start) for b in range(n)]
            resp = await axi.write(op.addr, data)
            ok = int(resp.resp) == 0
        else:
            assert op.atomic is not None
            data = op.value.to_bytes(n, "little")
            if op.atomic is Opcode.ATOMIC_CAS:
                data += op.compare.to_bytes(n, "little")
            user = AXI_OF_ATOMIC[op.atomic] | op.size << 4
            resp = await axi.write(op.addr, data, user=user)
            ok = int(resp.resp) == 0
            users = resp.user if isinstance(resp.user, list) else [resp.user]
            op.result = int(users[0] or 0) & ((1 << (8 * n)) - 1)
        end = self.cycle
        op.issued_at, op.done_at = start, end
        if not ok:
            raise ScoreboardError(f"node {node}: {op.kind} {op.addr:#x} answered {resp.resp}")
        for v in versions:
            self.memory.end_store(v, end)
        if op.kind == "atomic":
            new = atomic_result(op.atomic, op.result, op.value, op.compare, op.size)
            for b in range(n):  # the atomic's store, in flight while the atomic was
                v = self.memory.begin_store(op.addr + b, new >> (8 * b) & 0xFF, start)
                self.memory.end_store(v, end)
        self.checkers.completed(op)
        self.ops.append((node, op))
        if op.kind != "store":
            self.unchecked.append((node, op))
        if len(self.ops) % 64 == 0:
            self.check_values(final=False)
        return op

    def check_values(self, *, final: bool = True) -> int:
        """Check loads and atomic old values against the versioned memory; returns how many
        have been checked so far.

        An atomic's store enters the versioned memory only when its old value is known, so a
        load is checked once every atomic issued before it completed has completed; then
        versions no later load can see are forgotten (keeps long runs linear).
        """
        outstanding = self.checkers.outstanding.values()
        horizon = min((o.issued_at for o in outstanding), default=self.cycle)
        if final:
            horizon = self.cycle + 1
        ready = [(n, op) for n, op in self.unchecked if op.done_at < horizon]
        self.unchecked = [(n, op) for n, op in self.unchecked if op.done_at >= horizon]
        for node, op in ready:
            for b in range(1 << op.size):
                self.memory.check_load(
                    op.addr + b,
                    op.result >> (8 * b) & 0xFF,
                    op.issued_at,
                    op.done_at,
                    who=f"node {node} ({op.kind} {op.addr:#x}, byte {b}): ",
                )
        self.checked += len(ready)
        oldest = min((op.issued_at for _, op in self.unchecked), default=horizon)
        self.memory.prune(min(oldest, horizon))
        return self.checked

    async def wait_quiet(self, limit: int = 20000) -> None:
        """Wait until no agent is busy; a leak (an agent that never goes idle) fails."""
        names = [f"ep{node}_busy" for node in self.params.endpoints]
        names += [f"home{j}_busy" for j in range(self.params.homes)]
        for _ in range(limit):
            busy = [n for n in names if read(getattr(self.dut, n))]
            if not busy:
                return
            await RisingEdge(self.dut.clk)
        raise ScoreboardError(f"still busy {limit} cycles after the last operation: {busy}")


async def _run_program(tb: TB, node: int, program, *, outstanding: int, timeout: int) -> int:
    """Drive one agent's operation generator; ``Fire`` items run concurrently (at most
    ``outstanding``), plain operations one at a time with their result sent back."""
    tasks: list = []
    count = 0
    reply = None
    while True:
        try:
            item = program.send(reply) if reply is not None else next(program)
        except StopIteration:
            break
        reply = None
        count += 1
        if isinstance(item, Fire):
            tasks = [t for t in tasks if not t.done()]
            while len(tasks) >= outstanding:
                await tasks[0]
                tasks = [t for t in tasks if not t.done()]
            item.op.ident = tb.next_ident()
            tasks.append(
                cocotb.start_soon(
                    with_timeout(tb.do(node, item.op), timeout * CLOCK_PERIOD_NS, "ns")
                )
            )
        else:
            for t in tasks:
                await t
            tasks = []
            item.ident = tb.next_ident()
            reply = await with_timeout(tb.do(node, item), timeout * CLOCK_PERIOD_NS, "ns")
    for t in tasks:
        await t
    return count


@cocotb.test()
async def coherence_stress(dut) -> None:
    """Random stress from every endpoint at once with every checker on."""
    settings = BenchSettings.from_env()
    log_seed(dut, settings)
    tb = TB(dut, settings)
    tb.set_pauses(settings.get("p_idle", 0.2), settings.get("p_stall", 0.2))
    await tb.start()
    p = tb.params
    nc_lines = sum(w.size for w in p.noncacheable) // 64
    result: dict[str, Any] = {"workloads": {}}
    names = settings.get("workloads", list(BENCH_WORKLOADS))
    region = p.size // len(names) // 64 * 64
    for k, name in enumerate(names):
        # Each workload starts on memory nobody has written (its own slice of the window); the
        # first slice holds the non-cacheable lines.
        cfg = SystemConfig(
            agents=len(p.endpoints),
            homes=p.homes,
            home_base=p.base + k * region,
            home_size=region,
            noncacheable_lines=nc_lines if k == 0 else 0,
        )
        start = tb.cycle
        programs = [
            WORKLOADS[name](cfg, n, random.Random(tb.rng.getrandbits(32)), settings.get("ops", 200))
            for n in range(len(p.endpoints))
        ]
        counts = []
        tasks = [
            cocotb.start_soon(
                _run_program(
                    tb,
                    n,
                    prog,
                    outstanding=settings.get("outstanding", 4),
                    timeout=settings.get("watchdog", 20000),
                )
            )
            for n, prog in enumerate(programs)
        ]
        for t in tasks:
            counts.append(await t)
        await tb.wait_quiet()
        result["workloads"][name] = {"ops": sum(counts), "cycles": tb.cycle - start}
        dut._log.info("%s: %d operations in %d cycles", name, sum(counts), tb.cycle - start)
        if name == "spin_lock":
            lock = cfg.home_base + (cfg.noncacheable_lines + 3) * 64
            counter = lock + 5 * 64
            got = await tb.do(0, CoreOp(kind="load", addr=counter, ident=tb.next_ident()))
            want = len(p.endpoints) * max(1, settings.get("ops", 200) // 6)
            if got.result != want:
                raise ScoreboardError(f"spin-lock counter is {got.result}, expected {want}")
    result["checked_loads"] = tb.check_values()
    result["ops"] = len(tb.ops)
    result["violations"] = len(tb.checkers.violations)
    result["cycles"] = tb.cycle
    if tb.pauses is not None:
        result["pause_steps"] = tb.pauses.steps
        result["paused"] = tb.pauses.paused
    tb.checkers.finish([])
    settings.write_result(result)


HANDSHAKE_SIGNALS = ("arvalid", "arready", "rvalid", "rready", "rlast")
HANDSHAKE_SIGNALS += ("awvalid", "awready", "bvalid", "bready")


class PortTimer:
    """Cycle stamps of AXI handshakes at the DUT's ports (for latency figures)."""

    def __init__(self, dut, prefix: str) -> None:
        self.h = {name: getattr(dut, f"{prefix}__{name}") for name in HANDSHAKE_SIGNALS}
        self.ar: list[int] = []
        self.r_last: list[int] = []
        self.aw: list[int] = []
        self.b: list[int] = []

    def sample(self, cycle: int) -> None:
        v = {k: int(h.value) for k, h in self.h.items()}
        if v["arvalid"] and v["arready"]:
            self.ar.append(cycle)
        if v["rvalid"] and v["rready"] and v["rlast"]:
            self.r_last.append(cycle)
        if v["awvalid"] and v["awready"]:
            self.aw.append(cycle)
        if v["bvalid"] and v["bready"]:
            self.b.append(cycle)


@cocotb.test()
async def coherence_latency(dut) -> None:
    """Latency of each kind of access, one at a time, at the AXI ports (cycles)."""
    settings = BenchSettings.from_env()
    log_seed(dut, settings)
    tb = TB(dut, settings)
    await tb.start()
    p = tb.params
    timers = [PortTimer(dut, f"ep{node}_axi") for node in p.endpoints]
    mem_timers = [PortTimer(dut, f"home{j}_mem") for j in range(p.homes)]

    async def sample() -> None:
        while True:
            await RisingEdge(dut.clk)
            for t in timers + mem_timers:
                t.sample(tb.cycle)

    cocotb.start_soon(sample())
    base = p.base + sum(w.size for w in p.noncacheable)
    line = iter(range(base, base + p.size, 64))

    async def timed(node: int, op: CoreOp) -> int:
        t = timers[node]
        reads, writes = len(t.r_last), len(t.b)
        op.ident = tb.next_ident()
        await tb.do(node, op)
        await ClockCycles(dut.clk, 2)
        if op.kind == "load":
            assert len(t.r_last) == reads + 1
            return t.r_last[-1] - t.ar[-1]
        assert len(t.b) == writes + 1
        return t.b[-1] - t.aw[-1]

    def load(addr: int) -> CoreOp:
        return CoreOp(kind="load", addr=addr)

    def store(addr: int, value: int) -> CoreOp:
        return CoreOp(kind="store", addr=addr, value=value)

    figures: dict[str, Any] = {}
    samples: dict[str, list[int]] = {
        k: []
        for k in (
            "load_hit",
            "remote_read_clean",
            "memory_read",
            "remote_read_forward",
            "upgrade",
            "store_hit",
        )
    }
    other = 1 % len(p.endpoints)
    for _ in range(8):
        a = next(line)
        mem_reads = sum(len(m.ar) for m in mem_timers)
        samples["remote_read_clean"].append(await timed(0, load(a)))
        if sum(len(m.ar) for m in mem_timers) != mem_reads + 1:
            raise ScoreboardError("a clean remote read did not read memory exactly once")
        m = next(m for m in mem_timers if m.ar and m.ar[-1] >= tb.cycle - 200)
        samples["memory_read"].append(m.r_last[-1] - m.ar[-1])
        samples["load_hit"].append(await timed(0, load(a)))
        samples["store_hit"].append(await timed(0, store(a, 1)))  # E -> M, silent
        b = next(line)
        await timed(other, store(b, 7))  # M in the other cache
        samples["remote_read_forward"].append(await timed(0, load(b)))
        c = next(line)
        await timed(other, load(c))  # E at the other cache
        await timed(0, load(c))  # both S (forwarded)
        samples["upgrade"].append(await timed(0, store(c, 3)))
    for k, v in samples.items():
        figures[k] = sum(v) / len(v)
    figures["remote_read_clean_fabric"] = figures["remote_read_clean"] - figures["memory_read"]
    # Contended far atomics: every endpoint fetch-adds one word.
    word = next(line)
    per_agent = settings.get("atomics", 16)
    before = [len(t.b) for t in timers]

    async def adder(node: int) -> None:
        for _ in range(per_agent):
            op = CoreOp(kind="atomic", addr=word, atomic=Opcode.ATOMIC_ADD, value=1)
            op.ident = tb.next_ident()
            await tb.do(node, op)

    tasks = [cocotb.start_soon(adder(n)) for n in range(len(p.endpoints))]
    for t in tasks:
        await t
    await ClockCycles(dut.clk, 2)
    lat = []
    for n, t in enumerate(timers):
        lat += [b - a for a, b in zip(t.aw[-per_agent:], t.b[before[n] :], strict=True)]
    figures["atomic_contended"] = sum(lat) / len(lat)
    final = await tb.do(0, CoreOp(kind="load", addr=word, ident=tb.next_ident()))
    if final.result != per_agent * len(p.endpoints):
        raise ScoreboardError(
            f"fetch-add total {final.result}, expected {per_agent * len(p.endpoints)}"
        )
    await tb.wait_quiet()
    figures["agents"] = len(p.endpoints)
    figures["checked_loads"] = tb.check_values()
    figures["ops"] = len(tb.ops)
    figures["violations"] = len(tb.checkers.violations)
    tb.checkers.finish([])
    settings.write_result(figures)
