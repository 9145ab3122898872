"""Link receiver: CRC and sequence checks, ACK/NAK generation, per-VC receive buffers."""

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from unifab.flit import LinkKind, flit_layout, link_flit_layout
from unifab.hdl.link.crc import Crc32c
from unifab.params import LinkParams

__all__ = ["LinkRx"]


class LinkRx(wiring.Component):
    """Receive half of a link layer.

    A link flit is *good* when its CRC matches. A good SEQ flit whose sequence number is the
    expected one is accepted: its flit (if any) enters the receive buffer of its VC and its
    credit returns go to the transmitter. A SEQ flit ahead of the expected number (a gap) or a
    bad CRC triggers one NAK until the next in-order flit arrives; a SEQ flit behind it is a
    duplicate from a replay and is dropped.

    A flit from ``phy`` is checked the cycle after it arrives (its CRC computed from a
    register), or two cycles after with ``LinkParams.registered_crc`` (CRC verdict registered
    first).

    Ports
    -----
    phy : In(stream(link_bits, always_ready))
        Link flits from the channel.
    flits : Out(stream(Flit)).array(vcs)
        Received flits, in order per VC.
    popped : Out(vcs)
        A flit left the receive buffer of that VC this cycle (a credit to return).
    up : In(1)
        Link is up. While low only INIT flits are interpreted.
    start : In(1)
        Link (re)start pulse: expect sequence number 0.
    drained : Out(1)
        Every receive buffer is empty.
    got_init, got_init_seen, got_other : Out(1)
        Good INIT received (and its "seen you" bit); good IDLE/SEQ received.
    ack_out : Out(seq_bits)
        Cumulative ACK: last sequence number accepted in order.
    nak_req : Out(1)
        Pulse: ask the transmitter to send a NAK.
    peer_ack_valid, peer_ack, peer_nak : Out(1), Out(seq_bits), Out(1)
        ACK/NAK fields of a good flit.
    peer_credits_valid, peer_credits : Out(1), Out(ArrayLayout(credit_bits, vcs))
        Credit returns of an accepted SEQ flit.
    crc_errors, seq_gaps, duplicates, accepted, overflows : Out(32)
        Counters: flits with a bad CRC, SEQ flits ahead of the expected number, duplicate SEQ
        flits, SEQ flits accepted, in-order flits refused because their VC buffer was full
        (a peer credit violation; the flit is replayed later, nothing is lost).
    """

    def __init__(self, params: LinkParams):
        self.params = params
        f = params.fabric
        self.link_layout = link_flit_layout(f)
        super().__init__(
            {
                "phy": In(stream.Signature(self.link_layout.size, always_ready=True)),
                "flits": Out(stream.Signature(flit_layout(f))).array(f.vcs),
                "popped": Out(f.vcs),
                "up": In(1),
                "start": In(1),
                "drained": Out(1),
                "got_init": Out(1),
                "got_init_seen": Out(1),
                "got_other": Out(1),
                "ack_out": Out(f.seq_bits),
                "nak_req": Out(1),
                "peer_ack_valid": Out(1),
                "peer_ack": Out(f.seq_bits),
                "peer_nak": Out(1),
                "peer_credits_valid": Out(1),
                "peer_credits": Out(data.ArrayLayout(f.credit_bits, f.vcs)),
                "crc_errors": Out(32),
                "seq_gaps": Out(32),
                "duplicates": Out(32),
                "accepted": Out(32),
                "overflows": Out(32),
            }
        )

    def elaborate(self, platform):
        m = Module()
        p = self.params
        f = p.fabric
        s = f.seq_bits

        # Register the channel's output: the CRC tree then starts from a flop.
        in_valid = Signal()
        in_raw = Signal(self.link_layout)
        m.d.sync += [in_valid.eq(self.phy.valid), in_raw.eq(self.phy.payload)]

        body_width = link_flit_layout(f, with_crc=False).size
        m.submodules.crc = crc = Crc32c(width=body_width)
        m.d.comb += crc.data.eq(in_raw.as_value()[:body_width])
        in_good = Signal()
        m.d.comb += in_good.eq(in_valid & (crc.crc == in_raw.crc) & (in_raw.kind.as_value() != 3))
        if p.registered_crc:
            # The verdict and the flit move on together: everything below is the same logic
            # one cycle later, as if the channel were one cycle longer.
            valid = Signal()
            raw = Signal(self.link_layout)
            good = Signal()
            m.d.sync += [valid.eq(in_valid), raw.eq(in_raw), good.eq(in_good)]
        else:
            valid, raw, good = in_valid, in_raw, in_good

        expected = Signal(s)
        nak_sent = Signal()
        m.d.comb += self.ack_out.eq(expected - 1)

        fifos = []
        for v in range(f.vcs):
            # SyncFIFOBuffered(depth=2) refuses a second entry while its first one moves to the
            # output register (w_rdy low at level 1), so rx_depth=2 raised false overflows and
            # NAKs on back-to-back flits. Give it a spare slot; `room` below bounds the level.
            fifo = SyncFIFOBuffered(width=flit_layout(f).size, depth=max(p.rx_depth, 3))
            m.submodules[f"buffer{v}"] = fifo
            fifos.append(fifo)
            m.d.comb += [
                fifo.w_data.eq(raw.flit),
                self.flits[v].valid.eq(fifo.r_rdy),
                self.flits[v].payload.eq(fifo.r_data),
                fifo.r_en.eq(self.flits[v].ready),
                self.popped[v].eq(fifo.r_rdy & self.flits[v].ready),
            ]
        m.d.comb += self.drained.eq(Cat(fifo.level == 0 for fifo in fifos).all())

        is_seq = Signal()
        in_order = Signal()
        ahead = Signal()
        room = Signal()
        m.d.comb += [
            self.got_init.eq(good & (raw.kind == LinkKind.INIT)),
            self.got_init_seen.eq(raw.seq[0]),
            self.got_other.eq(good & ((raw.kind == LinkKind.IDLE) | (raw.kind == LinkKind.SEQ))),
            is_seq.eq(good & self.up & ~self.start & (raw.kind == LinkKind.SEQ)),
            in_order.eq(raw.seq == expected),
            # Half the sequence space ahead is a gap; the other half is behind (a duplicate).
            ahead.eq(~in_order & ((raw.seq - expected)[:s] < (1 << (s - 1)))),
            self.peer_ack_valid.eq(good & self.up & ~self.start & (raw.kind != LinkKind.INIT)),
            self.peer_ack.eq(raw.ack),
            self.peer_nak.eq(raw.nak),
            self.peer_credits.eq(raw.credits),
        ]
        for v in range(f.vcs):
            has_room = fifos[v].level < p.rx_depth
            if fifos[v].depth == p.rx_depth and p.rx_depth & (p.rx_depth - 1) == 0:
                # The level never exceeds the FIFO's depth, so below a power-of-two depth is
                # its top bit clear: no comparator (a carry chain on the ECP5) between the
                # level and the credit returns and the transmitter's credit counters.
                has_room = ~fifos[v].level[p.rx_depth.bit_length() - 1]
            with m.If(raw.vc == v):
                m.d.comb += room.eq(has_room)

        want_nak = Signal()
        with m.If(is_seq & in_order):
            with m.If(~raw.has_flit | room):
                m.d.comb += self.peer_credits_valid.eq(1)
                for v in range(f.vcs):
                    with m.If(raw.has_flit & (raw.vc == v)):
                        m.d.comb += fifos[v].w_en.eq(1)
                m.d.sync += [
                    expected.eq(expected + 1),
                    nak_sent.eq(0),
                    self.accepted.eq(self.accepted + 1),
                ]
            with m.Else():
                m.d.comb += want_nak.eq(1)
                m.d.sync += self.overflows.eq(self.overflows + 1)
        with m.Elif(is_seq & ahead):
            m.d.comb += want_nak.eq(1)
            m.d.sync += self.seq_gaps.eq(self.seq_gaps + 1)
        with m.Elif(is_seq):
            m.d.sync += self.duplicates.eq(self.duplicates + 1)
        with m.If(valid & ~good):
            m.d.comb += want_nak.eq(self.up)
            m.d.sync += self.crc_errors.eq(self.crc_errors + 1)

        with m.If(want_nak & ~nak_sent):
            m.d.comb += self.nak_req.eq(1)
            m.d.sync += nak_sent.eq(1)

        with m.If(self.start):
            m.d.sync += [expected.eq(0), nak_sent.eq(0)]
        return m
