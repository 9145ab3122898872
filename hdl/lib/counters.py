"""Statistics counters kept in distributed RAM instead of one register and adder each.

A block with many 32-bit event counters (the switch has 13 per port) spends most of their area
on the counters themselves: 32 flip-flops and a 32-bit adder each, and a wide read multiplexer.
:class:`CounterBank` keeps the totals in a small RAM and gives each counter only a short
*pending* count; a flush pointer visits one counter per cycle and adds its pending count into
its total. A counter is visited every ``count`` cycles, so its pending count never exceeds
``count`` (events are at most one per counter per cycle) and needs ``log2(count + 1)`` bits.
"""

from amaranth import *
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CounterBank"]


class CounterBank(wiring.Component):
    """``count`` event counters of ``width`` bits (wrapping), read one at a time.

    Ports
    -----
    events : In(count)
        Counter ``k`` counts the cycles in which bit ``k`` is set.
    addr : In(range(count))
        Counter to read.
    data : Out(width)
        The counter at ``addr``, one cycle later: every event up to the cycle before ``addr``
        was presented.
    """

    def __init__(self, *, count: int, width: int = 32):
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        self.count, self.width = count, width
        super().__init__(
            {
                "events": In(count),
                "addr": In(range(max(count, 2))),
                "data": Out(width),
            }
        )

    def elaborate(self, platform):
        m = Module()
        n, w = self.count, self.width
        pending = [Signal(range(n + 1), name=f"pending{k}") for k in range(n)]
        flush = Signal(range(max(n, 2)))  # the counter whose pending count is added now
        m.d.sync += flush.eq(Mux(flush == n - 1, 0, flush + 1))

        m.submodules.totals = totals = memory.Memory(shape=unsigned(w), depth=n, init=[])
        update = totals.write_port()
        current = totals.read_port(domain="comb")  # the flushed counter's total
        shown = totals.read_port(domain="comb")  # the read port's
        pending_of = Array(pending)
        flushed = pending_of[flush]
        m.d.comb += [
            current.addr.eq(flush),
            update.addr.eq(flush),
            update.data.eq(current.data + flushed),
            update.en.eq(1),
        ]
        for k in range(n):
            # The flushed counter restarts from this cycle's event; the others accumulate.
            base = Mux(flush == k, 0, pending[k])
            m.d.sync += pending[k].eq(base + self.events[k])

        m.d.comb += shown.addr.eq(self.addr)
        m.d.sync += self.data.eq(shown.data + pending_of[self.addr])
        return m
