"""The switch's responder: answers refused requests, discards unroutable messages.

It is the crossbar's extra output (index ``ports``) and extra input. A request that route
compute refused (no address range, denied by the access table, malformed, unreachable home)
reaches it with ``err`` set in its header; the responder queues an ERROR response to the
request's source (same tag and address) and discards the request's data flits. A message of
another class that cannot be routed, or is malformed, is discarded and counted: a response to
a response is never sent. Nothing is dropped silently.
"""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from unifab.flit import HEADER_BITS, ErrorCode, Header, MsgClass, Opcode, flit_layout
from unifab.hdl.lib.port import credited_fifo
from unifab.hdl.switch.tables import route_entry_layout, tables_layout
from unifab.switch_config import SwitchParams

__all__ = ["RESPONDER_COUNTERS", "Responder"]

#: Counters of the responder: ERROR responses sent, non-request flits discarded, responses
#: whose requester cannot be reached (discarded).
RESPONDER_COUNTERS = ("responses", "discarded", "unreachable")


class Responder(wiring.Component):
    """Error responder of a switch.

    Ports
    -----
    tables : In(tables_layout)
        For the switch's node ID.
    route_node, route : Out(8), In(route_entry_layout)
        Lookup port into the node table: the route of each response.
    in_alloc_valid, in_alloc_vc, in_alloc_head : In(1), In(vc_bits), In(1)
        A flit was granted to the responder this cycle (used with ``registered_grant``, where
        it crosses the next cycle).
    in_valid, in_vc, in_flit : In(1), In(vc_bits), In(flit_layout)
        Flits the crossbar sends to the responder (registered on arrival).
    credit_ok : Out(vcs)
        The responder can take a flit on the VC: always, except on request VCs while its
        response queue has no room for it (counting request heads granted and not queued
        yet).
    requests : Out(ports)
        To the allocator (as crossbar input ``ports``): the queued response goes to output
        ``o``.
    grant : In(ports + 1)
        From the allocator.
    credit_ok_out, may_head_out : In(ArrayLayout(vcs, ports + 1))
        Output state, as for input units.
    alloc_valid, alloc_vc, alloc_head, alloc_tail : Out(1), Out(vc_bits), Out(1), Out(1)
        The response granted this cycle (as an input unit's).
    out_valid, out_vc, out_flit : Out(1), Out(vc_bits), Out(flit_layout)
        To the crossbar: the response, in the cycle of its grant or, with
        ``registered_grant``, the next.
    events : Out(len(RESPONDER_COUNTERS))
        Bit ``k``: an event of counter :data:`RESPONDER_COUNTERS` ``[k]`` this cycle.
    """

    def __init__(self, params: SwitchParams, *, depth: int = 4):
        self.params, self.depth = params, depth
        f = params.fabric
        n_out = params.ports + 1
        per_out = data.ArrayLayout(f.vcs, n_out)
        super().__init__(
            {
                "tables": In(tables_layout(params)),
                "route_node": Out(8),
                "route": In(route_entry_layout),
                "in_alloc_valid": In(1),
                "in_alloc_vc": In(f.vc_bits),
                "in_alloc_head": In(1),
                "in_valid": In(1),
                "in_vc": In(f.vc_bits),
                "in_flit": In(flit_layout(f)),
                "credit_ok": Out(f.vcs),
                "requests": Out(n_out),
                "grant": In(n_out),
                "credit_ok_out": In(per_out),
                "may_head_out": In(per_out),
                "alloc_valid": Out(1),
                "alloc_vc": Out(f.vc_bits),
                "alloc_head": Out(1),
                "alloc_tail": Out(1),
                "out_valid": Out(1),
                "out_vc": Out(f.vc_bits),
                "out_flit": Out(flit_layout(f)),
                "events": Out(len(RESPONDER_COUNTERS)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        p = self.params
        f = p.fabric
        ports = p.ports
        entry = data.StructLayout({"port": range(ports), "vc": f.vc_bits, "header": Header})
        # With registered_grant the queued response comes from the FIFO's output register (a
        # cycle later): its requests to the allocator start at a flop, not at the distributed
        # RAM's read (they began the switch's longest path on the board).
        queue = credited_fifo(width=entry.size, depth=self.depth, registered=p.registered_grant)
        m.submodules.queue = queue

        # The crossbar's flit is registered first: the node-table lookup and the queue write
        # then start a cycle instead of ending the allocation path (the switch's longest on an
        # FPGA). A request VC takes a flit only if the queue has room for it and for the one
        # still in the register.
        in_valid = Signal()
        in_vc = Signal(f.vc_bits)
        in_flit = Signal(flit_layout(f))
        m.d.sync += [in_valid.eq(self.in_valid), in_vc.eq(self.in_vc), in_flit.eq(self.in_flit)]
        is_req_vc = Signal()
        m.d.comb += is_req_vc.eq(in_vc[:2] == MsgClass.REQ.value)
        held = Signal()  # a request head in the register: it will take a queue slot
        m.d.comb += held.eq(in_valid & is_req_vc & in_flit.head)
        crossing = Signal()  # with registered_grant: one granted last cycle, crossing now
        if p.registered_grant:
            granted_req = self.in_alloc_head & (self.in_alloc_vc[:2] == MsgClass.REQ.value)
            m.d.sync += crossing.eq(self.in_alloc_valid & granted_req)
        room = Signal()
        m.d.comb += room.eq(queue.level + held + crossing < self.depth)
        request = Signal(Header)
        m.d.comb += request.eq(in_flit.payload[:HEADER_BITS])
        for v in range(f.vcs):
            m.d.comb += self.credit_ok[v].eq(1 if v % 4 != MsgClass.REQ.value else room)

        # A refused request's head flit becomes an ERROR response to its source.
        reply = Signal(Header)
        m.d.comb += [
            reply.opcode.eq(Opcode.ERROR),
            reply.cls.eq(MsgClass.RSP),
            reply.src.eq(self.tables.node_id),
            reply.dst.eq(request.src),
            reply.tag.eq(request.tag),
            reply.addr.eq(request.addr),
            reply.err.eq(Mux(request.err == ErrorCode.OK, ErrorCode.MALFORMED, request.err)),
        ]
        m.d.comb += self.route_node.eq(request.src)
        route = self.route
        answer = Signal()
        m.d.comb += answer.eq(held)
        # The response goes on the RSP VC of the request's VC group (VC + 2) if the fabric has
        # that VC, else on the default RSP VC. Fix: with 5 or 6 VCs a request on VC 4 used to
        # be answered on the nonexistent VC 6, which never has a credit: the response stuck at
        # the head of the queue, then the queue filled and every REQ VC into the responder
        # stalled (found by tests/test_switch_units.py::test_switch[islip_vc6]).
        shifted = Signal(f.vc_bits + 1)
        rsp_vc = Signal(f.vc_bits)
        m.d.comb += [
            shifted.eq(in_vc + (MsgClass.RSP.value - MsgClass.REQ.value)),
            rsp_vc.eq(Mux(shifted < f.vcs, shifted, f.vc_of(MsgClass.RSP))),
        ]
        new = Signal(entry)
        m.d.comb += [
            new.port.eq(route.port),
            new.vc.eq(rsp_vc),
            new.header.eq(reply),
            queue.w_data.eq(new),
            queue.w_en.eq(answer & route.valid),
        ]

        # The queued response competes for its output like any input's flit.
        head = Signal(entry)
        m.d.comb += head.eq(queue.r_data)
        for o in range(ports):
            m.d.comb += self.requests[o].eq(
                queue.r_rdy
                & (head.port == o)
                & self.credit_ok_out[o].bit_select(head.vc, 1)
                & self.may_head_out[o].bit_select(head.vc, 1)
            )
        granted = Signal()
        m.d.comb += [
            granted.eq(self.grant.any()),
            queue.r_en.eq(granted),
            self.alloc_valid.eq(granted),
            self.alloc_vc.eq(head.vc),
            self.alloc_head.eq(1),
            self.alloc_tail.eq(1),
            self.out_flit.head.eq(1),
            self.out_flit.tail.eq(1),
        ]
        sent = Signal(entry)
        sent_valid = Signal()
        if p.registered_grant:
            with m.If(granted):
                m.d.sync += sent.eq(head)
            m.d.sync += sent_valid.eq(granted)
        else:
            m.d.comb += [sent.eq(head), sent_valid.eq(granted)]
        m.d.comb += [
            self.out_valid.eq(sent_valid),
            self.out_vc.eq(sent.vc),
            self.out_flit.payload.eq(sent.header),
        ]
        event = {
            "responses": granted,
            "discarded": in_valid & ~(is_req_vc & in_flit.head),
            "unreachable": answer & ~route.valid,
        }
        m.d.comb += self.events.eq(Cat(event[name] for name in RESPONDER_COUNTERS))
        return m
