"""Switch input unit: route compute on head flits and per-VC virtual output queues."""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from unifab.flit import HEADER_BITS, ErrorCode, flit_layout
from unifab.hdl.lib.arbiter import first_after, onehot_index, onehot_mux
from unifab.hdl.lib.port import FabricLink
from unifab.hdl.switch.route import RouteCompute
from unifab.hdl.switch.tables import route_entry_layout, tables_layout
from unifab.hdl.switch.voq import VoqLinks
from unifab.switch_config import SwitchParams

__all__ = ["INPUT_COUNTERS", "InputUnit"]

#: Counters of an input unit (the per-class flit counts are ``flits_in0..3``).
INPUT_COUNTERS = (
    "flits_in0",
    "flits_in1",
    "flits_in2",
    "flits_in3",
    "decode_errors",
    "denied",
    "malformed",
    "dropped",
)


class InputUnit(wiring.Component):
    """Input unit of switch port ``port``.

    Every arriving head flit goes through :class:`RouteCompute`; the message's flits are
    queued by (VC, output) — *virtual output queues*, so a flit for a busy output never blocks
    one for an idle output (with ``allocator="fifo"`` there is one queue per VC instead: the
    head-of-line-blocked reference). A VC's queues share ``buffer_depth`` flit slots
    (:class:`VoqLinks`), the credits the upstream sender holds for that VC, so no arrival is
    ever refused; the flits of all VCs are in one memory, addressed by (slot, VC).

    Ports
    -----
    inp : In(FabricLink)
        Flits from upstream; a credit goes back when a flit leaves its queue.
    tables : In(tables_layout)
        The switch's routing tables.
    route_node, route : Out(8), In(route_entry_layout)
        This unit's lookup port into the node table.
    requests : Out(n_out)
        To the allocator: some queued flit for output ``o`` may leave now (its output VC has a
        credit and is free, or held by this input's message).
    credit_blocked : Out(n_out)
        Some queued flit for output ``o`` waits only for a credit (for the output's
        ``credit_stalls`` counter).
    grant : In(n_out)
        From the allocator: one-hot output this input sends to this cycle.
    credit_ok, may_head, may_body : In(ArrayLayout(vcs, n_out))
        Per output and VC: a credit is held; a new message may start; this input owns the VC.
    offer_vcs, offer_head, offer_tail : Out(ArrayLayout(vcs, n_out)), Out(n_out), Out(n_out)
        Per output, before the grant: the VC (one-hot, zero when none may leave) of the flit
        this input sends if granted that output, and whether it starts / ends a message. The
        switch hands the granted output its offer (an AND-OR with the allocator's column):
        the output unit's credits and VC ownership, at the end of the allocation loop, then
        wait for the grant only, not for this unit's choice among its offers.
    alloc_valid, alloc_vc, alloc_head, alloc_tail : Out(1), Out(vc_bits), Out(1), Out(1)
        The departure decided this cycle (the granted output's offer): its VC, and whether the
        flit starts / ends a message.
    out_valid, out_vc, out_flit : Out(1), Out(vc_bits), Out(flit_layout)
        To the crossbar: the departing flit, in the same cycle as ``alloc_*``, or with
        ``registered_grant`` in the next.
    events : Out(len(INPUT_COUNTERS))
        Bit ``k``: an event of counter :data:`INPUT_COUNTERS` ``[k]`` this cycle (the switch
        counts them in its :class:`~unifab.hdl.lib.counters.CounterBank`).
    """

    def __init__(self, params: SwitchParams, *, port: int):
        self.params, self.port = params, port
        f = params.fabric
        self.n_out = params.ports + 1
        per_out = data.ArrayLayout(f.vcs, self.n_out)
        members = {
            "inp": In(FabricLink(f)),
            "tables": In(tables_layout(params)),
            "route_node": Out(8),
            "route": In(route_entry_layout),
            "requests": Out(self.n_out),
            "credit_blocked": Out(self.n_out),
            "grant": In(self.n_out),
            "credit_ok": In(per_out),
            "may_head": In(per_out),
            "may_body": In(per_out),
            "alloc_valid": Out(1),
            "alloc_vc": Out(f.vc_bits),
            "offer_vcs": Out(per_out),
            "offer_head": Out(self.n_out),
            "offer_tail": Out(self.n_out),
            "alloc_head": Out(1),
            "alloc_tail": Out(1),
            "out_valid": Out(1),
            "out_vc": Out(f.vc_bits),
            "out_flit": Out(flit_layout(f)),
        }
        members["events"] = Out(len(INPUT_COUNTERS))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        f = p.fabric
        vcs, n_out = f.vcs, self.n_out
        voq = p.allocator != "fifo"
        flit = flit_layout(f)

        # ---- Arrival: route compute, header rewrite, enqueue ---------------------------
        m.submodules.route = rc = RouteCompute(p, port=self.port)
        arriving = self.inp.flit
        m.d.comb += [
            rc.tables.eq(self.tables),
            self.route_node.eq(rc.route_node),
            rc.route.eq(self.route),
            rc.vc.eq(self.inp.vc),
            rc.header.eq(arriving.payload[:HEADER_BITS]),
        ]
        # Body flits follow the output their head flit chose on the same VC.
        route = Array(Signal(range(n_out), name=f"route{v}") for v in range(vcs))
        target = Signal(range(n_out))
        stored = Signal(flit)
        m.d.comb += stored.eq(arriving)
        with m.If(arriving.head):
            m.d.comb += [target.eq(rc.out_port), stored.payload[:HEADER_BITS].eq(rc.header_out)]
            with m.If(self.inp.valid):
                m.d.sync += route[self.inp.vc].eq(rc.out_port)
        with m.Else():
            m.d.comb += target.eq(route[self.inp.vc])

        # The routed flit is queued in its arrival cycle or, with registered_route, the next
        # (the route compute and the queue write are then separate timing paths). A flit in
        # that register holds a credit like a queued one, so the queue always has its slot.
        queued_valid = Signal()
        queued_vc = Signal(f.vc_bits)
        queued_target = Signal(range(n_out))
        queued_flit = Signal(flit)
        arrival = [
            queued_valid.eq(self.inp.valid),
            queued_vc.eq(self.inp.vc),
            queued_target.eq(target),
            queued_flit.eq(stored),
        ]
        if p.registered_route:
            m.d.sync += arrival
        else:
            m.d.comb += arrival

        # VOQ: the queues of each VC share that VC's slots (VoqLinks), and every VC's flits
        # live in one memory at (slot, VC), so a departure reads one RAM instead of choosing
        # among a RAM per VC. FIFO reference: one queue per VC holding (output, flit).
        entry = data.StructLayout({"out": range(n_out), "flit": flit})
        queues = []
        for v in range(vcs):
            write = queued_valid & (queued_vc == v)
            if voq:
                q = VoqLinks(outputs=n_out, depth=p.buffer_depth)
                m.d.comb += [
                    q.w_en.eq(write),
                    q.w_queue.eq(queued_target),
                    q.w_head.eq(queued_flit.head),
                    q.w_tail.eq(queued_flit.tail),
                ]
            else:
                q = SyncFIFO(width=entry.size, depth=p.buffer_depth)
                m.d.comb += [q.w_en.eq(write), q.w_data.eq(Cat(queued_target, queued_flit))]
            m.submodules[f"q{v}"] = q
            queues.append(q)
        if voq:
            slot_bits = (p.buffer_depth - 1).bit_length()
            m.submodules.flits = flits = Memory(shape=flit, depth=vcs << slot_bits, init=[])
            flits_w = flits.write_port()
            m.d.comb += [
                flits_w.addr.eq(Cat(Array(q.w_slot for q in queues)[queued_vc], queued_vc)),
                flits_w.data.eq(queued_flit),
                flits_w.en.eq(Cat(q.w_store for q in queues).any()),
            ]

        # ---- Eligibility and requests ------------------------------------------------------
        # cand[o] bit v: the head of VC v's queue for output o may leave now.
        cand = [Signal(vcs, name=f"cand{o}") for o in range(n_out)]
        blocked = [Signal(vcs, name=f"blocked{o}") for o in range(n_out)]
        heads = []
        for v in range(vcs):
            q = queues[v]
            if voq:
                for o in range(n_out):
                    lock_ok = Mux(q.head_is_head[o], self.may_head[o][v], self.may_body[o][v])
                    m.d.comb += [
                        cand[o][v].eq(q.nonempty[o] & self.credit_ok[o][v] & lock_ok),
                        blocked[o][v].eq(q.nonempty[o] & ~self.credit_ok[o][v] & lock_ok),
                    ]
            else:
                head = Signal(entry, name=f"head{v}")
                m.d.comb += head.eq(q.r_data)
                heads.append(head)
                for o in range(n_out):
                    lock_ok = Mux(head.flit.head, self.may_head[o][v], self.may_body[o][v])
                    here = q.r_rdy & (head.out == o) & lock_ok
                    m.d.comb += [
                        cand[o][v].eq(here & self.credit_ok[o][v]),
                        blocked[o][v].eq(here & ~self.credit_ok[o][v]),
                    ]
        m.d.comb += [
            self.requests.eq(Cat(c.any() for c in cand)),
            self.credit_blocked.eq(Cat(b.any() for b in blocked)),
        ]

        # ---- Departure: the granted output's VC, round-robin --------------------------------
        # Each output's VC choice (its offer) is made from its candidates in parallel with the
        # allocator (one shared pointer), so the grant only selects among ready choices. The
        # grant is one-hot and every choice too, so each selection is an AND-OR (no priority
        # chain, no encoder): the grant is the end of the switch's allocation loop.
        last_vc = Signal(range(max(vcs, 2)), init=vcs - 1)
        after_last = [last_vc == b for b in range(vcs)]
        # leave[o] bit v: VC v's queue for output o gives its front flit this cycle.
        leave = [Signal(vcs, name=f"leave{o}") for o in range(n_out)]
        for o in range(n_out):
            pick = self.offer_vcs[o]
            m.d.comb += [
                pick.eq(first_after(cand[o], after_last, inclusive=False)),
                leave[o].eq(Mux(self.grant[o], pick, 0)),
            ]
            # The framing (head / tail bit) of each output's chosen flit is known before the
            # grant too, so the grant selects it instead of steering a queue read.
            if voq:
                front_head = Cat(q.head_is_head[o] for q in queues)
                front_tail = Cat(q.head_is_tail[o] for q in queues)
            else:
                front_head = Cat(h.flit.head for h in heads)
                front_tail = Cat(h.flit.tail for h in heads)
            m.d.comb += [
                self.offer_head[o].eq((pick & front_head).any()),
                self.offer_tail[o].eq((pick & front_tail).any()),
            ]
        leave_vc = Signal(vcs)  # one-hot: the VC whose flit leaves this cycle
        departing = Signal()
        chosen_vc = Signal(f.vc_bits)
        m.d.comb += [
            leave_vc.eq(onehot_mux(self.grant, [self.offer_vcs[o] for o in range(n_out)])),
            departing.eq(leave_vc.any()),
            chosen_vc.eq(onehot_index(leave_vc, vcs)),
            self.alloc_valid.eq(departing),
            self.alloc_vc.eq(chosen_vc),
            self.alloc_head.eq((self.grant & self.offer_head).any()),
            self.alloc_tail.eq((self.grant & self.offer_tail).any()),
        ]
        with m.If(departing):
            m.d.sync += last_vc.eq(chosen_vc)
        front_flits = []  # FIFO reference, per VC: the flit at the front of its queue
        for v in range(vcs):
            q = queues[v]
            m.d.comb += self.inp.credit[v].eq(leave_vc[v])
            if voq:
                # Each queue's dequeue is one AND of the grant and its output's offer.
                m.d.comb += q.r_queue.eq(Cat(leave[o][v] for o in range(n_out)))
            else:
                m.d.comb += q.r_en.eq(leave_vc[v])
                front_flits.append(heads[v].flit)
        if voq:
            # The departing flit's address; with registered_grant it is registered and the
            # flit read the next cycle, when its freed slot can at the earliest be written
            # again (the allocation and the buffer read become separate timing paths).
            leave_slot = onehot_mux(leave_vc, [q.r_slot for q in queues])
            leave_addr = Cat(leave_slot[:slot_bits], chosen_vc)
            if p.registered_grant:
                flits_r = flits.read_port(domain="sync", transparent_for=(flits_w,))
            else:
                flits_r = flits.read_port(domain="comb")
            m.d.comb += [flits_r.addr.eq(leave_addr), self.out_flit.eq(flits_r.data)]

        # The flit itself (the VOQ's from its memory, above): the same cycle, or with
        # registered_grant the next one.
        if p.registered_grant:
            sent_valid = Signal()
            sent_vc = Signal(f.vc_bits)
            m.d.sync += [sent_valid.eq(departing), sent_vc.eq(chosen_vc)]
            m.d.comb += [self.out_valid.eq(sent_valid), self.out_vc.eq(sent_vc)]
            if not voq:
                sent_flit = Signal(flit)
                for v in range(vcs):
                    with m.If(leave_vc[v]):
                        m.d.sync += sent_flit.eq(front_flits[v])
                m.d.comb += self.out_flit.eq(sent_flit)
        else:
            m.d.comb += [self.out_valid.eq(departing), self.out_vc.eq(chosen_vc)]
            if not voq:
                for v in range(vcs):
                    with m.If(leave_vc[v]):
                        m.d.comb += self.out_flit.eq(front_flits[v])

        # ---- Counter events --------------------------------------------------------------
        head_valid = self.inp.valid & arriving.head
        # A flit on a VC number the fabric does not have (no credit exists for it) has no
        # queue: it is discarded and counted in `dropped`, not lost silently.
        bad_vc = self.inp.valid & (self.inp.vc >= vcs)
        event = {f"flits_in{c}": self.inp.valid & (self.inp.vc[:2] == c) for c in range(4)}
        event["decode_errors"] = head_valid & (rc.error == ErrorCode.DECODE)
        event["denied"] = head_valid & (rc.error == ErrorCode.DENIED)
        event["malformed"] = head_valid & (rc.error == ErrorCode.MALFORMED)
        event["dropped"] = (head_valid & rc.drop) | bad_vc
        m.d.comb += self.events.eq(Cat(event[name] for name in INPUT_COUNTERS))
        return m
