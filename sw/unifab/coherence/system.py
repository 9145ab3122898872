"""A whole coherent system on the golden model, with the checkers and the stress workloads.

:class:`CoherenceCheckers` are the invariants every coherence test runs (on the model here,
on the RTL in the benches): single writer / multiple readers per line, the data-value
invariant against a reference memory, every operation completing exactly once, no leaked
transaction state at the end, and a forward-progress watchdog.

:class:`ModelSystem` connects :class:`~unifab.coherence.model.CacheModel` agents and
:class:`~unifab.coherence.model.HomeModel` homes through a :class:`Network`, and runs
:data:`WORKLOADS` (seeded generators of core operations).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

from unifab.coherence.model import (
    CacheModel,
    CoreOp,
    HomeModel,
    Network,
)
from unifab.coherence.params import AddressWindow, CacheParams, HomeParams
from unifab.flit import LINE_BYTES, CacheState, Opcode

__all__ = [
    "WORKLOADS",
    "CoherenceCheckers",
    "CoherenceError",
    "Fire",
    "ModelSystem",
    "SystemConfig",
]


class CoherenceError(AssertionError):
    """A coherence invariant does not hold."""


class CoherenceCheckers:
    """Invariants checked while a coherence test runs.

    Call :meth:`state_changed` on every line state change of every cache, :meth:`performed`
    when an access takes effect, :meth:`issued`/:meth:`completed` for every core operation,
    :meth:`progress` on each step; :meth:`finish` at the end. A violation raises
    :class:`CoherenceError` at once (``violations`` counts them when ``raise_at_once`` is
    False).
    """

    def __init__(self, *, watchdog: int = 200_000, raise_at_once: bool = True) -> None:
        self.states: dict[int, dict[int, CacheState]] = defaultdict(dict)
        self.memory: dict[int, int] = {}  # byte address -> value (absent = 0)
        self.outstanding: dict[int, CoreOp] = {}
        self.done: set[int] = set()
        self.watchdog = watchdog
        self.raise_at_once = raise_at_once
        self.violations: list[str] = []
        self._last_progress = 0
        self.now = 0

    def _fail(self, text: str) -> None:
        self.violations.append(text)
        if self.raise_at_once:
            raise CoherenceError(text)

    # -- single writer / multiple readers -------------------------------------------------------

    def state_changed(self, node: int, line: int, state: CacheState) -> None:
        holders = self.states[line]
        if state is CacheState.I:
            holders.pop(node, None)
            return
        holders[node] = state
        writers = [n for n, s in holders.items() if s in (CacheState.E, CacheState.M)]
        if len(writers) > 1 or (writers and len(holders) > 1):
            text = ", ".join(f"node {n}: {s.name}" for n, s in sorted(holders.items()))
            self._fail(f"SWMR violated on line {line:#x} at step {self.now}: {text}")

    # -- data value ---------------------------------------------------------------------------

    def value(self, addr: int, nbytes: int) -> int:
        """The reference memory's little-endian value of ``nbytes`` at ``addr``."""
        return sum(self.memory.get(addr + i, 0) << (8 * i) for i in range(nbytes))

    def _store(self, addr: int, nbytes: int, value: int) -> None:
        for i in range(nbytes):
            self.memory[addr + i] = value >> (8 * i) & 0xFF

    def performed_read(self, node: int, addr: int, nbytes: int, value: int) -> None:
        expect = self.value(addr, nbytes)
        if value != expect:
            self._fail(
                f"data value violated at step {self.now}: node {node} read {value:#x} at"
                f" {addr:#x} ({nbytes} B), the latest store there wrote {expect:#x}"
            )

    def performed_write(self, addr: int, nbytes: int, value: int) -> None:
        self._store(addr, nbytes, value)

    def performed_masked(self, kind: str, line: int, data: bytes, be: int, node: int) -> None:
        """A home-side line access under byte enables (NC_READ / NC_WRITE)."""
        for i in range(LINE_BYTES):
            if be >> i & 1:
                if kind == "read":
                    self.performed_read(node, line + i, 1, data[i])
                else:
                    self.memory[line + i] = data[i]

    def performed_atomic(self, node: int, addr: int, nbytes: int, old: int, new: int) -> None:
        self.performed_read(node, addr, nbytes, old)
        self._store(addr, nbytes, new)

    # -- completion ---------------------------------------------------------------------------

    def issued(self, op: CoreOp) -> None:
        if op.ident in self.outstanding or op.ident in self.done:
            self._fail(f"operation {op.ident} issued twice")
        self.outstanding[op.ident] = op

    def completed(self, op: CoreOp) -> None:
        if self.outstanding.pop(op.ident, None) is None:
            self._fail(f"operation {op.ident} completed twice or was never issued")
        self.done.add(op.ident)
        self._last_progress = self.now

    def progress(self, now: int) -> None:
        self.now = now
        if self.outstanding and now - self._last_progress > self.watchdog:
            oldest = min(self.outstanding.values(), key=lambda o: o.issued_at)
            self._fail(
                f"no operation completed for {self.watchdog} steps (step {now}); oldest"
                f" outstanding: {oldest.kind} {oldest.addr:#x} issued at step {oldest.issued_at}"
            )

    def finish(self, leaks: list[str]) -> None:
        if self.outstanding:
            self._fail(f"{len(self.outstanding)} operations never completed")
        for text in leaks:
            self._fail(f"leak at the end: {text}")


# --------------------------------------------------------------------------------------------
# Workloads: each agent runs a generator of operations. A generator yields an operation and
# gets back the completed operation (sequential programs), or yields with ``wait=False`` via
# :class:`Fire` (independent random traffic, several outstanding).


@dataclass
class Fire:
    """An operation issued without waiting for the previous ones."""

    op: CoreOp


Program = Generator["CoreOp | Fire", "CoreOp | None", None]


@dataclass(frozen=True, kw_only=True)
class SystemConfig:
    """Size of a model system: agents, homes (lines interleaved across them), caches."""

    agents: int = 4
    homes: int = 2
    home_base: int = 0x1000_0000
    home_size: int = 0x1_0000
    cache: CacheParams | None = field(default_factory=lambda: CacheParams(sets=4, ways=2))
    mshrs: int = 4
    dir_sets: int = 4
    dir_ways: int = 2
    table_entries: int = 4
    noncacheable_lines: int = 4  # the first lines of home 0's window are non-cacheable

    @property
    def first_home(self) -> int:
        return 16


def _op(kind: str, addr: int, **kw) -> CoreOp:
    return CoreOp(kind=kind, addr=addr, **kw)


def _word(cfg: SystemConfig, rng: random.Random, lines: int, *, cacheable: bool = True) -> int:
    base = cfg.home_base
    nc = cfg.noncacheable_lines
    if cacheable or not nc:
        line = nc + rng.randrange(lines)
    else:
        line = rng.randrange(nc)
    return base + line * LINE_BYTES + 8 * rng.randrange(LINE_BYTES // 8)


ATOMICS = [
    Opcode.ATOMIC_ADD,
    Opcode.ATOMIC_SWAP,
    Opcode.ATOMIC_CAS,
    Opcode.ATOMIC_AND,
    Opcode.ATOMIC_OR,
    Opcode.ATOMIC_XOR,
    Opcode.ATOMIC_MIN,
    Opcode.ATOMIC_MAX,
]


def hot_lines(cfg: SystemConfig, node: int, rng: random.Random, ops: int) -> Program:
    """High contention: random loads, stores and atomics on a few lines, mixed with
    non-cacheable accesses, several outstanding per agent."""
    for _ in range(ops):
        r = rng.random()
        addr = _word(cfg, rng, 6, cacheable=r >= 0.15)
        kind = rng.choices(["load", "store", "atomic"], weights=[5, 4, 1])[0]
        size = rng.choice([2, 3]) if kind == "atomic" else rng.choice([0, 1, 2, 3])
        atomic = rng.choice(ATOMICS) if kind == "atomic" else None
        # A CAS carries its compare value in the next `size` bytes of the AXI write, so its
        # address is aligned to twice its size (docs/coherence.md section 4).
        addr &= ~((2 << size if atomic is Opcode.ATOMIC_CAS else 1 << size) - 1)
        op = _op(
            kind,
            addr,
            size=size,
            value=rng.getrandbits(64) & ((1 << (8 << size)) - 1),
            atomic=atomic,
            compare=rng.getrandbits(1),
        )
        yield Fire(op)


def many_lines(cfg: SystemConfig, node: int, rng: random.Random, ops: int) -> Program:
    """Many lines over a small cache and directory: evictions and back-invalidation."""
    for _ in range(ops):
        addr = _word(cfg, rng, 64)
        kind = rng.choice(["load", "store"])
        yield Fire(_op(kind, addr, size=3, value=rng.getrandbits(64)))


def false_sharing(cfg: SystemConfig, node: int, rng: random.Random, ops: int) -> Program:
    """Each agent writes and reads its own word of two shared lines."""
    lines = [cfg.home_base + (cfg.noncacheable_lines + i) * LINE_BYTES for i in range(2)]
    for i in range(ops):
        addr = lines[i % 2] + 8 * (node % 8)
        if rng.random() < 0.5:
            yield Fire(_op("store", addr, value=rng.getrandbits(64)))
        else:
            yield Fire(_op("load", addr))


def producer_consumer(cfg: SystemConfig, node: int, rng: random.Random, ops: int) -> Program:
    """Agent 0 writes a block then bumps a flag; the others wait for the flag and read the
    block, which must hold the value that goes with the flag."""
    base = cfg.home_base + cfg.noncacheable_lines * LINE_BYTES
    flag, block = base, base + 2 * LINE_BYTES
    rounds = max(1, ops // 8)
    if node == 0:
        for k in range(1, rounds + 1):
            for w in range(4):
                yield _op("store", block + 8 * w, value=k * 100 + w)
            yield _op("store", flag, value=k)
        return
    seen = 0
    while seen < rounds:
        got = yield _op("load", flag)
        assert got is not None and got.result is not None
        if got.result > seen:
            seen = got.result
            for w in range(4):
                got = yield _op("load", block + 8 * w)
                assert got is not None and got.result is not None
                if got.result < seen * 100 + w:
                    raise CoherenceError(
                        f"consumer {node} saw flag {seen} but stale data {got.result}"
                    )


def migratory(cfg: SystemConfig, node: int, rng: random.Random, ops: int) -> Program:
    """Read-modify-write of one line by every agent in turn (the line migrates)."""
    addr = cfg.home_base + (cfg.noncacheable_lines + 1) * LINE_BYTES
    for _ in range(ops // 2):
        got = yield _op("load", addr)
        assert got is not None and got.result is not None
        yield _op("store", addr, value=(got.result + 1) & (2**64 - 1))


def spin_lock(cfg: SystemConfig, node: int, rng: random.Random, ops: int) -> Program:
    """A CAS spin lock (far atomics) protecting a cached counter; the counter must end equal to
    the number of critical sections (checked by :meth:`ModelSystem.run`)."""
    lock = cfg.home_base + (cfg.noncacheable_lines + 3) * LINE_BYTES
    counter = lock + 5 * LINE_BYTES
    for _ in range(max(1, ops // 6)):
        while True:
            got = yield _op("atomic", lock, atomic=Opcode.ATOMIC_CAS, value=node + 1, compare=0)
            assert got is not None
            if got.result == 0:
                break
        got = yield _op("load", counter)
        assert got is not None and got.result is not None
        yield _op("store", counter, value=got.result + 1)
        yield _op("atomic", lock, atomic=Opcode.ATOMIC_SWAP, value=0)


WORKLOADS: dict[str, Callable[..., Program]] = {
    "hot_lines": hot_lines,
    "many_lines": many_lines,
    "false_sharing": false_sharing,
    "producer_consumer": producer_consumer,
    "migratory": migratory,
    "spin_lock": spin_lock,
}


class ModelSystem:
    """Agents, homes and a network on the golden model, driven by a workload."""

    def __init__(self, config: SystemConfig, *, seed: int) -> None:
        self.config = cfg = config
        self.rng = random.Random(seed)
        self.checkers = CoherenceCheckers()
        self.homes: dict[int, HomeModel] = {}
        for i in range(cfg.homes):
            params = HomeParams(
                node_id=cfg.first_home + i,
                window=AddressWindow(
                    base=cfg.home_base, size=cfg.home_size
                ),  # interleaved: each home sees the whole window, owns every homes-th line
                dir_sets=cfg.dir_sets,
                dir_ways=cfg.dir_ways,
                table_entries=cfg.table_entries,
            )
            home = HomeModel(params, on_perform=self._home_performed(cfg.first_home + i))
            self.homes[params.node_id] = home
        nc_end = cfg.home_base + cfg.noncacheable_lines * LINE_BYTES
        self.agents: dict[int, CacheModel] = {}
        for n in range(cfg.agents):
            self.agents[n] = CacheModel(
                node_id=n,
                cache=cfg.cache,
                mshrs=cfg.mshrs,
                cacheable=lambda a, nc_end=nc_end: not cfg.home_base <= a < nc_end,
                on_perform=self._cache_performed(n),
                on_state=self.checkers.state_changed,
                rng=random.Random(self.rng.getrandbits(32)),
            )
        self.network = Network(home_of=self.home_of, rng=random.Random(self.rng.getrandbits(32)))
        self._requester: dict[tuple[int, int], int] = {}
        self.steps = 0
        self.ops = 0

    def home_of(self, addr: int) -> int:
        line = (addr - self.config.home_base) // LINE_BYTES
        return self.config.first_home + line % self.config.homes

    def _cache_performed(self, node: int) -> Callable[..., None]:
        def performed(kind: str, addr: int, nbytes: int, value: int) -> None:
            if kind == "read":
                self.checkers.performed_read(node, addr, nbytes, value)
            else:
                self.checkers.performed_write(addr, nbytes, value)

        return performed

    def _home_performed(self, home: int) -> Callable[..., None]:
        def performed(kind: str, addr: int, data: bytes, extra: int) -> None:
            if kind == "atomic":
                nbytes = len(data)
                self.checkers.performed_atomic(
                    home, addr, nbytes, int.from_bytes(data, "little"), extra
                )
            else:
                self.checkers.performed_masked(kind, addr, data, extra, home)

        return performed

    def _send(self, src: int, messages: list) -> None:
        for msg in messages:
            self.network.send(src, msg)

    def run(self, workload: str, *, ops_per_agent: int, issue_rate: float = 0.3) -> dict:
        """Run ``workload`` to completion with every checker on; returns counters."""
        make = WORKLOADS[workload]
        programs: dict[int, Iterator] = {
            n: make(self.config, n, random.Random(self.rng.getrandbits(32)), ops_per_agent)
            for n in self.agents
        }
        pending: dict[int, CoreOp | Fire | None] = {n: None for n in self.agents}
        waiting: dict[int, CoreOp | None] = {n: None for n in self.agents}
        finished: set[int] = set()
        ident = 0
        ck = self.checkers

        def next_op(n: int, reply: CoreOp | None) -> None:
            try:
                pending[n] = programs[n].send(reply) if reply is not None else next(programs[n])
            except StopIteration:
                pending[n] = None
                finished.add(n)

        for n in self.agents:
            next_op(n, None)
        while True:
            self.steps += 1
            ck.progress(self.steps)
            for n, agent in self.agents.items():
                for op in agent.completed:
                    op.done_at = self.steps
                    ck.completed(op)
                    if waiting[n] is op:
                        waiting[n] = None
                        next_op(n, op)
                agent.completed.clear()
            issuers = [n for n in self.agents if pending[n] is not None and waiting[n] is None]
            if issuers and (self.network.empty or self.rng.random() < issue_rate):
                n = self.rng.choice(issuers)
                item = pending[n]
                op = item.op if isinstance(item, Fire) else item
                assert op is not None
                if op.ident == 0:
                    ident += 1
                    op.ident = ident
                out = self.agents[n].issue(op)
                if out is not None:
                    op.issued_at = self.steps
                    ck.issued(op)
                    self.ops += 1
                    self._send(n, out)
                    if isinstance(item, Fire):
                        next_op(n, None)
                    else:
                        waiting[n] = op
                        pending[n] = None
                continue
            msg = self.network.deliver_one()
            if msg is None:
                if all(
                    pending[n] is None and waiting[n] is None and self.agents[n].idle
                    for n in self.agents
                ) and not any(a.completed for a in self.agents.values()):
                    break
                continue
            dst = msg.header.dst
            if dst in self.homes:
                self._send(dst, self.homes[dst].receive(msg))
            else:
                self._send(dst, self.agents[dst].receive(msg))
        leaks = []
        for node, home in self.homes.items():
            if not home.idle:
                leaks.append(f"home {node}: queue {len(home.queue)}, table {home.table}")
        for node, agent in self.agents.items():
            if not agent.idle:
                leaks.append(f"agent {node}: MSHRs {list(agent.mshr)}, evicting {agent.evicting}")
        ck.finish(leaks)
        self._check_directory()
        return {
            "ops": self.ops,
            "steps": self.steps,
            "messages": self.network.delivered,
            "violations": len(ck.violations),
            **{
                f"home_{k}": sum(h.counters[k] for h in self.homes.values())
                for k in ("snoops", "stale", "back_invalidations", "errors", "unexpected")
            },
            **{
                k: sum(a.counters[k] for a in self.agents.values())
                for k in ("hits", "misses", "upgrade_lost", "snoop_in_eviction", "forwarded")
            },
        }

    def _check_directory(self) -> None:
        """At rest, each home's directory lists exactly the caches holding its lines."""
        held: dict[int, set[int]] = defaultdict(set)
        for node, agent in self.agents.items():
            for line in agent.lines():
                held[line].add(node)
        listed: dict[int, set[int]] = {}
        for home in self.homes.values():
            for line, (_, holders) in home.directory().items():
                listed[line] = set(holders)
        for line in set(held) | set(listed):
            if held.get(line, set()) != listed.get(line, set()):
                raise CoherenceError(
                    f"line {line:#x} is cached by {sorted(held[line])} but the directory lists"
                    f" {sorted(listed.get(line, set()))}"
                )

    def counter_value(self, addr: int) -> int:
        """The current value of the 8-byte word at ``addr`` (from the reference memory)."""
        return self.checkers.value(addr, 8)
