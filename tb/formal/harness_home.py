"""Harnesses for the home agent: directory-entry and transaction-table invariants (a free
environment) and bounded liveness of the transaction table (a fair environment).

The home's fabric adapters are replaced by free ones (:class:`FreeRx`, :class:`FreeTx`): the
harness drives the per-VC receive streams and the send streams' ``ready`` directly, under the
valid/ready contract. That is a superset of what any credit-respecting sender can deliver, so
the safety properties hold for the real adapters too (their own proofs are in
``harness_lib``); it removes ``4 x rx_depth`` buffered flits of state from every step.
"""

from __future__ import annotations

from contextlib import contextmanager

from amaranth import Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cover
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from unifab.coherence.params import AddressWindow, HomeParams
from unifab.flit import HEADER_BITS, FabricParams, Header, MsgClass, Opcode, flit_layout
from unifab.hdl.coherence import home as home_module
from unifab.hdl.coherence.home import HomeAgent, home_geometry
from unifab.hdl.coherence.table import table_entry_layout
from unifab.hdl.lib.port import FabricLink

from .props import _silence, assume_stream_in, past, past_valid, peek

__all__ = ["HomeLivenessHarness", "HomeSafetyHarness", "small_home_params"]

#: Engine states after DECIDE that keep working on the decided request.
_POST_DECIDE = (
    "SNOOP",
    "SNOOP_DATA",
    "WRITE_ADDR",
    "WRITE_DATA",
    "WRITE_RESP",
    "READ_ADDR",
    "READ_DATA",
    "RESPOND",
    "RESPOND_DATA",
    "FINISH",
)


def small_home_params(*, ways: int = 2, entries: int = 2, lines: int = 4) -> HomeParams:
    """The smallest home: 2 caching agents, one directory set of ``ways`` ways, ``entries``
    transactions, a window of ``lines`` lines at 0x1000, 1-flit receive buffers."""
    return HomeParams(
        fabric=FabricParams(),
        node_id=16,
        window=AddressWindow(base=0x1000, size=64 * lines),
        dir_sets=1,
        dir_ways=ways,
        table_entries=entries,
        max_sharers=2,
        rx_depth=1,
        tx_credits=1,
    )


class FreeRx(wiring.Component):
    """Stands in for ``FabricToStreams``: the harness drives ``streams`` directly (so
    whether the real adapter would be ``registered`` makes no difference)."""

    made: list = []

    def __init__(self, fabric: FabricParams, *, depth: int, registered: bool = False):
        super().__init__(
            {
                "port": In(FabricLink(fabric)),
                "streams": Out(stream.Signature(flit_layout(fabric))).array(fabric.vcs),
                "overflow": Out(1),
            }
        )
        FreeRx.made.append(self)

    def elaborate(self, platform):
        return Module()


class FreeTx(wiring.Component):
    """Stands in for ``StreamsToFabric``: the harness drives each stream's ``ready``;
    ``can_send`` follows it (the real adapter's ``ready`` of a VC offered alone)."""

    made: list = []

    def __init__(self, fabric: FabricParams, *, credits: int, one_at_a_time: bool = False):
        super().__init__(
            {
                "streams": In(stream.Signature(flit_layout(fabric))).array(fabric.vcs),
                "port": Out(FabricLink(fabric)),
                "can_send": Out(fabric.vcs),
            }
        )
        FreeTx.made.append(self)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.can_send.eq(Cat(s.ready for s in self.streams))
        return m


@contextmanager
def _free_ports():
    saved = home_module.FabricToStreams, home_module.StreamsToFabric
    home_module.FabricToStreams, home_module.StreamsToFabric = FreeRx, FreeTx
    FreeRx.made.clear()
    FreeTx.made.clear()
    try:
        yield
    finally:
        home_module.FabricToStreams, home_module.StreamsToFabric = saved


def _entry_ok(e) -> object:
    """A directory entry is well formed: EM has no sharer bits, S has at least one."""
    return ~e.valid | Mux(e.em, e.sharers == 0, e.sharers != 0)


def _tags_unique(row, ways: int) -> object:
    ok = Const(1)
    for a in range(ways):
        for b in range(a + 1, ways):
            w0, w1 = row.ways[a], row.ways[b]
            ok = ok & ~(w0.valid & w1.valid & (w0.tag == w1.tag))
    return ok


def _discarded() -> Module:
    """A module whose statements go nowhere (the induction invariants, switched off)."""
    mod = Module()
    _silence(mod)
    return mod


def _fsm_state(mod: Module) -> Signal:
    """The engine FSM's state register (an FSM's state is the test of its ``Switch``; it is
    not in ``Module._driving``, so :func:`peek` does not list it)."""
    for stmts in mod._statements.values():
        for st in stmts:
            test = getattr(st, "test", None)
            if isinstance(test, Signal) and test.name == "fsm_state":
                return test
    raise LookupError("the home's engine FSM (fsm_state) was not found")


class _HomeBase(Elaboratable):
    def __init__(self, params: HomeParams | None = None, *, dut_cls: type = HomeAgent):
        self.params = params or small_home_params()
        self.dut_cls = dut_cls

    def build(self, m: Module):
        """Instantiate the home with free ports; return (home, its signals, table signals,
        rx streams, tx streams, state predicate)."""
        p = self.params
        with _free_ports():
            home = self.dut_cls(p)
            mod, sigs = peek(home)
            rx, tx = FreeRx.made[-1], FreeTx.made[-1]
        m.submodules.home = mod
        table = mod._named_submodules["table"][0]
        table_mod, tsigs = peek(table)
        mod._named_submodules["table"] = (table_mod, mod._named_submodules["table"][1])
        state = _fsm_state(mod)
        names = {state.decoder(v).split("/")[0]: v for v in range(1 << len(state))}

        def in_state(*which: str) -> object:
            return Cat(state == names[s] for s in which).any()

        m.d.comb += home.fabric_in.valid.eq(0)
        return home, sigs, table, tsigs, rx, tx, in_state


class HomeSafetyHarness(_HomeBase):
    """The home under a free environment: any flits on every VC (valid/ready contract), any
    ``ready`` on the send side, any AXI responses at any time.

    Checked:

    * every directory row written (``Directory.write_en``) has well-formed entries (an EM entry
      has no sharer bit, an S entry at least one) and no two valid ways of the set hold the same
      tag, i.e. one entry per line: with one ``owner`` field and one ``em`` bit per entry a line
      never has two owners, nor an owner and a sharer;
    * the transaction table never holds two valid entries for one line, ``table_used`` is
      the number of valid entries and at most ``table_entries``;
    * a ``COMP_ACK`` frees exactly one entry (the one it names) and nothing else.

    Induction invariants: the same facts for the directory row the engine holds and the
    memory's read data, and how the engine's decided entries relate to that row.
    """

    def __init__(self, params=None, *, dut_cls=HomeAgent, invariants: bool = True):
        super().__init__(params, dut_cls=dut_cls)
        self.invariants = invariants

    def elaborate(self, platform):
        m = Module()
        p = self.params
        home, sigs, table, tsigs, rx, tx, in_state = self.build(m)
        dirs = home.directory
        ways = p.dir_ways

        # -- the free environment ----------------------------------------------------------
        for v, s in enumerate(rx.streams):
            m.d.comb += [
                s.valid.eq(AnySeq(1)),
                s.payload.eq(AnySeq(len(s.payload.as_value()))),
            ]
            assume_stream_in(m, s, f"rx{v}")
        for s in tx.streams:
            m.d.comb += s.ready.eq(AnySeq(1))
        axi = home.mem
        for name in ("awready", "wready", "bvalid", "bid", "bresp", "arready", "rvalid"):
            sig = getattr(axi, name)
            m.d.comb += sig.eq(AnySeq(len(sig)))
        for name in ("rid", "rdata", "rresp", "rlast"):
            sig = getattr(axi, name)
            m.d.comb += sig.eq(AnySeq(len(sig)))

        # -- directory: every row written ------------------------------------------------
        wrow = dirs.write_row
        with m.If(dirs.write_en):
            for w in range(ways):
                m.d.comb += Assert(
                    _entry_ok(wrow.ways[w]), f"dir write way {w}: EM has no sharer, S has one"
                )
            m.d.comb += Assert(_tags_unique(wrow, ways), "dir write: one entry per line")

        # The directory memory starts with any well-formed contents (the product's init is
        # all zero, one of them): the solver would otherwise pick any bits. With one set, the
        # read data shows the row one cycle later, so the first two reads are assumed.
        boot = Signal(2, name="boot")
        with m.If(boot < 2):
            m.d.sync += boot.eq(boot + 1)
            for w in range(ways):
                m.d.comb += Assume(_entry_ok(dirs.row.ways[w]))
            m.d.comb += Assume(_tags_unique(dirs.row, ways))

        # Induction: the memory's read data and the engine's copy of the row.
        row = data.View(dirs.row_layout, sigs["row"])
        entry_layout = dirs.row_layout["ways"].shape.elem_shape
        inv = m if self.invariants else _discarded()  # without: a BMC of the properties only
        for name, r in (("memory row", dirs.row), ("engine row", row)):
            for w in range(ways):
                inv.d.comb += Assert(_entry_ok(r.ways[w]), f"{name} way {w}: well formed")
            inv.d.comb += Assert(_tags_unique(r, ways), f"{name}: one entry per line")

        # Induction: what the engine decided, while it works on it.
        req_line = sigs["req_line"]
        req_tag = req_line[home_geometry(p)[1] :]
        check = sigs["check"]
        # The check registered with the header is the check of the registered header (both
        # are loaded as IDLE takes a head flit; before the first, they are the reset values).
        with inv.If(~in_state("IDLE")):
            inv.d.comb += Assert(sigs["req_check"] == check, "inv: registered check")
        ok_e = data.View(entry_layout, sigs["ok_entry"])
        err_e = data.View(entry_layout, sigs["err_entry"])
        hit, way = sigs["hit"], sigs["way"]
        add_owner = sigs["add_owner"]
        update_dir = sigs["update_dir"]
        back_inv = sigs["back_invalidating"]
        opv = sigs["opv"]
        is_coh_read = (opv >= Opcode.READ_SHARED.value) & (opv <= Opcode.UPGRADE.value)
        decided = update_dir & ~back_inv & in_state(*_POST_DECIDE)
        with inv.If(update_dir & ~in_state("IDLE", "CHECK")):
            inv.d.comb += Assert(check == 0, "inv: a request that updates the directory passed")
        with inv.If(in_state("RX_DATA", "LOOKUP", "DECIDE")):
            inv.d.comb += Assert(check == 0, "inv: a taken request passed")
        with inv.If(in_state("DRAIN", "RX_DATA", "LOOKUP")):
            inv.d.comb += Assert(~update_dir, "inv: nothing decided yet")
        with inv.If(in_state("RX_DATA", "LOOKUP", "DECIDE") | (update_dir & back_inv)):
            inv.d.comb += Assert(~table.lookup_busy[0], "inv: the taken request's line is free")
            with inv.If(is_coh_read):
                inv.d.comb += Assert(~table.full, "inv: room for the taken coherent read")
        bi_states = ("DECIDE", "SNOOP", "SNOOP_DATA", "WRITE_ADDR", "WRITE_DATA", "WRITE_RESP")
        with inv.If(back_inv):
            inv.d.comb += Assert(update_dir & in_state(*bi_states), "inv: back-invalidation")
            with inv.If(in_state("WRITE_ADDR", "WRITE_DATA", "WRITE_RESP")):
                inv.d.comb += Assert(sigs["write_then_snoop"], "inv: back-inv writes snoop data")
        with inv.If(decided):
            sel = row.ways[way]
            others = Cat(
                row.ways[w].valid & (row.ways[w].tag == req_tag) & (way != w) for w in range(ways)
            )
            inv.d.comb += [
                Assert(
                    _entry_ok(ok_e) & _entry_ok(err_e),
                    "inv: decided entries: EM has no sharer, S has one",
                ),
                Assert(~add_owner | (~ok_e.em & ~err_e.em), "inv: add_owner only to S"),
                Assert(~add_owner | (ok_e.valid & err_e.valid), "inv: add_owner valid"),
                Assert(
                    (~ok_e.valid | (ok_e.tag == req_tag)) & (~err_e.valid | (err_e.tag == req_tag)),
                    "inv: decided entries carry the request's tag",
                ),
                Assert(~hit | (sel.valid & (sel.tag == req_tag)), "inv: a hit way holds the line"),
                Assert(hit | ~sel.valid | (sel.tag != req_tag), "inv: no hit, way not the line"),
                Assert(hit | ~(ok_e.valid | err_e.valid) | ~sel.valid, "inv: new entry, free way"),
                Assert(others == 0, "inv: no other way holds the line"),
                Assert(way < ways, "inv: way in range"),
            ]

        # Induction: in DECIDE and during a back-invalidation, the hit and free way registered
        # in LOOKUP (and updated by the back-invalidation) are those of the engine's row.
        hits = [row.ways[w].valid & (row.ways[w].tag == req_tag) for w in range(ways)]
        frees = [~row.ways[w].valid for w in range(ways)]
        hit_way = Const(0, len(sigs["row_hit_way"]))
        free_way = Const(0, len(sigs["row_free_way"]))
        for w in reversed(range(ways)):
            hit_way = Mux(hits[w], w, hit_way)
            free_way = Mux(frees[w], w, free_way)
        row_cur = data.View(entry_layout, sigs["cur"])
        with inv.If(in_state("DECIDE") | back_inv):
            inv.d.comb += [
                Assert(sigs["row_hit"] == Cat(hits).any(), "inv: registered hit"),
                Assert(sigs["row_free"] == Cat(frees).any(), "inv: registered free"),
                Assert(sigs["row_hit_way"] == hit_way, "inv: registered hit way"),
                Assert(sigs["row_free_way"] == free_way, "inv: registered free way"),
                Assert(
                    row_cur.as_value() == Mux(Cat(hits).any(), row.ways[hit_way].as_value(), 0),
                    "inv: registered entry of the line",
                ),
            ]

        # -- the transaction table -------------------------------------------------------
        entries = [
            data.View(table_entry_layout(table.line_bits), tsigs[f"entry{i}"])
            for i in range(p.table_entries)
        ]
        # Induction: in DECIDE and during a back-invalidation, the compares registered in
        # LOOKUP are those of the row's lines with each valid entry's line now.
        set_bits = home_geometry(p)[1]
        with inv.If(in_state("DECIDE") | back_inv):
            for w in range(ways):
                line = Cat(req_line[:set_bits], row.ways[w].tag)
                for i, e in enumerate(entries):
                    inv.d.comb += Assert(
                        ~e.valid | (tsigs[f"held_match{w}"][i] == (e.line == line)),
                        f"inv: way {w}, entry {i}: registered compare",
                    )
        for i in range(p.table_entries):
            for j in range(i + 1, p.table_entries):
                a, b = entries[i], entries[j]
                m.d.comb += Assert(
                    ~(a.valid & b.valid & (a.line == b.line)),
                    f"table: entries {i} and {j} never hold one line",
                )
        used = sum(e.valid for e in entries)
        m.d.comb += [
            Assert(home.table_used == used, "table_used counts the valid entries"),
            Assert(home.table_used <= p.table_entries, "table_used <= table_entries"),
        ]
        # A COMP_ACK frees exactly the entry it names: the next cycle that entry is free and
        # every other entry is as it was (unless an insert or a drop touched it).
        matches = Cat(
            e.valid
            & (e.line == table.ack_line)
            & (e.node == table.ack_node)
            & (e.tag == table.ack_tag)
            for e in entries
        )
        ack = past(m, table.ack, "past_ack")
        past_match = past(m, matches, "past_match")
        past_valid_bits = past(m, Cat(e.valid for e in entries), "past_entry_valid")
        touched = Signal(p.table_entries)
        for i in range(p.table_entries):
            m.d.comb += touched[i].eq(
                (table.insert & (table.insert_index == i)) | (table.drop & (table.drop_index == i))
            )
        past_touched = past(m, touched, "past_touched")
        with m.If(table.ack):
            m.d.comb += Assert(
                (matches != 0) & ((matches & (matches - 1)) == 0),
                "COMP_ACK: exactly one entry matches",
            )
        with m.If(past_valid(m) & ack):
            for i in range(p.table_entries):
                e_valid = entries[i].valid
                with m.If(past_match[i] & ~past_touched[i]):
                    m.d.comb += Assert(~e_valid, f"COMP_ACK frees its entry ({i})")
                with m.If(~past_match[i] & ~past_touched[i]):
                    m.d.comb += Assert(
                        e_valid == past_valid_bits[i], f"COMP_ACK leaves entry {i} alone"
                    )

        # -- covers: the proof is not vacuous ----------------------------------------------
        e_any = [wrow.ways[w] for w in range(ways)]
        m.d.comb += [
            Cover(dirs.write_en & Cat(e.valid & e.em for e in e_any).any()),
            Cover(dirs.write_en & Cat(e.valid & ~e.em for e in e_any).any()),
            Cover(table.ack),
            Cover(home.table_used == p.table_entries),
        ]
        if ways > 1:
            m.d.comb += Cover(dirs.write_en & Cat(e.valid for e in e_any).all())
        return m


class HomeLivenessHarness(_HomeBase):
    """Bounded liveness of the transaction table under a fair environment.

    The environment: well-formed coherent reads (``READ_SHARED``/``READ_UNIQUE``/``UPGRADE``,
    single-flit, class REQ, sources 0/1, any line of the window, any tag), the send side always
    ready, a memory that accepts at once and returns a burst of ``line_beats`` beats (``rlast``
    on the last), OKAY; every snoop answered ``SNP_RESP_I`` within ``k`` cycles of the last
    one sent; and the requester's ``COMP_ACK`` (matching line, source and tag) within ``k``
    cycles once the home has finished with the request (back to ``IDLE``/``CHECK``) and the
    RSP stream is free. Assumed, not driven: the solver may answer sooner.

    Checked: no table entry stays valid more than ``bound`` consecutive cycles; cover: an
    entry enters and leaves the table.
    """

    def __init__(self, params=None, *, dut_cls=HomeAgent, k: int = 2, bound: int = 20):
        super().__init__(params, dut_cls=dut_cls)
        self.k, self.bound = k, bound

    def elaborate(self, platform):
        m = Module()
        p = self.params
        f = p.fabric
        home, sigs, table, tsigs, rx, tx, in_state = self.build(m)
        k = self.k
        req_s = rx.streams[MsgClass.REQ.value]
        rsp_s = rx.streams[MsgClass.RSP.value]

        # REQ: single-flit coherent reads.
        hdr = Signal(Header)
        m.d.comb += [
            req_s.valid.eq(AnySeq(1)),
            hdr.eq(AnySeq(HEADER_BITS)),
            req_s.payload.head.eq(1),
            req_s.payload.tail.eq(1),
            req_s.payload.payload.eq(hdr.as_value()),
        ]
        assume_stream_in(m, req_s, "rx_req")
        lines = p.window.size // 64
        m.d.comb += [
            Assume(hdr.opcode.as_value() >= Opcode.READ_SHARED.value),
            Assume(hdr.opcode.as_value() <= Opcode.UPGRADE.value),
            Assume(hdr.cls == MsgClass.REQ),
            Assume(hdr.src < p.max_sharers),
            Assume(hdr.addr >= p.window.base),
            Assume(hdr.addr < p.window.base + 64 * lines),
            Assume(hdr.addr[:6] == 0),
            Assume(hdr.as_value()[99:] == 0),  # reserved
            Assume(hdr.size == 0),
            Assume(hdr.err.as_value() == 0),
        ]
        for v, s in enumerate(rx.streams):
            if v not in (MsgClass.REQ.value, MsgClass.RSP.value):
                m.d.comb += s.valid.eq(0)
        for s in tx.streams:
            m.d.comb += s.ready.eq(1)

        # Memory: immediate, OKAY, rlast on the last beat of a burst.
        axi = home.mem
        beats = f.line_beats
        r_beat = Signal(range(beats))
        with m.If(axi.rvalid & axi.rready):
            m.d.sync += r_beat.eq(Mux(r_beat == beats - 1, 0, r_beat + 1))
        m.d.comb += [
            axi.awready.eq(1),
            axi.wready.eq(1),
            axi.bvalid.eq(1),
            axi.arready.eq(1),
            axi.rvalid.eq(1),
            axi.rlast.eq(r_beat == beats - 1),
        ]

        # RSP: snoop answers and COMP_ACKs, chosen by the solver under fairness.
        rsp = Signal(Header)
        m.d.comb += [
            rsp_s.valid.eq(AnySeq(1)),
            rsp.eq(AnySeq(HEADER_BITS)),
            rsp_s.payload.head.eq(1),
            rsp_s.payload.tail.eq(1),
            rsp_s.payload.payload.eq(rsp.as_value()),
        ]
        is_snp_resp = (rsp.opcode == Opcode.SNP_RESP_I) & (rsp.cls == MsgClass.RSP)
        is_ack = (rsp.opcode == Opcode.COMP_ACK) & (rsp.cls == MsgClass.RSP)
        m.d.comb += Assume(~rsp_s.valid | is_snp_resp | is_ack)

        # Snoops: the last snoop's address; answered within k cycles while any are owed.
        outstanding = sigs["outstanding"]
        snoop_addr = sigs["snoop_addr"]
        wait_snp = Signal(range(k + 2))
        answer = rsp_s.valid & is_snp_resp & (rsp.addr[6:] == snoop_addr[6:])
        with m.If((outstanding != 0) & ~answer):
            m.d.sync += wait_snp.eq(Mux(wait_snp > k, wait_snp, wait_snp + 1))
        with m.Else():
            m.d.sync += wait_snp.eq(0)
        with m.If((outstanding != 0) & (wait_snp >= k)):
            m.d.comb += Assume(answer)

        # COMP_ACK within k cycles of the engine finishing, per table entry.
        entries = [
            data.View(table_entry_layout(table.line_bits), tsigs[f"entry{i}"])
            for i in range(p.table_entries)
        ]
        line_bits, _, _ = home_geometry(p)
        rsp_line = (rsp.addr - p.window.base)[6 : 6 + line_bits]
        in_table, table_index = sigs["in_table"], sigs["table_index"]
        earlier = Const(0)  # one COMP_ACK per cycle: a lower entry's is forced first
        for i, e in enumerate(entries):
            acks = (
                rsp_s.valid
                & is_ack
                & (rsp_line == e.line)
                & (rsp.src == e.node)
                & (rsp.tag == e.tag)
                & (rsp.addr >= p.window.base)
                & (rsp.addr < p.window.end)
            )
            # Entry i's request is finished once the engine no longer works on it.
            done = ~(in_table & (table_index == i) & ~in_state("IDLE", "CHECK"))
            wait = Signal(range(k + 2), name=f"wait_ack{i}")
            with m.If(e.valid & done & ~acks):
                m.d.sync += wait.eq(Mux(wait > k, wait, wait + 1))
            with m.Else():
                m.d.sync += wait.eq(0)
            forced = Signal(name=f"ack_forced{i}")
            m.d.comb += forced.eq(e.valid & done & (wait >= k) & (outstanding == 0))
            with m.If(forced & ~earlier):
                m.d.comb += Assume(acks)
            earlier = earlier | forced

            # The bounded liveness check.
            age = Signal(range(self.bound + 2), name=f"age{i}")
            with m.If(e.valid):
                m.d.sync += age.eq(Mux(age > self.bound, age, age + 1))
            with m.Else():
                m.d.sync += age.eq(0)
            m.d.comb += Assert(age <= self.bound, f"entry {i} leaves the table within bound")
            if i == 0:  # (with COMP_ACK forced k cycles after FINISH, entry 1 is never used)
                m.d.comb += Cover(past(m, e.valid, f"past_valid{i}") & ~e.valid)
        return m
