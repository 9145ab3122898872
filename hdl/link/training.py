"""Link-up handshake and recovery after a reset of either side.

While down, a side sends INIT flits whose bit 0 says "I have seen your INIT". A down side goes
up when it receives an INIT with that bit set, or — having seen its peer's INIT — any good
IDLE/SEQ flit (the peer went up first). An up side that receives an INIT with the bit clear
knows its peer has reset: it goes down and starts over. A side only goes up with its receive
buffers empty, so credits restart from a known state.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["LinkTraining"]


class LinkTraining(wiring.Component):
    """Link state machine.

    Ports
    -----
    got_init, got_init_seen, got_other : In(1)
        From the receiver: good INIT (and its bit 0), good IDLE/SEQ.
    drained : In(1)
        The receive buffers are empty.
    up : Out(1)
        The link carries sequenced traffic.
    start : Out(1)
        Pulse on going up: transmitter and receiver restart sequencing and credits.
    init_seen : Out(1)
        The peer's INIT has been seen since the last local reset or link drop.
    downs : Out(32)
        Times the link went down after being up (peer resets).
    """

    def __init__(self):
        super().__init__(
            {
                "got_init": In(1),
                "got_init_seen": In(1),
                "got_other": In(1),
                "drained": In(1),
                "up": Out(1),
                "start": Out(1),
                "init_seen": Out(1),
                "downs": Out(32),
            }
        )

    def elaborate(self, platform):
        m = Module()
        with m.If(~self.up):
            with m.If(self.got_init):
                m.d.sync += self.init_seen.eq(1)
            go = Signal()
            m.d.comb += go.eq(
                self.drained
                & ((self.got_init & self.got_init_seen) | (self.init_seen & self.got_other))
            )
            with m.If(go):
                m.d.comb += self.start.eq(1)
                m.d.sync += self.up.eq(1)
        with m.Elif(self.got_init & ~self.got_init_seen):
            m.d.sync += [self.up.eq(0), self.init_seen.eq(1), self.downs.eq(self.downs + 1)]
        return m
