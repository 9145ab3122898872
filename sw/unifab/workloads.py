"""The design brief's workloads as seeded traffic generators over a memory pool.

A workload is, per endpoint, a list of *phases*; a phase is a list of :class:`Transfer`\\ s the
endpoint issues concurrently (at most ``outstanding`` in flight), and the next phase starts
when every transfer of the phase has completed. The bench (:mod:`unifab.tb.supernode_bench`)
runs the same phases in both modes: memory semantics (AXI loads/stores at the endpoint) and
message semantics (the RDMA-style engine of :mod:`unifab.message`).

Every get reads bytes whose value is known when it is issued (written by an earlier phase of
the same endpoint, or preloaded before the run), so the bench checks every byte read.

Workloads
---------
``kv_cache``
    Multi-turn inference. Each endpoint serves its own conversations; a turn gets the KV blocks
    of the conversation's earlier turns (prefix reuse) and puts the new turn's block. Blocks
    are 16-64 KiB (multiples of 4 KiB) and live in the pooled memory: the endpoint's own HBM is
    taken to be full, so every block goes through the global address space.
``embedding_gather``
    Recommendation lookups: tables of 64-512 B rows sharded across every home (the pool is
    interleaved), rows drawn Zipf(``zipf_s``) per table, a batch of lookups in flight at once;
    latency-bound.
``page_swap``
    Training spill: 4 KiB pages swapped out to the pool and back in, ``outstanding`` pages in
    flight; bandwidth-bound.
``remote_read_64``
    One 64-byte read at a time from random pool lines: the headline latency figure.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from unifab.coherence.params import AddressWindow

__all__ = [
    "WORKLOAD_NAMES",
    "PoolAllocator",
    "Transfer",
    "WorkloadPlan",
    "WorkloadSpec",
    "plan_workload",
]

LINE = 64
PAGE = 4096


@dataclass(frozen=True)
class Transfer:
    """One get (pool → endpoint) or put (endpoint → pool) of ``nbytes`` at ``addr``."""

    kind: str  # "get" | "put"
    addr: int
    nbytes: int
    ident: int

    def __post_init__(self) -> None:
        if self.kind not in ("get", "put"):
            raise ValueError(f"transfer kind must be 'get' or 'put', not {self.kind!r}")
        if self.nbytes <= 0 or self.addr % LINE or self.nbytes % LINE:
            raise ValueError(f"transfer {self.addr:#x}+{self.nbytes} is not whole lines")


@dataclass(frozen=True, kw_only=True)
class WorkloadSpec:
    """Sizes of a workload run (defaults: the brief's sizes at a scale one bench run fits)."""

    name: str
    outstanding: int = 4
    # kv_cache
    turns: int = 2
    block_min: int = 16 * 1024
    block_max: int = 64 * 1024
    # embedding_gather
    tables: int = 4
    row_bytes: tuple[int, ...] = (64, 128, 256, 512)
    table_bytes: int = 16 * 1024
    batches: int = 8
    lookups: int = 16
    zipf_s: float = 1.05
    # page_swap
    pages: int = 16
    # remote_read_64
    reads: int = 32
    readers: int = 1  # endpoints issuing reads (1: the unloaded latency)

    def __post_init__(self) -> None:
        if self.name not in WORKLOAD_NAMES:
            raise ValueError(
                f"workload must be one of {', '.join(WORKLOAD_NAMES)}, not {self.name!r}"
            )
        for k in (
            "outstanding",
            "turns",
            "tables",
            "batches",
            "lookups",
            "pages",
            "reads",
            "readers",
        ):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"workload {self.name}: {k} must be a positive integer, not {v!r}")
        if not PAGE <= self.block_min <= self.block_max or self.block_max % PAGE:
            raise ValueError(
                f"workload {self.name}: blocks must be 4 KiB multiples with "
                f"4 KiB <= block_min <= block_max, not {self.block_min}..{self.block_max}"
            )
        for r in self.row_bytes:
            if r not in (64, 128, 256, 512):
                raise ValueError(f"workload {self.name}: row size {r} is not 64, 128, 256 or 512")
        if self.table_bytes % PAGE or self.table_bytes < max(self.row_bytes):
            raise ValueError(f"workload {self.name}: table_bytes must be a 4 KiB multiple")
        if self.zipf_s <= 0:
            raise ValueError(f"workload {self.name}: zipf_s must be positive, not {self.zipf_s}")

    def scaled(self, scale: float) -> WorkloadSpec:
        """Fewer (``scale`` < 1) or more operations, the same transfer sizes; below 1 the
        KV blocks and the embedding tables shrink too, so small presets' pools fit."""
        if scale <= 0:
            raise ValueError(f"scale must be positive, not {scale}")

        def n(v: int) -> int:
            return max(1, round(v * scale))

        block_max = max(PAGE, min(self.block_max, n(self.block_max // PAGE) * PAGE))
        return replace(
            self,
            turns=max(min(2, self.turns), n(self.turns)),  # a turn reusing a prefix
            batches=n(self.batches),
            pages=n(self.pages),
            reads=n(self.reads),
            block_max=block_max,
            block_min=max(PAGE, min(self.block_min, n(self.block_min // PAGE) * PAGE, block_max)),
            table_bytes=max(PAGE, min(self.table_bytes, n(self.table_bytes // PAGE) * PAGE)),
        )


@dataclass
class WorkloadPlan:
    """Everything a run of one workload needs: phases per endpoint and the pool's preload."""

    spec: WorkloadSpec
    phases: list[list[list[Transfer]]]  # [endpoint][phase] -> transfers
    preload: dict[int, bytes] = field(default_factory=dict)  # line address -> 64 bytes
    pool_bytes_used: int = 0

    @property
    def transfers(self) -> int:
        return sum(len(p) for phases in self.phases for p in phases)

    @property
    def bytes(self) -> int:
        return sum(t.nbytes for phases in self.phases for p in phases for t in p)


class PoolAllocator:
    """Hands out 4 KiB-aligned chunks of the pool windows, alternating between windows (so a
    multi-window pool, like ``two-level``'s near and far halves, is used evenly)."""

    def __init__(self, windows: tuple[AddressWindow, ...]):
        if not windows:
            raise ValueError("the topology has no memory pool (a non-cacheable window >= 4 KiB)")
        self.windows = windows
        self.next = [w.base for w in windows]
        self.turn = itertools.cycle(range(len(windows)))
        self.used = 0

    @property
    def capacity(self) -> int:
        return sum(w.size for w in self.windows)

    def alloc(self, nbytes: int, what: str) -> int:
        nbytes = -(-nbytes // PAGE) * PAGE if nbytes >= PAGE else nbytes
        for _ in range(len(self.windows)):
            k = next(self.turn)
            w = self.windows[k]
            addr = -(-self.next[k] // min(nbytes, PAGE)) * min(nbytes, PAGE)
            if addr + nbytes <= w.base + w.size:
                self.next[k] = addr + nbytes
                self.used += nbytes
                return addr
        raise ValueError(
            f"{what}: the memory pool ({self.capacity // 1024} KiB) is full after "
            f"{self.used // 1024} KiB; use a smaller --scale or a topology with a larger pool"
        )


def _zipf_cum(n: int, s: float) -> list[float]:
    total, out = 0.0, []
    for k in range(1, n + 1):
        total += 1.0 / k**s
        out.append(total)
    return out


def row_bytes_of(seed: int, addr: int) -> bytes:
    """The preloaded content of the line at ``addr`` (deterministic in the seed)."""
    return random.Random(seed * 0x9E3779B1 ^ addr).randbytes(LINE)


def _kv_cache(spec: WorkloadSpec, endpoints: int, pool: PoolAllocator, rng, ident) -> WorkloadPlan:
    phases: list[list[list[Transfer]]] = []
    for ep in range(endpoints):
        blocks: list[tuple[int, int]] = []
        mine: list[list[Transfer]] = []
        for turn in range(spec.turns):
            if blocks:  # get the conversation's earlier blocks (prefix reuse)
                mine.append([Transfer("get", a, n, next(ident)) for a, n in blocks])
            n = rng.randrange(spec.block_min, spec.block_max + 1, PAGE)
            a = pool.alloc(n, f"kv_cache endpoint {ep} turn {turn}")
            blocks.append((a, n))
            mine.append([Transfer("put", a, n, next(ident))])
        phases.append(mine)
    return WorkloadPlan(spec, phases)


def _embedding_gather(
    spec: WorkloadSpec, endpoints: int, pool: PoolAllocator, rng, ident, seed: int
) -> WorkloadPlan:
    tables = []
    preload: dict[int, bytes] = {}
    for t in range(spec.tables):
        row = spec.row_bytes[t % len(spec.row_bytes)]
        base = pool.alloc(spec.table_bytes, f"embedding table {t}")
        rows = spec.table_bytes // row
        # Zipf ranks map to rows through a seeded permutation: hot rows are spread out.
        order = list(range(rows))
        rng.shuffle(order)
        tables.append((base, row, order, _zipf_cum(rows, spec.zipf_s)))
        for a in range(base, base + spec.table_bytes, LINE):
            preload[a] = row_bytes_of(seed, a)
    phases = []
    for _ep in range(endpoints):
        mine = []
        for _b in range(spec.batches):
            batch = []
            for _ in range(spec.lookups):
                base, row, order, cum = tables[rng.randrange(len(tables))]
                rank = bisect.bisect_left(cum, rng.random() * cum[-1])
                batch.append(Transfer("get", base + order[rank] * row, row, next(ident)))
            mine.append(batch)
        phases.append(mine)
    return WorkloadPlan(spec, phases, preload)


def _page_swap(spec: WorkloadSpec, endpoints: int, pool: PoolAllocator, rng, ident) -> WorkloadPlan:
    phases = []
    for ep in range(endpoints):
        slots = [pool.alloc(PAGE, f"page_swap endpoint {ep}") for _ in range(spec.outstanding)]
        out = [Transfer("put", a, PAGE, next(ident)) for a in slots]
        mine = [out]
        for _ in range(max(0, spec.pages // spec.outstanding - 1)):
            # Swap the spilled pages back in and spill new ones in their place.
            rng.shuffle(slots)
            mine.append([Transfer("get", a, PAGE, next(ident)) for a in slots])
            mine.append([Transfer("put", a, PAGE, next(ident)) for a in slots])
        mine.append([Transfer("get", a, PAGE, next(ident)) for a in slots])
        phases.append(mine)
    return WorkloadPlan(spec, phases)


def _remote_read_64(
    spec: WorkloadSpec, endpoints: int, pool: PoolAllocator, rng, ident, seed: int
) -> WorkloadPlan:
    span = min(pool.capacity, 64 * 1024)
    base = pool.alloc(span, "remote_read_64 lines")
    preload = {a: row_bytes_of(seed, a) for a in range(base, base + span, LINE)}
    phases = [
        [
            [Transfer("get", base + rng.randrange(span // LINE) * LINE, LINE, next(ident))]
            for _ in range(spec.reads)
        ]
        if ep < spec.readers
        else []
        for ep in range(endpoints)
    ]
    return WorkloadPlan(spec, phases, preload)


_BUILDERS: dict[str, Callable[..., WorkloadPlan]] = {
    "kv_cache": _kv_cache,
    "embedding_gather": _embedding_gather,
    "page_swap": _page_swap,
    "remote_read_64": _remote_read_64,
}
WORKLOAD_NAMES = tuple(_BUILDERS)


def plan_workload(
    spec: WorkloadSpec, *, endpoints: int, pool: tuple[AddressWindow, ...], seed: int
) -> WorkloadPlan:
    """The phases of ``spec`` for ``endpoints`` endpoints over ``pool``, from ``seed``."""
    if endpoints < 1:
        raise ValueError(f"endpoints must be positive, not {endpoints}")
    rng = random.Random(f"{spec.name}:{seed}")
    allocator = PoolAllocator(pool)
    ident = itertools.count()
    build = _BUILDERS[spec.name]
    if spec.name in ("embedding_gather", "remote_read_64"):
        plan = build(spec, endpoints, allocator, rng, ident, seed)
    else:
        plan = build(spec, endpoints, allocator, rng, ident)
    plan.pool_bytes_used = allocator.used
    return plan
