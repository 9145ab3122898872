"""The fabric port: how switches, link layers and agents pass flits to each other.

One flit per cycle on any of ``vcs`` virtual channels, under credit flow control: the sender
starts with as many credits per VC as the receiver has buffer for that VC, spends one per flit
and gets one back for every ``credit`` pulse. There is no ``ready``: a receiver must take
every flit, so both directions can be registered and pipelined freely.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from unifab.flit import FabricParams, flit_layout
from unifab.hdl.lib.arbiter import RoundRobin
from unifab.params import check_flag

__all__ = ["FabricLink", "FabricToStreams", "StreamsToFabric", "credited_fifo"]


def credited_fifo(*, width: int, depth: int, registered: bool) -> SyncFIFO | SyncFIFOBuffered:
    """A FIFO that takes every write while its ``level`` is below ``depth`` (a credited
    buffer), read combinationally or, with ``registered``, from an output register (one cycle
    later). SyncFIFOBuffered keeps depth - 1 entries in RAM and one in its output register,
    and refuses a write while its RAM part is full even if the register is about to take an
    entry: one spare entry makes it take every write while fewer than ``depth`` are held, and
    the caller's ``level < depth`` keeps the spare unused."""
    if registered:
        return SyncFIFOBuffered(width=width, depth=depth + 1)
    return SyncFIFO(width=width, depth=depth)


class FabricLink(wiring.Signature):
    """One direction of a fabric port, from the sender's side.

    Members
    -------
    valid : Out(1)
        A flit is on ``vc``/``flit`` this cycle.
    vc : Out(vc_bits)
        Its virtual channel.
    flit : Out(flit_layout)
        The flit (head, tail, payload).
    credit : In(vcs)
        Receiver → sender: one credit returned for each set bit.
    """

    def __init__(self, fabric: FabricParams):
        self.fabric = fabric
        super().__init__(
            {
                "valid": Out(1),
                "vc": Out(fabric.vc_bits),
                "flit": Out(flit_layout(fabric)),
                "credit": In(fabric.vcs),
            }
        )

    def __eq__(self, other):
        return isinstance(other, FabricLink) and self.fabric == other.fabric

    def __hash__(self):
        return hash(self.fabric)


class FabricToStreams(wiring.Component):
    """Receive side adapter: a fabric port into per-VC valid/ready streams.

    Holds ``depth`` flits per VC and returns a credit each time one leaves. The sender must
    start with ``depth`` credits per VC.

    With ``registered``, each stream's payload comes from a flop (a read register after the
    distributed RAM) instead of straight out of the RAM, so the logic behind the adapter
    starts its paths from a register; a flit then reaches its stream one cycle later (two
    cycles after it arrives instead of one). The credits are returned from a register too
    (one cycle after the flit leaves), so no path runs from the consumer's ``ready`` logic
    to the sender. For board builds, where the receive RAM's read was the start of the
    agents' longest paths.

    Ports
    -----
    port : In(FabricLink)
        Flits arriving under credits.
    streams : Out(stream(Flit)).array(vcs)
        The same flits, one stream per VC.
    overflow : Out(1)
        Sticky: a flit arrived for a full VC buffer, or on a VC number the fabric does not
        have (``vc >= vcs``); that flit is discarded, the ones held are kept — the sender
        broke the credit rule.
    """

    def __init__(self, fabric: FabricParams, *, depth: int, registered: bool = False):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth!r}")
        check_flag("registered", registered)
        self.fabric, self.depth, self.registered = fabric, depth, registered
        super().__init__(
            {
                "port": In(FabricLink(fabric)),
                "streams": Out(stream.Signature(flit_layout(fabric))).array(fabric.vcs),
                "overflow": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        f = self.fabric
        for v in range(f.vcs):
            fifo = credited_fifo(
                width=flit_layout(f).size, depth=self.depth, registered=self.registered
            )
            room = fifo.level < self.depth
            m.submodules[f"vc{v}"] = fifo
            arrive = Signal(name=f"arrive{v}")
            m.d.comb += [
                arrive.eq(self.port.valid & (self.port.vc == v)),
                fifo.w_en.eq(arrive & room),
                fifo.w_data.eq(self.port.flit),
                self.streams[v].valid.eq(fifo.r_rdy),
                self.streams[v].payload.eq(fifo.r_data),
                fifo.r_en.eq(self.streams[v].ready),
            ]
            popped = fifo.r_rdy & self.streams[v].ready
            if self.registered:
                m.d.sync += self.port.credit[v].eq(popped)
            else:
                m.d.comb += self.port.credit[v].eq(popped)
            with m.If(arrive & ~room):
                m.d.sync += self.overflow.eq(1)
        if f.vcs < 1 << len(self.port.vc):
            # No credit exists for such a VC: flag the flit instead of losing it silently.
            with m.If(self.port.valid & (self.port.vc >= f.vcs)):
                m.d.sync += self.overflow.eq(1)
        return m


class StreamsToFabric(wiring.Component):
    """Send side adapter: per-VC valid/ready streams onto a fabric port.

    Keeps one credit counter per VC (starting at ``credits``, the receiver's buffer depth) and
    sends, round-robin, from the VCs that have both a flit and a credit. The output is
    registered.

    Ports
    -----
    streams : In(stream(Flit)).array(vcs)
        Flits to send, one stream per VC.
    port : Out(FabricLink)
        The fabric port.
    can_send : Out(vcs)
        A credit is held for that VC (from registers): a flit offered on that VC while no
        other VC offers one is taken this cycle. A sender that offers one VC at a time can
        use it as that stream's ``ready`` without the path through the arbiter.

    With ``one_at_a_time``, the sender promises to offer at most one stream per cycle and to
    drive the flit it offers on every stream's payload (only the valid of its VC set). There
    is then no arbiter: a stream is taken when its VC holds a credit (``can_send``), and the
    port's flit and VC registers load every cycle (their contents only matter while
    ``port.valid`` is set). For a sender that keeps that promise the flits sent are exactly
    those of the round-robin adapter (which grants the only request), in the same cycles;
    the decision to offer then reaches only ``valid``, the VC (loaded every cycle, as the OR
    of the valid bits of the VCs with each bit set) and the credit counters, not the arbiter
    and the flit register's enables. If two streams are offered at once, both
    are marked taken and one flit is sent: a broken promise loses flits.
    """

    def __init__(self, fabric: FabricParams, *, credits: int, one_at_a_time: bool = False):
        if credits < 1:
            raise ValueError(f"credits must be at least 1, not {credits!r}")
        check_flag("one_at_a_time", one_at_a_time)
        self.fabric, self.credits, self.one_at_a_time = fabric, credits, one_at_a_time
        super().__init__(
            {
                "streams": In(stream.Signature(flit_layout(fabric))).array(fabric.vcs),
                "port": Out(FabricLink(fabric)),
                "can_send": Out(fabric.vcs),
            }
        )

    def elaborate(self, platform):
        m = Module()
        f = self.fabric
        count = [
            Signal(range(self.credits + 1), init=self.credits, name=f"credits{v}")
            for v in range(f.vcs)
        ]
        m.d.comb += self.can_send.eq(Cat(count[v] != 0 for v in range(f.vcs)))
        if self.one_at_a_time:
            sent = [Signal(name=f"sent{v}") for v in range(f.vcs)]
            for v in range(f.vcs):
                m.d.comb += [
                    sent[v].eq(self.streams[v].valid & self.can_send[v]),
                    self.streams[v].ready.eq(sent[v]),
                ]
                m.d.sync += count[v].eq(count[v] - sent[v] + self.port.credit[v])
            # The VC offered, as an OR of the valid bits (one set at most): one LUT level.
            offered = [
                Cat(self.streams[v].valid for v in range(f.vcs) if v >> b & 1).any()
                for b in range(len(self.port.vc))
            ]
            m.d.sync += [
                self.port.valid.eq(Cat(sent).any()),
                self.port.vc.eq(Cat(offered)),
                self.port.flit.eq(self.streams[0].payload),  # the same on every stream
            ]
            return m
        m.submodules.arbiter = arbiter = RoundRobin(count=f.vcs)
        m.d.comb += [
            arbiter.requests.eq(Cat(self.streams[v].valid for v in range(f.vcs)) & self.can_send),
        ]
        chosen = Signal(flit_layout(f))
        for v in range(f.vcs):
            with m.If(arbiter.grant == v):
                m.d.comb += chosen.eq(self.streams[v].payload)
        m.d.sync += self.port.valid.eq(arbiter.valid)
        with m.If(arbiter.valid):
            m.d.comb += arbiter.advance.eq(1)
            m.d.sync += [self.port.vc.eq(arbiter.grant), self.port.flit.eq(chosen)]
        for v in range(f.vcs):
            sent = Signal(name=f"sent{v}")
            m.d.comb += [
                sent.eq(arbiter.valid & (arbiter.grant == v)),
                self.streams[v].ready.eq(sent),
            ]
            m.d.sync += count[v].eq(count[v] - sent + self.port.credit[v])
        return m
