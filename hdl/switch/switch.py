"""The switch chip: input units, allocator, crossbar, output units and the error responder.

Pipeline (zero-load, port to port = 2 cycles): a flit arriving at an input port is routed and
written into its virtual output queue in its arrival cycle; the next cycle the allocator
matches inputs to outputs, the crossbar moves the flit and the output unit registers it onto
the output port. With ``SwitchParams.registered_grant`` (3 cycles) the matching is registered
and the flit is read from its queue and crosses the crossbar the cycle after its allocation,
so that allocation and traversal are separate timing paths (for FPGA clock rates); credits,
VC ownership and queue state still follow every grant in its own cycle, so throughput is
unchanged. ``SwitchParams.registered_route`` adds one more cycle: an arriving flit is queued
the cycle after its route compute.
"""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from unifab.flit import flit_layout
from unifab.hdl.lib.arbiter import onehot_index, onehot_mux
from unifab.hdl.lib.counters import CounterBank
from unifab.hdl.lib.port import FabricLink
from unifab.hdl.switch.allocator import ISlipAllocator, WavefrontAllocator
from unifab.hdl.switch.crossbar import Crossbar
from unifab.hdl.switch.input_unit import INPUT_COUNTERS, InputUnit
from unifab.hdl.switch.output_unit import OUTPUT_COUNTERS, OutputUnit
from unifab.hdl.switch.responder import RESPONDER_COUNTERS, Responder
from unifab.hdl.switch.tables import SwitchTables
from unifab.switch_config import SwitchConfig, SwitchParams

__all__ = ["COUNTER_STRIDE", "PORT_COUNTERS", "RESPONDER_COUNTERS", "Switch", "counter_address"]

#: Counters of each port, in read-port order: port ``p`` counter ``k`` is at ``p * 16 + k``.
PORT_COUNTERS = INPUT_COUNTERS + OUTPUT_COUNTERS
COUNTER_STRIDE = 16


class Switch(wiring.Component):
    """An N-port, V-virtual-channel switch with credit flow control on every port.

    Ports
    -----
    inputs : In(FabricLink).array(ports)
        Flits arriving at each port; each sender starts with ``buffer_depth`` credits per VC.
    outputs : Out(FabricLink).array(ports)
        Flits leaving each port; the switch starts with ``downstream_depth`` credits per VC.
    cfg_we, cfg_addr, cfg_data : In(1), In(16), In(64)
        Table register writes (register map in ``docs/switch.md``).
    ctr_addr : In(16)
        Counter to read: port ``p`` counter ``k`` (:data:`PORT_COUNTERS`) at ``p * 16 + k``,
        responder counter ``k`` (:data:`RESPONDER_COUNTERS`) at ``ports * 16 + k``.
    ctr_data : Out(32)
        Its value, one cycle after ``ctr_addr`` (counting the events up to the cycle before
        ``ctr_addr``).
    xbar_error : Out(1)
        Sticky: the crossbar saw a select that was not one-hot (must never happen).
    """

    def __init__(self, params: SwitchParams | None = None, config: SwitchConfig | None = None):
        self.params = params = params or SwitchParams()
        self.config = config = config or SwitchConfig()
        config.check_fits(params)
        f = params.fabric
        super().__init__(
            {
                "inputs": In(FabricLink(f)).array(params.ports),
                "outputs": Out(FabricLink(f)).array(params.ports),
                "cfg_we": In(1),
                "cfg_addr": In(16),
                "cfg_data": In(64),
                "ctr_addr": In(16),
                "ctr_data": Out(32),
                "xbar_error": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        p = self.params
        f = p.fabric
        n = p.ports
        n_all = n + 1  # the responder is input and output number n

        m.submodules.tables = tables = SwitchTables(p, self.config, lookups=n + 1)
        m.d.comb += [
            tables.cfg_we.eq(self.cfg_we),
            tables.cfg_addr.eq(self.cfg_addr),
            tables.cfg_data.eq(self.cfg_data),
        ]
        inputs = []
        for i in range(n):
            unit = InputUnit(p, port=i)
            m.submodules[f"input{i}"] = unit
            inputs.append(unit)
            wiring.connect(m, wiring.flipped(self.inputs[i]), unit.inp)
            m.d.comb += [
                unit.tables.eq(tables.tables),
                tables.route_node[i].eq(unit.route_node),
                unit.route.eq(tables.route[i]),
            ]
        m.submodules.responder = responder = Responder(p)
        m.d.comb += [
            responder.tables.eq(tables.tables),
            tables.route_node[n].eq(responder.route_node),
            responder.route.eq(tables.route[n]),
        ]
        outputs = []
        for o in range(n):
            unit = OutputUnit(p, n_in=n_all)
            m.submodules[f"output{o}"] = unit
            outputs.append(unit)
            wiring.connect(m, unit.out, wiring.flipped(self.outputs[o]))

        if p.allocator == "wavefront":
            alloc = WavefrontAllocator(n_in=n_all, n_out=n_all)
        else:
            iterations = 1 if p.allocator == "fifo" else p.islip_iterations
            alloc = ISlipAllocator(n_in=n_all, n_out=n_all, iterations=iterations)
        m.submodules.allocator = alloc
        sources = [*inputs, responder]
        for i, src in enumerate(sources):
            m.d.comb += [alloc.requests[i].eq(src.requests), src.grant.eq(alloc.grants[i])]

        # The allocation's outcome reaches the outputs in its own cycle (credits and VC
        # ownership must be updated before the next allocation): each output takes the offer
        # (VC one-hot, head, tail) its granted input made for it, an AND-OR with the
        # allocator's column. An input's offers are ready before the grant, so the loop from
        # the outputs' state through the allocator back to it ends at the grant, not at the
        # input's choice among its offers. The crossbar moves the flits, in the same cycle or,
        # with registered_grant, from the registered matching a cycle later.
        offer = data.StructLayout({"vcs": f.vcs, "head": 1, "tail": 1})
        offers = []  # offers[i][o]: input i's offer for output o
        for src in sources:
            if src is responder:
                # One response at a time, its VC from its queue's output register.
                vcs_onehot = (Const(1, f.vcs) << src.alloc_vc)[: f.vcs]
                row = [Cat(vcs_onehot, src.alloc_head, src.alloc_tail)] * n_all
            else:
                row = [
                    Cat(src.offer_vcs[o], src.offer_head[o], src.offer_tail[o])
                    for o in range(n_all)
                ]
            offers.append(row)
        fb = flit_layout(f).size
        m.submodules.crossbar = xbar = Crossbar(n_in=n_all, n_out=n_all, width=fb + f.vc_bits)
        for i, src in enumerate(sources):
            if p.registered_grant:
                granted = Signal(n_all, name=f"granted{i}")
                m.d.sync += granted.eq(alloc.grants[i])
            else:
                granted = alloc.grants[i]
            m.d.comb += [
                xbar.select[i].eq(granted),
                xbar.inputs[i].eq(Cat(src.out_flit, src.out_vc)),
            ]
        m.d.comb += self.xbar_error.eq(xbar.onehot_error)
        for o, unit in enumerate([*outputs, responder]):
            column = Signal(n_all, name=f"granted_to{o}")  # the input granted this output
            grant = Signal(offer, name=f"alloc{o}")
            m.d.comb += [
                column.eq(Cat(alloc.grants[i][o] for i in range(n_all))),
                grant.eq(onehot_mux(column, [row[o] for row in offers])),
            ]
            if o < n:
                m.d.comb += [
                    unit.alloc_vcs.eq(grant.vcs),
                    unit.alloc_head.eq(grant.head),
                    unit.alloc_tail.eq(grant.tail),
                    unit.alloc_src.eq(column),
                    unit.wanted.eq(Cat(u.credit_blocked[o] for u in inputs).any()),
                ]
            else:
                m.d.comb += [
                    unit.in_alloc_valid.eq(column.any()),
                    unit.in_alloc_vc.eq(onehot_index(grant.vcs, f.vcs)),
                    unit.in_alloc_head.eq(grant.head),
                ]
            m.d.comb += [
                unit.in_valid.eq(xbar.valid[o]),
                unit.in_flit.eq(xbar.outputs[o][:fb]),
                unit.in_vc.eq(xbar.outputs[o][fb:]),
            ]

        # Output state seen by every input: credits, and whether a message may start on / is
        # owned by the asking input on each output VC. The responder takes any interleaving.
        all_ones = (1 << f.vcs) - 1
        for i, src in enumerate(sources):
            for o in range(n_all):
                if o < n:
                    out = outputs[o]
                    mine = Cat(out.owned_by[v][i] for v in range(f.vcs))
                    credit_ok, may_head = out.credit_ok, out.may_head
                    may_body = ~out.may_head & mine
                else:
                    credit_ok, may_head, may_body = responder.credit_ok, all_ones, all_ones
                if src is responder:
                    m.d.comb += [
                        src.credit_ok_out[o].eq(credit_ok),
                        src.may_head_out[o].eq(may_head),
                    ]
                else:
                    m.d.comb += [
                        src.credit_ok[o].eq(credit_ok),
                        src.may_head[o].eq(may_head),
                        src.may_body[o].eq(may_body),
                    ]

        # Counters: every unit's events, counted in one bank of distributed RAM. The read
        # port's sparse addresses (a block of COUNTER_STRIDE per port) map onto the bank's.
        events = []
        addresses = []
        for port in range(n):
            events += [inputs[port].events, outputs[port].events]
            addresses += [port * COUNTER_STRIDE + k for k in range(len(PORT_COUNTERS))]
        events.append(responder.events)
        addresses += [n * COUNTER_STRIDE + k for k in range(len(RESPONDER_COUNTERS))]
        m.submodules.counters = bank = CounterBank(count=len(addresses))
        # Not registered: with a register here Yosys 0.70 (yowasp) failed an assertion in
        # abc9's ABC_OPS_REINTEGRATE on the whole board top (docs/fpga.md).
        m.d.comb += bank.events.eq(Cat(*events))
        known = Signal()
        with m.Switch(self.ctr_addr):
            for index, addr in enumerate(addresses):
                with m.Case(addr):
                    m.d.comb += [bank.addr.eq(index), known.eq(1)]
        shown = Signal()  # the address read last cycle names a counter
        m.d.sync += shown.eq(known)
        m.d.comb += self.ctr_data.eq(Mux(shown, bank.data, 0))
        return m


def counter_address(params: SwitchParams, port: int, name: str) -> int:
    """Read-port address of a named counter (``port == params.ports`` for the responder)."""
    if port == params.ports:
        return port * COUNTER_STRIDE + RESPONDER_COUNTERS.index(name)
    return port * COUNTER_STRIDE + PORT_COUNTERS.index(name)
