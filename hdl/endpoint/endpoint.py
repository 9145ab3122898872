"""The caching endpoint: an AXI4 subordinate in front of a MESI cache, on a fabric port.

Structure (``docs/coherence.md`` §3, §4):

* :class:`~.axi_front.AxiFront` splits AXI bursts into per-beat operations, in order.
* The **controller** (this module) handles one event at a time, by priority: a snoop, a
  response without data, a response with data, then the held AXI operation. An operation
  either completes at once (cache hit, unsupported burst) or takes an MSHR (miss, upgrade,
  non-coherent access, atomic) and the controller moves on: up to ``mshrs`` requests are
  outstanding. An operation on a line with an active MSHR or a pending eviction waits (it is
  held while other events are still served).
* Every accepted operation pushes an entry into an in-order answer queue; an entry that waits
  for an MSHR leaves once the MSHR is ``done`` (and frees it), so R beats and B responses
  leave in operation order.
* A miss that needs a victim copies it into an eviction buffer slot, which answers snoops and
  keeps the data until the home's ``COMP`` (§3.3).
* :class:`~.mshr.RequestSender` sends requests from the MSHRs and eviction slots on the REQ
  VC; the controller only ever waits for the RSP and DAT VCs, which always drain, so snoops
  are always answered.

Conventions beyond the spec: requests use tag = MSHR index, evictions ``0x80 | slot``;
``FWD_DATA`` sent by this endpoint carries the home's node (the snoop's ``src``) in ``fwd``,
and the ``COMP_ACK`` for a received ``FWD_DATA`` goes to that node (for ``COMP_DATA``/``COMP``
to their ``src``).
"""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from unifab.coherence.params import CacheParams, EndpointParams
from unifab.flit import (
    ADDR_BITS,
    LINE_BYTES,
    CacheState,
    ErrorCode,
    Header,
    MsgClass,
    Opcode,
    beat_layout,
)
from unifab.hdl.endpoint.axi_front import AxiFront, op_layout
from unifab.hdl.endpoint.cache import CacheArrays, CacheGeometry
from unifab.hdl.endpoint.mshr import RequestSender, evict_layout, mshr_layout, pick
from unifab.hdl.endpoint.snoop import SnoopDecide
from unifab.hdl.lib.axi import Axi4Signature, AxiParams, AxiResp
from unifab.hdl.lib.fifo import HeadRegFIFO
from unifab.hdl.lib.port import FabricLink, FabricToStreams, StreamsToFabric

__all__ = ["Endpoint", "state_change_layout"]

state_change_layout = data.StructLayout({"valid": 1, "addr": ADDR_BITS, "state": CacheState})


def _below(value: Value, n: int) -> Value:
    """``value < n``; for a power of two, as its high bits all zero (no carry chain)."""
    if n & (n - 1) == 0:
        return value[(n - 1).bit_length() :] == 0
    return value < n


def _first(m: Module, bits: list[Value], name: str) -> tuple[Signal, Signal]:
    """(any, index of the first set bit)."""
    any_ = Signal(name=f"{name}_any")
    idx = Signal(range(max(2, len(bits))), name=f"{name}_idx")
    for i in reversed(range(len(bits))):
        with m.If(bits[i]):
            m.d.comb += [any_.eq(1), idx.eq(i)]
    return any_, idx


class Endpoint(wiring.Component):
    """Caching endpoint (AXI4 subordinate → MESI cache with MSHRs → fabric port).

    Ports
    -----
    axi : In(Axi4Signature(addr 48, data W, id axi_id_width, awuser 6, buser 64))
        Loads and stores (full-width INCR bursts), atomics (``awuser``, old value in
        ``buser``); answers in request order; unsupported bursts ``SLVERR``, fabric
        ``ERROR(DECODE)`` ``DECERR``, other errors ``SLVERR``.
    fabric_in : In(FabricLink)
        Flits from the fabric; ``rx_depth`` flits buffered per VC (the sender's credits).
    fabric_out : Out(FabricLink)
        Flits to the fabric; starts with ``tx_credits`` credits per VC.
    hits, misses, writebacks, snoops, errors : Out(32)
        Cache hits; misses and upgrades (requests for cacheable lines); ``WRITE_BACK``
        evictions; snoops answered; AXI answers with ``SLVERR``/``DECERR``.
    state_change : Out(state_change_layout)
        Registered event: ``valid`` for one cycle whenever a cache line's state changes
        (fill, upgrade, silent E→M, snoop, eviction — the line leaving for the eviction
        buffer reports ``I``); ``addr`` is the line address, ``state`` the new state.
    mshr_busy, evict_busy : Out(mshrs), Out(mshrs)
        Which MSHRs / eviction slots are in use (for end-of-test checks).
    """

    def __init__(self, params: EndpointParams):
        if not isinstance(params, EndpointParams):
            raise TypeError(f"params must be EndpointParams, not {type(params).__name__}")
        self.params = params
        f = params.fabric
        self.axi_params = AxiParams(
            addr_width=ADDR_BITS,
            data_width=f.data_width,
            id_width=params.axi_id_width,
            awuser_width=6,
            buser_width=64,
        )
        super().__init__(
            {
                "axi": In(Axi4Signature(self.axi_params)),
                "fabric_in": In(FabricLink(f)),
                "fabric_out": Out(FabricLink(f)),
                "hits": Out(32),
                "misses": Out(32),
                "writebacks": Out(32),
                "snoops": Out(32),
                "errors": Out(32),
                "state_change": Out(state_change_layout),
                "mshr_busy": Out(params.mshrs),
                "evict_busy": Out(params.mshrs),
            }
        )

    def elaborate(self, platform):
        m = Module()
        p = self.params
        f = p.fabric
        n = p.mshrs
        w = f.data_width
        bb = w // 8
        beats = f.line_beats
        beat_shift = (bb - 1).bit_length()
        node = p.node_id
        # With no cache, a 1x1 dummy geometry keeps the code uniform; nothing is cacheable.
        g = CacheGeometry(p.cache or CacheParams(sets=1, ways=1), f)
        ap = self.axi_params

        # -- submodules and plumbing --------------------------------------------------------
        m.submodules.rx = rx = FabricToStreams(f, depth=p.rx_depth, registered=p.registered_rx)
        m.submodules.tx = tx = StreamsToFabric(f, credits=p.tx_credits)
        m.submodules.front = front = AxiFront(ap)
        # No forwarding in the arrays: the controller never uses a lookup or a data read right
        # after a write. The lookup is used in SNP and OP only, entered from IDLE, which writes
        # no tag; the data array is read in OP (after IDLE), SNP_*_H and SNP_*_D (after SNP or
        # the snoop states) and EVICT_COPY (after OP's allocation, which writes no data, or
        # EVICT_COPY), and none of those writes data. Env in tests/test_endpoint.py checks
        # this on every test (``_probe``).
        m.submodules.arrays = arrays = CacheArrays(g, forwarding=False)
        m.submodules.sender = sender = RequestSender(f, node_id=node, n=n, way_bits=g.way_bits)
        m.submodules.decide = decide = SnoopDecide()
        wiring.connect(m, wiring.flipped(self.fabric_in), rx.port)
        wiring.connect(m, tx.port, wiring.flipped(self.fabric_out))
        wiring.connect(m, wiring.flipped(self.axi), front.axi)
        wiring.connect(m, sender.out, tx.streams[f.vc_of(MsgClass.REQ)])

        snp_in = rx.streams[f.vc_of(MsgClass.SNP)]
        rsp_in = rx.streams[f.vc_of(MsgClass.RSP)]
        dat_in = rx.streams[f.vc_of(MsgClass.DAT)]
        for v in range(f.vcs):
            if v not in (1, 2, 3):
                m.d.comb += rx.streams[v].ready.eq(1)  # nothing else is for us: drained
        m.d.comb += tx.streams[f.vc_of(MsgClass.SNP)].valid.eq(0)
        for v in range(4, f.vcs):
            m.d.comb += tx.streams[v].valid.eq(0)
        rsp_out = tx.streams[f.vc_of(MsgClass.RSP)]
        dat_out = tx.streams[f.vc_of(MsgClass.DAT)]

        mshr = Signal(data.ArrayLayout(mshr_layout(f, way_bits=g.way_bits), n))
        ev = Signal(data.ArrayLayout(evict_layout(), n))
        m.d.comb += [sender.mshrs.eq(mshr), sender.evicts.eq(ev)]
        m.d.comb += [
            self.mshr_busy.eq(Cat(mshr[i].busy for i in range(n))),
            self.evict_busy.eq(Cat(ev[i].busy for i in range(n))),
        ]

        # Eviction data: slot e's line in words e * beats .. + beats - 1.
        m.submodules.evdata = evmem = Memory(shape=unsigned(w), depth=n * beats, init=[])
        ev_wr = evmem.write_port()
        ev_rd_send = evmem.read_port(domain="comb")
        ev_rd_snp = evmem.read_port(domain="comb")
        m.d.comb += [ev_rd_send.addr.eq(sender.edata_addr), sender.edata.eq(ev_rd_send.data)]

        # A request's pending bit clears the cycle after its last flit left (the sender skips
        # it in that cycle): no path from the transmit arbiter reaches the MSHR file.
        for i in range(n):
            with m.If(sender.sent_mshrs[i]):
                m.d.sync += mshr[i].pending.eq(0)
            with m.If(sender.sent_evicts[i]):
                m.d.sync += ev[i].pending.eq(0)

        # -- in-order answer queue ----------------------------------------------------------
        rq_layout = data.StructLayout(
            {
                "write": 1,
                "last": 1,
                "id": ap.id_width,
                "wait": 1,  # the answer comes from MSHR `idx` once it is done
                "idx": range(n),
                "resp": 2,
                "data": w,
                "buser": 64,
            }
        )
        # The head entry comes from flops: the answer's MSHR, its done bit, the AXI handshake
        # and the pop (which frees the MSHR) start at a register, not at a RAM read.
        m.submodules.rq = rq = HeadRegFIFO(width=rq_layout.size, depth=n + 4)
        rq_in = Signal(rq_layout)
        rq_head = Signal(rq_layout)
        m.d.comb += [rq.w_data.eq(rq_in), rq_head.eq(rq.r_data)]
        src = pick(m, mshr, rq_head.idx, n, "head_mshr")
        ans = front.resps.payload
        m.d.comb += [
            front.resps.valid.eq(rq.r_rdy & (~rq_head.wait | src.done)),
            ans.write.eq(rq_head.write),
            ans.last.eq(rq_head.last),
            ans.id.eq(rq_head.id),
            ans.resp.eq(Mux(rq_head.wait, src.resp, rq_head.resp)),
            ans.data.eq(Mux(rq_head.wait, src.rdata, rq_head.data)),
            ans.buser.eq(Mux(rq_head.wait, src.buser, rq_head.buser)),
            rq.r_en.eq(front.resps.valid & front.resps.ready),
        ]
        with m.If(rq.r_en):
            with m.If(rq_head.wait):
                for i in range(n):
                    with m.If(rq_head.idx == i):
                        m.d.sync += mshr[i].busy.eq(0)
            with m.If(ans.resp != AxiResp.OKAY):
                m.d.sync += self.errors.eq(self.errors + 1)

        # -- state change events (registered) -----------------------------------------------
        sc = Signal(state_change_layout)
        m.d.sync += self.state_change.eq(sc)

        # -- lookup at lk_addr --------------------------------------------------------------
        lk_addr = Signal(ADDR_BITS)
        # What lk_addr holds next cycle: the tag arrays look that set up a cycle ahead.
        lk_next = Signal(ADDR_BITS)
        m.d.sync += lk_addr.eq(lk_next)
        lset = Signal(max(1, g.set_bits))
        ltag = Signal(g.tag_bits)
        m.d.comb += [
            lset.eq(g.set_of(lk_addr)),
            ltag.eq(g.tag_of(lk_addr)),
            arrays.lookup_set.eq(g.set_of(lk_next)),
        ]
        m.d.comb += arrays.lookup_tag.eq(g.tag_of(lk_next))
        hit, hit_way = _first(m, list(arrays.lookup_hit), "hit")
        hit_state = Signal(CacheState)
        m.d.comb += hit_state.eq(
            Mux(hit, pick(m, arrays.lookup, hit_way, g.ways, "hit_entry").state, CacheState.I)
        )
        # The address compares against the MSHRs and eviction slots are made a cycle ahead,
        # from lk_next, into registers: the controller's decisions start from flops, not from
        # lk_addr's fan-out into comparators. Exact where they are used: OP and SNP are only
        # entered from IDLE, and IDLE writes no busy MSHR's or eviction slot's address (a busy
        # one keeps its address; only free ones follow the held operation, and OP takes them),
        # so the addresses compared in that IDLE cycle are the ones OP and SNP see.
        mshr_line_match = Signal(n)
        mshr_set_match = Signal(n)
        ev_line_match = Signal(n)
        for i in range(n):
            m.d.sync += [
                mshr_line_match[i].eq(mshr[i].addr[6:] == lk_next[6:]),
                mshr_set_match[i].eq(g.set_of(mshr[i].addr) == g.set_of(lk_next)),
                ev_line_match[i].eq(ev[i].addr[6:] == lk_next[6:]),
            ]
        reserved = []
        for way in range(g.ways):
            r = Signal(name=f"reserved{way}")
            m.d.comb += r.eq(
                Cat(
                    mshr[i].busy
                    & mshr[i].active
                    & mshr[i].cached
                    & mshr_set_match[i]
                    & (mshr[i].way == way)
                    for i in range(n)
                ).any()
            )
            reserved.append(r)
        free_way_any, free_way = _first(
            m,
            [(arrays.lookup[w_].state == CacheState.I) & ~reserved[w_] for w_ in range(g.ways)],
            "inv",
        )
        unres_any, unres_way = _first(m, [~r for r in reserved], "unres")
        rr = Signal(g.way_bits)  # round-robin victim pointer
        victim_way = Signal(g.way_bits)
        rr_ok = Signal()
        m.d.comb += rr_ok.eq(~Cat(reserved).bit_select(rr, 1))
        m.d.comb += victim_way.eq(Mux(free_way_any, free_way, Mux(rr_ok, rr, unres_way)))
        victim = pick(m, arrays.lookup, victim_way, g.ways, "victim")
        victim_valid = Signal()
        victim_dirty = Signal()
        m.d.comb += [
            victim_valid.eq(victim.state != CacheState.I),
            victim_dirty.eq(victim.state == CacheState.M),
        ]

        conflict = Signal()
        m.d.comb += conflict.eq(
            Cat(
                *(mshr[i].busy & mshr[i].active & mshr_line_match[i] for i in range(n)),
                *(ev[i].busy & ev_line_match[i] for i in range(n)),
            ).any()
        )
        # A non-cacheable access waits only for a line fill or an eviction of its line, not for
        # other non-cacheable accesses to it: the home serves one requester's requests to a
        # line in arrival order (one REQ path per home, in order) and answers leave in request
        # order, so the beats of a burst to one line may all be outstanding at once.
        nc_conflict = Signal()
        m.d.comb += nc_conflict.eq(
            Cat(
                *(
                    mshr[i].busy & mshr[i].active & mshr[i].cached & mshr_line_match[i]
                    for i in range(n)
                ),
                *(ev[i].busy & ev_line_match[i] for i in range(n)),
            ).any()
        )
        ev_hit, ev_hit_idx = _first(
            m, [ev[i].busy & ev[i].snoop & ev_line_match[i] for i in range(n)], "evhit"
        )
        free_mshr_any, free_mshr = _first(m, [~mshr[i].busy for i in range(n)], "fm")
        free_ev_any, free_ev = _first(m, [~ev[i].busy for i in range(n)], "fe")

        # -- controller registers -----------------------------------------------------------
        hdr = Signal(Header)  # the message being handled
        op = Signal(op_layout(ap))
        op_held = Signal()
        b = Signal(range(beats + 1))
        src_evict = Signal()
        # The first word of the line SNP_*_H/_D or EVICT_COPY reads (set in SNP / OP).
        line_word = Signal(range(g.words))
        src_ev = Signal(range(n))
        s_forward = Signal()
        s_fwd_state = Signal(CacheState)
        s_resp_op = Signal(Opcode, init=Opcode.SNP_RESP_I)
        s_resp_state = Signal(CacheState)
        s_resp_data = Signal()
        ack = Signal(Header)
        copy_ev = Signal(range(n))
        # OP is next (set where IDLE enters OP): the data array's read address is OP's lookup
        # then, else line_word's beat rd_beat, a choice by one flop instead of by the FSM state.
        in_op = Signal()

        def beat_of(addr: Value) -> Value:
            return addr[beat_shift:6] if beats > 1 else C(0, 1)

        def line(addr: Value) -> Value:
            return addr & ~C(LINE_BYTES - 1, ADDR_BITS)

        def strb_mask(strb: Value) -> Value:
            return Cat(s.replicate(8) for s in strb)

        # Data array ports, driven per state below.
        beat_in = Signal(beat_layout(f))
        m.d.comb += beat_in.eq(dat_in.payload.payload)

        # Snoop data source (cache line or eviction slot), by beat.
        # The beat the data array and the eviction data are read at: b, except in SNP_*_D
        # where it runs a beat ahead (b + 1) to load snp_q, the beat sent next, so that a
        # snooped line's beats go out from a register, not from a RAM read (the line does not
        # change while it is sent: the snoop states write nothing).
        beat_bits = (beats - 1).bit_length()
        rd_beat = Signal(max(1, beat_bits))
        snp_q = Signal(w)
        src_data = Signal(w)
        m.d.comb += [
            ev_rd_snp.addr.eq(src_ev * beats + rd_beat[:beat_bits]),
            src_data.eq(Mux(src_evict, ev_rd_snp.data, arrays.data_rdata)),
        ]

        # Cacheable: a cache exists and the address is in no non-cacheable window.
        cacheable = Signal()
        if p.cache is not None:
            nc = (
                Cat((op.addr >= win.base) & (op.addr < win.end) for win in p.noncacheable).any()
                if p.noncacheable
                else C(0)
            )
            m.d.comb += cacheable.eq(~nc)

        # The held operation decoded: an atomic (awuser), an unsupported one (SLVERR).
        aop = op.user[:4]
        asize = op.user[4:6]
        nbytes = Signal(5)
        m.d.comb += nbytes.eq(1 << asize)
        is_atomic = Signal()
        m.d.comb += is_atomic.eq(op.write & (aop != 0))
        bad_atomic = (
            (aop > 8)
            | ((op.addr[:4] & (nbytes - 1)[:4]) != 0)
            | ((aop == 3) & ((op.addr[:5] & ((nbytes << 1) - 1)[:5]) != 0))
            | ((op.addr[:beat_shift] + Mux(aop == 3, nbytes << 1, nbytes)) > bb)
        )
        op_error = Signal()
        m.d.comb += op_error.eq(op.err | (is_atomic & bad_atomic))
        opbeat = beat_of(op.addr)

        # MSHR of the message being handled (responses carry tag = MSHR index; an eviction
        # slot's COMP carries 0x80 | slot, so k is its slot too).
        idx_bits = max(1, (n - 1).bit_length())  # the MSHR index in a tag
        k = Signal(range(max(2, n)))
        m.d.comb += k.eq(hdr.tag[:idx_bits])
        mk = pick(m, mshr, k, n, "mk")
        # k_ok: the response names an outstanding MSHR (busy and active). A flop, loaded in
        # IDLE from the response being taken, so that RSP, DAT and DAT_END (its only users)
        # start their MSHR updates (the 128-bit rdata enables) at it, not at the tag's MSHR
        # multiplexer. It equals the value on hdr then: no MSHR becomes busy outside OP, none
        # becomes inactive outside complete() (RSP, DAT_END), a free one (active again) is not
        # busy, and one freed by the answer queue was done, so already inactive (the formal
        # streams harness asserts k_ok against its definition in these states).
        k_ok = Signal()
        mshr_ok = Signal(n)
        m.d.comb += mshr_ok.eq(Cat(mshr[i].busy & mshr[i].active for i in range(n)))

        def tag_ok(tag: Value) -> Value:
            return _below(tag, n) & (mshr_ok >> tag[:idx_bits])[0]

        e_ok = Signal()
        m.d.comb += e_ok.eq(hdr.tag[7] & _below(hdr.tag[:7], n))

        def mshr_set(idx: Value, **fields) -> None:
            for i in range(n):
                with m.If(idx == i):
                    m.d.sync += [getattr(mshr[i], key).eq(v) for key, v in fields.items()]

        def ev_set(idx: Value, **fields) -> None:
            for i in range(n):
                with m.If(idx == i):
                    m.d.sync += [getattr(ev[i], key).eq(v) for key, v in fields.items()]

        # The tag and data write ports' address and data are driven per state, outside the
        # controller's decisions (only the enable and the strobe wait for those): a decision
        # then fans out to a few enables, not to a few hundred multiplexer selects.
        def tag_entry(set_: Value, way: Value, tag: Value, state: Value) -> None:
            m.d.comb += [
                arrays.tag_set.eq(set_),
                arrays.tag_way.eq(way),
                arrays.tag_data.tag.eq(tag),
                arrays.tag_data.state.eq(state),
            ]

        def tag_write(set_: Value, tag: Value, state: Value, event: bool = True) -> None:
            """Writes the entry ``tag_entry`` drives in this state (``set_``, ``tag`` and
            ``state`` the same: they name the line of the state change event)."""
            m.d.comb += arrays.tag_we.eq(1)
            if event:
                m.d.comb += [
                    sc.valid.eq(1),
                    sc.addr.eq(g.line_addr(tag, set_)),
                    sc.state.eq(state),
                ]

        def push() -> None:
            """Answers the held operation: ``rq_in`` (below) is what its branch in OP gives."""
            m.d.comb += rq.w_en.eq(1)
            m.d.sync += op_held.eq(0)

        # What OP's branch that allocates an MSHR puts in it: an atomic, a non-cacheable
        # access, an upgrade of a hit (a store to S) or a miss's read into the victim's way.
        alloc_opcode = Signal(Opcode, init=Opcode.READ_SHARED)
        with m.If(is_atomic):
            m.d.comb += alloc_opcode.eq(Opcode.ATOMIC_ADD.value - 1 + aop)
        with m.Elif(~cacheable):
            m.d.comb += alloc_opcode.eq(Mux(op.write, Opcode.NC_WRITE, Opcode.NC_READ))
        with m.Elif(hit):
            m.d.comb += alloc_opcode.eq(Opcode.UPGRADE)
        with m.Else():
            m.d.comb += alloc_opcode.eq(Mux(op.write, Opcode.READ_UNIQUE, Opcode.READ_SHARED))
        alloc_cached = Signal()
        m.d.comb += alloc_cached.eq(~is_atomic & cacheable)

        # A free MSHR's fields follow the held operation (and what OP would allocate for it)
        # every cycle, so the one allocated holds them already: only its busy bit waits for
        # the controller's decision (a long path), not a few hundred flops' enables. Nothing
        # reads a free MSHR's fields (everything that does checks busy first).
        for i in range(n):
            with m.If(~mshr[i].busy):
                m.d.sync += [
                    mshr[i].active.eq(1),
                    mshr[i].pending.eq(1),
                    mshr[i].done.eq(0),
                    mshr[i].opcode.eq(alloc_opcode),
                    mshr[i].cached.eq(alloc_cached),
                    mshr[i].store.eq(alloc_cached & op.write),
                    mshr[i].way.eq(Mux(hit, hit_way, victim_way)),
                    mshr[i].size.eq(asize),
                    mshr[i].resp.eq(AxiResp.OKAY),
                    mshr[i].addr.eq(op.addr),
                    mshr[i].data.eq(op.data),
                    mshr[i].strb.eq(op.strb),
                    mshr[i].rdata.eq(0),
                    mshr[i].buser.eq(0),
                ]
        # The same for free eviction slots: the one a miss's victim takes holds the victim.
        for i in range(n):
            with m.If(~ev[i].busy):
                m.d.sync += [
                    ev[i].pending.eq(0),
                    ev[i].snoop.eq(1),
                    ev[i].dirty.eq(victim_dirty),
                    ev[i].addr.eq(g.line_addr(victim.tag, lset)),
                ]

        # The answer OP's branch pushes (only its push enables the write): SLVERR for an
        # unsupported or bad operation, a hit read's data, else OKAY; an allocation's answer
        # waits for its MSHR (the only branches that push besides the error and the hits).
        m.d.comb += [
            rq_in.write.eq(op.write),
            rq_in.last.eq(op.last),
            rq_in.id.eq(op.id),
            rq_in.resp.eq(Mux(op_error, AxiResp.SLVERR, AxiResp.OKAY)),
            rq_in.data.eq(Mux(op.write | op.err, 0, arrays.data_rdata)),
            rq_in.wait.eq(
                ~op_error
                & (is_atomic | ~cacheable | ~hit | (op.write & (hit_state == CacheState.S)))
            ),
            rq_in.idx.eq(free_mshr),
        ]

        def allocate() -> None:
            """Takes the first free MSHR (its fields are loaded already, above)."""
            mshr_set(free_mshr, busy=1)
            push()

        def complete(idx: Value, resp: Value = AxiResp.OKAY) -> None:
            mshr_set(idx, done=1, active=0, pending=0, resp=resp)

        def send_ack(dst: Value) -> None:
            m.d.sync += [
                ack.opcode.eq(Opcode.COMP_ACK),
                ack.cls.eq(MsgClass.RSP),
                ack.src.eq(node),
                ack.dst.eq(dst),
                ack.tag.eq(hdr.tag),
                ack.addr.eq(line(hdr.addr)),
            ]
            m.next = "ACK"

        out_hdr = Signal(Header)  # header for the snoop answers
        m.d.comb += [
            out_hdr.cls.eq(MsgClass.DAT),
            out_hdr.src.eq(node),
            out_hdr.tag.eq(hdr.tag),
            out_hdr.addr.eq(line(hdr.addr)),
        ]

        # The line the next lookup is for: a snoop's if one is waiting, else the held
        # operation's or the one the front offers. Only SNP and OP use the lookup, and they are
        # only entered from IDLE, which takes that snoop or operation next, so the address is
        # right whenever it matters; it is chosen by two flops, not by the controller's
        # priorities (the lookup's compares follow it within the cycle).
        snp_hdr = Signal(Header)
        m.d.comb += [
            snp_hdr.eq(snp_in.payload.payload[:128]),
            lk_next.eq(
                Mux(snp_in.valid, snp_hdr.addr, Mux(op_held, op.addr, front.ops.payload.addr))
            ),
        ]

        # The data array's read: OP's hit, else beat rd_beat of line_word's line (SNP_*_H,
        # SNP_*_D and EVICT_COPY; the other states use no read).
        m.d.sync += in_op.eq(0)  # unless IDLE enters OP (below)
        m.d.comb += arrays.data_raddr.eq(
            Mux(in_op, g.word(lset, hit_way, opbeat), line_word | rd_beat[:beat_bits])
        )

        with m.FSM() as fsm:
            with m.State("IDLE"):
                # Only a response goes on to RSP or DAT (a snoop to SNP, which needs no k_ok).
                rsp_tag = data.View(Header, rsp_in.payload.payload[:128]).tag
                dat_tag = data.View(Header, dat_in.payload.payload[:128]).tag
                m.d.sync += k_ok.eq(tag_ok(Mux(rsp_in.valid, rsp_tag, dat_tag)))
                with m.If(snp_in.valid):
                    m.d.comb += snp_in.ready.eq(1)
                    m.d.sync += hdr.eq(snp_hdr)
                    with m.If(snp_in.payload.head):
                        m.next = "SNP"
                with m.Elif(rsp_in.valid):
                    m.d.comb += rsp_in.ready.eq(1)
                    m.d.sync += hdr.eq(rsp_in.payload.payload[:128])
                    with m.If(rsp_in.payload.head):
                        m.next = "RSP"
                with m.Elif(dat_in.valid):
                    m.d.comb += dat_in.ready.eq(1)
                    m.d.sync += [hdr.eq(dat_in.payload.payload[:128]), b.eq(0)]
                    with m.If(dat_in.payload.head & ~dat_in.payload.tail):
                        m.next = "DAT"
                with m.Elif(op_held):
                    m.d.sync += in_op.eq(1)
                    m.next = "OP"
                with m.Elif(front.ops.valid & rq.w_rdy):
                    m.d.comb += front.ops.ready.eq(1)
                    m.d.sync += [op.eq(front.ops.payload), op_held.eq(1), in_op.eq(1)]
                    m.next = "OP"

            # ---- snoops ------------------------------------------------------------------
            with m.State("SNP"):
                m.d.comb += [
                    decide.opcode.eq(hdr.opcode),
                    decide.cache_state.eq(hit_state),
                    decide.in_evict.eq(ev_hit),
                    decide.evict_dirty.eq(pick(m, ev, ev_hit_idx, n, "ev_hit_entry").dirty),
                ]
                tag_entry(lset, hit_way, ltag, decide.new_state)
                with m.If(hit & (decide.new_state != hit_state)):
                    tag_write(lset, ltag, decide.new_state)
                with m.If(ev_hit & decide.evict_drop):
                    ev_set(ev_hit_idx, snoop=0)
                m.d.sync += [
                    src_evict.eq(~hit),
                    line_word.eq(g.word(lset, hit_way, 0)),
                    src_ev.eq(ev_hit_idx),
                    s_forward.eq(decide.forward),
                    s_fwd_state.eq(decide.fwd_state),
                    s_resp_op.eq(decide.resp_opcode),
                    s_resp_state.eq(decide.resp_state),
                    s_resp_data.eq(decide.resp_data),
                    b.eq(0),
                    rd_beat.eq(0),
                    self.snoops.eq(self.snoops + 1),
                ]
                with m.If(decide.forward):
                    m.next = "SNP_FWD_H"
                with m.Elif(decide.resp_data):
                    m.next = "SNP_RD_H"
                with m.Else():
                    m.next = "SNP_RSP"

            def snoop_line_states(name: str, *, opcode, dst, state, fwd=None, then) -> None:
                """States ``{name}_H`` and ``{name}_D``: a header, then the snooped line's
                beats (from the cache or the eviction slot), then ``then()`` picks the next."""
                with m.State(f"{name}_H"):
                    m.d.comb += [
                        out_hdr.opcode.eq(opcode),
                        out_hdr.dst.eq(dst),
                        out_hdr.state.eq(state),
                        dat_out.valid.eq(1),
                        dat_out.payload.head.eq(1),
                        dat_out.payload.payload.eq(out_hdr),
                    ]
                    if fwd is not None:
                        m.d.comb += out_hdr.fwd.eq(fwd)
                    m.d.sync += snp_q.eq(src_data)  # beat 0 (rd_beat is 0 here)
                    with m.If(dat_out.ready):
                        m.d.sync += rd_beat.eq(1)
                        m.next = f"{name}_D"
                with m.State(f"{name}_D"):
                    m.d.comb += [
                        dat_out.valid.eq(1),
                        dat_out.payload.tail.eq(b == beats - 1),
                        dat_out.payload.payload.eq(Cat(snp_q, C(-1, bb))),
                    ]
                    with m.If(dat_out.ready):
                        m.d.sync += [b.eq(b + 1), rd_beat.eq(rd_beat + 1), snp_q.eq(src_data)]
                        with m.If(b == beats - 1):
                            m.d.sync += [b.eq(0), rd_beat.eq(0)]
                            then()

            def after_forward() -> None:
                with m.If(s_resp_data):
                    m.next = "SNP_RD_H"
                with m.Else():
                    m.next = "SNP_RSP"

            def to_idle() -> None:
                m.next = "IDLE"

            # FWD_DATA to the requester (its `fwd` names the home, for the COMP_ACK), then
            # SNP_RESP_DATA to the home when the line was dirty.
            snoop_line_states(
                "SNP_FWD",
                opcode=Opcode.FWD_DATA,
                dst=hdr.fwd,
                fwd=hdr.src,
                state=s_fwd_state,
                then=after_forward,
            )
            snoop_line_states(
                "SNP_RD", opcode=Opcode.SNP_RESP_DATA, dst=hdr.src, state=s_resp_state, then=to_idle
            )
            with m.State("SNP_RSP"):
                rh = Signal(Header)
                m.d.comb += [
                    rh.opcode.eq(s_resp_op),
                    rh.cls.eq(MsgClass.RSP),
                    rh.src.eq(node),
                    rh.dst.eq(hdr.src),
                    rh.tag.eq(hdr.tag),
                    rh.addr.eq(line(hdr.addr)),
                    rh.state.eq(s_resp_state),
                    rsp_out.valid.eq(1),
                    rsp_out.payload.head.eq(1),
                    rsp_out.payload.tail.eq(1),
                    rsp_out.payload.payload.eq(rh),
                ]
                with m.If(rsp_out.ready):
                    m.next = "IDLE"

            # ---- responses without data --------------------------------------------------
            with m.State("RSP"):
                m.next = "IDLE"
                is_err = hdr.opcode == Opcode.ERROR
                err_resp = Mux(hdr.err == ErrorCode.DECODE, AxiResp.DECERR, AxiResp.SLVERR)
                # An upgrade granted: its store merged into the S copy, now M.
                m.d.comb += [
                    arrays.data_waddr.eq(g.word(g.set_of(mk.addr), mk.way, beat_of(mk.addr))),
                    arrays.data_wdata.eq(mk.data),
                ]
                tag_entry(g.set_of(mk.addr), mk.way, g.tag_of(mk.addr), CacheState.M)
                with m.If(e_ok), m.If((hdr.opcode == Opcode.COMP) | is_err):
                    ev_set(k, busy=0, pending=0, snoop=0)
                with m.Elif(k_ok):
                    with m.If(is_err):
                        complete(k, err_resp)
                    with m.Elif((hdr.opcode == Opcode.COMP) & (mk.opcode == Opcode.UPGRADE)):
                        m.d.comb += arrays.data_wstrb.eq(mk.strb)
                        tag_write(g.set_of(mk.addr), g.tag_of(mk.addr), CacheState.M)
                        complete(k)
                        send_ack(hdr.src)
                    with m.Elif((hdr.opcode == Opcode.COMP) & (mk.opcode == Opcode.NC_WRITE)):
                        complete(k)

            # ---- responses with data -----------------------------------------------------
            with m.State("DAT"):
                m.d.comb += dat_in.ready.eq(1)
                is_line = (hdr.opcode == Opcode.COMP_DATA) | (hdr.opcode == Opcode.FWD_DATA)
                merged = Signal(w)
                m.d.comb += merged.eq(beat_in.data)
                with m.If(mk.store & (b == beat_of(mk.addr))):
                    m.d.comb += merged.eq(
                        (beat_in.data & ~strb_mask(mk.strb)) | (mk.data & strb_mask(mk.strb))
                    )
                m.d.comb += [
                    arrays.data_waddr.eq(g.word(g.set_of(mk.addr), mk.way, b)),
                    arrays.data_wdata.eq(merged),
                ]
                with m.If(dat_in.valid):
                    m.d.sync += b.eq(b + 1)
                    with m.If(k_ok & is_line & mk.cached):
                        m.d.comb += arrays.data_wstrb.eq(-1)
                    with m.If(k_ok & (b == beat_of(mk.addr))):
                        mshr_set(k, rdata=beat_in.data)
                    with m.If(k_ok & (hdr.opcode == Opcode.ATOMIC_DATA)):
                        mshr_set(k, buser=beat_in.data[:64], rdata=beat_in.data)
                    with m.If(dat_in.payload.tail):
                        m.next = "DAT_END"
            with m.State("DAT_END"):
                m.next = "IDLE"
                is_line = (hdr.opcode == Opcode.COMP_DATA) | (hdr.opcode == Opcode.FWD_DATA)
                poison_resp = Mux(hdr.poison, AxiResp.SLVERR, AxiResp.OKAY)
                new_state = Mux(hdr.poison, CacheState.I, Mux(mk.store, CacheState.M, hdr.state))
                tag_entry(g.set_of(mk.addr), mk.way, g.tag_of(mk.addr), new_state)
                with m.If(k_ok & is_line & mk.cached):
                    tag_write(g.set_of(mk.addr), g.tag_of(mk.addr), new_state)
                    complete(k, poison_resp)
                    send_ack(Mux(hdr.opcode == Opcode.FWD_DATA, hdr.fwd, hdr.src))
                with m.Elif(k_ok & (hdr.opcode == Opcode.COMP_DATA)):
                    complete(k, poison_resp)  # NC_READ
                with m.Elif(k_ok & (hdr.opcode == Opcode.ATOMIC_DATA)):
                    complete(k, poison_resp)
            with m.State("ACK"):
                m.d.comb += [
                    rsp_out.valid.eq(1),
                    rsp_out.payload.head.eq(1),
                    rsp_out.payload.tail.eq(1),
                    rsp_out.payload.payload.eq(ack),
                ]
                with m.If(rsp_out.ready):
                    m.next = "IDLE"

            # ---- the held AXI operation ---------------------------------------------------
            with m.State("OP"):
                m.next = "IDLE"
                m.d.comb += [
                    arrays.data_waddr.eq(g.word(lset, hit_way, opbeat)),
                    arrays.data_wdata.eq(op.data),
                ]
                # A hit's E -> M (hit) or a miss's way, emptied for the fill (below).
                tag_entry(
                    lset, Mux(hit, hit_way, victim_way), ltag, Mux(hit, CacheState.M, CacheState.I)
                )
                # Only read in EVICT_COPY, which only a victim's eviction enters.
                m.d.sync += [
                    copy_ev.eq(free_ev),
                    line_word.eq(g.word(lset, victim_way, 0)),
                    b.eq(0),
                    rd_beat.eq(0),
                ]
                with m.If(op_error):
                    push()
                with m.Elif(is_atomic), m.If(free_mshr_any & ~conflict):
                    allocate()
                with m.Elif(~cacheable), m.If(free_mshr_any & ~nc_conflict):
                    allocate()
                with m.Elif(conflict):
                    pass  # wait for the line's MSHR / eviction
                with m.Elif(hit & ~op.write):
                    push()
                    m.d.sync += self.hits.eq(self.hits + 1)
                with m.Elif(hit & (hit_state != CacheState.S)):
                    m.d.comb += arrays.data_wstrb.eq(op.strb)
                    with m.If(hit_state == CacheState.E):
                        tag_write(lset, ltag, CacheState.M)
                    push()
                    m.d.sync += self.hits.eq(self.hits + 1)
                with m.Elif(hit & free_mshr_any):  # store to S (waits without an MSHR)
                    allocate()
                    m.d.sync += self.misses.eq(self.misses + 1)
                with m.Elif(hit):
                    pass
                with m.Elif(free_mshr_any & unres_any & (~victim_valid | free_ev_any)):
                    allocate()
                    m.d.sync += self.misses.eq(self.misses + 1)
                    tag_write(lset, ltag, CacheState.I, event=False)
                    with m.If(victim_valid):
                        m.d.comb += [
                            sc.valid.eq(1),
                            sc.addr.eq(g.line_addr(victim.tag, lset)),
                            sc.state.eq(CacheState.I),
                        ]
                        ev_set(free_ev, busy=1)
                        m.d.sync += rr.eq(Mux(rr == g.ways - 1, 0, rr + 1))
                        with m.If(victim_dirty):
                            m.d.sync += self.writebacks.eq(self.writebacks + 1)
                        m.next = "EVICT_COPY"
            with m.State("EVICT_COPY"):
                m.d.comb += [
                    ev_wr.addr.eq(copy_ev * beats + b),
                    ev_wr.data.eq(arrays.data_rdata),
                    ev_wr.en.eq(1),
                ]
                m.d.sync += [b.eq(b + 1), rd_beat.eq(rd_beat + 1)]
                with m.If(b == beats - 1):
                    m.d.sync += [b.eq(0), rd_beat.eq(0)]
                    ev_set(copy_ev, pending=1)
                    m.next = "IDLE"
        # For the tests' check of the above (unused in the design: synthesis removes it).
        lookup_used = Signal()
        data_used = Signal()
        m.d.comb += [
            lookup_used.eq(fsm.ongoing("SNP") | fsm.ongoing("OP")),
            data_used.eq(
                fsm.ongoing("OP")
                | fsm.ongoing("SNP_FWD_H")
                | fsm.ongoing("SNP_RD_H")
                | fsm.ongoing("SNP_FWD_D")
                | fsm.ongoing("SNP_RD_D")
                | fsm.ongoing("EVICT_COPY")
            ),
        ]
        self._probe = (arrays, lookup_used, data_used)
        return m
