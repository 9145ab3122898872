"""The directory home agent (``docs/coherence.md`` §2).

Microarchitecture (simple first; one request at a time):

* **Fabric adapters.** :class:`FabricToStreams` buffers ``rx_depth`` flits per VC and returns
  credits as they leave; :class:`StreamsToFabric` sends under ``tx_credits`` credits per VC.
  The home uses the default VC of each class (REQ 0, SNP 1, RSP 2, DAT 3). Flits on the SNP
  VC and on VCs 4 and up are never expected: they are discarded and counted (``unexpected``).
* **Engine.** One FSM serially processes the REQ stream in arrival order. It looks at the
  head flit without taking it and checks it (``docs/coherence.md`` §2.4: malformed header,
  then window, then alignment, atomic size and coherent source). A refused request is taken
  with its data flits and answered ``ERROR``. A good request whose line is busy in the
  transaction table, or a coherent read while the table is full, is *not taken*: the REQ
  stream stalls and back-pressure reaches the sender through the credits; nothing is dropped.
  Otherwise the request is taken (its data beats into a request buffer), its directory set is
  read (one row holds every way and the set's round-robin pointer) and the engine decides,
  from the §2.1 table, which snoops to send, what memory accesses to make, the response and
  the directory entry after success and after a memory error. If the request needs a
  directory entry and the set is full, a victim whose line is not busy (round-robin from the
  set's pointer) is back-invalidated first (§2.2: ``SNP_INV`` to each holder, write back
  ``SNP_RESP_DATA``, free the way), then the decision is taken again; if every way is busy the
  engine waits. Coherent reads and upgrades enter the transaction table at that point, before
  any snoop goes out (the requester's ``COMP_ACK`` may overtake the owner's snoop response).
  Snoops go out one message per target, lowest node first, header ``{src: node_id, dst:
  target, tag: requester's tag, fwd: requester, addr: line}`` (back-invalidations: tag 0,
  ``fwd`` = the home). While snooping, the engine takes each ``SNP_RESP_DATA`` of the snooped
  line from the DAT stream (in preference to sending the next snoop) and writes it to memory;
  ``SNP_RESP_I``/``SNP_RESP_S`` are counted by the RSP consumer. When every snoop is answered
  the engine writes the request data (``WRITE_BACK`` full line, ``NC_WRITE`` under its byte
  enables), or reads the line and, for an atomic, writes the result under the bytes of the
  access, each AXI burst finishing (B or last R) before the next starts. It then sends the
  response (``COMP``, ``COMP_DATA``, ``ATOMIC_DATA``, nothing when an owner forwards, or
  ``ERROR(POISON)`` with ``poison = 1`` after a memory error: nothing is written after one),
  writes the directory row back, frees the table entry if an error closed a coherent read,
  and goes back to the REQ stream.
* **RSP consumer.** Takes every RSP flit at once: ``COMP_ACK`` frees the table entry matching
  its line, source and tag; ``SNP_RESP_I``/``SNP_RESP_S`` for the line being snooped count as
  answers (``SNP_RESP_S`` marks that the owner kept a copy); anything else is counted in
  ``unexpected`` and dropped.
* **DAT consumer.** Whatever the engine does not take (anything but an expected
  ``SNP_RESP_DATA``) is dropped whole and counted in ``unexpected``.
* **Memory.** AXI4 manager, ID 0, one INCR burst of full-width beats per line (``line_beats``
  beats, 64 bytes); AXI address = global address - ``window.base``. Any ``rresp``/``bresp``
  other than OKAY is a memory error.

Ambiguities resolved here (see also ``docs/coherence.md``): every head flit on the REQ VC is a
request (a response opcode there is answered ``ERROR(MALFORMED)``, as the switch's responder
does); ``READ_SHARED``/``READ_UNIQUE`` from the current owner (which the protocol never sends)
is granted from memory as from I; a malformed header is reported before an address outside the
window; ``size`` is only checked (> 6 malformed) for opcodes other than ``NC_READ`` and
atomics; after a failed memory write no further memory access is made for that request.
"""

from amaranth import *
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from unifab.coherence.params import HomeParams
from unifab.flit import (
    HEADER_BITS,
    LINE_BYTES,
    NODE_BITS,
    CacheState,
    ErrorCode,
    Header,
    MsgClass,
    Opcode,
    beat_layout,
)
from unifab.hdl.coherence.atomics import AtomicAlu, sign_extend
from unifab.hdl.coherence.directory import Directory, dir_entry_layout
from unifab.hdl.coherence.table import TransactionTable
from unifab.hdl.lib.axi import Axi4Signature, AxiBurst, AxiParams, AxiResp
from unifab.hdl.lib.port import FabricLink, FabricToStreams, StreamsToFabric

__all__ = ["HomeAgent", "home_geometry"]


class _Response(enum.Enum, shape=2):
    NONE = 0  # the owner forwards the line (FWD_DATA); the home sends nothing
    COMP = 1
    COMP_DATA = 2
    ATOMIC_DATA = 3


class _WriteFrom(enum.Enum, shape=2):
    LINE = 0  # the line buffer (snoop data), every byte
    REQUEST = 1  # the request's data under its byte enables
    ATOMIC = 2  # the atomic result under the bytes of the access


def home_geometry(params: HomeParams) -> tuple[int, int, int]:
    """``(line_bits, set_bits, tag_bits)``: line index within the window, and its split into
    directory set index and tag."""
    line_bits = params.mem_addr_width - (LINE_BYTES.bit_length() - 1)
    set_bits = params.dir_sets.bit_length() - 1
    return line_bits, set_bits, max(1, line_bits - set_bits)


class HomeAgent(wiring.Component):
    """The home agent of one memory window: directory, transaction table, far atomics.

    Ports
    -----
    fabric_in : In(FabricLink)
        Flits to the home (requests, snoop responses, ``COMP_ACK``). The home buffers
        ``rx_depth`` flits per VC: the sender starts with ``rx_depth`` credits per VC.
    fabric_out : Out(FabricLink)
        Flits from the home (snoops, responses). The home starts with ``tx_credits`` credits
        per VC.
    mem : Out(Axi4Signature)
        AXI4 manager port to the window's memory (``mem_addr_width`` address bits, fabric data
        width, ``axi_id_width`` ID bits; IDs are 0).
    requests : Out(32)
        Requests taken from the REQ stream (refused ones included).
    snoops : Out(32)
        Snoop messages sent (back-invalidations included).
    errors : Out(32)
        ``ERROR`` responses sent.
    stale : Out(32)
        Stale ``WRITE_BACK``/``CLEAN_EVICT`` requests (answered ``COMP``, nothing changed).
    back_invalidations : Out(32)
        Directory entries freed by back-invalidation.
    unexpected : Out(32)
        Messages (or stray data flits) discarded: ``COMP_ACK`` matching no transaction, snoop
        responses nobody waits for, anything on the SNP VC or on VCs 4 and up, other RSP/DAT.
    table_used : Out(range(table_entries + 1))
        Transactions awaiting ``COMP_ACK``.
    rx_overflow : Out(1)
        Sticky: a flit arrived without a credit (the sender broke the credit rule).
    busy : Out(1)
        A request is being processed or a transaction awaits its ``COMP_ACK`` (0 at rest:
        the benches' leak check).
    """

    def __init__(self, params: HomeParams):
        if not isinstance(params, HomeParams):
            raise TypeError(f"params must be HomeParams, not {type(params).__name__}")
        self.params = params
        f = params.fabric
        self.axi_params = AxiParams(
            addr_width=params.mem_addr_width, data_width=f.data_width, id_width=params.axi_id_width
        )
        super().__init__(
            {
                "fabric_in": In(FabricLink(f)),
                "fabric_out": Out(FabricLink(f)),
                "mem": Out(Axi4Signature(self.axi_params)),
                "requests": Out(32),
                "snoops": Out(32),
                "errors": Out(32),
                "stale": Out(32),
                "back_invalidations": Out(32),
                "unexpected": Out(32),
                "table_used": Out(range(params.table_entries + 1)),
                "rx_overflow": Out(1),
                "busy": Out(1),
            }
        )
        _, _, tag_bits = home_geometry(params)
        self.directory = Directory(
            sets=params.dir_sets,
            ways=params.dir_ways,
            tag_bits=tag_bits,
            max_sharers=params.max_sharers,
        )

    def elaborate(self, platform):
        m = Module()
        p = self.params
        f = p.fabric
        W = f.data_width
        beats = f.line_beats
        beat_bytes = W // 8
        line_bits, set_bits, tag_bits = home_geometry(p)
        ms = p.max_sharers
        owner_bits = (ms - 1).bit_length()
        ways = p.dir_ways
        base, end = p.window.base, p.window.end
        ap = self.axi_params
        all_bytes = (1 << LINE_BYTES) - 1

        # -- blocks ------------------------------------------------------------------------
        m.submodules.rx = rx = FabricToStreams(f, depth=p.rx_depth, registered=p.registered_rx)
        # The engine offers one message at a time, on every stream (only its VC valid): no
        # arbiter between its offer and the port.
        m.submodules.tx = tx = StreamsToFabric(f, credits=p.tx_credits, one_at_a_time=True)
        wiring.connect(m, wiring.flipped(self.fabric_in), rx.port)
        wiring.connect(m, tx.port, wiring.flipped(self.fabric_out))
        m.d.comb += self.rx_overflow.eq(rx.overflow)
        m.submodules.directory = dirs = self.directory
        m.submodules.table = table = TransactionTable(
            entries=p.table_entries, line_bits=line_bits, lookups=1, held=ways
        )
        m.d.comb += self.table_used.eq(table.used)
        # The old value is sign-extended as it is taken from its read beat (atomic_old). With
        # two beats or more per line the ALU has two cycles (see atomic_new): its carry chains
        # and compares end at flops of their own.
        m.submodules.alu = alu = AtomicAlu(stages=2 if beats >= 2 else 1)

        req_s = rx.streams[MsgClass.REQ.value]
        rsp_s = rx.streams[MsgClass.RSP.value]
        dat_s = rx.streams[MsgClass.DAT.value]

        # Discard counters: one pulse per source per cycle.
        unexpected_pulses = []

        def unexpected_pulse(name: str) -> Signal:
            pulse = Signal(name=f"unexpected_{name}")
            unexpected_pulses.append(pulse)
            return pulse

        for v in range(f.vcs):
            if v in (MsgClass.REQ.value, MsgClass.RSP.value, MsgClass.DAT.value):
                continue
            s = rx.streams[v]
            m.d.comb += [
                s.ready.eq(1),
                unexpected_pulse(f"vc{v}").eq(s.valid & s.payload.head),
            ]

        def line_of(addr: Value) -> Value:
            """Line index within the window of a global address (meaningful in the window)."""
            return (addr - base)[:48][6 : p.mem_addr_width]

        def in_window(addr: Value) -> Value:
            return (addr >= base) & (addr < end)

        # -- the request being processed -----------------------------------------------------
        req = Signal(Header)
        req_upper = Signal(f.payload_bits - HEADER_BITS)  # reserved payload bits of the head
        req_data = Signal(W * beats)
        req_be = Signal(LINE_BYTES)
        opv = Signal(6)
        m.d.comb += opv.eq(req.opcode.as_value())
        is_coherent = Signal()  # READ_SHARED .. CLEAN_EVICT
        is_coh_read = Signal()  # READ_SHARED, READ_UNIQUE, UPGRADE: need COMP_ACK
        is_atomic = Signal()
        m.d.comb += [
            is_coherent.eq((opv >= Opcode.READ_SHARED.value) & (opv <= Opcode.CLEAN_EVICT.value)),
            is_coh_read.eq((opv >= Opcode.READ_SHARED.value) & (opv <= Opcode.UPGRADE.value)),
            is_atomic.eq((opv >= Opcode.ATOMIC_ADD.value) & (opv <= Opcode.ATOMIC_MAX.value)),
        ]
        req_line = Signal(line_bits)
        req_set = Signal(range(max(2, p.dir_sets)))
        req_tag = Signal(tag_bits)
        offset = Signal(6)  # byte offset of the access in its line
        m.d.comb += [
            req_line.eq(line_of(req.addr)),
            req_set.eq(req_line[:set_bits]),
            req_tag.eq(req_line[set_bits:]),
            offset.eq(req.addr[:6]),
        ]

        def request_check(hdr: data.View, upper: Value, name: str) -> Signal:
            """The error code of a request with header ``hdr`` and reserved payload bits
            ``upper`` (``ErrorCode.OK`` to process it)."""
            op = hdr.opcode.as_value()
            coherent = (op >= Opcode.READ_SHARED.value) & (op <= Opcode.CLEAN_EVICT.value)
            atomic = (op >= Opcode.ATOMIC_ADD.value) & (op <= Opcode.ATOMIC_MAX.value)
            align = Signal(6, name=f"{name}_align")  # low address bits that must be zero
            with m.Switch(hdr.size):
                for size in range(7):
                    with m.Case(size):
                        m.d.comb += align.eq((1 << size) - 1)
            misaligned_line = hdr.addr[:6] != 0
            misaligned_size = Signal(name=f"{name}_misaligned_size")
            m.d.comb += misaligned_size.eq((hdr.addr[:6] & align) != 0)
            malformed_header = Signal(name=f"{name}_malformed")
            m.d.comb += malformed_header.eq(
                ~((op >= Opcode.READ_SHARED.value) & (op <= Opcode.ATOMIC_MAX.value))
                | (hdr.cls != MsgClass.REQ)
                | (hdr.rsvd != 0)
                | (upper != 0)
                | (hdr.err.as_value() > max(e.value for e in ErrorCode))
                | (hdr.size > 6)
            )
            result = Signal(ErrorCode, name=name)
            line_aligned = coherent | (hdr.opcode == Opcode.NC_WRITE)
            with m.If(malformed_header):
                m.d.comb += result.eq(ErrorCode.MALFORMED)
            with m.Elif(~in_window(hdr.addr)):
                m.d.comb += result.eq(ErrorCode.WINDOW)
            with m.Elif(line_aligned & misaligned_line):
                m.d.comb += result.eq(ErrorCode.MALFORMED)
            with m.Elif((hdr.opcode == Opcode.NC_READ) & misaligned_size):
                m.d.comb += result.eq(ErrorCode.MALFORMED)
            with m.Elif(atomic & (hdr.size > 3)):
                m.d.comb += result.eq(ErrorCode.UNSUPPORTED)
            with m.Elif(atomic & misaligned_size):
                m.d.comb += result.eq(ErrorCode.MALFORMED)
            with m.Elif(coherent & (hdr.src >= ms)):
                m.d.comb += result.eq(ErrorCode.UNSUPPORTED)
            with m.Else():
                m.d.comb += result.eq(ErrorCode.OK)
            return result

        # The request's check is found from the head flit while IDLE takes its header, and
        # registered with it (req_check): CHECK then starts from a flop, not from the header's
        # decoding. "check" is the same function of the registered header, for the proofs.
        request_check(req, req_upper, "check")
        head = Header(req_s.payload.payload[:HEADER_BITS])
        head_check = request_check(head, req_s.payload.payload[HEADER_BITS:], "head_check")
        req_check = Signal(ErrorCode)

        # -- directory view of the request ---------------------------------------------------
        entry_layout = dir_entry_layout(tag_bits=tag_bits, max_sharers=ms)
        row = Signal(dirs.row_layout)
        m.d.comb += [
            dirs.read_set.eq(req_set),
            dirs.probe_row.eq(row),
            dirs.probe_tag.eq(req_tag),
            table.lookup_line[0].eq(req_line),
        ]
        way_lines = []
        for w in range(ways):
            line = Signal(line_bits, name=f"way{w}_line")
            # Whether a way's line is busy: its line compared with the table's entries in
            # LOOKUP, as the row is read (the entries' lines do not change before DECIDE
            # inserts; their valid bits are used live).
            m.d.comb += [
                line.eq(Cat(req_line[:set_bits], row.ways[w].tag)),
                table.held_line[w].eq(Cat(req_line[:set_bits], dirs.row.ways[w].tag)),
                dirs.way_busy[w].eq(table.held_busy[w]),
            ]
            way_lines.append(line)
        victim_line = Signal(line_bits)
        m.d.comb += victim_line.eq(Cat(req_line[:set_bits], row.ways[dirs.victim_way].tag))
        victim = Signal(entry_layout)
        m.d.comb += victim.eq(row.ways[dirs.victim_way])

        # The row's hit and free way, found in LOOKUP from the memory's read data and
        # registered with the row (the tag compares then do not start the decision).
        # DECIDE's back-invalidation frees the victim's way: it becomes the free way (the set
        # was full, so the only one), and there was no hit.
        row_hit = Signal()
        row_hit_way = Signal(range(max(2, ways)))
        row_free = Signal()
        row_free_way = Signal(range(max(2, ways)))
        cur = Signal(entry_layout)  # the line's entry, valid = 0 when in I (a register)
        in_s = Signal()
        in_em = Signal()
        r_bit = Signal(ms)  # the requester's sharer bit (0 for nodes >= max_sharers)
        owner_bit = Signal(ms)
        holders = Signal(ms)
        r_is_sharer = Signal()
        r_is_owner = Signal()
        m.d.comb += [
            in_s.eq(cur.valid & ~cur.em),
            in_em.eq(cur.valid & cur.em),
            r_bit.eq(Mux(req.src < ms, Const(1, ms) << req.src[:owner_bits], 0)),
            owner_bit.eq(Const(1, ms) << cur.owner),
            holders.eq(Mux(in_em, owner_bit, Mux(in_s, cur.sharers, 0))),
            r_is_sharer.eq(in_s & (cur.sharers & r_bit).any()),
            r_is_owner.eq(in_em & (cur.owner == req.src) & (req.src < ms)),
        ]

        def entry(*, valid, em=0, sharers=0, owner=0) -> Value:
            e = Signal(entry_layout)
            m.d.comb += [
                e.valid.eq(valid),
                e.tag.eq(req_tag),
                e.em.eq(em),
                e.sharers.eq(sharers),
                e.owner.eq(owner),
            ]
            return e

        e_none = entry(valid=0)
        e_owned_by_r = entry(valid=1, em=1, owner=req.src[:owner_bits])
        e_plus_r = entry(valid=1, sharers=cur.sharers | r_bit)
        e_minus_r = entry(valid=(cur.sharers & ~r_bit) != 0, sharers=cur.sharers & ~r_bit)
        e_only_r = entry(valid=1, sharers=r_bit)

        # The decision (combinational, taken in DECIDE).
        n_targets = Signal(ms)
        n_snoop = Signal(Opcode, init=Opcode.SNP_INV)
        n_read = Signal()
        n_write_req = Signal()
        n_atomic = Signal()
        n_response = Signal(_Response)
        n_state = Signal(CacheState)
        n_ok = Signal(entry_layout)  # the directory entry after success
        n_err = Signal(entry_layout)  # ... after a memory error
        n_add_owner = Signal()  # READ_SHARED forwarded: the owner stays a sharer if it says S
        n_stale = Signal()
        m.d.comb += n_snoop.eq(Opcode.SNP_INV)
        with m.Switch(req.opcode):
            with m.Case(Opcode.READ_SHARED):
                with m.If(in_em & ~r_is_owner):
                    m.d.comb += [
                        n_targets.eq(owner_bit),
                        n_snoop.eq(Opcode.SNP_SHARED),
                        n_response.eq(_Response.NONE),
                        n_ok.eq(e_only_r),
                        n_err.eq(e_only_r),
                        n_add_owner.eq(1),
                    ]
                with m.Elif(in_s):
                    m.d.comb += [
                        n_read.eq(1),
                        n_response.eq(_Response.COMP_DATA),
                        n_state.eq(CacheState.S),
                        n_ok.eq(e_plus_r),
                        n_err.eq(cur),
                    ]
                with m.Else():
                    m.d.comb += [
                        n_read.eq(1),
                        n_response.eq(_Response.COMP_DATA),
                        n_state.eq(CacheState.E),
                        n_ok.eq(e_owned_by_r),
                        n_err.eq(cur),
                    ]
            with m.Case(Opcode.READ_UNIQUE, Opcode.UPGRADE):
                with m.If((req.opcode == Opcode.UPGRADE) & r_is_sharer):
                    m.d.comb += [
                        n_targets.eq(cur.sharers & ~r_bit),
                        n_response.eq(_Response.COMP),
                        n_state.eq(CacheState.E),
                        n_ok.eq(e_owned_by_r),
                        n_err.eq(e_owned_by_r),
                    ]
                with m.Elif(in_em & ~r_is_owner):
                    m.d.comb += [
                        n_targets.eq(owner_bit),
                        n_snoop.eq(Opcode.SNP_UNIQUE),
                        n_response.eq(_Response.NONE),
                        n_ok.eq(e_owned_by_r),
                        n_err.eq(e_owned_by_r),
                    ]
                with m.Else():
                    m.d.comb += [
                        n_targets.eq(Mux(in_s, cur.sharers & ~r_bit, 0)),
                        n_read.eq(1),
                        n_response.eq(_Response.COMP_DATA),
                        n_state.eq(CacheState.E),
                        n_ok.eq(e_owned_by_r),
                        n_err.eq(Mux(in_s, e_none, cur)),
                    ]
            with m.Case(Opcode.WRITE_BACK, Opcode.CLEAN_EVICT):
                m.d.comb += n_response.eq(_Response.COMP)
                with m.If(r_is_owner):
                    m.d.comb += [
                        n_write_req.eq(req.opcode == Opcode.WRITE_BACK),
                        n_ok.eq(e_none),
                        n_err.eq(e_none),
                    ]
                with m.Elif((req.opcode == Opcode.CLEAN_EVICT) & r_is_sharer):
                    m.d.comb += [n_ok.eq(e_minus_r), n_err.eq(e_minus_r)]
                with m.Else():
                    m.d.comb += [n_stale.eq(1), n_ok.eq(cur), n_err.eq(cur)]
            with m.Case(Opcode.NC_READ):
                m.d.comb += [n_read.eq(1), n_response.eq(_Response.COMP_DATA)]
                with m.If(in_em):
                    m.d.comb += [n_targets.eq(owner_bit), n_ok.eq(e_none), n_err.eq(e_none)]
                with m.Else():
                    m.d.comb += [n_ok.eq(cur), n_err.eq(cur)]
            with m.Case(Opcode.NC_WRITE):
                m.d.comb += [
                    n_targets.eq(holders),
                    n_write_req.eq(1),
                    n_response.eq(_Response.COMP),
                    n_ok.eq(e_none),
                    n_err.eq(e_none),
                ]
            with m.Default():  # atomics
                m.d.comb += [
                    n_targets.eq(holders),
                    n_read.eq(1),
                    n_atomic.eq(1),
                    n_response.eq(_Response.ATOMIC_DATA),
                    n_ok.eq(e_none),
                    n_err.eq(e_none),
                ]
        nc_be = Signal(LINE_BYTES)  # NC_READ: the bytes asked for
        with m.Switch(req.size):
            for size in range(7):
                with m.Case(size):
                    m.d.comb += nc_be.eq(Const((1 << (1 << size)) - 1, LINE_BYTES) << offset)

        # -- engine state ------------------------------------------------------------------
        targets = Signal(ms)
        snoop_op = Signal(Opcode, init=Opcode.SNP_INV)
        snoop_tag = Signal(8)
        snoop_fwd = Signal(NODE_BITS)
        snoop_line = Signal(line_bits)
        snoop_addr = Signal(48)
        snooping = Signal()  # snoop responses for snoop_addr are being counted
        outstanding = Signal(range(ms + 1))
        answered_s = Signal()
        back_invalidating = Signal()
        do_read = Signal()
        do_write_req = Signal()
        do_atomic = Signal()
        response = Signal(_Response)
        resp_state = Signal(CacheState)
        resp_be = Signal(LINE_BYTES)
        resp_err = Signal(ErrorCode)
        mem_err = Signal()
        ok_entry = Signal(entry_layout)
        err_entry = Signal(entry_layout)
        add_owner = Signal()
        owner = Signal(range(ms))
        way = Signal(range(max(2, ways)))
        hit = Signal()
        update_dir = Signal()
        in_table = Signal()
        table_index = Signal(range(max(2, p.table_entries)))
        line_buf = Signal(W * beats)
        beat = Signal(range(beats + 1))
        write_from = Signal(_WriteFrom)
        write_line = Signal(line_bits)
        write_then_snoop = Signal()

        snoop_sent = Signal()
        offer_snoop = Signal()  # the engine offers the next snoop (state SNOOP)
        # A snoop offered and not taken stays offered until it is (the valid/ready contract),
        # also while the engine takes an SNP_RESP_DATA and writes it to memory in between
        # (it used to be withdrawn then; found by the stream-contract proof).
        snoop_held = Signal()
        rsp_answer = Signal()
        dat_answer = Signal()
        m.d.sync += outstanding.eq(outstanding + snoop_sent - rsp_answer - dat_answer)

        # -- outgoing messages: one at a time, on one VC -----------------------------------
        out_valid = Signal()
        out_vc = Signal(f.vc_bits)
        out_head = Signal()
        out_tail = Signal()
        out_payload = Signal(f.payload_bits)
        for v in range(f.vcs):
            s = tx.streams[v]
            m.d.comb += [
                s.valid.eq(out_valid & (out_vc == v)),
                s.payload.head.eq(out_head),
                s.payload.tail.eq(out_tail),
                s.payload.payload.eq(out_payload),
            ]

        target = Signal(range(ms))  # lowest node still to snoop
        for i in reversed(range(ms)):
            with m.If(targets[i]):
                m.d.comb += target.eq(i)
        snoop_hdr = Signal(Header)
        m.d.comb += [
            snoop_hdr.opcode.eq(snoop_op),
            snoop_hdr.cls.eq(MsgClass.SNP),
            snoop_hdr.src.eq(p.node_id),
            snoop_hdr.dst.eq(target),
            snoop_hdr.tag.eq(snoop_tag),
            snoop_hdr.fwd.eq(snoop_fwd),
            snoop_hdr.addr.eq(snoop_addr),
        ]
        final_err = Signal(ErrorCode)
        m.d.comb += final_err.eq(Mux(mem_err, ErrorCode.POISON, resp_err))
        resp_hdr = Signal(Header)
        m.d.comb += [
            resp_hdr.src.eq(p.node_id),
            resp_hdr.dst.eq(req.src),
            resp_hdr.tag.eq(req.tag),
            resp_hdr.addr.eq(req.addr),
            resp_hdr.state.eq(resp_state),
        ]
        resp_vc = Signal(f.vc_bits)
        resp_beats = Signal(range(beats + 1))
        with m.If(final_err != ErrorCode.OK):
            m.d.comb += [
                resp_hdr.opcode.eq(Opcode.ERROR),
                resp_hdr.cls.eq(MsgClass.RSP),
                resp_hdr.state.eq(CacheState.I),
                resp_hdr.err.eq(final_err),
                resp_hdr.poison.eq(final_err == ErrorCode.POISON),
                resp_vc.eq(MsgClass.RSP.value),
            ]
        with m.Elif(response == _Response.COMP):
            m.d.comb += [
                resp_hdr.opcode.eq(Opcode.COMP),
                resp_hdr.cls.eq(MsgClass.RSP),
                resp_vc.eq(MsgClass.RSP.value),
            ]
        with m.Elif(response == _Response.COMP_DATA):
            m.d.comb += [
                resp_hdr.opcode.eq(Opcode.COMP_DATA),
                resp_hdr.cls.eq(MsgClass.DAT),
                resp_vc.eq(MsgClass.DAT.value),
                resp_beats.eq(beats),
            ]
        with m.Else():
            m.d.comb += [
                resp_hdr.opcode.eq(Opcode.ATOMIC_DATA),
                resp_hdr.cls.eq(MsgClass.DAT),
                resp_hdr.size.eq(req.size),
                resp_vc.eq(MsgClass.DAT.value),
                resp_beats.eq(1),
            ]

        # One message is offered at a time, so a held credit on its VC is as good as the
        # adapter's ready. Both come from registers only (the credit counters; the VC of the
        # response from mem_err, resp_err and response).
        snoop_ready = Signal()
        resp_ready = Signal()
        m.d.comb += snoop_ready.eq(tx.can_send[MsgClass.SNP.value])
        for v in range(f.vcs):
            with m.If(resp_vc == v):
                m.d.comb += resp_ready.eq(tx.can_send[v])

        # -- atomic ALU on the line buffer ---------------------------------------------------
        # The old value under an atomic (naturally aligned, at most 8 bytes, so inside one read
        # beat) is taken from its read beat as it arrives, not selected out of the whole line
        # buffer afterwards: that selection was the start of the home's longest path. It is
        # kept sign-extended from the access size (the ALU is presized): the ALU's signed
        # compare then starts from this flop.
        atomic_old = Signal(64)
        beat_offset_bits = (W // 8 - 1).bit_length()
        m.d.comb += [
            alu.opcode.eq(req.opcode),
            alu.size.eq(req.size[:2]),
            alu.old.eq(atomic_old),
            alu.operand.eq(req_data[:64]),
            alu.compare.eq(req_data[64:128]),
        ]
        atomic_bytes = Signal(8)  # byte enables of the access at offset 0
        with m.Switch(req.size[:2]):
            for size in range(4):
                with m.Case(size):
                    m.d.comb += atomic_bytes.eq((1 << (1 << size)) - 1)
        # The new value is registered before it is written: the ALU's adders and compares
        # then end at a flop instead of at the memory's write data. The operands (request
        # data, size, opcode) hold from RX_DATA/IDLE on, so the ALU's registered operand side
        # has them long before. The old value is taken at the end of read beat k (the beat
        # of the access); the new value is written in write beat k, and in between come read
        # beats k+1 .. beats-1, WRITE_ADDR and write beats 0 .. k-1: at least `beats`
        # cycles, so `beats` clock edges for the ALU's stage flops (with two stages) and this
        # register. With one beat per line there is one edge, for this register: the ALU then
        # has a single stage.
        atomic_new = Signal(64)
        m.d.sync += atomic_new.eq(alu.result)
        atomic_line = Signal(W * beats)
        atomic_strb = Signal(LINE_BYTES)
        m.d.comb += [
            atomic_line.eq(atomic_new << Cat(C(0, 3), offset)),
            atomic_strb.eq(atomic_bytes << offset),
        ]

        # -- AXI manager: constant attributes ------------------------------------------------
        axi = self.mem
        m.d.comb += [
            axi.arid.eq(0),
            axi.arlen.eq(beats - 1),
            axi.arsize.eq(ap.size_full),
            axi.arburst.eq(AxiBurst.INCR),
            axi.awid.eq(0),
            axi.awlen.eq(beats - 1),
            axi.awsize.eq(ap.size_full),
            axi.awburst.eq(AxiBurst.INCR),
            axi.araddr.eq(Cat(C(0, 6), req_line)),
            axi.awaddr.eq(Cat(C(0, 6), write_line)),
        ]
        with m.Switch(write_from):
            with m.Case(_WriteFrom.LINE):
                m.d.comb += [
                    axi.wdata.eq(line_buf.word_select(beat, W)),
                    axi.wstrb.eq(Const(all_bytes, LINE_BYTES).word_select(beat, beat_bytes)),
                ]
            with m.Case(_WriteFrom.REQUEST):
                m.d.comb += [
                    axi.wdata.eq(req_data.word_select(beat, W)),
                    axi.wstrb.eq(req_be.word_select(beat, beat_bytes)),
                ]
            with m.Default():
                m.d.comb += [
                    axi.wdata.eq(atomic_line.word_select(beat, W)),
                    axi.wstrb.eq(atomic_strb.word_select(beat, beat_bytes)),
                ]
        m.d.comb += axi.wlast.eq(beat == beats - 1)

        def is_snooped_line(addr: Value) -> Value:
            """``addr`` is in the line being snooped (``snoop_addr``)."""
            high = p.mem_addr_width
            if base >> high == (end - 1) >> high:
                # Every line of the window has the same address bits from mem_addr_width up,
                # and the line snooped is one of them: those bits of `addr` are compared with
                # a constant (half the inputs of a compare with the register).
                return (addr[6:high] == snoop_addr[6:high]) & (addr[high:] == base >> high)
            return addr[6:] == snoop_addr[6:]

        # -- RSP consumer ----------------------------------------------------------------------
        rsp = Header(rsp_s.payload.payload[:HEADER_BITS])
        answer_line = Signal()  # the message is about the line being snooped
        m.d.comb += [
            rsp_s.ready.eq(1),
            answer_line.eq(snooping & (outstanding != 0) & is_snooped_line(rsp.addr)),
            table.ack_line.eq(line_of(rsp.addr)),
            table.ack_node.eq(rsp.src),
            table.ack_tag.eq(rsp.tag),
        ]
        rsp_unexpected = unexpected_pulse("rsp")
        with m.If(rsp_s.valid):
            with m.If(~rsp_s.payload.head):
                m.d.comb += rsp_unexpected.eq(1)
            with m.Elif((rsp.opcode == Opcode.COMP_ACK) & (rsp.cls == MsgClass.RSP)):
                ack_ok = table.ack_hit & in_window(rsp.addr)
                m.d.comb += [table.ack.eq(ack_ok), rsp_unexpected.eq(~ack_ok)]
            with m.Elif(
                ((rsp.opcode == Opcode.SNP_RESP_I) | (rsp.opcode == Opcode.SNP_RESP_S))
                & (rsp.cls == MsgClass.RSP)
                & answer_line
            ):
                m.d.comb += rsp_answer.eq(1)
                with m.If(rsp.opcode == Opcode.SNP_RESP_S):
                    m.d.sync += answered_s.eq(1)
            with m.Else():
                m.d.comb += rsp_unexpected.eq(1)

        # -- DAT consumer: what the engine does not take is dropped ----------------------------
        dat = Header(dat_s.payload.payload[:HEADER_BITS])
        dat_expected = Signal()  # an SNP_RESP_DATA the engine will take
        m.d.comb += dat_expected.eq(
            dat_s.valid
            & dat_s.payload.head
            & (dat.opcode == Opcode.SNP_RESP_DATA)
            & (dat.cls == MsgClass.DAT)
            & snooping
            & (outstanding != 0)
            & is_snooped_line(dat.addr)
        )
        engine_takes_dat = Signal()
        dropping = Signal()
        dat_unexpected = unexpected_pulse("dat")
        with m.If(~engine_takes_dat):
            with m.If(dropping):
                m.d.comb += dat_s.ready.eq(1)
                with m.If(dat_s.valid & dat_s.payload.tail):
                    m.d.sync += dropping.eq(0)
            with m.Elif(dat_s.valid & ~dat_expected):
                m.d.comb += [dat_s.ready.eq(1), dat_unexpected.eq(1)]
                with m.If(dat_s.payload.head & ~dat_s.payload.tail):
                    m.d.sync += dropping.eq(1)

        # -- the engine ----------------------------------------------------------------------
        req_unexpected = unexpected_pulse("req")

        def to_memory(*, do_write, do_read_line) -> None:
            """Leave the snoop phase (or skip it): the request's memory access, if any."""
            with m.If(mem_err):
                m.next = "RESPOND"
            with m.Elif(do_write):
                m.d.sync += [
                    write_from.eq(_WriteFrom.REQUEST),
                    write_line.eq(req_line),
                    write_then_snoop.eq(0),
                ]
                m.next = "WRITE_ADDR"
            with m.Elif(do_read_line):
                m.next = "READ_ADDR"
            with m.Else():
                m.next = "RESPOND"

        with m.FSM() as engine:
            with m.State("IDLE"), m.If(req_s.valid):
                with m.If(req_s.payload.head):
                    m.d.sync += [
                        req.eq(req_s.payload.payload[:HEADER_BITS]),
                        req_upper.eq(req_s.payload.payload[HEADER_BITS:]),
                        req_check.eq(head_check),
                    ]
                    m.next = "CHECK"
                with m.Else():  # a data flit without its header
                    m.d.comb += [req_s.ready.eq(1), req_unexpected.eq(1)]

            with m.State("CHECK"):
                m.d.sync += [
                    beat.eq(0),
                    mem_err.eq(0),
                    update_dir.eq(0),
                    in_table.eq(0),
                    response.eq(_Response.NONE),
                    resp_err.eq(req_check),
                    req_be.eq(0),
                ]
                with m.If(req_check != ErrorCode.OK):
                    m.d.comb += req_s.ready.eq(1)
                    m.d.sync += self.requests.eq(self.requests + 1)
                    with m.If(req_s.payload.tail):
                        m.next = "RESPOND"
                    with m.Else():
                        m.next = "DRAIN"
                with m.Elif(table.lookup_busy[0] | (is_coh_read & table.full)):
                    pass  # the line is busy, or no room to track the grant: wait, in order
                with m.Else():
                    m.d.comb += req_s.ready.eq(1)
                    m.d.sync += self.requests.eq(self.requests + 1)
                    with m.If(req_s.payload.tail):
                        m.next = "LOOKUP"
                    with m.Else():
                        m.next = "RX_DATA"

            with m.State("DRAIN"):
                m.d.comb += req_s.ready.eq(1)
                with m.If(req_s.valid & req_s.payload.tail):
                    m.next = "RESPOND"

            with m.State("RX_DATA"):
                m.d.comb += req_s.ready.eq(1)
                with m.If(req_s.valid):
                    flit_beat = data.View(beat_layout(f), req_s.payload.payload)
                    with m.If(beat < beats):
                        m.d.sync += [
                            req_data.word_select(beat, W).eq(flit_beat.data),
                            req_be.word_select(beat, beat_bytes).eq(
                                Mux(
                                    req.opcode == Opcode.WRITE_BACK,
                                    (1 << beat_bytes) - 1,
                                    flit_beat.be,
                                )
                            ),
                            beat.eq(beat + 1),
                        ]
                    with m.If(req_s.payload.tail):
                        m.next = "LOOKUP"

            with m.State("LOOKUP"):
                # The set address has been stable since IDLE: the row is there.
                m.d.comb += table.held_load.eq(1)
                m.d.sync += [
                    row.eq(dirs.row),
                    row_hit.eq(dirs.hit),
                    row_hit_way.eq(dirs.hit_way),
                    row_free.eq(dirs.free),
                    row_free_way.eq(dirs.free_way),
                    cur.eq(Mux(dirs.hit, dirs.row.ways[dirs.hit_way], 0)),
                ]
                m.next = "DECIDE"

            with m.State("DECIDE"):
                m.d.sync += [update_dir.eq(1), answered_s.eq(0)]
                needs_way = Signal()
                m.d.comb += needs_way.eq(is_coh_read & ~row_hit & ~row_free)
                with m.If(needs_way & dirs.victim):
                    # Back-invalidate the victim, then decide again with its way free.
                    victim_holders = Mux(victim.em, Const(1, ms) << victim.owner, victim.sharers)
                    m.d.sync += [
                        targets.eq(victim_holders),
                        snoop_op.eq(Opcode.SNP_INV),
                        snoop_tag.eq(0),
                        snoop_fwd.eq(p.node_id),
                        snoop_line.eq(victim_line),
                        snoop_addr.eq(base + Cat(C(0, 6), victim_line)),
                        snooping.eq(1),
                        back_invalidating.eq(1),
                        row.ways[dirs.victim_way].valid.eq(0),
                        row.rr.eq(Mux(dirs.victim_way == ways - 1, 0, dirs.victim_way + 1)),
                        row_free.eq(1),
                        row_free_way.eq(dirs.victim_way),
                        self.back_invalidations.eq(self.back_invalidations + 1),
                    ]
                    m.next = "SNOOP"
                with m.Elif(~needs_way):  # (else every way is busy: wait for a COMP_ACK)
                    m.d.sync += [
                        targets.eq(n_targets),
                        snoop_op.eq(n_snoop),
                        snoop_tag.eq(req.tag),
                        snoop_fwd.eq(req.src),
                        snoop_line.eq(req_line),
                        snoop_addr.eq(Cat(C(0, 6), req.addr[6:])),
                        snooping.eq(1),
                        back_invalidating.eq(0),
                        do_read.eq(n_read),
                        do_write_req.eq(n_write_req),
                        do_atomic.eq(n_atomic),
                        response.eq(n_response),
                        resp_state.eq(n_state),
                        resp_be.eq(Mux(req.opcode == Opcode.NC_READ, nc_be, all_bytes)),
                        ok_entry.eq(n_ok),
                        err_entry.eq(n_err),
                        add_owner.eq(n_add_owner),
                        owner.eq(cur.owner),
                        hit.eq(row_hit),
                        way.eq(Mux(row_hit, row_hit_way, row_free_way)),
                        in_table.eq(is_coh_read),
                        table_index.eq(table.insert_index),
                    ]
                    with m.If(n_stale):
                        m.d.sync += self.stale.eq(self.stale + 1)
                    m.d.comb += [
                        table.insert.eq(is_coh_read),
                        table.insert_line.eq(req_line),
                        table.insert_node.eq(req.src),
                        table.insert_tag.eq(req.tag),
                    ]
                    with m.If(n_targets == 0):  # nothing to snoop: straight to memory
                        m.d.sync += snooping.eq(0)
                        to_memory(do_write=n_write_req, do_read_line=n_read)
                    with m.Else():
                        m.next = "SNOOP"

            with m.State("SNOOP"):
                with m.If(dat_expected):
                    m.d.comb += [engine_takes_dat.eq(1), dat_s.ready.eq(1), dat_answer.eq(1)]
                    m.d.sync += beat.eq(0)
                    with m.If(dat.state == CacheState.S):
                        m.d.sync += answered_s.eq(1)
                    m.next = "SNOOP_DATA"
                with m.Elif(targets != 0):
                    m.d.comb += offer_snoop.eq(1)
                with m.Elif(outstanding == 0):
                    m.d.sync += snooping.eq(0)
                    with m.If(back_invalidating):
                        m.next = "DECIDE"
                    with m.Else():
                        to_memory(do_write=do_write_req, do_read_line=do_read)

            with m.State("SNOOP_DATA"):
                m.d.comb += [engine_takes_dat.eq(1), dat_s.ready.eq(1)]
                with m.If(dat_s.valid):
                    with m.If(beat < beats):
                        m.d.sync += [
                            line_buf.word_select(beat, W).eq(dat_s.payload.payload[:W]),
                            beat.eq(beat + 1),
                        ]
                    with m.If(dat_s.payload.tail):
                        m.d.sync += [
                            write_from.eq(_WriteFrom.LINE),
                            write_line.eq(snoop_line),
                            write_then_snoop.eq(1),
                        ]
                        m.next = "WRITE_ADDR"

            with m.State("WRITE_ADDR"):
                m.d.comb += axi.awvalid.eq(1)
                m.d.sync += beat.eq(0)
                with m.If(axi.awready):
                    m.next = "WRITE_DATA"

            with m.State("WRITE_DATA"):
                m.d.comb += axi.wvalid.eq(1)
                with m.If(axi.wready):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(beat == beats - 1):
                        m.next = "WRITE_RESP"

            with m.State("WRITE_RESP"):
                m.d.comb += axi.bready.eq(1)
                with m.If(axi.bvalid):
                    with m.If(axi.bresp != AxiResp.OKAY):
                        m.d.sync += mem_err.eq(1)
                    with m.If(write_then_snoop):
                        m.next = "SNOOP"
                    with m.Else():
                        m.next = "RESPOND"

            with m.State("READ_ADDR"):
                m.d.comb += axi.arvalid.eq(1)
                m.d.sync += beat.eq(0)
                with m.If(axi.arready):
                    m.next = "READ_DATA"

            with m.State("READ_DATA"):
                m.d.comb += axi.rready.eq(1)
                with m.If(axi.rvalid):
                    read_error = axi.rresp != AxiResp.OKAY
                    with m.If(beat < beats):
                        m.d.sync += [
                            line_buf.word_select(beat, W).eq(axi.rdata),
                            beat.eq(beat + 1),
                        ]
                    with m.If(beat == offset[beat_offset_bits:]):
                        in_beat = Cat(C(0, 3), offset[:beat_offset_bits])
                        raw = Cat(axi.rdata, C(0, 64)).bit_select(in_beat, 64)
                        m.d.sync += atomic_old.eq(sign_extend(m, raw, req.size[:2], "raw_signed"))
                    with m.If(read_error):
                        m.d.sync += mem_err.eq(1)
                    with m.If(axi.rlast):
                        with m.If(do_atomic & ~mem_err & ~read_error):
                            m.d.sync += [
                                write_from.eq(_WriteFrom.ATOMIC),
                                write_line.eq(req_line),
                                write_then_snoop.eq(0),
                            ]
                            m.next = "WRITE_ADDR"
                        with m.Else():
                            m.next = "RESPOND"

            with m.State("RESPOND"):
                m.d.sync += beat.eq(0)
                with m.If((final_err == ErrorCode.OK) & (response == _Response.NONE)):
                    m.next = "FINISH"
                with m.Else():
                    m.d.comb += [
                        out_valid.eq(1),
                        out_head.eq(1),
                        out_tail.eq(resp_beats == 0),
                        out_payload.eq(resp_hdr),
                    ]
                    with m.If(resp_ready):
                        with m.If(final_err != ErrorCode.OK):
                            m.d.sync += self.errors.eq(self.errors + 1)
                        with m.If(resp_beats == 0):
                            m.next = "FINISH"
                        with m.Else():
                            m.next = "RESPOND_DATA"

            with m.State("RESPOND_DATA"):
                beat_out = Signal(beat_layout(f))
                with m.If(response == _Response.ATOMIC_DATA):
                    m.d.comb += [beat_out.data.eq(alu.old_value), beat_out.be.eq(atomic_bytes)]
                with m.Else():
                    m.d.comb += [
                        beat_out.data.eq(line_buf.word_select(beat, W)),
                        beat_out.be.eq(resp_be.word_select(beat, beat_bytes)),
                    ]
                m.d.comb += [
                    out_valid.eq(1),
                    out_tail.eq(beat == resp_beats - 1),
                    out_payload.eq(beat_out),
                ]
                with m.If(resp_ready):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(beat == resp_beats - 1):
                        m.next = "FINISH"

            with m.State("FINISH"):
                chosen = Signal(entry_layout)
                final = Signal(entry_layout)
                m.d.comb += [chosen.eq(Mux(mem_err, err_entry, ok_entry)), final.eq(chosen)]
                with m.If(add_owner & answered_s):
                    m.d.comb += final.sharers.eq(chosen.sharers | (Const(1, ms) << owner))
                new_row = Signal(dirs.row_layout)
                m.d.comb += new_row.eq(row)
                with m.If(hit | final.valid):
                    m.d.comb += new_row.ways[way].eq(final)
                m.d.comb += [
                    dirs.write_en.eq(update_dir),
                    dirs.write_set.eq(req_set),
                    dirs.write_row.eq(new_row),
                    table.drop.eq(in_table & (final_err != ErrorCode.OK)),
                    table.drop_index.eq(table_index),
                ]
                m.next = "IDLE"

        # Which message the output carries follows from the state alone: snoops are offered
        # (or held) only outside RESPOND/RESPOND_DATA, responses only there. So its VC,
        # header and payload, and the credit used as its ready, do not wait for the engine's
        # decision to offer (which depends on the DAT stream's head flit).
        responding = engine.ongoing("RESPOND") | engine.ongoing("RESPOND_DATA")
        with m.If(responding):
            m.d.comb += out_vc.eq(resp_vc)
        with m.Else():
            m.d.comb += [
                out_vc.eq(MsgClass.SNP.value),
                out_head.eq(1),
                out_tail.eq(1),
                out_payload.eq(snoop_hdr),
            ]
        with m.If(offer_snoop | snoop_held):
            m.d.comb += out_valid.eq(1)
            m.d.sync += snoop_held.eq(~snoop_ready)
            with m.If(snoop_ready):
                m.d.comb += snoop_sent.eq(1)
                m.d.sync += [
                    # The snoop went to the lowest target: clear the lowest set bit (a carry
                    # chain, not the target's encoder and a decoder).
                    targets.eq(targets & (targets - 1)),
                    self.snoops.eq(self.snoops + 1),
                ]

        # The discard pulses of a cycle are added to the count a cycle later, and the output
        # adds the pending ones back: `unexpected` is still the number of pulses before this
        # cycle, and the pulses (from the DAT/RSP head flits) end at a small register
        # instead of at a 32-bit adder.
        pending = Signal(range(len(unexpected_pulses) + 1))
        counted = Signal(32)
        m.d.sync += [pending.eq(sum(unexpected_pulses)), counted.eq(counted + pending)]
        m.d.comb += self.unexpected.eq(counted + pending)
        m.d.comb += self.busy.eq(~engine.ongoing("IDLE") | (table.used != 0))
        return m
