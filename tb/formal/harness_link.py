"""Harnesses for the link layer: replay buffer, and transmitter → lossy channel → receiver."""

from __future__ import annotations

from contextlib import contextmanager

from amaranth import Cat, Elaboratable, Module, Mux, Signal
from amaranth.asserts import AnyConst, AnySeq, Initial
from amaranth.hdl import Assert, Assume, Cover

from unifab.flit import flit_layout, link_flit_layout
from unifab.hdl.link import rx as rx_module
from unifab.hdl.link import tx as tx_module
from unifab.hdl.link.crc import Crc32c
from unifab.hdl.link.replay import ReplayBuffer
from unifab.hdl.link.rx import LinkRx
from unifab.hdl.link.tx import LinkTx
from unifab.params import LinkParams

from .props import any_seq, assert_stream_out, deep_peek, drive_stream_in, peek, small_fabric

__all__ = ["LinkHarness", "ReplayHarness"]


class ReplayHarness(Elaboratable):
    """:class:`ReplayBuffer` with a free sender and a lossy in-order peer.

    The sender appends and sends at will; every sent entry may be lost. The peer accepts only
    the sequence number it expects next (``rcv``) and acknowledges ``rcv - 1`` whenever it
    likes; NAK/timeout rewinds and restarts happen at any time.

    ``check_data`` adds the data-integrity check (bounded): one entry, chosen by the solver,
    is remembered when written, and whenever the buffer offers that sequence number before it
    is acknowledged, it must offer the same data (no overwrite, no slipped pointer, correct
    wrap of ``seq_bits``).
    """

    def __init__(
        self,
        depth: int = 2,
        width: int = 4,
        seq_bits: int = 3,
        *,
        check_data: bool = True,
        dut_cls: type = ReplayBuffer,
    ):
        self.depth, self.width, self.seq_bits = depth, width, seq_bits
        self.check_data, self.dut_cls = check_data, dut_cls

    def elaborate(self, platform):
        m = Module()
        d, s = self.depth, self.seq_bits
        abits = (d - 1).bit_length()
        dut = self.dut_cls(depth=d, width=self.width, seq_bits=s)
        mod, sig = peek(dut)
        m.submodules.dut = mod
        head, send, tail = sig["head"], sig["send"], sig["tail"]

        def off(a, b):  # (a - b) mod 2**s
            return (a - b)[:s]

        restart = any_seq(m, 1, "restart")
        wr_valid = any_seq(m, 1, "wr_valid")
        wr_data = any_seq(m, self.width, "wr_data")
        rewind = any_seq(m, 1, "rewind")
        rd_next = any_seq(m, 1, "rd_next")
        deliver = any_seq(m, 1, "deliver")  # the sent entry reaches the peer
        ack_valid = any_seq(m, 1, "ack_valid")
        rcv = Signal(s)  # the peer's next expected sequence number
        m.d.comb += [
            dut.restart.eq(restart),
            dut.wr_valid.eq(wr_valid),
            dut.wr_data.eq(wr_data),
            dut.rewind.eq(rewind),
            dut.rd_next.eq(rd_next),
            dut.ack_valid.eq(ack_valid),
            dut.ack_seq.eq(rcv - 1),
        ]
        got = rd_next & dut.rd_valid & deliver & (dut.rd_seq == rcv)
        with m.If(restart):
            m.d.sync += rcv.eq(0)
        with m.Elif(got):
            m.d.sync += rcv.eq(rcv + 1)

        fill = off(tail, head)
        m.d.comb += [
            Assert(off(send, head) <= fill, "head <= send <= tail"),
            Assert(fill <= d, "at most depth entries held"),
            Assert(off(rcv, head) <= fill, "the peer never acknowledged an entry not sent"),
            Assert(dut.unacked == fill),
            Assert(dut.rd_seq == send),
            # `wr_ready` is a flop computed a cycle ahead; also an induction strengthening.
            Assert(dut.wr_ready == (fill < d), "wr_ready is fill < depth"),
            Assert(dut.rd_valid == (send != tail), "rd_valid is send != tail"),
        ]
        write = wr_valid & dut.wr_ready & ~restart
        m.d.comb += Cover(write & (tail == (1 << s) - 1))

        # One watched entry: written with sequence number w_seq and data w_data.
        watching = Signal()
        w_seq = Signal(s)
        w_data = Signal(self.width)
        pick = any_seq(m, 1, "pick")
        live = watching & (off(w_seq, head) < fill)  # written and not yet acknowledged
        with m.If(restart):
            m.d.sync += watching.eq(0)
        with m.Elif(write & pick & ~live):
            m.d.sync += [watching.eq(1), w_seq.eq(tail), w_data.eq(wr_data)]
        with m.Elif(~live):
            m.d.sync += watching.eq(0)  # acknowledged: its sequence number will be reused
        m.d.comb += Assert(
            ~(write & live & (tail[:abits] == w_seq[:abits])),
            "never overwrite an unacknowledged entry",
        )
        if self.check_data:
            with m.If(live & dut.rd_valid & (dut.rd_seq == w_seq)):
                m.d.comb += Assert(dut.rd_data == w_data, "replayed entry is the one written")
            # Strengthening for induction: look into the ring through extra read ports.
            mem = mod._named_submodules["mem"][0]
            at_w = mem.read_port(domain="comb")
            at_send = mem.read_port(domain="comb")
            m.d.comb += [at_w.addr.eq(w_seq[:abits]), at_send.addr.eq(send[:abits])]
            with m.If(live):
                m.d.comb += Assert(at_w.data == w_data, "the ring holds the watched entry")
            with m.If(dut.rd_valid):
                m.d.comb += Assert(dut.rd_data == at_send.data, "read register is the ring")
            wrapped = Signal()
            with m.If(watching & write & (tail == (1 << s) - 1)):
                m.d.sync += wrapped.eq(1)
            replayed = Signal()
            with m.If(live & rewind & (off(w_seq, head) < off(send, head))):
                m.d.sync += replayed.eq(1)
            m.d.comb += [
                Cover(got & live & (dut.rd_seq == w_seq) & wrapped),
                Cover(got & live & (dut.rd_seq == w_seq) & replayed),
                Cover(dut.acked & (fill == d)),
            ]
        return m


class CheapCrc(Crc32c):
    """Stand-in for :class:`Crc32c` in the link proof: bit ``i`` is the XOR of body bits
    ``i, i + 32, ...``.

    Sound for the properties proved: transmitter and receiver use the same function, the
    channel only ever passes A's flits unchanged or words the check rejects, and nothing
    else in the RTL reads the CRC. The real CRC-32C is checked bit-exact against the golden
    model by ``tests/test_link_units.py``; keeping its 32 XOR trees made each BMC step tens of
    seconds slower.
    """

    def elaborate(self, platform):
        m = Module()
        for bit in range(32):
            taps = [self.data[i] for i in range(bit, self.width, 32)]
            m.d.comb += self.crc[bit].eq(Cat(*taps).xor() if taps else 0)
        return m


@contextmanager
def _cheap_crc():
    saved = tx_module.Crc32c, rx_module.Crc32c
    tx_module.Crc32c = rx_module.Crc32c = CheapCrc
    try:
        yield
    finally:
        tx_module.Crc32c, rx_module.Crc32c = saved


class LinkHarness(Elaboratable):
    """Transmitter A → lossy channel → receiver B, under free traffic.

    Both sides are up from the first cycle (a ``start`` pulse, as after training). The
    channel may, every cycle, pass A's link flit, drop it, or replace it by any word whose
    CRC does not match (it never invents a valid CRC). The return path is abstract but
    sound: A sees, at arbitrary times, B's cumulative ACK as it was at some earlier time
    (in order), NAKs at any time, and credit returns for VC ``v`` never exceeding what B's
    buffer freed.

    Checked for every VC (the solver picks the VC ``w`` and the index ``k``): B delivers at most
    as many flits as A took, and B's ``k``-th delivered flit is A's ``k``-th, so B delivers a
    prefix of the sent stream, in order, without duplicates; every receive stream keeps
    the valid/ready contract; A's credit counts stay within B's buffer, A never sees a credit
    overflow and B never refuses an in-order flit for lack of room.
    """

    def __init__(
        self, params: LinkParams | None = None, *, tx_cls: type = LinkTx, rx_cls: type = LinkRx
    ):
        self.params = params or LinkParams(
            fabric=small_fabric(seq_bits=2),
            replay_depth=2,
            rx_depth=2,
            ack_timeout=16,
            credit_delay=1,
        )
        self.tx_cls, self.rx_cls = tx_cls, rx_cls

    def elaborate(self, platform):
        m = Module()
        p = self.params
        f = p.fabric
        s = f.seq_bits
        tx = self.tx_cls(p)
        rx = self.rx_cls(p)
        with _cheap_crc():
            tx_mod, tx_sig = deep_peek(tx)
            rx_mod, _ = deep_peek(rx)
        m.submodules.tx, m.submodules.rx = tx_mod, rx_mod

        start = Signal()
        m.d.comb += [
            start.eq(Initial()),
            tx.up.eq(1),
            rx.up.eq(1),
            tx.start.eq(start),
            rx.start.eq(start),
            tx.init_seen.eq(1),
            tx.ack_out.eq(0),
            tx.nak_req.eq(0),
        ]

        # ---- The lossy channel ---------------------------------------------------------
        link = link_flit_layout(f)
        body_width = link_flit_layout(f, with_crc=False).size
        mode = any_seq(m, 2, "channel_mode")  # 0/3 pass, 1 drop, 2 corrupt
        junk = Signal(link)
        m.d.comb += junk.eq(AnySeq(link.size))
        m.submodules.junk_crc = junk_crc = CheapCrc(width=body_width)
        m.d.comb += junk_crc.data.eq(junk.as_value()[:body_width])
        corrupt = mode == 2
        with m.If(corrupt):
            m.d.comb += Assume((junk_crc.crc != junk.crc) | (junk.kind.as_value() == 3))
        m.d.comb += [
            rx.phy.valid.eq(tx.phy.valid & (mode != 1)),
            rx.phy.payload.eq(Mux(corrupt, junk.as_value(), tx.phy.payload)),
        ]

        # ---- The abstract return path ----------------------------------------------------
        seen_ack = Signal(s, init=(1 << s) - 1)
        with m.If(any_seq(m, 1, "ack_snapshot")):
            m.d.sync += seen_ack.eq(rx.ack_out)
        m.d.comb += [
            tx.peer_ack_valid.eq(AnySeq(1)),
            # The ACK B sends now or one it sent earlier (zero delay is allowed too: more
            # behaviours than the real path, so the proof stays sound).
            tx.peer_ack.eq(Mux(AnySeq(1), rx.ack_out, seen_ack)),
            tx.peer_nak.eq(AnySeq(1)),
        ]
        give_valid = any_seq(m, 1, "credits_valid")
        m.d.comb += tx.peer_credits_valid.eq(give_valid)
        for v in range(f.vcs):
            owed = Signal(range(4 * p.rx_depth + 4), name=f"owed{v}")
            give = any_seq(m, f.credit_bits, f"give{v}")
            m.d.comb += [tx.peer_credits[v].eq(give), Assume(~give_valid | (give <= owed))]
            m.d.sync += owed.eq(owed + rx.popped[v] - Mux(give_valid, give, 0))
            m.d.comb += [tx.ret_credits[v].eq(0)]
        m.d.comb += tx.ret_pending.eq(0)

        # ---- Traffic -----------------------------------------------------------------------
        for v in range(f.vcs):
            drive_stream_in(m, tx.flits[v], f"send{v}")
            m.d.comb += rx.flits[v].ready.eq(AnySeq(1))
            assert_stream_out(m, rx.flits[v], f"recv{v}")

        # ---- Prefix, in order, no duplicate ------------------------------------------------
        w = Signal(f.vc_bits)
        k = Signal(5)
        m.d.comb += [w.eq(AnyConst(f.vc_bits)), k.eq(AnyConst(5)), Assume(w < f.vcs)]
        sent_n = Signal(6)
        recv_n = Signal(6)
        kth = Signal(flit_layout(f))
        send_fire = Signal()
        recv_fire = Signal()
        send_flit = Signal(flit_layout(f))
        recv_flit = Signal(flit_layout(f))
        for v in range(f.vcs):
            with m.If(w == v):
                m.d.comb += [
                    send_fire.eq(tx.flits[v].valid & tx.flits[v].ready),
                    recv_fire.eq(rx.flits[v].valid & rx.flits[v].ready),
                    send_flit.eq(tx.flits[v].payload),
                    recv_flit.eq(rx.flits[v].payload),
                ]
        m.d.sync += [sent_n.eq(sent_n + send_fire), recv_n.eq(recv_n + recv_fire)]
        with m.If(send_fire & (sent_n == k)):
            m.d.sync += kth.eq(send_flit)
        m.d.comb += [
            Assume(sent_n < 31),
            Assert(recv_n <= sent_n, "no more flits delivered than sent"),
        ]
        with m.If(recv_fire & (recv_n == k)):
            m.d.comb += [
                Assert(sent_n > k, "k-th delivered only after k-th sent"),
                Assert(recv_flit.as_value() == kth.as_value(), "k-th delivered is k-th sent"),
            ]

        # ---- Credits -----------------------------------------------------------------------
        for v in range(f.vcs):
            m.d.comb += Assert(tx_sig[f"credits{v}.count"] <= p.rx_depth, f"VC {v} credits")
        m.d.comb += [
            Assert(~tx.credit_overflow, "no credit overflow"),
            Assert(rx.overflows == 0, "B never refuses an in-order flit for lack of room"),
        ]

        # ---- Covers ------------------------------------------------------------------------
        m.d.comb += [
            Cover(recv_fire & (recv_n == k) & (k == 1) & (rx.crc_errors != 0) & (tx.replays != 0)),
            Cover(recv_fire & (rx.duplicates != 0) & (rx.seq_gaps != 0)),
            Cover(recv_fire & (recv_n == k) & (k == 2)),
            # Sequence numbers wrapped: more flits accepted than the sequence space holds.
            Cover(recv_fire & (rx.accepted == (1 << s) + 1)),
        ]
        return m
