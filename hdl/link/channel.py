"""Lossy physical channel between two link layers (drops, bit flips, bursts, stalls).

Synthesizable, so a Verilator bench runs it at full speed and an FPGA can use it as a
loopback channel. The exact behaviour, including the PRNG, is defined in
:mod:`unifab.models.channel`, whose :class:`~unifab.models.channel.LossyChannelModel` is the
cycle-exact golden model of this block.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from unifab.models.channel import (
    LANE_SEED_XOR,
    LANE_TRIPLES,
    STALL_LEN_BITS,
    XS_MULT,
    check_channel_params,
)

__all__ = ["LossyChannel"]


class _PortSignature(wiring.Signature):
    """A signature whose :meth:`flatten` skips constant members.

    ``amaranth.back.verilog.convert(component)`` takes its ports from ``flatten`` and
    rejects the ``Const(1)`` ``ready`` of an always-ready stream (amaranth-lang/amaranth#1574,
    open in 0.5.x); a constant is no port, so it is left out.
    """

    def flatten(self, obj):
        for path, member, value in super().flatten(obj):
            if not isinstance(value, Const):
                yield path, member, value


class LossyChannel(wiring.Component):
    """Lossy, order-preserving channel with a fixed latency, errors and stalls.

    A flit entering at cycle ``t`` leaves at ``t + latency`` unless it is dropped or a stall
    intervenes; the channel never reorders. All error rates are runtime inputs, so one
    Verilator build serves every configuration. Algorithm and PRNG: see
    :mod:`unifab.models.channel` (bit-exact definition shared with the golden model).

    Parameters
    ----------
    width : int
        Bits of one link flit (1..65536).
    max_latency : int
        Depth of the delay line; a power of two in [2, 65536].
    fifo_depth : int
        Depth of the elastic FIFO that holds flits during stalls; in [2, 65536].

    Attributes
    ----------
    tx_in : In(stream.Signature(unsigned(width), always_ready=True))
        Flits from the transmitting link layer, at most one per cycle. Always ready: the
        transmitter never waits.
    rx_out : Out(stream.Signature(unsigned(width), always_ready=True))
        Flits delivered to the receiver. ``payload`` is meaningful only when ``valid``.
    latency : In(unsigned(log2(max_latency) + 1)), init 1
        Delay in cycles, 1..``max_latency``. Other values act as
        ``((latency - 1) mod max_latency) + 1``. Change it only while the channel is empty.
    drop_thresh : In(32)
        A flit is dropped when its 32-bit draw is below this (P = thresh / 2**32).
    flip_thresh : In(32)
        Probability (as above) of flipping one pseudo-randomly chosen bit of a flit.
    burst_enter_thresh : In(32)
        Per-cycle probability of entering the burst state of the Gilbert-Elliott model.
    burst_exit_thresh : In(32)
        Per-cycle probability of leaving the burst state.
    burst_flip_thresh : In(32)
        In the burst state, probability that a flit is hit by a burst of up to 8 flipped
        adjacent bits.
    stall_thresh : In(32)
        Per-cycle probability of starting a stall (when not already stalled).
    stall_len : In(16)
        Length of a stall in cycles; nothing is delivered while stalled, flits wait in the
        elastic FIFO and a flit that finds it full is lost (``overflow``).
    seed : In(64)
        PRNG seed, loaded by ``seed_load``.
    seed_load : In(1)
        Pulse: this cycle becomes the first cycle of a new run. Seeds the PRNG, clears the
        burst and stall states and restarts the counters (this cycle's events included).
        In-flight flits are kept.
    flits_in, flits_out, dropped, corrupted, overflow, stall_cycles : Out(32)
        Event counters (wrapping): flits sent, flits delivered, flits dropped, flits with
        at least one flipped bit, flits lost to a full FIFO, stalled cycles.
    in_burst : Out(1)
        The Gilbert-Elliott model is in the burst state this cycle.
    stalled : Out(1)
        The channel is stalled this cycle.
    fifo_level : Out(range(fifo_depth + 1))
        Flits held in the elastic FIFO.
    """

    def __init__(self, *, width: int, max_latency: int = 64, fifo_depth: int = 64) -> None:
        try:
            check_channel_params(width, max_latency, fifo_depth)
        except ValueError:
            self._MustUse__silence = True  # no "created but never used" warning on bad args
            raise
        self.width = width
        self.max_latency = max_latency
        self.fifo_depth = fifo_depth
        flit = unsigned(width)
        members = {
            "tx_in": In(stream.Signature(flit, always_ready=True)),
            "rx_out": Out(stream.Signature(flit, always_ready=True)),
            "latency": In(unsigned(max_latency.bit_length()), init=1),
            "drop_thresh": In(32),
            "flip_thresh": In(32),
            "burst_enter_thresh": In(32),
            "burst_exit_thresh": In(32),
            "burst_flip_thresh": In(32),
            "stall_thresh": In(32),
            "stall_len": In(STALL_LEN_BITS),
            "seed": In(64),
            "seed_load": In(1),
            "flits_in": Out(32),
            "flits_out": Out(32),
            "dropped": Out(32),
            "corrupted": Out(32),
            "overflow": Out(32),
            "stall_cycles": Out(32),
            "in_burst": Out(1),
            "stalled": Out(1),
            "fifo_level": Out(range(fifo_depth + 1)),
        }
        super().__init__(_PortSignature(members))

    def elaborate(self, platform) -> Module:
        m = Module()
        width = self.width
        n = self.max_latency
        load = self.seed_load

        # PRNG: four xorshift64* lanes; in the seed_load cycle the seeded state is used.
        outs = []
        for k, (a, b, c) in enumerate(LANE_TRIPLES):
            const = LANE_SEED_XOR[k]
            state = Signal(64, name=f"prng{k}", init=const)
            seeded = Signal(64, name=f"prng{k}_seeded")
            cur = Signal(64, name=f"prng{k}_cur")
            out = Signal(64, name=f"prng{k}_out")
            x1 = Signal(64, name=f"prng{k}_x1")
            x2 = Signal(64, name=f"prng{k}_x2")
            m.d.comb += [
                seeded.eq(self.seed ^ const),
                cur.eq(Mux(load, Mux(seeded == 0, const, seeded), state)),
                out.eq(cur * XS_MULT),
                x1.eq(cur ^ (cur >> a)),
                x2.eq(x1 ^ (x1 << b)),
            ]
            m.d.sync += state.eq(x2 ^ (x2 >> c))
            outs.append(out)
        r_drop, r_stall = outs[0][32:], outs[0][:32]
        r_flip, r_flip_pos = outs[1][32:], outs[1][:32]
        r_ge, r_burst = outs[2][32:], outs[2][:32]
        r_bpos, r_bpat = outs[3][32:], outs[3][24:32]

        # Gilbert-Elliott state and stall counter (taken as cleared in the seed_load cycle).
        burst_reg = Signal()
        burst = Signal()
        stall_rem = Signal(STALL_LEN_BITS)
        rem = Signal(STALL_LEN_BITS)
        stalled = Signal()
        m.d.comb += [
            burst.eq(burst_reg & ~load),
            rem.eq(Mux(load, 0, stall_rem)),
            stalled.eq(rem != 0),
            self.in_burst.eq(burst),
            self.stalled.eq(stalled),
        ]
        m.d.sync += burst_reg.eq(
            Mux(burst, ~(r_ge < self.burst_exit_thresh), r_ge < self.burst_enter_thresh)
        )
        with m.If(stalled):
            m.d.sync += stall_rem.eq(rem - 1)
        with m.Elif(r_stall < self.stall_thresh):
            m.d.sync += stall_rem.eq(self.stall_len)
        with m.Else():
            m.d.sync += stall_rem.eq(0)

        # Input stage: drop, single-bit flip, burst flip.
        drop = Signal()
        keep = Signal()
        pos1 = Signal(range(width), name="flip_pos")
        pos2 = Signal(range(width), name="burst_pos")
        mask1 = Signal(width)
        mask2 = Signal(width)
        mask = Signal(width)
        data = Signal(width)
        corrupt = Signal()
        m.d.comb += [
            drop.eq(self.tx_in.valid & (r_drop < self.drop_thresh)),
            keep.eq(self.tx_in.valid & ~drop),
            pos1.eq((r_flip_pos * width)[32:]),
            pos2.eq((r_bpos * width)[32:]),
            mask1.eq(Mux(r_flip < self.flip_thresh, Const(1, width) << pos1, 0)),
            mask2.eq(Mux(burst & (r_burst < self.burst_flip_thresh), (r_bpat | 1) << pos2, 0)),
            mask.eq(mask1 ^ mask2),
            data.eq(self.tx_in.payload ^ mask),
            corrupt.eq(keep & (mask != 0)),
        ]

        # Delay line: ring buffer, written every cycle, read at wptr - (latency - 1).
        m.submodules.delay = delay = Memory(shape=width, depth=n, init=[])
        wport = delay.write_port()
        rport = delay.read_port(transparent_for=(wport,))
        abits = (n - 1).bit_length()
        wptr = Signal(abits)
        raddr = Signal(abits)
        vld = Signal(n)
        d_valid = Signal()
        m.d.comb += [
            raddr.eq(wptr - (self.latency - 1)),
            wport.addr.eq(wptr),
            wport.data.eq(data),
            wport.en.eq(1),
            rport.addr.eq(raddr),
        ]
        m.d.sync += [
            wptr.eq(wptr + 1),
            vld.bit_select(wptr, 1).eq(keep),
            d_valid.eq(Mux(raddr == wptr, keep, vld.bit_select(raddr, 1))),
        ]
        d_data = rport.data

        # Output stage: bypass when the FIFO is empty, else drain it; stalls fill it.
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=width, depth=self.fifo_depth)
        ovf = Signal()
        m.d.comb += [
            fifo.w_data.eq(d_data),
            self.fifo_level.eq(fifo.level),
            self.rx_out.payload.eq(Mux(fifo.level == 0, d_data, fifo.r_data)),
            ovf.eq(fifo.w_en & ~fifo.w_rdy),
        ]
        with m.If(stalled):
            m.d.comb += fifo.w_en.eq(d_valid)
        with m.Elif(fifo.level == 0):
            m.d.comb += self.rx_out.valid.eq(d_valid)
        with m.Else():
            m.d.comb += [
                fifo.r_en.eq(1),
                fifo.w_en.eq(d_valid),
                self.rx_out.valid.eq(fifo.r_rdy),
            ]

        # Counters: restart in the seed_load cycle, counting that cycle's events.
        for ctr, ev in (
            (self.flits_in, self.tx_in.valid),
            (self.flits_out, self.rx_out.valid),
            (self.dropped, drop),
            (self.corrupted, corrupt),
            (self.overflow, ovf),
            (self.stall_cycles, stalled),
        ):
            m.d.sync += ctr.eq(Mux(load, 0, ctr) + ev)
        return m
