"""Harnesses for the shared blocks: round-robin arbiter, credit counter, fabric port adapters."""

from __future__ import annotations

from amaranth import C, Cat, Elaboratable, Module, Mux, Signal, Value
from amaranth.asserts import AnySeq, Initial
from amaranth.hdl import Assert, Assume, Cover

from unifab.flit import FabricParams
from unifab.hdl.lib.arbiter import RoundRobin
from unifab.hdl.lib.port import FabricToStreams, StreamsToFabric
from unifab.hdl.link.credits import CreditCounter

from .props import any_seq, assert_stream_out, deep_peek, drive_stream_in, past, past_valid, peek

__all__ = ["CreditLoopHarness", "PortPairHarness", "RoundRobinHarness"]


class RoundRobinHarness(Elaboratable):
    """:class:`RoundRobin` with free requests: a grant only goes to a requester, ``valid`` is
    "someone asks", the one-hot grant is the index grant, and the priority pointer is one-hot."""

    def __init__(self, count: int = 3, dut_cls: type = RoundRobin):
        self.count, self.dut_cls = count, dut_cls

    def elaborate(self, platform):
        m = Module()
        n = self.count
        dut = self.dut_cls(count=n)
        mod, sig = peek(dut)
        m.submodules.dut = mod
        req = any_seq(m, n, "requests")
        adv = any_seq(m, 1, "advance")
        m.d.comb += [dut.requests.eq(req), dut.advance.eq(adv)]
        m.d.comb += [
            Assert(dut.valid == req.any(), "valid iff a request"),
            Assert(sig["last"].any() & ((sig["last"] & (sig["last"] - 1)) == 0), "pointer one-hot"),
            Assert(dut.grant_onehot == Mux(dut.valid, 1 << dut.grant, 0), "one-hot grant"),
        ]
        with m.If(dut.valid):
            m.d.comb += [
                Assert(dut.grant < n, "grant in range"),
                Assert(req.bit_select(dut.grant, 1), "grant goes to a requester"),
            ]
        # Fairness, as covers: with everyone asking, each index is granted in turn.
        for i in range(n):
            m.d.comb += Cover(dut.valid & (req == (1 << n) - 1) & (dut.grant == i) & adv)
        return m


class CreditLoopHarness(Elaboratable):
    """:class:`CreditCounter` against an abstract peer receive buffer of ``depth`` flits.

    The peer takes every consumed credit as a flit into its buffer, pops flits at will, and
    returns the freed credits at will (any amount up to ``max_give`` at once, never more than
    it freed; any value on ``give`` while ``give_valid`` is low). The sender consumes only
    while ``available``. Proved: the count never goes above ``depth`` and never wraps below
    zero (``count + peer buffer + owed == depth``), and no overflow is flagged. A link
    restart (``fill``) empties the peer too.
    """

    def __init__(self, depth: int = 3, max_give: int = 3, dut_cls: type = CreditCounter):
        self.depth, self.max_give, self.dut_cls = depth, max_give, dut_cls

    def elaborate(self, platform):
        m = Module()
        d = self.depth
        m.submodules.dut = dut = self.dut_cls(depth=d, max_give=self.max_give)
        wide = range(4 * d + 4)
        occ = Signal(wide)  # flits in the peer's buffer
        owed = Signal(wide)  # credits freed, not yet returned
        fill = any_seq(m, 1, "fill")
        consume = any_seq(m, 1, "consume")
        pop = any_seq(m, 1, "pop")
        give = any_seq(m, len(dut.give), "give")
        give_valid = any_seq(m, 1, "give_valid")
        m.d.comb += [
            Assume(fill | ~Initial()),  # the link starts with a (re)start
            Assume(~consume | dut.available),
            Assume(~pop | (occ != 0)),
            Assume(~give_valid | (give <= owed)),
            Assume(give <= self.max_give),
            dut.fill.eq(fill),
            dut.consume.eq(consume),
            dut.give.eq(give),
            dut.give_valid.eq(give_valid),
        ]
        with m.If(fill):
            m.d.sync += [occ.eq(0), owed.eq(0)]
        with m.Else():
            m.d.sync += [
                occ.eq(occ + consume - pop),
                owed.eq(owed - Mux(give_valid, give, 0) + pop),
            ]
        started = Signal()
        m.d.sync += started.eq(1)
        with m.If(started):
            m.d.comb += [
                Assert(dut.count + occ + owed == d, "credits conserved"),
                Assert(dut.count <= d, "count never above the peer's buffer"),
                Assert(~dut.overflow, "no overflow"),
            ]
        pv = past_valid(m)
        had_zero = Signal()
        with m.If(started & (dut.count == 0)):
            m.d.sync += had_zero.eq(1)
        m.d.comb += [
            Cover(started & (dut.count == 0)),
            Cover(had_zero & (dut.count == d)),
            Cover(pv & (past(m, give, "give_past") == self.max_give) & ~past(m, fill, "fill_p")),
            Cover(started & consume & (give != 0)),
        ]
        return m


class PortPairHarness(Elaboratable):
    """:class:`StreamsToFabric` (``credits=depth``) wired to :class:`FabricToStreams`
    (``depth``) through a fabric port, free traffic on all VCs at both ends.

    Proved per VC: ``sender credits + flit on the wire + receiver FIFO level == depth``
    (credits never negative, never above the receiver's buffer), the receiver never flags an
    overflow, and every receive stream keeps the valid/ready contract (the send streams are
    assumed to). With ``registered``, the receiver is the registered variant (its level counts
    the flit in its output register, and a credit can be in its credit register).
    """

    def __init__(
        self,
        fabric: FabricParams | None = None,
        depth: int = 2,
        send_cls: type = StreamsToFabric,
        registered: bool = False,
    ):
        self.fabric = fabric or FabricParams()
        self.depth, self.send_cls, self.registered = depth, send_cls, registered

    def elaborate(self, platform):
        m = Module()
        f, d = self.fabric, self.depth
        tx = self.send_cls(f, credits=d)
        rx = FabricToStreams(f, depth=d, registered=self.registered)
        tx_mod, tx_sig = deep_peek(tx)
        rx_mod, rx_sig = deep_peek(rx)
        m.submodules.tx, m.submodules.rx = tx_mod, rx_mod
        m.d.comb += [
            rx.port.valid.eq(tx.port.valid),
            rx.port.vc.eq(tx.port.vc),
            rx.port.flit.eq(tx.port.flit),
            tx.port.credit.eq(rx.port.credit),
        ]
        for v in range(f.vcs):
            drive_stream_in(m, tx.streams[v], f"send{v}")
            m.d.comb += rx.streams[v].ready.eq(AnySeq(1))
            assert_stream_out(m, rx.streams[v], f"recv{v}")
            credits = tx_sig[f"credits{v}"]
            level = rx_sig[f"vc{v}.level"]
            wire = tx.port.valid & (tx.port.vc == v)
            # The registered receiver returns a credit from a register: one more place a
            # credit can be on its way.
            back = rx.port.credit[v] if self.registered else C(0, 1)
            m.d.comb += [
                Assert(credits + wire + level + back == d, f"VC {v}: credits conserved"),
                Assert(credits <= d, f"VC {v}: credits never above the receiver's buffer"),
                Cover((credits == 0) & (level == d)),
            ]
            # Receiver FIFO bookkeeping (closes the induction). The registered variant's RAM
            # part (depth d, one spare) holds the flits not yet in its output register.
            produce, consume = rx_sig[f"vc{v}.produce"], rx_sig[f"vc{v}.consume"]
            in_ram = rx_sig[f"vc{v}.inner_level"] if self.registered else level
            m.d.comb += [
                Assert(level <= d),
                Assert(in_ram <= d),
                Assert((produce < d) & (consume < d)),
                Assert(produce == _mod(consume + in_ram, d), f"VC {v}: FIFO pointers agree"),
            ]
        if "arbiter.last" in tx_sig:  # as props.assert_arbiter_pointers (closes induction)
            last = tx_sig["arbiter.last"]
            m.d.comb += Assert(last.any() & ((last & (last - 1)) == 0), "arbiter pointer one-hot")
        m.d.comb += [
            Assert(~rx.overflow, "receiver never overflows"),
            Assert(tx.port.vc < f.vcs, "only real VCs on the wire"),
            Cover(Cat(rx.port.credit).all()),
        ]
        return m


def _mod(value: Value, modulus: int) -> Value:
    """``value mod modulus`` for ``value < 2 * modulus``."""
    return Mux(value >= modulus, value - modulus, value)
