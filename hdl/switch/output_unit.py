"""Switch output unit: downstream credits, output-VC ownership, the registered output."""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from unifab.flit import flit_layout
from unifab.hdl.lib.arbiter import onehot_index
from unifab.hdl.lib.port import FabricLink
from unifab.switch_config import SwitchParams

__all__ = ["OUTPUT_COUNTERS", "OutputUnit"]

OUTPUT_COUNTERS = ("flits_out0", "flits_out1", "flits_out2", "flits_out3", "credit_stalls")


class OutputUnit(wiring.Component):
    """Output unit of one switch port.

    Tracks the downstream receiver's credits per VC (``downstream_depth`` after reset) and
    which input owns each output VC while a multi-flit message passes: an output VC carries
    one message at a time, from head flit to tail flit.

    Ports
    -----
    out : Out(FabricLink)
        Flits to downstream, registered; credits come back on ``out.credit``.
    alloc_vcs, alloc_head, alloc_tail, alloc_src : In(vcs), In(1), In(1), In(n_in)
        From the allocation: a flit was granted this output this cycle on the VC set in the
        one-hot ``alloc_vcs`` (zero: none), starting / ending a message, from the input set in
        the one-hot ``alloc_src``. Credits and VC ownership follow these, so the next cycle's
        allocation sees them. One-hot, because they end the switch's allocation loop: the
        switch picks them from the granted input's offer without an encoder or a compare.
    in_valid, in_vc, in_flit : In(1), In(vc_bits), In(flit_layout)
        From the crossbar: the flit crossing this cycle (the granted one, in the same cycle
        as ``alloc_*`` or, when the switch registers its grants, in the next).
    credit_ok : Out(vcs)
        A credit is held for the VC (from a flop, loaded with the next count's test: the
        allocation that reads it starts from registers).
    may_head : Out(vcs)
        The VC is free: a new message may start on it.
    owner : Out(ArrayLayout(range(n_in), vcs))
        The input whose message holds the VC (meaningful while it is not free).
    owned_by : Out(ArrayLayout(n_in, vcs))
        ``owner`` one-hot, from flops (an input's "this VC is mine" without a compare).
    wanted : In(1)
        Some input has a flit for this output that waits only for a credit (for
        ``credit_stalls``).
    events : Out(len(OUTPUT_COUNTERS))
        Bit ``k``: an event of counter :data:`OUTPUT_COUNTERS` ``[k]`` this cycle (flits are
        counted at their grant).
    """

    def __init__(self, params: SwitchParams, *, n_in: int):
        self.params, self.n_in = params, n_in
        f = params.fabric
        members = {
            "out": Out(FabricLink(f)),
            "alloc_vcs": In(f.vcs),
            "alloc_head": In(1),
            "alloc_tail": In(1),
            "alloc_src": In(n_in),
            "in_valid": In(1),
            "in_vc": In(f.vc_bits),
            "in_flit": In(flit_layout(f)),
            "credit_ok": Out(f.vcs),
            "may_head": Out(f.vcs),
            "owner": Out(data.ArrayLayout(range(n_in), f.vcs)),
            "owned_by": Out(data.ArrayLayout(n_in, f.vcs)),
            "wanted": In(1),
        }
        members["events"] = Out(len(OUTPUT_COUNTERS))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        f = p.fabric
        depth = p.downstream_depth
        m.d.sync += [
            self.out.valid.eq(self.in_valid),
            self.out.vc.eq(self.in_vc),
            self.out.flit.eq(self.in_flit),
        ]
        busy = Signal(f.vcs)
        for v in range(f.vcs):
            credits = Signal(range(depth + 1), init=depth, name=f"credits{v}")
            credit_ok = Signal(init=depth != 0, name=f"credit_ok{v}")
            send = Signal(name=f"send{v}")
            # `send` comes last (at the end of the allocation): both next counts, with and
            # without this cycle's flit, and their tests are made from flops and the returned
            # credit, and `send` only picks one.
            kept = Signal(range(depth + 1), name=f"kept{v}")  # next count without a send
            spent = Signal(range(depth + 1), name=f"spent{v}")  # next count with one
            m.d.comb += [
                send.eq(self.alloc_vcs[v]),
                kept.eq(credits + self.out.credit[v]),
                spent.eq(credits + self.out.credit[v] - 1),
                self.credit_ok[v].eq(credit_ok),
                self.may_head[v].eq(~busy[v]),
            ]
            m.d.sync += [
                credits.eq(Mux(send, spent, kept)),
                credit_ok.eq(Mux(send, spent != 0, kept != 0)),
            ]
            with m.If(send):
                with m.If(self.alloc_tail):
                    m.d.sync += busy[v].eq(0)
                with m.Elif(self.alloc_head):
                    m.d.sync += [
                        busy[v].eq(1),
                        self.owner[v].eq(onehot_index(self.alloc_src, self.n_in)),
                        self.owned_by[v].eq(self.alloc_src),
                    ]
        # Per message class (the VC number's low two bits).
        event = {
            f"flits_out{c}": Cat(self.alloc_vcs[v] for v in range(c, f.vcs, 4)).any()
            for c in range(4)
        }
        event["credit_stalls"] = self.wanted
        m.d.comb += self.events.eq(Cat(event[name] for name in OUTPUT_COUNTERS))
        return m
