"""The link layer: composes transmitter, receiver, training and credit returns."""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from unifab.flit import flit_layout
from unifab.hdl.link.credits import CreditReturn
from unifab.hdl.link.rx import LinkRx
from unifab.hdl.link.training import LinkTraining
from unifab.hdl.link.tx import LinkTx
from unifab.params import LinkParams

__all__ = ["LINK_COUNTERS", "LinkLayer", "PhySignature"]


class PhySignature(wiring.Signature):
    """A physical lane: one link flit per cycle when ``valid``; the receiver never stalls it."""

    def __init__(self, width: int):
        super().__init__({"valid": Out(1), "data": Out(width)})


#: Status counters of a link layer, in the order benches and reports list them.
LINK_COUNTERS = (
    "crc_errors",
    "seq_gaps",
    "duplicates",
    "replays",
    "timeouts",
    "credit_stalls",
    "overflows",
    "downs",
    "seq_flits",
    "data_flits",
    "accepted",
)


class LinkLayer(wiring.Component):
    """A reliable, credit-flow-controlled link for ``vcs`` virtual channels.

    Ports
    -----
    tx : In(stream(Flit)).array(vcs)
        Flits to send to the peer, one stream per VC. A flit is taken when the link is up, the
        peer's buffer for that VC has room (a credit) and the replay buffer has room.
    rx : Out(stream(Flit)).array(vcs)
        Flits from the peer, in order per VC. Holding ``ready`` low back-pressures the peer
        through credits; nothing is dropped.
    phy_tx : Out(PhySignature(link_bits))
        Link flits to the channel, one every cycle (``valid``, ``data``; a serial link never
        waits, so there is no ``ready``).
    phy_rx : In(PhySignature(link_bits))
        Link flits from the channel.
    up : Out(1)
        The link is up.
    <counter> : Out(32)
        One per name in :data:`LINK_COUNTERS`.
    credit_overflow : Out(1)
        Sticky: the peer broke the credit protocol.
    """

    def __init__(self, params: LinkParams | None = None):
        self.params = params = params or LinkParams()
        f = params.fabric
        members = {
            "tx": In(stream.Signature(flit_layout(f))).array(f.vcs),
            "rx": Out(stream.Signature(flit_layout(f))).array(f.vcs),
            "phy_tx": Out(PhySignature(params.link_bits)),
            "phy_rx": In(PhySignature(params.link_bits)),
            "up": Out(1),
            "credit_overflow": Out(1),
        }
        members.update({name: Out(32) for name in LINK_COUNTERS})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        f = p.fabric
        m.submodules.tx = tx = LinkTx(p)
        m.submodules.rx = rx = LinkRx(p)
        m.submodules.training = training = LinkTraining()

        for v in range(f.vcs):
            wiring.connect(m, wiring.flipped(self.tx[v]), tx.flits[v])
            wiring.connect(m, rx.flits[v], wiring.flipped(self.rx[v]))
        m.d.comb += [
            self.phy_tx.valid.eq(tx.phy.valid),
            self.phy_tx.data.eq(tx.phy.payload),
            rx.phy.valid.eq(self.phy_rx.valid),
            rx.phy.payload.eq(self.phy_rx.data),
            # Training
            training.got_init.eq(rx.got_init),
            training.got_init_seen.eq(rx.got_init_seen),
            training.got_other.eq(rx.got_other),
            training.drained.eq(rx.drained),
            tx.up.eq(training.up),
            rx.up.eq(training.up),
            tx.start.eq(training.start),
            rx.start.eq(training.start),
            tx.init_seen.eq(training.init_seen),
            self.up.eq(training.up),
            # ACK/NAK both ways
            tx.ack_out.eq(rx.ack_out),
            tx.nak_req.eq(rx.nak_req),
            tx.peer_ack_valid.eq(rx.peer_ack_valid),
            tx.peer_ack.eq(rx.peer_ack),
            tx.peer_nak.eq(rx.peer_nak),
            tx.peer_credits_valid.eq(rx.peer_credits_valid),
            tx.peer_credits.eq(rx.peer_credits),
            self.credit_overflow.eq(tx.credit_overflow),
        ]
        # Credits owed to the peer: one per flit popped from a receive buffer while up.
        pending = []
        for v in range(f.vcs):
            ret = CreditReturn(depth=p.rx_depth, field_bits=f.credit_bits)
            m.submodules[f"credit_return{v}"] = ret
            m.d.comb += [
                ret.clear.eq(training.start | ~training.up),
                ret.pop.eq(rx.popped[v]),
                ret.take.eq(tx.ret_take),
                tx.ret_credits[v].eq(ret.pending),
            ]
            pending.append(ret.nonzero)
        m.d.comb += tx.ret_pending.eq(Cat(pending).any())

        for name in ("crc_errors", "seq_gaps", "duplicates", "accepted", "overflows"):
            m.d.comb += getattr(self, name).eq(getattr(rx, name))
        for name in ("replays", "timeouts", "credit_stalls", "seq_flits", "data_flits"):
            m.d.comb += getattr(self, name).eq(getattr(tx, name))
        m.d.comb += self.downs.eq(training.downs)
        return m
