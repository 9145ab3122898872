"""Per-virtual-channel credit flow control.

The transmitter holds one :class:`CreditCounter` per VC: how many flits the peer's receive
buffer for that VC can still take. The receiver holds one :class:`CreditReturn` per VC: how
many flits have left its buffer and not yet been reported back. Returns ride in sequenced,
replayed link flits, so a lost flit never loses a credit.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CreditCounter", "CreditReturn"]


class CreditCounter(wiring.Component):
    """Credits the transmitter holds for one VC of the peer's receive buffer.

    Ports
    -----
    fill : In(1)
        Link (re)start: set the count to ``depth`` (the peer's buffer is empty).
    consume : In(1)
        A flit was sent on this VC. Must only be asserted while ``available``.
    give : In(range(max_give + 1))
        Credits returned by the peer this cycle (only while ``give_valid``).
    give_valid : In(1, init=1)
        ``give`` counts this cycle; left unconnected, always. Separate from ``give`` so that
        a late "the peer's flit was accepted" only picks between outcomes computed with and
        without ``give``, after the adder and the buffer checks.
    available : Out(1)
        At least one credit is held.
    count : Out(range(depth + 1))
        Credits held.
    overflow : Out(1)
        Sticky: the peer returned more credits than its buffer holds (a protocol error).
    """

    def __init__(self, *, depth: int, max_give: int):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth!r}")
        if max_give < 1:
            raise ValueError(f"max_give must be at least 1, not {max_give!r}")
        self.depth = depth
        super().__init__(
            {
                "fill": In(1),
                "consume": In(1),
                "give": In(range(max_give + 1)),
                "give_valid": In(1, init=1),
                "available": Out(1),
                "count": Out(range(depth + 1)),
                "overflow": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        # `consume` comes late (after the transmitter's arbiter), `give` early: both outcomes
        # (count + give, with and without the consumed credit) are computed and checked against
        # the buffer first, and `consume` only chooses between them.
        # `give_valid` comes late too (the receiver's verdict on the peer's flit): it picks
        # between the sums and checks with `give` and those without.
        gained = Signal(range(self.depth + 1 + (1 << len(self.give))))
        spent = Signal.like(gained)  # `gained` less the consumed credit
        over = Signal()  # count + give exceeds the buffer
        over_consumed = Signal()  # count + give - 1 exceeds it (`consume` needs a credit)
        m.d.comb += [
            self.available.eq(self.count != 0),
            gained.eq(Mux(self.give_valid, self.count + self.give, self.count)),
            spent.eq(Mux(self.give_valid, self.count + self.give - 1, self.count - 1)),
            over.eq(
                Mux(self.give_valid, self.count + self.give > self.depth, self.count > self.depth)
            ),
            over_consumed.eq(
                Mux(
                    self.give_valid,
                    self.count + self.give > self.depth + 1,
                    self.count > self.depth + 1,
                )
            ),
        ]
        with m.If(self.fill):
            m.d.sync += self.count.eq(self.depth)
        with m.Elif(Mux(self.consume, over_consumed, over)):
            m.d.sync += [self.count.eq(self.depth), self.overflow.eq(1)]
        with m.Elif(self.consume):
            m.d.sync += self.count.eq(spent)
        with m.Else():
            m.d.sync += self.count.eq(gained)
        return m


class CreditReturn(wiring.Component):
    """Credits the receiver owes the peer for one VC.

    Ports
    -----
    clear : In(1)
        Link (re)start: nothing is owed.
    pop : In(1)
        A flit left the receive buffer.
    take : In(1)
        ``pending`` credits were placed in an outgoing sequenced flit this cycle.
    pending : Out(field_bits)
        Credits to place in the next sequenced flit (at most the field's maximum).
    nonzero : Out(1)
        Something is owed.
    """

    def __init__(self, *, depth: int, field_bits: int):
        self.depth = depth
        self.field_max = (1 << field_bits) - 1
        super().__init__(
            {
                "clear": In(1),
                "pop": In(1),
                "take": In(1),
                "pending": Out(field_bits),
                "nonzero": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        owed = Signal(range(self.depth + 1))
        m.d.comb += [
            self.pending.eq(Mux(owed > self.field_max, self.field_max, owed)),
            self.nonzero.eq(owed != 0),
        ]
        # `pop` comes late (the receive buffer's reader, through the port adapter's arbiter):
        # both outcomes are computed beforehand and `pop` only chooses between them, instead
        # of entering an adder (a carry chain on the ECP5) after the subtraction.
        kept = Signal.like(owed)  # owed after this cycle's take, nothing popped
        kept_popped = Signal.like(owed)  # the same with one flit popped
        m.d.comb += [
            kept.eq(owed - Mux(self.take, self.pending, 0)),
            kept_popped.eq(owed - Mux(self.take, self.pending, 0) + 1),
        ]
        with m.If(self.clear):
            m.d.sync += owed.eq(0)
        with m.Else():
            m.d.sync += owed.eq(Mux(self.pop, kept_popped, kept))
        return m
