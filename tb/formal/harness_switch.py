"""Harnesses for the switch: allocators, crossbar, output unit."""

from __future__ import annotations

from contextlib import contextmanager

from amaranth import Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Cover

from unifab.flit import HEADER_BITS, FabricParams, flit_layout
from unifab.hdl.switch import input_unit as input_unit_module
from unifab.hdl.switch.crossbar import Crossbar
from unifab.hdl.switch.input_unit import InputUnit
from unifab.hdl.switch.output_unit import OutputUnit
from unifab.hdl.switch.route import RouteCompute
from unifab.switch_config import SwitchParams

from .props import any_seq, deep_peek, peek, small_fabric

__all__ = ["AllocatorHarness", "CrossbarHarness", "InputUnitHarness", "OutputUnitHarness"]


def _at_most_one(bits: list) -> object:
    seen = Cat(bits[:1]).any() if bits else 0
    twice = 0
    for b in bits[1:]:
        twice = twice | (seen & b)
        seen = seen | b
    return ~twice


class AllocatorHarness(Elaboratable):
    """An allocator under free requests: its grants are a matching inside the requests (at
    most one grant per output and per input each cycle, only where requested)."""

    def __init__(self, cls: type, n_in: int = 3, n_out: int = 3, **kwargs):
        self.dut_cls, self.n_in, self.n_out, self.kwargs = cls, n_in, n_out, kwargs

    def elaborate(self, platform):
        m = Module()
        ni, no = self.n_in, self.n_out
        m.submodules.dut = dut = self.dut_cls(n_in=ni, n_out=no, **self.kwargs)
        for i in range(ni):
            m.d.comb += dut.requests[i].eq(AnySeq(no))
        for i in range(ni):
            m.d.comb += [
                Assert((dut.grants[i] & ~dut.requests[i]) == 0, f"input {i}: grant ⊆ requests"),
                Assert(
                    _at_most_one([dut.grants[i][o] for o in range(no)]),
                    f"input {i}: at most one grant per input",
                ),
            ]
        for o in range(no):
            m.d.comb += Assert(
                _at_most_one([dut.grants[i][o] for i in range(ni)]),
                f"output {o}: at most one grant per output",
            )
        everyone = Cat(dut.requests[i] == (1 << no) - 1 for i in range(ni)).all()
        size = sum(dut.grants[i].any() for i in range(ni))
        m.d.comb += Cover(everyone & (size == min(ni, no)))
        for i in range(ni):
            for o in range(no):
                m.d.comb += Cover(everyone & dut.grants[i][o])
        # Contention: two inputs want the same output, both get one (some other output).
        m.d.comb += Cover(
            (dut.requests[0] == 1) & (dut.requests[1] == 3) & dut.grants[0][0] & dut.grants[1][1]
        )
        return m


class CrossbarHarness(Elaboratable):
    """:class:`Crossbar` driven by any matching: each output carries exactly the word of the
    input granted to it, ``source`` names that input, and no one-hot error is raised."""

    def __init__(self, n_in: int = 3, n_out: int = 3, width: int = 4):
        self.n_in, self.n_out, self.width = n_in, n_out, width

    def elaborate(self, platform):
        m = Module()
        ni, no = self.n_in, self.n_out
        m.submodules.dut = dut = Crossbar(n_in=ni, n_out=no, width=self.width)
        for i in range(ni):
            m.d.comb += [dut.select[i].eq(AnySeq(no)), dut.inputs[i].eq(AnySeq(self.width))]
            m.d.comb += Assume(_at_most_one([dut.select[i][o] for o in range(no)]))
        for o in range(no):
            col = [dut.select[i][o] for i in range(ni)]
            m.d.comb += [
                Assume(_at_most_one(col)),
                Assert(dut.valid[o] == Cat(col).any()),
            ]
            for i in range(ni):
                with m.If(dut.select[i][o]):
                    m.d.comb += [
                        Assert(dut.outputs[o] == dut.inputs[i], "the granted input's word"),
                        Assert(dut.source[o] == i),
                    ]
            with m.If(~Cat(col).any()):
                m.d.comb += Assert(dut.outputs[o] == 0)
        m.d.comb += [
            Assert(~dut.onehot_error),
            Cover(dut.valid.all() & (dut.source[0] == ni - 1)),
        ]
        return m


class OutputUnitHarness(Elaboratable):
    """:class:`OutputUnit` fed by inputs that obey its credit and VC-ownership signals, and
    an abstract downstream receiver with ``downstream_depth`` flits per VC.

    Proved per output VC: credits are conserved (``credits + flit crossing + flit on the wire
    + downstream buffer + credits owed == depth``: never negative, never above the downstream
    buffer), and a multi-flit message is never interleaved with another: between a head flit
    (without tail) and its tail, every flit sent on the VC comes from the same input and is not
    a head. With ``registered_grant`` the granted flit crosses to the unit a cycle after its
    grant, as in a switch built with ``SwitchParams.registered_grant``.
    """

    def __init__(
        self,
        params: SwitchParams | None = None,
        n_in: int = 3,
        dut_cls: type = OutputUnit,
        *,
        invariants: bool = True,
        registered_grant: bool = False,
    ):
        self.invariants, self.registered_grant = invariants, registered_grant
        self.params = params or SwitchParams(
            fabric=FabricParams(), ports=2, buffer_depth=2, downstream_depth=2
        )
        self.n_in, self.dut_cls = n_in, dut_cls

    def elaborate(self, platform):
        m = Module()
        p = self.params
        f = p.fabric
        depth = p.downstream_depth
        dut = self.dut_cls(p, n_in=self.n_in)
        mod, sig = peek(dut)
        m.submodules.dut = mod

        valid = any_seq(m, 1, "in_valid")
        vc = any_seq(m, f.vc_bits, "in_vc")
        src = any_seq(m, max(self.n_in - 1, 1).bit_length(), "in_src")
        flit = Signal(flit_layout(f))
        m.d.comb += [
            flit.eq(AnySeq(flit_layout(f).size)),
            # The switch gives the VC (from the granted offer) and the source one-hot.
            dut.alloc_vcs.eq(Mux(valid, Const(1, f.vcs) << vc, 0)),
            dut.alloc_src.eq(Const(1, self.n_in) << src),
            dut.alloc_head.eq(flit.head),
            dut.alloc_tail.eq(flit.tail),
            dut.wanted.eq(AnySeq(1)),
        ]
        # The flit crossing to the unit: the granted one, now or a cycle later.
        crossing = Signal()
        crossing_vc = Signal(f.vc_bits)
        if self.registered_grant:
            crossing_flit = Signal(flit_layout(f))
            m.d.sync += [crossing.eq(valid), crossing_vc.eq(vc), crossing_flit.eq(flit)]
        else:
            crossing_flit = flit
            m.d.comb += [crossing.eq(valid), crossing_vc.eq(vc)]
        m.d.comb += [
            dut.in_valid.eq(crossing),
            dut.in_vc.eq(crossing_vc),
            dut.in_flit.eq(crossing_flit),
        ]
        # The input units' rule (InputUnit's `cand`): a credit, and a free VC for a head flit
        # or ownership of the VC for a body flit.
        with m.If(valid):
            m.d.comb += [Assume(vc < f.vcs), Assume(src < self.n_in)]
            for v in range(f.vcs):
                with m.If(vc == v):
                    m.d.comb += Assume(dut.credit_ok[v])
                    with m.If(flit.head):
                        m.d.comb += Assume(dut.may_head[v])
                    with m.Else():
                        m.d.comb += Assume(~dut.may_head[v] & (dut.owner[v] == src))

        for v in range(f.vcs):
            send = valid & (vc == v)
            # Downstream: a buffer that pops at will and returns one credit per cycle at most.
            occ = Signal(range(2 * depth + 2), name=f"down_occ{v}")
            owed = Signal(range(2 * depth + 2), name=f"down_owed{v}")
            pop = any_seq(m, 1, f"down_pop{v}")
            ret = any_seq(m, 1, f"down_ret{v}")
            wire = dut.out.valid & (dut.out.vc == v)
            m.d.comb += [
                Assume(~pop | (occ != 0)),
                Assume(~ret | (owed != 0)),
                dut.out.credit[v].eq(ret),
            ]
            m.d.sync += [occ.eq(occ + wire - pop), owed.eq(owed + pop - ret)]
            credits = sig[f"credits{v}"]
            granted = Const(0, 1)  # granted, not yet in the output register
            if self.registered_grant:
                granted = crossing & (crossing_vc == v)
            m.d.comb += [
                Assert(
                    credits + granted + wire + occ + owed == depth, f"VC {v}: credits conserved"
                ),
                Assert(credits <= depth, f"VC {v}: credits within the downstream buffer"),
            ]
            # The message currently open on this output VC, as seen from the flits sent.
            open_ = Signal(name=f"open{v}")
            open_src = Signal(len(src), name=f"open_src{v}")
            with m.If(send):
                with m.If(open_):
                    m.d.comb += [
                        Assert(src == open_src, f"VC {v}: no flit of another message"),
                        Assert(~flit.head, f"VC {v}: no new head inside a message"),
                    ]
                with m.Else():
                    m.d.comb += Assert(flit.head, f"VC {v}: a flit outside a message")
                with m.If(flit.tail):
                    m.d.sync += open_.eq(0)
                with m.Elif(flit.head):
                    m.d.sync += [open_.eq(1), open_src.eq(src)]
            if self.invariants:
                # Strengthening for induction: the unit's bookkeeping is the open message.
                m.d.comb += Assert(dut.may_head[v] == ~open_)
                with m.If(open_):
                    m.d.comb += Assert(dut.owner[v] == open_src)
            if v == 0:
                long_msg = Signal()
                with m.If(send & open_ & ~flit.tail):
                    m.d.sync += long_msg.eq(1)
                blocked = Signal()
                with m.If(long_msg & open_ & valid & (src != open_src) & (vc == 1)):
                    m.d.sync += blocked.eq(1)
                m.d.comb += [
                    Cover(send & flit.tail & long_msg & blocked),
                    Cover((credits == 0) & (occ == depth)),
                ]
        m.d.comb += Cover(dut.out.valid & dut.out.flit.head & dut.out.flit.tail)
        return m


class FreeRoute(RouteCompute):
    """Stand-in for :class:`RouteCompute` in the input-unit proof: any legal output port,
    error code and drop flag, the header passed through unchanged outside the fields the
    route compute may rewrite. The property ("leaves on the output its route computed") does
    not depend on how the route is computed; the real one is tested against the golden
    model by ``tests/test_switch_route.py``. Keeping its 48-bit address decoders made each
    BMC step several times slower.
    """

    def elaborate(self, platform):
        m = Module()
        n_out = self.params.ports + 1
        m.d.comb += [
            self.out_port.eq(AnySeq(len(self.out_port))),
            Assume(self.out_port < n_out),
            self.header_out.eq(AnySeq(len(self.header_out.as_value()))),
            self.error.eq(AnySeq(len(self.error.as_value()))),
            self.drop.eq(AnySeq(1)),
            self.route_node.eq(AnySeq(len(self.route_node))),
        ]
        return m


@contextmanager
def _free_route():
    saved = input_unit_module.RouteCompute
    input_unit_module.RouteCompute = FreeRoute
    try:
        yield
    finally:
        input_unit_module.RouteCompute = saved


class InputUnitHarness(Elaboratable):
    """:class:`InputUnit` of port 0 with free (credit-respecting) arrivals, any routing tables
    and any allocator grants that are a legal matching row (one-hot or zero, within the
    unit's requests).

    One flit, chosen by the solver and marked by the payload bits after the header (which
    the route compute never rewrites), is followed from arrival to departure: it leaves
    exactly once, on its VC, to the output its route computed on arrival (a head flit's own
    route, a body flit its head's). Also: the shared VOQ never overflows under the upstream
    credits, and a credit goes back exactly when a flit leaves its VC.
    """

    def __init__(self, params: SwitchParams | None = None, dut_cls: type = InputUnit):
        self.dut_cls = dut_cls
        self.params = params or SwitchParams(
            fabric=small_fabric(data_width=128, vcs=2),
            ports=2,
            buffer_depth=2,
            downstream_depth=1,
            ranges=1,
            rules=1,
        )

    def elaborate(self, platform):
        m = Module()
        p = self.params
        f = p.fabric
        dut = self.dut_cls(p, port=0)
        with _free_route():
            mod, sig = deep_peek(dut)
        m.submodules.dut = mod
        n_out = dut.n_out

        m.d.comb += [
            dut.tables.eq(AnyConst(len(dut.tables.as_value()))),
            dut.route.eq(AnySeq(len(dut.route.as_value()))),
            dut.credit_ok.eq(AnySeq(len(dut.credit_ok.as_value()))),
            dut.may_head.eq(AnySeq(len(dut.may_head.as_value()))),
            dut.may_body.eq(AnySeq(len(dut.may_body.as_value()))),
            dut.inp.valid.eq(AnySeq(1)),
            dut.inp.vc.eq(AnySeq(f.vc_bits)),
            dut.inp.flit.eq(AnySeq(flit_layout(f).size)),
        ]
        grant = any_seq(m, n_out, "grant")
        m.d.comb += [
            dut.grant.eq(grant),
            Assume(_at_most_one([grant[o] for o in range(n_out)])),
            Assume((grant & ~dut.requests) == 0),
        ]
        # Upstream credits.
        with m.If(dut.inp.valid):
            m.d.comb += Assume(dut.inp.vc < f.vcs)
        for v in range(f.vcs):
            up = Signal(range(p.buffer_depth + 2), init=p.buffer_depth, name=f"upstream{v}")
            arrive = dut.inp.valid & (dut.inp.vc == v)
            with m.If(arrive):
                m.d.comb += Assume(up != 0)
            m.d.sync += up.eq(up - arrive + dut.inp.credit[v])
            m.d.comb += [
                Assert(~sig[f"q{v}.overflow"], f"VC {v}: the shared VOQ never overflows"),
                Assert(dut.inp.credit[v] == (dut.out_valid & (dut.out_vc == v))),
            ]
        with m.If(dut.out_valid):
            m.d.comb += Assert(grant.any(), "a flit leaves only with a grant")
        # What OutputUnitHarness assumes of the inputs: a flit leaves only with a credit, and
        # a head flit only onto a free output VC, a body flit only onto one this input owns.
        for o in range(n_out):
            for v in range(f.vcs):
                with m.If(dut.out_valid & grant[o] & (dut.out_vc == v)):
                    lock_ok = Mux(dut.out_flit.head, dut.may_head[o][v], dut.may_body[o][v])
                    m.d.comb += [
                        Assert(dut.credit_ok[o][v], "a flit leaves only with a credit"),
                        Assert(lock_ok, "a flit leaves only onto a VC it may use"),
                    ]

        # The watched flit.
        tail_bits = slice(HEADER_BITS, f.payload_bits)
        magic = Signal(f.payload_bits - HEADER_BITS)
        m.d.comb += magic.eq(AnyConst(len(magic)))
        arriving = dut.inp.valid & (dut.inp.flit.payload[tail_bits] == magic)
        leaving = dut.out_valid & (dut.out_flit.payload[tail_bits] == magic)
        seen = Signal()
        gone = Signal()
        w_target = Signal(range(n_out))
        w_vc = Signal(f.vc_bits)
        w_head = Signal()
        with m.If(arriving):
            m.d.comb += Assume(~seen)  # the marked flit is unique
            m.d.sync += [
                seen.eq(1),
                w_target.eq(sig["target"]),
                w_vc.eq(dut.inp.vc),
                w_head.eq(dut.inp.flit.head),
            ]
        with m.If(leaving):
            m.d.comb += [
                Assert(seen & ~gone, "the watched flit leaves once, after it arrived"),
                Assert(grant == (1 << w_target)[:n_out], "on the output its route computed"),
                Assert(dut.out_vc == w_vc, "on its VC"),
            ]
            m.d.sync += gone.eq(1)
        m.d.comb += [
            Cover(leaving & w_head & (w_target == 1)),
            Cover(leaving & ~w_head & (w_target == 1)),
            Cover(leaving & (w_target == n_out - 1)),
        ]
        return m
