"""Link transmitter: VC arbitration under credits, sequencing, replay, CRC, ACK/NAK out."""

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from unifab.flit import LinkKind, flit_layout, link_flit_layout
from unifab.hdl.lib.arbiter import RoundRobin
from unifab.hdl.link.crc import Crc32c
from unifab.hdl.link.credits import CreditCounter
from unifab.hdl.link.replay import ReplayBuffer
from unifab.params import LinkParams

__all__ = ["LinkTx", "replay_entry_layout"]

#: Bits of the held-flit multiplexer selected by one copy of the registered VC choice
#: (``LinkParams.registered_select``); see ``LinkTx._select_registered``.
SELECT_SLICE = 16


def _mux_tree(select: Value, items: list[Value]) -> Value:
    """``items[select]`` as a binary tree of 2:1 multiplexers on the bits of ``select``, 0
    for a ``select`` past the last item (so that a 4:1 choice maps onto one slice's two LUTs
    and its PFUMX, not onto a chain of equality tests)."""
    if len(items) == 1:
        return Mux(select == 0, items[0], 0) if len(select) else items[0]
    even, odd = items[0::2], items[1::2]
    rest = select[1:]
    return Mux(select[0], _mux_tree(rest, odd), _mux_tree(rest, even))


def replay_entry_layout(params: LinkParams) -> data.StructLayout:
    """What the replay buffer keeps of a sequenced flit (kind, sequence number, ACK and NAK are
    filled in at send time). ``crc`` is these fields' share of the link flit's CRC (the CRC is
    affine: the XOR of each set bit's column), computed when the entry is written so that the
    send path only adds the share of the fields filled in at send time."""
    f = params.fabric
    return data.StructLayout(
        {
            "has_flit": 1,
            "vc": f.vc_bits,
            "flit": flit_layout(f),
            "credits": data.ArrayLayout(f.credit_bits, f.vcs),
            "crc": 32,
        }
    )


class LinkTx(wiring.Component):
    """Transmit half of a link layer.

    Every cycle one link flit leaves on ``phy``: INIT while the link is down, otherwise the
    next sequenced (SEQ) flit from the replay buffer, or IDLE. Every flit carries the local
    receiver's cumulative ACK and, once per request, a NAK.

    Ports
    -----
    flits : In(stream(Flit)).array(vcs)
        Flits to send, one stream per VC; taken only while the link is up, the VC holds a
        credit and the replay buffer has room. With ``registered_select``, taken into a
        one-flit register per VC while the link is up and that register is free or being
        emptied, whatever the credits and the replay buffer.
    phy : Out(stream(link_bits, always_ready))
        Link flits to the channel, CRC included; valid every cycle.
    up : In(1)
        Link is up (from training). While low, INIT flits are sent.
    start : In(1)
        Link (re)start pulse: empty the replay buffer, refill credits.
    init_seen : In(1)
        Bit 0 of outgoing INIT flits: the local receiver has seen the peer's INIT.
    ack_out : In(seq_bits)
        The local receiver's cumulative ACK (last in-order sequence number received).
    nak_req : In(1)
        Pulse: put NAK on the next outgoing flit.
    peer_ack_valid, peer_ack, peer_nak : In(1), In(seq_bits), In(1)
        ACK/NAK fields of a good flit from the peer.
    peer_credits_valid, peer_credits : In(1), In(ArrayLayout(credit_bits, vcs))
        Credits returned by an accepted SEQ flit from the peer.
    ret_credits : In(ArrayLayout(credit_bits, vcs))
        Credits the local receiver owes the peer.
    ret_pending : In(1)
        Some credit is owed.
    ret_take : Out(1)
        ``ret_credits`` were placed in a SEQ flit this cycle.
    replays, credit_stalls, seq_flits, data_flits, timeouts : Out(32)
        Counters: go-back-N rewinds, cycles a VC had a flit but no credit, sequenced flits
        created, flits with a payload created, ACK timeouts.
    credit_overflow : Out(1)
        Sticky: the peer returned more credits than it has buffer.
    """

    def __init__(self, params: LinkParams):
        self.params = params
        f = params.fabric
        self.link_layout = link_flit_layout(f)
        credits = data.ArrayLayout(f.credit_bits, f.vcs)
        super().__init__(
            {
                "flits": In(stream.Signature(flit_layout(f))).array(f.vcs),
                "phy": Out(stream.Signature(self.link_layout.size, always_ready=True)),
                "up": In(1),
                "start": In(1),
                "init_seen": In(1),
                "ack_out": In(f.seq_bits),
                "nak_req": In(1),
                "peer_ack_valid": In(1),
                "peer_ack": In(f.seq_bits),
                "peer_nak": In(1),
                "peer_credits_valid": In(1),
                "peer_credits": In(credits),
                "ret_credits": In(credits),
                "ret_pending": In(1),
                "ret_take": Out(1),
                "replays": Out(32),
                "credit_stalls": Out(32),
                "seq_flits": Out(32),
                "data_flits": Out(32),
                "timeouts": Out(32),
                "credit_overflow": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        p = self.params
        f = p.fabric
        vcs = f.vcs
        entry_layout = replay_entry_layout(p)

        m.submodules.replay = replay = ReplayBuffer(
            depth=p.replay_depth, width=entry_layout.size, seq_bits=f.seq_bits
        )
        m.submodules.arbiter = arbiter = RoundRobin(count=vcs)
        counters = []
        for v in range(vcs):
            cc = CreditCounter(depth=p.rx_depth, max_give=(1 << f.credit_bits) - 1)
            m.submodules[f"credits{v}"] = cc
            counters.append(cc)
            m.d.comb += [
                cc.fill.eq(self.start),
                cc.give.eq(self.peer_credits[v]),
                cc.give_valid.eq(self.peer_credits_valid & self.up),
            ]
        m.d.comb += self.credit_overflow.eq(Cat(cc.overflow for cc in counters).any())

        # ---- Stage A: create sequenced flits -------------------------------------------
        can_write = Signal()
        m.d.comb += can_write.eq(self.up & ~self.start & replay.wr_ready)
        # Credits owed wait up to `credit_delay` cycles for a data flit to ride on.
        credit_wait = Signal(range(p.credit_delay + 1))
        credit_only = Signal()
        with m.If(~self.ret_pending | self.ret_take):
            m.d.sync += credit_wait.eq(0)
        with m.Elif(credit_wait != p.credit_delay):
            m.d.sync += credit_wait.eq(credit_wait + 1)
        m.d.comb += credit_only.eq(self.ret_pending & (credit_wait == p.credit_delay))

        entry = Signal(entry_layout)
        send_data = Signal()
        stalled = Signal(vcs)
        if p.registered_select:
            self._select_registered(m, arbiter, counters, can_write, entry, send_data, stalled)
        else:
            self._select_direct(m, arbiter, counters, can_write, entry, send_data, stalled)
        m.d.comb += entry.credits.eq(self.ret_credits)
        with m.If(send_data):
            m.d.comb += [
                entry.has_flit.eq(1),
                replay.wr_valid.eq(1),
                self.ret_take.eq(1),
            ]
        with m.Elif(can_write & credit_only):
            m.d.comb += [replay.wr_valid.eq(1), self.ret_take.eq(1)]
        m.d.comb += replay.wr_data.eq(entry)

        # The stored fields' share of the CRC: the CRC of a body holding only them, less the
        # CRC of an all-zero body (a constant; both blocks are the same affine function).
        body_width = link_flit_layout(f, with_crc=False).size
        stored_body = Signal(link_flit_layout(f, with_crc=False))
        m.d.comb += [
            stored_body.has_flit.eq(entry.has_flit),
            stored_body.vc.eq(entry.vc),
            stored_body.flit.eq(entry.flit),
            stored_body.credits.eq(entry.credits),
        ]
        m.submodules.crc_stored = crc_stored = Crc32c(width=body_width)
        m.submodules.crc_zero = crc_zero = Crc32c(width=body_width)
        m.d.comb += [
            crc_stored.data.eq(stored_body),
            crc_zero.data.eq(0),
            entry.crc.eq(crc_stored.crc ^ crc_zero.crc),
        ]

        # ---- ACK / NAK from the peer, ACK timeout -----------------------------------------
        timer = Signal(range(p.ack_timeout + 1))
        timeout = Signal()
        m.d.comb += [
            replay.restart.eq(self.start),
            replay.ack_valid.eq(self.up & self.peer_ack_valid),
            replay.ack_seq.eq(self.peer_ack),
            timeout.eq(timer == p.ack_timeout),
            replay.rewind.eq(self.up & ((self.peer_ack_valid & self.peer_nak) | timeout)),
        ]
        with m.If(self.start | replay.acked | replay.rewind | (replay.unacked == 0)):
            m.d.sync += timer.eq(0)
        with m.Else():
            m.d.sync += timer.eq(timer + 1)

        # ---- Stage B: choose and register the outgoing link flit --------------------------
        body = Signal(link_flit_layout(f, with_crc=False))
        stored = Signal(entry_layout)
        m.d.comb += stored.eq(replay.rd_data)
        nak_pending = Signal()
        with m.If(self.nak_req):
            m.d.sync += nak_pending.eq(1)
        m.d.comb += [body.ack.eq(self.ack_out), body.nak.eq(nak_pending & self.up)]
        with m.If(~self.up):
            m.d.comb += [body.kind.eq(LinkKind.INIT), body.seq.eq(self.init_seen)]
            m.d.sync += nak_pending.eq(0)
        with m.Else():
            with m.If(replay.rd_valid & ~self.start):
                m.d.comb += [
                    body.kind.eq(LinkKind.SEQ),
                    body.seq.eq(replay.rd_seq),
                    body.has_flit.eq(stored.has_flit),
                    body.vc.eq(stored.vc),
                    body.flit.eq(stored.flit),
                    body.credits.eq(stored.credits),
                    replay.rd_next.eq(1),
                ]
            with m.Else():
                m.d.comb += body.kind.eq(LinkKind.IDLE)
            with m.If(nak_pending & ~self.nak_req):
                m.d.sync += nak_pending.eq(0)

        # The CRC of the fields filled in at send time (the stored ones zero), plus the stored
        # fields' share read with the entry: only a small XOR tree follows the replay buffer.
        sent_body = Signal(link_flit_layout(f, with_crc=False))
        m.d.comb += [
            sent_body.kind.eq(body.kind),
            sent_body.seq.eq(body.seq),
            sent_body.ack.eq(body.ack),
            sent_body.nak.eq(body.nak),
        ]
        m.submodules.crc = crc = Crc32c(width=body_width)
        m.d.comb += crc.data.eq(sent_body)
        crc_out = Signal(32)
        m.d.comb += crc_out.eq(crc.crc ^ Mux(replay.rd_next, stored.crc, 0))
        m.d.sync += [self.phy.valid.eq(1), self.phy.payload.eq(Cat(body, crc_out))]

        # ---- Counters ---------------------------------------------------------------------
        with m.If(replay.rewind):
            m.d.sync += self.replays.eq(self.replays + 1)
        with m.If(self.up & timeout):
            m.d.sync += self.timeouts.eq(self.timeouts + 1)
        with m.If(self.up & stalled.any()):
            m.d.sync += self.credit_stalls.eq(self.credit_stalls + 1)
        with m.If(replay.wr_valid & replay.wr_ready):
            m.d.sync += self.seq_flits.eq(self.seq_flits + 1)
        with m.If(send_data):
            m.d.sync += self.data_flits.eq(self.data_flits + 1)
        return m

    def _select_direct(
        self,
        m: Module,
        arbiter: RoundRobin,
        counters: list[CreditCounter],
        can_write: Signal,
        entry: Signal,
        send_data: Signal,
        stalled: Signal,
    ) -> None:
        """Stage A as one combinational step: the arbiter picks among the VCs whose stream has
        a flit and that hold a credit, and the chosen stream is popped in the same cycle."""
        vcs = self.params.fabric.vcs
        eligible = Signal(vcs)
        for v in range(vcs):
            m.d.comb += [
                eligible[v].eq(self.flits[v].valid & counters[v].available),
                stalled[v].eq(self.flits[v].valid & ~counters[v].available),
            ]
        m.d.comb += [
            arbiter.requests.eq(eligible),
            entry.vc.eq(arbiter.grant),
            send_data.eq(can_write & arbiter.valid),
        ]
        for v in range(vcs):
            with m.If(arbiter.grant == v):
                m.d.comb += entry.flit.eq(self.flits[v].payload)
        with m.If(send_data):
            m.d.comb += arbiter.advance.eq(1)
            for v in range(vcs):
                with m.If(arbiter.grant == v):
                    m.d.comb += [self.flits[v].ready.eq(1), counters[v].consume.eq(1)]

    def _select_registered(
        self,
        m: Module,
        arbiter: RoundRobin,
        counters: list[CreditCounter],
        can_write: Signal,
        entry: Signal,
        send_data: Signal,
        stalled: Signal,
    ) -> None:
        """Stage A in two steps (``LinkParams.registered_select``), so that neither the
        arbiter nor the flit multiplexer's select lies on a path from the input streams to
        the replay buffer or back to the streams' ``ready``.

        Each VC has a one-flit holding register (``held``) in front of the arbiter; its
        stream is popped into it while it is empty or being emptied, a decision made from
        flops only (the input FIFO's read logic no longer waits for the arbiter). The
        arbiter's choice is registered (``sel_valid``, ``sel_vc``) and takes the VC's credit
        at once; the next cycle the chosen held flit goes into the replay buffer, through a
        multiplexer selected by the ``sel_vc`` flop. While one choice is written the arbiter
        makes the next, so a VC streams one flit per cycle: the VC being written is eligible
        again if a new flit enters its register in the same cycle. A choice waits while the
        replay buffer is full, and is dropped on ``start`` (the flit stays held; the credits
        are refilled). One cycle more from a stream's flit to the wire.
        """
        vcs = self.params.fabric.vcs
        f = self.params.fabric
        sel_valid = Signal()
        sel_vc = Signal(range(max(vcs, 2)))
        held = [Signal(flit_layout(f), name=f"held{v}") for v in range(vcs)]
        full = Signal(vcs)
        # The pending choice is written this cycle.
        m.d.comb += send_data.eq(sel_valid & can_write)
        # The register is free for a new choice next cycle.
        choose = Signal()
        m.d.comb += choose.eq(self.up & ~self.start & (~sel_valid | can_write) & arbiter.valid)
        eligible = Signal(vcs)
        for v in range(vcs):
            pop = Signal(name=f"pop{v}")
            push = Signal(name=f"push{v}")
            m.d.comb += [
                pop.eq(send_data & (sel_vc == v)),
                # Taken while the link is up, like the direct path; from flops only.
                self.flits[v].ready.eq(self.up & (~full[v] | pop)),
                push.eq(self.flits[v].valid & self.flits[v].ready),
                # A flit that is not the pending choice will be held next cycle.
                eligible[v].eq(((full[v] & ~pop) | push) & counters[v].available),
                stalled[v].eq((full[v] | self.flits[v].valid) & ~counters[v].available),
            ]
            with m.If(push):
                m.d.sync += [held[v].eq(self.flits[v].payload), full[v].eq(1)]
            with m.Elif(pop):
                m.d.sync += full[v].eq(0)
            with m.If(choose & (arbiter.grant == v)):
                m.d.comb += counters[v].consume.eq(1)
        m.d.comb += [arbiter.requests.eq(eligible), arbiter.advance.eq(choose)]
        with m.If(self.start):
            m.d.sync += sel_valid.eq(0)
        with m.Elif(choose):
            m.d.sync += [sel_valid.eq(1), sel_vc.eq(arbiter.grant)]
        with m.Elif(send_data):
            m.d.sync += sel_valid.eq(0)
        m.d.comb += entry.vc.eq(sel_vc)
        # The held-flit multiplexer is split into slices of `SELECT_SLICE` bits, each selected
        # by its own copy of `sel_vc`: one flop driving all 146 bits' multiplexers cost 5 ns
        # of wire on the ULX3S, on the path into the stored-CRC tree. Yosys merges flops whose
        # inputs are the same, so each copy holds `grant` on a choice and otherwise takes the
        # previous copy's value (the first copy's, `sel_vc`'s): all copies equal `sel_vc` in
        # every cycle (equal from reset, and each loads `grant` exactly when `sel_vc` does).
        flit_bits = len(entry.flit.as_value())
        prev = sel_vc
        for lo in range(0, flit_bits, SELECT_SLICE):
            hi = min(lo + SELECT_SLICE, flit_bits)
            copy = Signal.like(sel_vc, name=f"sel_vc_b{lo}")
            m.d.sync += copy.eq(Mux(choose, arbiter.grant, prev))
            prev = copy
            m.d.comb += entry.flit.as_value()[lo:hi].eq(
                _mux_tree(copy, [h.as_value()[lo:hi] for h in held])
            )
