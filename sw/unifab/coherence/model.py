"""Transaction-level golden model of the coherence protocol (``docs/coherence.md``).

Three parts, each usable on its own:

* :class:`HomeModel` — a home agent: directory with capacity (back-invalidation), serial
  request engine with in-order waiting on busy lines, transaction table closed by
  ``COMP_ACK``, memory, far atomics, non-coherent accesses and errors. It is *reactive*:
  :meth:`HomeModel.receive` takes one message and returns the messages it sends.
* :class:`CacheModel` — a caching agent with MESI lines, MSHRs, an eviction buffer and snoop
  answers; the core side is :meth:`CacheModel.issue`.
* :class:`Network` — per (source, destination, class) FIFO channels delivered in a seeded random
  order (the only order the protocol relies on), with the switch's address decode for requests.

:mod:`unifab.coherence.system` wires them into a whole system with checkers.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from unifab.codec import Message, MsgHeader, header
from unifab.coherence.params import CacheParams, HomeParams
from unifab.flit import (
    ATOMIC_OPCODES,
    LINE_BYTES,
    CacheState,
    ErrorCode,
    MsgClass,
    Opcode,
    opcode_class,
)

__all__ = [
    "ATOMIC_OF_AXI",
    "CacheModel",
    "CoreOp",
    "HomeModel",
    "Network",
    "ProtocolError",
    "atomic_result",
    "line_of",
]

COHERENT_READS = frozenset({Opcode.READ_SHARED, Opcode.READ_UNIQUE, Opcode.UPGRADE})
COHERENT_OPCODES = COHERENT_READS | {Opcode.WRITE_BACK, Opcode.CLEAN_EVICT}
LINE_ALIGNED = COHERENT_OPCODES | {Opcode.NC_WRITE}
FULL_LINE = (1 << LINE_BYTES) - 1

# awuser[3:0] of the endpoint's AXI port -> atomic opcode (docs/coherence.md section 4).
ATOMIC_OF_AXI = {
    1: Opcode.ATOMIC_ADD,
    2: Opcode.ATOMIC_SWAP,
    3: Opcode.ATOMIC_CAS,
    4: Opcode.ATOMIC_AND,
    5: Opcode.ATOMIC_OR,
    6: Opcode.ATOMIC_XOR,
    7: Opcode.ATOMIC_MIN,
    8: Opcode.ATOMIC_MAX,
}


class ProtocolError(AssertionError):
    """A message the protocol says cannot happen (a bug in an agent or in the model)."""


def line_of(addr: int) -> int:
    return addr & ~(LINE_BYTES - 1)


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


def atomic_result(opcode: Opcode, old: int, operand: int, compare: int, size: int) -> int:
    """The value an atomic stores, on ``8 << size``-bit unsigned values."""
    bits = 8 << size
    mask = (1 << bits) - 1
    old, operand, compare = old & mask, operand & mask, compare & mask
    if opcode is Opcode.ATOMIC_ADD:
        return (old + operand) & mask
    if opcode is Opcode.ATOMIC_SWAP:
        return operand
    if opcode is Opcode.ATOMIC_CAS:
        return operand if old == compare else old
    if opcode is Opcode.ATOMIC_AND:
        return old & operand
    if opcode is Opcode.ATOMIC_OR:
        return old | operand
    if opcode is Opcode.ATOMIC_XOR:
        return old ^ operand
    if opcode is Opcode.ATOMIC_MIN:
        return old if _signed(old, bits) <= _signed(operand, bits) else operand
    if opcode is Opcode.ATOMIC_MAX:
        return old if _signed(old, bits) >= _signed(operand, bits) else operand
    raise ValueError(f"{opcode.name} is not an atomic opcode")


def _mask_bytes(offset: int, count: int) -> int:
    return ((1 << count) - 1) << offset


# --------------------------------------------------------------------------------------------
# Home agent


@dataclass
class _DirEntry:
    line: int
    state: str  # "S" or "EM"
    sharers: set[int] = field(default_factory=set)
    owner: int | None = None

    def holders(self) -> set[int]:
        return {self.owner} if self.state == "EM" else set(self.sharers)


@dataclass
class _Snooping:
    """The engine waiting for snoop responses (for a request, or for a back-invalidation)."""

    request: Message | None  # None: back-invalidation of `line`
    line: int
    pending: int
    answered_shared: set[int] = field(default_factory=set)
    on_done: Callable[[], list[Message]] | None = None


class HomeModel:
    """A home agent (``docs/coherence.md`` section 2), message in, messages out.

    ``poisoned`` holds line addresses (global) whose memory reads fail (as an AXI SLVERR
    would). ``on_perform(kind, addr, nbytes, value)`` is called when a non-coherent access or
    an atomic executes on memory (kind ``"read"``, ``"write"`` or ``"atomic"``).
    """

    def __init__(
        self,
        params: HomeParams,
        *,
        poisoned: set[int] | None = None,
        on_perform: Callable[..., None] | None = None,
    ) -> None:
        self.params = params
        self.node = params.node_id
        self.window = params.window
        self.memory = bytearray(params.window.size)
        self.poisoned = set(poisoned or ())
        self.on_perform = on_perform
        self.sets: list[list[_DirEntry | None]] = [
            [None] * params.dir_ways for _ in range(params.dir_sets)
        ]
        self._victim_rr = [0] * params.dir_sets
        self.queue: deque[Message] = deque()
        # Transactions awaiting COMP_ACK, as (requester, tag, line): a requester may reuse a tag
        # for a new request to another line before its previous COMP_ACK has arrived.
        self.table: set[tuple[int, int, int]] = set()
        self.snooping: _Snooping | None = None
        self._answered: set[int] = set()  # snooped owners that kept a shared copy
        self.counters = {
            "requests": 0,
            "snoops": 0,
            "errors": 0,
            "stale": 0,
            "back_invalidations": 0,
            "unexpected": 0,
        }

    # -- directory ----------------------------------------------------------------------------

    def _set_index(self, line: int) -> int:
        return ((line - self.window.base) // LINE_BYTES) % self.params.dir_sets

    def entry(self, line: int) -> _DirEntry | None:
        for e in self.sets[self._set_index(line)]:
            if e is not None and e.line == line:
                return e
        return None

    def _free(self, line: int) -> None:
        ways = self.sets[self._set_index(line)]
        for i, e in enumerate(ways):
            if e is not None and e.line == line:
                ways[i] = None

    def _busy(self, line: int) -> bool:
        return any(t[2] == line for t in self.table)

    def directory(self) -> dict[int, tuple[str, frozenset[int]]]:
        """Every cached line: ``{line: (state, holders)}``."""
        return {e.line: (e.state, frozenset(e.holders())) for ways in self.sets for e in ways if e}

    @property
    def idle(self) -> bool:
        return not self.queue and not self.table and self.snooping is None

    # -- messages -----------------------------------------------------------------------------

    def _reply(
        self, opcode: Opcode, req: MsgHeader, *, data: bytes = b"", be: int | None = None, **kw
    ) -> Message:
        h = header(opcode, src=self.node, dst=req.src, tag=req.tag, addr=req.addr, **kw)
        return Message(header=h, data=data, byte_enable=be)

    def _error(self, req: MsgHeader, err: ErrorCode) -> Message:
        self.counters["errors"] += 1
        poison = 1 if err is ErrorCode.POISON else 0
        return self._reply(Opcode.ERROR, req, err=err, poison=poison)

    def _snoop(self, opcode: Opcode, dst: int, req: MsgHeader | None, line: int) -> Message:
        self.counters["snoops"] += 1
        tag = req.tag if req is not None else 0
        fwd = req.src if req is not None else self.node
        h = header(opcode, src=self.node, dst=dst, tag=tag, fwd=fwd, addr=line)
        return Message(header=h)

    def receive(self, msg: Message) -> list[Message]:
        """Take one message; return what the home sends because of it."""
        h = msg.header
        cls = opcode_class(h.opcode)
        out: list[Message] = []
        if cls is MsgClass.REQ and h.cls is MsgClass.REQ:
            self.queue.append(msg)
        elif h.opcode is Opcode.COMP_ACK:
            key = (h.src, h.tag, line_of(h.addr))
            if key in self.table:
                self.table.discard(key)
            else:
                self.counters["unexpected"] += 1
        elif h.opcode in (Opcode.SNP_RESP_I, Opcode.SNP_RESP_S, Opcode.SNP_RESP_DATA):
            out += self._snoop_response(msg)
        elif h.cls is MsgClass.REQ:  # an unknown or misplaced opcode on the request channel
            self.queue.append(msg)
        else:
            self.counters["unexpected"] += 1
        out += self._advance()
        return out

    def _snoop_response(self, msg: Message) -> list[Message]:
        h = msg.header
        s = self.snooping
        if s is None or line_of(h.addr) != s.line or s.pending == 0:
            self.counters["unexpected"] += 1
            return []
        if h.opcode is Opcode.SNP_RESP_DATA:
            self._write_line(s.line, msg.data, FULL_LINE)
        if h.opcode is Opcode.SNP_RESP_S or (
            h.opcode is Opcode.SNP_RESP_DATA and h.state is CacheState.S
        ):
            s.answered_shared.add(h.src)
        s.pending -= 1
        if s.pending:
            return []
        self.snooping = None
        self._answered = s.answered_shared
        return s.on_done() if s.on_done else []

    # -- memory -------------------------------------------------------------------------------

    def _offset(self, addr: int) -> int:
        return addr - self.window.base

    def _read_line(self, line: int) -> bytes | None:
        if line in self.poisoned:
            return None
        o = self._offset(line)
        return bytes(self.memory[o : o + LINE_BYTES])

    def _write_line(self, line: int, data: bytes, be: int) -> None:
        o = self._offset(line)
        for i in range(LINE_BYTES):
            if be >> i & 1:
                self.memory[o + i] = data[i]

    # -- the engine ---------------------------------------------------------------------------

    def _check(self, h: MsgHeader) -> ErrorCode | None:
        op = h.opcode
        if opcode_class(op) is not MsgClass.REQ or h.cls is not MsgClass.REQ:
            return ErrorCode.MALFORMED
        if h.addr not in self.window:
            return ErrorCode.WINDOW
        if op in LINE_ALIGNED and h.addr % LINE_BYTES:
            return ErrorCode.MALFORMED
        if op is Opcode.NC_READ and (h.size > 6 or h.addr % (1 << h.size)):
            return ErrorCode.MALFORMED
        if op in ATOMIC_OPCODES:
            if h.size > 3:
                return ErrorCode.UNSUPPORTED
            if h.addr % (1 << h.size):
                return ErrorCode.MALFORMED
        if op in COHERENT_OPCODES and h.src >= self.params.max_sharers:
            return ErrorCode.UNSUPPORTED
        return None

    def _advance(self) -> list[Message]:
        out: list[Message] = []
        while self.snooping is None and self.queue:
            msg = self.queue[0]
            h = msg.header
            err = self._check(h)
            if err is not None:
                self.queue.popleft()
                self.counters["requests"] += 1
                out.append(self._error(h, err))
                continue
            line = line_of(h.addr)
            if self._busy(line):
                break  # waits, in order, for the line's transaction to close
            if h.opcode in COHERENT_READS and len(self.table) >= self.params.table_entries:
                break  # table full: back-pressure
            if h.opcode in COHERENT_READS and self.entry(line) is None:
                victim = self._need_victim(line)
                if victim is False:
                    break  # every way busy: wait
                if victim is not None:
                    out += self._back_invalidate(victim)
                    continue
            self.queue.popleft()
            self.counters["requests"] += 1
            if h.opcode in COHERENT_READS:
                # Recorded before any snoop goes out: the requester's COMP_ACK may overtake the
                # snoop responses (it follows FWD_DATA, which the owner sends first).
                self.table.add((h.src, h.tag, line))
            out += self._start(msg)
        return out

    def _need_victim(self, line: int) -> _DirEntry | bool | None:
        """None if the set has a free way, an entry to evict, or False if all ways are busy."""
        si = self._set_index(line)
        ways = self.sets[si]
        if any(e is None for e in ways):
            return None
        n = len(ways)
        for k in range(n):
            i = (self._victim_rr[si] + k) % n
            e = ways[i]
            assert e is not None
            if not self._busy(e.line):
                self._victim_rr[si] = (i + 1) % n
                return e
        return False

    def _back_invalidate(self, victim: _DirEntry) -> list[Message]:
        self.counters["back_invalidations"] += 1
        holders = sorted(victim.holders())
        self._free(victim.line)
        if not holders:
            return []
        self.snooping = _Snooping(request=None, line=victim.line, pending=len(holders))
        return [self._snoop(Opcode.SNP_INV, n, None, victim.line) for n in holders]

    def _allocate(self, line: int, state: str, *, sharers=(), owner=None) -> None:
        e = self.entry(line)
        if e is None:
            ways = self.sets[self._set_index(line)]
            i = ways.index(None)
            e = ways[i] = _DirEntry(line=line, state=state)
        e.state, e.sharers, e.owner = state, set(sharers), owner

    def _start(self, msg: Message) -> list[Message]:
        h = msg.header
        op = h.opcode
        line = line_of(h.addr)
        e = self.entry(line)
        r = h.src
        if op in (Opcode.WRITE_BACK, Opcode.CLEAN_EVICT):
            if e is not None and e.state == "EM" and e.owner == r:
                if op is Opcode.WRITE_BACK:
                    self._write_line(line, msg.data, FULL_LINE)
                self._free(line)
            elif op is Opcode.CLEAN_EVICT and e is not None and e.state == "S" and r in e.sharers:
                e.sharers.discard(r)
                if not e.sharers:
                    self._free(line)
            else:
                self.counters["stale"] += 1
            return [self._reply(Opcode.COMP, h)]
        if op is Opcode.UPGRADE and e is not None and e.state == "S" and r in e.sharers:
            others = sorted(e.sharers - {r})
            return self._after_snoops(
                msg, [(Opcode.SNP_INV, n) for n in others], lambda: self._grant_upgrade(msg)
            )
        if op in (Opcode.UPGRADE, Opcode.READ_UNIQUE):
            if e is None:
                return self._grant_from_memory(msg, CacheState.E)
            if e.state == "S":
                others = sorted(e.sharers - {r})
                return self._after_snoops(
                    msg,
                    [(Opcode.SNP_INV, n) for n in others],
                    lambda: self._grant_from_memory(msg, CacheState.E),
                )
            if e.owner == r:
                raise ProtocolError(f"node {r} asks for {line:#x}, which it already owns")
            owner = e.owner
            return self._after_snoops(
                msg, [(Opcode.SNP_UNIQUE, owner)], lambda: self._forwarded(msg, "EM")
            )
        if op is Opcode.READ_SHARED:
            if e is None:
                return self._grant_from_memory(msg, CacheState.E)
            if e.state == "S":
                return self._grant_from_memory(msg, CacheState.S)
            if e.owner == r:
                raise ProtocolError(f"node {r} asks for {line:#x}, which it already owns")
            return self._after_snoops(
                msg, [(Opcode.SNP_SHARED, e.owner)], lambda: self._forwarded(msg, "S")
            )
        # NC_READ, NC_WRITE, atomics: executed on memory once the line is uncached enough.
        if e is None:
            targets: list[int] = []
        elif op is Opcode.NC_READ:
            targets = [e.owner] if e.state == "EM" else []
        else:
            targets = sorted(e.holders())
        return self._after_snoops(
            msg, [(Opcode.SNP_INV, n) for n in targets], lambda: self._execute(msg, bool(targets))
        )

    def _after_snoops(
        self, msg: Message, snoops: list[tuple[Opcode, int]], then: Callable[[], list[Message]]
    ) -> list[Message]:
        if not snoops:
            return then()
        line = line_of(msg.header.addr)
        self.snooping = _Snooping(request=msg, line=line, pending=len(snoops), on_done=then)
        # The line is busy while its snoops are out: mark it in the table under a private key.
        return [self._snoop(op, n, msg.header, line) for op, n in snoops]

    def _grant_from_memory(self, msg: Message, state: CacheState) -> list[Message]:
        h = msg.header
        line = line_of(h.addr)
        data = self._read_line(line)
        if data is None:
            e = self.entry(line)
            if e is not None and e.state == "S" and state is CacheState.E:
                self._free(line)  # the sharers were invalidated for this request
            self.table.discard((h.src, h.tag, line))
            return [self._error(h, ErrorCode.POISON)]
        if state is CacheState.S:
            e = self.entry(line)
            assert e is not None
            e.sharers.add(h.src)
        else:
            self._allocate(line, "EM", owner=h.src)
        return [self._reply(Opcode.COMP_DATA, h, data=data, state=state)]

    def _grant_upgrade(self, msg: Message) -> list[Message]:
        h = msg.header
        line = line_of(h.addr)
        self._allocate(line, "EM", owner=h.src)
        return [self._reply(Opcode.COMP, h, state=CacheState.E)]

    def _forwarded(self, msg: Message, state: str) -> list[Message]:
        h = msg.header
        line = line_of(h.addr)
        if state == "S":
            self._allocate(line, "S", sharers={h.src} | self._answered)
        else:
            self._allocate(line, "EM", owner=h.src)
        return []

    def _execute(self, msg: Message, snooped: bool) -> list[Message]:
        h = msg.header
        op = h.opcode
        line = line_of(h.addr)
        e = self.entry(line)
        if e is not None and (op is not Opcode.NC_READ or e.state == "EM"):
            self._free(line)
        if op is Opcode.NC_WRITE:
            self._write_line(line, msg.data, msg.byte_enable)
            if self.on_perform:
                self.on_perform("write", line, msg.data, msg.byte_enable)
            return [self._reply(Opcode.COMP, h)]
        data = self._read_line(line)
        if data is None:
            return [self._error(h, ErrorCode.POISON)]
        offset = h.addr - line
        if op is Opcode.NC_READ:
            be = _mask_bytes(offset, 1 << h.size)
            if self.on_perform:
                self.on_perform("read", line, data, be)
            return [self._reply(Opcode.COMP_DATA, h, data=data, be=be)]
        nbytes = 1 << h.size
        old = int.from_bytes(data[offset : offset + nbytes], "little")
        operand = int.from_bytes(msg.data[0:nbytes], "little")
        compare = int.from_bytes(msg.data[8 : 8 + nbytes], "little")
        new = atomic_result(op, old, operand, compare, h.size)
        self._write_line(
            line,
            bytes(offset) + new.to_bytes(nbytes, "little") + bytes(LINE_BYTES - offset - nbytes),
            _mask_bytes(offset, nbytes),
        )
        if self.on_perform:
            self.on_perform("atomic", h.addr, old.to_bytes(nbytes, "little"), new)
        beat = len(msg.data)
        result = old.to_bytes(8, "little") + bytes(beat - 8)
        return [self._reply(Opcode.ATOMIC_DATA, h, data=result, be=(1 << nbytes) - 1, size=h.size)]


# --------------------------------------------------------------------------------------------
# Caching agent


@dataclass
class CoreOp:
    """One access by a core: ``kind`` is ``"load"``, ``"store"`` or ``"atomic"``.

    ``size`` is log2 of the bytes accessed (loads/stores 0..4 within one 16-byte beat; atomics
    0..3). ``value`` is the store data or the atomic operand, ``compare`` the CAS compare
    value. ``result`` (load value, atomic old value) and ``error`` are filled on completion.
    """

    kind: str
    addr: int
    size: int = 3
    value: int = 0
    atomic: Opcode | None = None
    compare: int = 0
    ident: int = 0
    result: int | None = None
    error: ErrorCode | None = None
    issued_at: int = 0
    done_at: int | None = None


@dataclass
class _Way:
    line: int | None = None
    state: CacheState = CacheState.I
    data: bytearray = field(default_factory=lambda: bytearray(LINE_BYTES))
    reserved: bool = False  # a miss will fill this way


@dataclass
class _Mshr:
    tag: int
    op: CoreOp
    opcode: Opcode
    line: int
    set_index: int = 0
    way: int | None = None


@dataclass
class _Eviction:
    data: bytes
    dirty: bool


EVICT_TAG_BASE = 0x80


class CacheModel:
    """A caching agent (``docs/coherence.md`` section 3), core ops in, messages out.

    ``cache=None`` makes every access non-coherent. ``on_perform(kind, addr, nbytes, value)``
    is called when a cached load or store takes effect (kind ``"read"``/``"write"``);
    ``on_state(node, line, state)`` on every change of a line's MESI state.
    """

    def __init__(
        self,
        *,
        node_id: int,
        cache: CacheParams | None,
        mshrs: int = 4,
        cacheable: Callable[[int], bool] = lambda addr: True,
        beat_bytes: int = 16,
        on_perform: Callable[..., None] | None = None,
        on_state: Callable[[int, int, CacheState], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.node = node_id
        self.params = cache
        self.mshrs = mshrs
        self._cacheable = cacheable
        self.beat_bytes = beat_bytes
        self.on_perform = on_perform
        self.on_state = on_state
        self.rng = rng or random.Random(0)
        sets = cache.sets if cache else 1
        ways = cache.ways if cache else 0
        self.sets = [[_Way() for _ in range(ways)] for _ in range(sets)]
        self.mshr: dict[int, _Mshr] = {}
        self.evicting: dict[int, _Eviction] = {}
        self._evict_tags: dict[int, int] = {}  # eviction tag -> line
        self.completed: list[CoreOp] = []
        self.counters = {
            "hits": 0,
            "misses": 0,
            "write_backs": 0,
            "snoops": 0,
            "errors": 0,
            # races of docs/coherence.md section 3.3, counted so tests can show they happen
            "upgrade_lost": 0,
            "snoop_in_eviction": 0,
            "forwarded": 0,
        }

    # -- lookup -------------------------------------------------------------------------------

    def cacheable(self, addr: int) -> bool:
        return self.params is not None and self._cacheable(addr)

    def _set_index(self, line: int) -> int:
        return (line // LINE_BYTES) % len(self.sets)

    def _find(self, line: int) -> _Way | None:
        for w in self.sets[self._set_index(line)]:
            if w.line == line and w.state is not CacheState.I:
                return w
        return None

    def state(self, line: int) -> CacheState:
        w = self._find(line)
        return w.state if w else CacheState.I

    def lines(self) -> dict[int, CacheState]:
        return {w.line: w.state for s in self.sets for w in s if w.state is not CacheState.I}

    def _set_state(self, w: _Way, state: CacheState) -> None:
        if w.state is not state:
            w.state = state
            if self.on_state and w.line is not None:
                self.on_state(self.node, w.line, state)

    @property
    def idle(self) -> bool:
        return not self.mshr and not self.evicting

    # -- core side ----------------------------------------------------------------------------

    def _free_tag(self) -> int | None:
        for t in range(self.mshrs):
            if t not in self.mshr:
                return t
        return None

    def _line_pending(self, line: int) -> bool:
        return line in self.evicting or any(m.line == line for m in self.mshr.values())

    def issue(self, op: CoreOp) -> list[Message] | None:
        """Start ``op``; the messages it sends, or ``None`` if it cannot start now (no free
        MSHR, or its line has a miss or an eviction outstanding): try again later."""
        line = line_of(op.addr)
        if self._line_pending(line):
            return None
        if op.kind != "atomic" and self.cacheable(op.addr):
            w = self._find(line)
            if w is not None and (op.kind == "load" or w.state in (CacheState.E, CacheState.M)):
                self.counters["hits"] += 1
                self._perform(op, w)
                return []
        tag = self._free_tag()
        if tag is None:
            return None
        out: list[Message] = []
        if op.kind == "atomic":
            opcode = op.atomic
            assert opcode in ATOMIC_OPCODES
            n = 1 << op.size
            beat = op.value.to_bytes(8, "little")[:n] + bytes(8 - n)
            beat += op.compare.to_bytes(8, "little")[:n] + bytes(8 - n)
            beat += bytes(self.beat_bytes - 16)
            be = (1 << n) - 1 | (((1 << n) - 1) << 8 if opcode is Opcode.ATOMIC_CAS else 0)
            h = header(opcode, src=self.node, tag=tag, addr=op.addr, size=op.size)
            msg = Message(header=h, data=beat, byte_enable=be)
        elif not self.cacheable(op.addr):
            offset = op.addr - line
            n = 1 << op.size
            if op.kind == "load":
                opcode = Opcode.NC_READ
                msg = Message(
                    header=header(opcode, src=self.node, tag=tag, addr=op.addr, size=op.size)
                )
            else:
                opcode = Opcode.NC_WRITE
                data = bytes(offset) + op.value.to_bytes(n, "little") + bytes(64 - offset - n)
                msg = Message(
                    header=header(opcode, src=self.node, tag=tag, addr=line),
                    data=data,
                    byte_enable=_mask_bytes(offset, n),
                )
        else:
            w = self._find(line)
            si = self._set_index(line)
            if w is not None:  # store to S
                opcode = Opcode.UPGRADE
                way = self.sets[si].index(w)
            else:
                way = self._reserve_way(si, out)
                if way is None:
                    return None
                opcode = Opcode.READ_SHARED if op.kind == "load" else Opcode.READ_UNIQUE
            self.sets[si][way].reserved = True
            self.counters["misses"] += 1
            msg = Message(header=header(opcode, src=self.node, tag=tag, addr=line))
            self.mshr[tag] = _Mshr(tag=tag, op=op, opcode=opcode, line=line, set_index=si, way=way)
            return [*out, msg]
        self.mshr[tag] = _Mshr(tag=tag, op=op, opcode=opcode, line=line)
        return [*out, msg]

    def _reserve_way(self, si: int, out: list[Message]) -> int | None:
        ways = self.sets[si]
        free = [i for i, w in enumerate(ways) if w.state is CacheState.I and not w.reserved]
        if free:
            return free[0]
        victims = [i for i, w in enumerate(ways) if not w.reserved]
        if not victims:
            return None
        i = self.rng.choice(victims)
        w = ways[i]
        assert w.line is not None
        dirty = w.state is CacheState.M
        self.evicting[w.line] = _Eviction(data=bytes(w.data), dirty=dirty)
        tag = EVICT_TAG_BASE + len(self._evict_tags) % 0x7F
        while tag in self._evict_tags:
            tag = EVICT_TAG_BASE + (tag + 1 - EVICT_TAG_BASE) % 0x7F
        self._evict_tags[tag] = w.line
        opcode = Opcode.WRITE_BACK if dirty else Opcode.CLEAN_EVICT
        h = header(opcode, src=self.node, tag=tag, addr=w.line)
        out.append(Message(header=h, data=bytes(w.data) if dirty else b""))
        if dirty:
            self.counters["write_backs"] += 1
        self._set_state(w, CacheState.I)
        return i

    def _perform(self, op: CoreOp, w: _Way) -> None:
        offset = op.addr - line_of(op.addr)
        n = 1 << op.size
        if op.kind == "load":
            op.result = int.from_bytes(w.data[offset : offset + n], "little")
            if self.on_perform:
                self.on_perform("read", op.addr, n, op.result)
        else:
            w.data[offset : offset + n] = op.value.to_bytes(n, "little")
            self._set_state(w, CacheState.M)
            if self.on_perform:
                self.on_perform("write", op.addr, n, op.value)
        self.completed.append(op)

    # -- fabric side --------------------------------------------------------------------------

    def receive(self, msg: Message) -> list[Message]:
        h = msg.header
        if h.cls is MsgClass.SNP:
            return self._snoop(msg)
        if h.tag >= EVICT_TAG_BASE:
            line = self._evict_tags.pop(h.tag, None)
            if line is None or h.opcode not in (Opcode.COMP, Opcode.ERROR):
                raise ProtocolError(f"node {self.node}: unexpected {h.opcode.name} tag {h.tag}")
            del self.evicting[line]
            return []
        m = self.mshr.pop(h.tag, None)
        if m is None:
            raise ProtocolError(f"node {self.node}: {h.opcode.name} for no MSHR (tag {h.tag})")
        op = m.op
        if h.opcode is Opcode.ERROR:
            op.error = h.err
            self.counters["errors"] += 1
            if m.way is not None:
                w = self.sets[m.set_index][m.way]
                w.reserved = False
                if m.opcode is Opcode.UPGRADE:
                    self._set_state(w, CacheState.I)
            self.completed.append(op)
            return []
        if m.opcode in COHERENT_READS:
            return self._fill(m, msg)
        if h.opcode is Opcode.ATOMIC_DATA:
            op.result = int.from_bytes(msg.data[: 1 << op.size], "little")
        elif h.opcode is Opcode.COMP_DATA:  # NC_READ
            offset = op.addr - m.line
            op.result = int.from_bytes(msg.data[offset : offset + (1 << op.size)], "little")
        elif h.opcode is not Opcode.COMP:
            raise ProtocolError(f"node {self.node}: {h.opcode.name} answers {m.opcode.name}")
        self.completed.append(op)
        return []

    def _fill(self, m: _Mshr, msg: Message) -> list[Message]:
        h = msg.header
        assert m.way is not None
        w = self.sets[m.set_index][m.way]
        w.reserved = False
        if h.opcode is Opcode.COMP:
            if m.opcode is not Opcode.UPGRADE or w.line != m.line or w.state is CacheState.I:
                raise ProtocolError(f"node {self.node}: COMP for {m.line:#x} without a copy")
            state = CacheState.E
        elif h.opcode in (Opcode.COMP_DATA, Opcode.FWD_DATA):
            if m.opcode is Opcode.UPGRADE:
                self.counters["upgrade_lost"] += 1
            w.line = m.line
            w.data[:] = msg.data
            state = h.state
        else:
            raise ProtocolError(f"node {self.node}: {h.opcode.name} answers {m.opcode.name}")
        if m.op.kind == "store" and state not in (CacheState.E, CacheState.M):
            raise ProtocolError(f"node {self.node}: store miss granted {state.name}")
        w.line = m.line
        self._set_state(w, state)
        self._perform(m.op, w)
        home = h.fwd if h.opcode is Opcode.FWD_DATA else h.src
        ack = header(Opcode.COMP_ACK, src=self.node, dst=home, tag=h.tag, addr=m.line)
        return [Message(header=ack)]

    def _snoop(self, msg: Message) -> list[Message]:
        h = msg.header
        self.counters["snoops"] += 1
        line = line_of(h.addr)
        home = h.src

        def rsp(opcode: Opcode, **kw) -> Message:
            data = kw.pop("data", b"")
            return Message(
                header=header(opcode, src=self.node, dst=home, tag=h.tag, addr=line, **kw),
                data=data,
            )

        def fwd(state: CacheState, data: bytes) -> Message:
            self.counters["forwarded"] += 1
            return Message(
                header=header(
                    Opcode.FWD_DATA,
                    src=self.node,
                    dst=h.fwd,
                    tag=h.tag,
                    fwd=home,
                    addr=line,
                    state=state,
                ),
                data=bytes(data),
            )

        w = self._find(line)
        ev = self.evicting.get(line)
        if w is None and ev is not None:
            self.counters["snoop_in_eviction"] += 1
        if h.opcode is Opcode.SNP_INV:
            if w is not None:
                dirty = w.state is CacheState.M
                self._set_state(w, CacheState.I)
                if dirty:
                    return [rsp(Opcode.SNP_RESP_DATA, state=CacheState.I, data=bytes(w.data))]
                return [rsp(Opcode.SNP_RESP_I)]
            if ev is not None and ev.dirty:
                ev.dirty = False
                return [rsp(Opcode.SNP_RESP_DATA, state=CacheState.I, data=ev.data)]
            return [rsp(Opcode.SNP_RESP_I)]
        if h.opcode not in (Opcode.SNP_SHARED, Opcode.SNP_UNIQUE):
            raise ProtocolError(f"node {self.node}: unknown snoop {h.opcode.name}")
        if w is not None and w.state in (CacheState.E, CacheState.M):
            dirty = w.state is CacheState.M
            if h.opcode is Opcode.SNP_SHARED:
                self._set_state(w, CacheState.S)
                if dirty:
                    return [
                        fwd(CacheState.S, w.data),
                        rsp(Opcode.SNP_RESP_DATA, state=CacheState.S, data=bytes(w.data)),
                    ]
                return [fwd(CacheState.S, w.data), rsp(Opcode.SNP_RESP_S)]
            self._set_state(w, CacheState.I)
            state = CacheState.M if dirty else CacheState.E
            return [fwd(state, w.data), rsp(Opcode.SNP_RESP_I)]
        if ev is not None:
            dirty = ev.dirty
            ev.dirty = False
            if h.opcode is Opcode.SNP_SHARED:
                out = [fwd(CacheState.S, ev.data)]
                if dirty:
                    out.append(rsp(Opcode.SNP_RESP_DATA, state=CacheState.I, data=ev.data))
                else:
                    out.append(rsp(Opcode.SNP_RESP_I))
                return out
            state = CacheState.M if dirty else CacheState.E
            return [fwd(state, ev.data), rsp(Opcode.SNP_RESP_I)]
        raise ProtocolError(
            f"node {self.node}: {h.opcode.name} for {line:#x}, which it does not own"
        )


# --------------------------------------------------------------------------------------------
# Network


class Network:
    """FIFO channels per (source, destination, class), delivered in seeded random order.

    ``home_of(addr)`` is the switch's address decode: requests get their ``dst`` from it.
    """

    def __init__(self, *, home_of: Callable[[int], int], rng: random.Random) -> None:
        self.home_of = home_of
        self.rng = rng
        self.channels: dict[tuple[int, int, MsgClass], deque[Message]] = {}
        self._ready: list[tuple[int, int, MsgClass]] = []
        self.delivered = 0

    def send(self, src: int, msg: Message) -> None:
        h = msg.header
        if h.cls is MsgClass.REQ:
            msg = replace(msg, header=replace(h, dst=self.home_of(h.addr)))
        key = (src, msg.header.dst, msg.header.cls)
        q = self.channels.get(key)
        if q is None:
            q = self.channels[key] = deque()
        if not q:
            self._ready.append(key)
        q.append(msg)

    @property
    def empty(self) -> bool:
        return not self._ready

    def deliver_one(self) -> Message | None:
        """Take the head message of a random non-empty channel."""
        if not self._ready:
            return None
        i = self.rng.randrange(len(self._ready))
        key = self._ready[i]
        q = self.channels[key]
        msg = q.popleft()
        if not q:
            self._ready[i] = self._ready[-1]
            self._ready.pop()
        self.delivered += 1
        return msg
