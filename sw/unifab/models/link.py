"""Golden models of the link-layer blocks (:mod:`unifab.hdl.link`, :mod:`unifab.hdl.lib`).

Each model is deliberately small and written from the block's documented contract, not from
its RTL: the unit tests in ``tests/test_link_units.py`` run model and RTL side by side.

* :class:`CreditCounterModel`, :class:`CreditReturnModel`, :class:`ReplayBufferModel`,
  :class:`RoundRobinModel` are cycle level: read the outputs of the current cycle, then call
  ``step`` with the inputs of the cycle (the clock edge).
* :class:`LinkRxModel` is flit level: :meth:`LinkRxModel.receive` takes the link flit the
  receiver checks in one cycle and says what happens to it.
"""

from dataclasses import dataclass, field
from functools import cache

from amaranth.lib import data

from unifab.crc import crc32c_bits
from unifab.flit import FabricParams, LinkKind, link_flit_layout

__all__ = [
    "CreditCounterModel",
    "CreditReturnModel",
    "LinkFields",
    "LinkRxModel",
    "ReplayBufferModel",
    "RoundRobinModel",
    "RxEvent",
    "decode_link_flit",
    "encode_link_flit",
    "link_crc_ok",
]


# --------------------------------------------------------------------------------------------
# Credits


class CreditCounterModel:
    """Transmitter credits for one VC: ``fill`` to ``depth``, ``-consume``, ``+give``.

    A count that would exceed ``depth`` saturates at ``depth`` and sets the sticky
    ``overflow`` flag. ``consume`` is only legal while ``available``.
    """

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.count = 0
        self.overflow = False

    @property
    def available(self) -> bool:
        return self.count > 0

    def step(self, *, fill: bool = False, consume: bool = False, give: int = 0) -> None:
        """One clock edge."""
        if fill:
            self.count = self.depth
            return
        assert not consume or self.available, "consume without a credit"
        nxt = self.count + give - int(consume)
        if nxt > self.depth:
            self.count = self.depth
            self.overflow = True
        else:
            self.count = nxt


class CreditReturnModel:
    """Receiver credits owed to the peer for one VC; at most ``2**field_bits - 1`` per flit."""

    def __init__(self, depth: int, field_bits: int) -> None:
        self.depth = depth
        self.field_max = (1 << field_bits) - 1
        self.owed = 0

    @property
    def pending(self) -> int:
        return min(self.owed, self.field_max)

    @property
    def nonzero(self) -> bool:
        return self.owed != 0

    def step(self, *, clear: bool = False, pop: bool = False, take: bool = False) -> None:
        """One clock edge."""
        if clear:
            self.owed = 0
            return
        self.owed += int(pop) - (self.pending if take else 0)
        assert 0 <= self.owed <= self.depth, "more credits owed than the buffer holds"


# --------------------------------------------------------------------------------------------
# Replay buffer


class ReplayBufferModel:
    """Go-back-N replay buffer over sequence numbers modulo ``2**seq_bits``.

    ``head`` is the oldest unacknowledged entry, ``send`` the next to send, ``tail`` the number
    the next appended entry gets; ``entries[seq]`` holds the unacknowledged (and unsent)
    contents. Per cycle (:meth:`step`), in this order:

    1. A cumulative ACK ``a`` is *in window* when it frees between 1 and ``unacked`` entries:
       ``1 <= (a + 1 - head) mod M <= unacked``. Stale and out-of-window ACKs are ignored.
    2. ``send`` advances by one if the current entry was read (``rd_next`` while
       ``rd_valid``).
    3. ``rewind``: ``send`` goes back to the new ``head``. Without rewind, an ACK that frees
       entries beyond the advanced ``send`` (sent before an earlier rewind) moves ``send``
       up to the new ``head``.
    4. A write (only while ``wr_ready``, i.e. fewer than ``depth`` unacknowledged entries,
       judged before this cycle's ACK) appends at ``tail``.

    ``restart`` empties the buffer and zeroes the pointers; a write in that cycle is lost.
    """

    def __init__(self, depth: int, seq_bits: int) -> None:
        self.depth = depth
        self.mod = 1 << seq_bits
        self.head = self.send = self.tail = 0
        self.entries: dict[int, int] = {}
        self.acked = False
        self.skipped = False

    def _off(self, seq: int) -> int:
        """Distance from ``head`` to ``seq`` going forward."""
        return (seq - self.head) % self.mod

    @property
    def unacked(self) -> int:
        return self._off(self.tail)

    @property
    def wr_ready(self) -> bool:
        return self.unacked < self.depth

    @property
    def rd_valid(self) -> bool:
        return self.send != self.tail

    @property
    def rd_seq(self) -> int:
        return self.send

    @property
    def rd_data(self) -> int:
        return self.entries[self.send]

    def ack_in_window(self, ack_seq: int) -> bool:
        """Would a cumulative ACK of ``ack_seq`` free at least one entry?"""
        return 1 <= self._off(ack_seq + 1) <= self.unacked

    def step(
        self,
        *,
        restart: bool = False,
        wr_valid: bool = False,
        wr_data: int = 0,
        ack_valid: bool = False,
        ack_seq: int = 0,
        rewind: bool = False,
        rd_next: bool = False,
    ) -> None:
        """One clock edge. ``acked`` then tells whether this cycle's ACK freed anything."""
        self.acked = ack_valid and self.ack_in_window(ack_seq)
        self.skipped = False
        if restart:
            self.head = self.send = self.tail = 0
            self.entries.clear()
            return
        write = wr_valid and self.wr_ready
        sent = (self.send + int(rd_next and self.rd_valid)) % self.mod
        new_head = (ack_seq + 1) % self.mod if self.acked else self.head
        self.skipped = not rewind and self._off(new_head) > self._off(sent)
        if rewind or self.skipped:
            sent = new_head
        while self.head != new_head:
            del self.entries[self.head]
            self.head = (self.head + 1) % self.mod
        self.send = sent
        if write:
            self.entries[self.tail] = wr_data
            self.tail = (self.tail + 1) % self.mod
        assert self._off(self.send) <= self._off(self.tail) <= self.depth


# --------------------------------------------------------------------------------------------
# Round-robin arbiter


class RoundRobinModel:
    """Round robin over ``count`` requesters: the search starts after the last used grant."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.last = count - 1

    def grant(self, requests: int) -> int | None:
        """Index granted for the request bit vector, or ``None`` if nobody asks."""
        for k in range(1, self.count + 1):
            idx = (self.last + k) % self.count
            if requests >> idx & 1:
                return idx
        return None

    def step(self, requests: int, advance: bool) -> None:
        """One clock edge: a used grant (``advance``) moves the priority past it."""
        g = self.grant(requests)
        if advance and g is not None:
            self.last = g


# --------------------------------------------------------------------------------------------
# Link flits


@dataclass(frozen=True)
class LinkFields:
    """A link flit's fields as plain integers (``flit`` is the packed flit_layout bits)."""

    kind: int
    seq: int = 0
    ack: int = 0
    nak: int = 0
    has_flit: int = 0
    vc: int = 0
    flit: int = 0
    credits: tuple[int, ...] = ()
    crc: int = 0


@cache
def _offsets(params: FabricParams) -> dict[str, tuple[int, int]]:
    layout = link_flit_layout(params)
    out = {}
    for name, fld in layout:
        out[name] = (fld.offset, fld.width)
    return out


def decode_link_flit(bits: int, params: FabricParams) -> LinkFields:
    """Split link flit bits into fields (no checks)."""
    offs = _offsets(params)

    def get(name: str) -> int:
        off, width = offs[name]
        return bits >> off & ((1 << width) - 1)

    cred_layout = data.ArrayLayout(params.credit_bits, params.vcs)
    cred = get("credits")
    credits = tuple(cred >> f.offset & ((1 << f.width) - 1) for _, f in cred_layout)
    return LinkFields(
        kind=get("kind"),
        seq=get("seq"),
        ack=get("ack"),
        nak=get("nak"),
        has_flit=get("has_flit"),
        vc=get("vc"),
        flit=get("flit"),
        credits=credits,
        crc=get("crc"),
    )


def encode_link_flit(f: LinkFields, params: FabricParams, *, crc: int | None = None) -> int:
    """Pack fields into link flit bits; the CRC is computed unless ``crc`` is given."""
    offs = _offsets(params)
    credits = f.credits or (0,) * params.vcs
    cred = 0
    for (_, fld), c in zip(data.ArrayLayout(params.credit_bits, params.vcs), credits, strict=True):
        assert 0 <= c < 1 << fld.width, ("credits", c)
        cred |= c << fld.offset
    values = {
        "kind": f.kind,
        "seq": f.seq,
        "ack": f.ack,
        "nak": f.nak,
        "has_flit": f.has_flit,
        "vc": f.vc,
        "flit": f.flit,
        "credits": cred,
    }
    bits = 0
    for name, value in values.items():
        off, width = offs[name]
        assert 0 <= value < 1 << width, (name, value)
        bits |= value << off
    body_width = link_flit_layout(params, with_crc=False).size
    if crc is None:
        crc = crc32c_bits(bits, body_width)
    return bits | crc << offs["crc"][0]


def link_crc_ok(bits: int, params: FabricParams) -> bool:
    """Does the CRC field match the CRC-32C of the other fields?"""
    body_width = link_flit_layout(params, with_crc=False).size
    body = bits & ((1 << body_width) - 1)
    return bits >> body_width == crc32c_bits(body, body_width)


# --------------------------------------------------------------------------------------------
# Link receiver


@dataclass
class RxEvent:
    """What the receiver does with one link flit.

    ``what`` is one of ``"none"`` (no flit), ``"crc"`` (bad CRC or reserved kind),
    ``"init"``, ``"idle"``, ``"accepted"``, ``"gap"``, ``"duplicate"``, ``"overflow"``
    (in order but its VC buffer is full) or ``"ignored"`` (a good SEQ flit while down or
    restarting). ``deliver`` is ``(vc, flit)`` when a flit enters a receive buffer.
    """

    what: str
    nak_req: bool = False
    peer_ack_valid: bool = False
    peer_ack: int = 0
    peer_nak: bool = False
    peer_credits: tuple[int, ...] | None = None
    deliver: tuple[int, int] | None = None
    got_init: bool = False
    got_init_seen: bool = False
    got_other: bool = False


@dataclass
class LinkRxModel:
    """The link receiver's sequence, CRC and NAK rules, and its per-VC buffer occupancy.

    * A flit is *good* when its CRC matches and its kind is IDLE, SEQ or INIT.
    * While up (and not in the restart cycle), a good SEQ flit with the expected sequence
      number is accepted if it carries no flit or its VC buffer has room; accepting moves
      ``expected`` on and re-arms the NAK. One ahead of ``expected`` (within half the
      sequence space) is a gap, one behind a duplicate (dropped).
    * A bad flit while up, a gap, or an in-order flit refused for lack of room *want* a NAK;
      a NAK is requested only once until the next accepted flit.
    * ``ack_out`` is the last accepted sequence number (``expected - 1``).
    * ``start`` makes ``expected`` 0 and re-arms the NAK (after this flit's effects).
    """

    params: FabricParams
    rx_depth: int
    expected: int = 0
    nak_sent: bool = False
    occupancy: list[int] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mod = 1 << self.params.seq_bits
        self.occupancy = [0] * self.params.vcs
        self.counters = dict.fromkeys(
            ("crc_errors", "seq_gaps", "duplicates", "accepted", "overflows"), 0
        )

    @property
    def ack_out(self) -> int:
        return (self.expected - 1) % self.mod

    @property
    def drained(self) -> bool:
        return not any(self.occupancy)

    def pop(self, vc: int) -> None:
        """A flit left the receive buffer of ``vc`` (after this cycle's :meth:`receive`)."""
        assert self.occupancy[vc] > 0, f"pop from empty VC {vc}"
        self.occupancy[vc] -= 1

    def receive(self, bits: int | None, *, up: bool, start: bool = False) -> RxEvent:
        """Check one link flit (``None``: no flit this cycle)."""
        if bits is None:
            ev = RxEvent("none")
        else:
            ev = self._receive(bits, up=up, start=start)
        if start:
            self.expected = 0
            self.nak_sent = False
        return ev

    def receive_all(self, flits: list[int | None]) -> list[RxEvent]:
        """Check a sequence of link flits on an up link, one per cycle, with no pops."""
        return [self.receive(bits, up=True) for bits in flits]

    def _receive(self, bits: int, *, up: bool, start: bool) -> RxEvent:
        f = decode_link_flit(bits, self.params)
        good = link_crc_ok(bits, self.params) and f.kind != 3
        active = up and not start
        if not good:
            self.counters["crc_errors"] += 1
            return RxEvent("crc", nak_req=self._nak(up), got_init_seen=bool(f.seq & 1))
        ev = RxEvent("?", got_init_seen=bool(f.seq & 1))
        if f.kind == LinkKind.INIT.value:
            ev.what, ev.got_init = "init", True
            return ev
        ev.got_other = True
        if active:
            ev.peer_ack_valid, ev.peer_ack, ev.peer_nak = True, f.ack, bool(f.nak)
        if f.kind == LinkKind.IDLE.value:
            ev.what = "idle"
            return ev
        if not active:
            ev.what = "ignored"
            return ev
        ahead = (f.seq - self.expected) % self.mod
        if ahead == 0:
            # A flit for a VC this fabric does not have never finds room.
            full = f.vc >= self.params.vcs or self.occupancy[f.vc] >= self.rx_depth
            if f.has_flit and full:
                self.counters["overflows"] += 1
                ev.what, ev.nak_req = "overflow", self._nak(True)
                return ev
            ev.what = "accepted"
            ev.peer_credits = f.credits
            if f.has_flit:
                ev.deliver = (f.vc, f.flit)
                self.occupancy[f.vc] += 1
            self.expected = (self.expected + 1) % self.mod
            self.nak_sent = False
            self.counters["accepted"] += 1
        elif ahead < self.mod // 2:
            self.counters["seq_gaps"] += 1
            ev.what, ev.nak_req = "gap", self._nak(True)
        else:
            self.counters["duplicates"] += 1
            ev.what = "duplicate"
        return ev

    def _nak(self, want: bool) -> bool:
        if want and not self.nak_sent:
            self.nak_sent = True
            return True
        return False
