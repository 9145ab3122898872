"""Harnesses for the valid/ready contract of every stream and AXI channel of the blocks
(:mod:`formal.streams` finds the channels from each block's signature), the credit rule at
the fabric outputs of the home agent and the endpoint, and the link training FSM.

Each harness puts the block under a free environment (every input free, the contract assumed
on the channels it receives) and asserts the contract on every channel it sends, with a
cover of a transfer and of back-pressure per channel.
"""

from __future__ import annotations

from contextlib import contextmanager, suppress

from amaranth import Cat, Elaboratable, Module, Mux, Signal, Value
from amaranth.hdl import Assert, Assume, Cover
from amaranth.lib import data

from unifab.coherence.params import CacheParams, EndpointParams
from unifab.flit import FabricParams, Header
from unifab.hdl.coherence import home as home_module
from unifab.hdl.coherence.atomics import AtomicAlu
from unifab.hdl.coherence.home import HomeAgent
from unifab.hdl.endpoint import endpoint as endpoint_module
from unifab.hdl.endpoint.axi_front import AxiFront
from unifab.hdl.endpoint.cache import CacheGeometry
from unifab.hdl.endpoint.endpoint import Endpoint
from unifab.hdl.endpoint.mshr import RequestSender, mshr_layout
from unifab.hdl.lib.axi import AxiParams
from unifab.hdl.link import layer as layer_module
from unifab.hdl.link import rx as rx_module
from unifab.hdl.link import tx as tx_module
from unifab.hdl.link.layer import LinkLayer
from unifab.hdl.link.rx import LinkRx
from unifab.hdl.link.training import LinkTraining
from unifab.params import LinkParams

from .harness_home import FreeRx, _fsm_state, small_home_params
from .harness_link import CheapCrc
from .props import any_seq, assert_arbiter_pointers, past, past_valid, peek, small_fabric
from .streams import credit_sink, free_environment, observe, observe_stream

__all__ = [
    "AxiFrontStreamsHarness",
    "EndpointStreamsHarness",
    "HomeStreamsHarness",
    "LinkLayerStreamsHarness",
    "LinkTrainingHarness",
    "RequestSenderHarness",
    "small_endpoint_params",
    "small_link_params",
]


#: The home engine's memory-write states.
_WRITES = ("WRITE_ADDR", "WRITE_DATA", "WRITE_RESP")


def _in_state(mod: Module):
    """``in_state(*names)``: the (first) FSM of an elaborated module is in one of them."""
    state = _fsm_state(mod)
    names = {}
    for value in range(1 << len(state)):
        with suppress(KeyError):  # an encoding no state uses
            names[state.decoder(value).split("/")[0]] = value
    return lambda *which: Cat(state == names[s] for s in which).any()


@contextmanager
def _swapped(module, **names):
    """Replace module-level names (blocks a design instantiates) while it elaborates."""
    saved = {name: getattr(module, name) for name in names}
    for name, value in names.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def _peek_sub(mod: Module, name: str):
    """Elaborate submodule ``name`` of ``mod`` in place; return (its instance, its signals)."""
    sub, src_loc = mod._named_submodules[name]
    sub_mod, sigs = peek(sub)
    mod._named_submodules[name] = (sub_mod, src_loc)
    return sub, sigs


def small_link_params() -> LinkParams:
    """2 VCs, 8-bit payload, 2-bit sequence numbers, replay and receive depth 2."""
    return LinkParams(
        fabric=small_fabric(seq_bits=2),
        replay_depth=2,
        rx_depth=2,
        ack_timeout=16,
        credit_delay=1,
    )


def small_endpoint_params() -> EndpointParams:
    """One MSHR, a one-line cache, one-flit buffers and credits, 1-bit AXI IDs."""
    return EndpointParams(
        fabric=FabricParams(),
        node_id=1,
        cache=CacheParams(sets=1, ways=1),
        mshrs=1,
        rx_depth=1,
        tx_credits=1,
        axi_id_width=1,
    )


class LinkLayerStreamsHarness(Elaboratable):
    """A whole :class:`LinkLayer` (transmitter, receiver, training, credit returns) with any
    link flits arriving on ``phy_rx`` and free traffic on ``tx``: every receive stream ``rx[v]``
    keeps the contract. (``phy_tx`` has no ``ready``; the ``tx`` streams are inputs.)"""

    def __init__(self, params: LinkParams | None = None, *, rx_cls: type = LinkRx):
        self.params = params or small_link_params()
        self.rx_cls = rx_cls

    def elaborate(self, platform):
        m = Module()
        dut = LinkLayer(self.params)
        with (
            _swapped(tx_module, Crc32c=CheapCrc),
            _swapped(rx_module, Crc32c=CheapCrc),
            _swapped(layer_module, LinkRx=self.rx_cls),
        ):
            mod, _ = peek(dut)
            for name in ("tx", "rx"):  # elaborate now, while the cheap CRC is in place
                _peek_sub(mod, name)
        m.submodules.dut = mod
        free_environment(m, dut, "link")
        return m


class AxiFrontStreamsHarness(Elaboratable):
    """The endpoint's :class:`AxiFront` alone: AXI AW/W/AR and the core's answers assumed,
    R, B and the operation stream asserted."""

    def __init__(self, *, dut_cls: type = AxiFront):
        self.dut_cls = dut_cls

    def elaborate(self, platform):
        m = Module()
        params = AxiParams(addr_width=48, data_width=32, id_width=1, awuser_width=6, buser_width=64)
        m.submodules.dut = dut = self.dut_cls(params)
        free_environment(m, dut, "front")
        return m


class _CreditedBlock(Elaboratable):
    """A block with a fabric port pair: its receive adapter is replaced by a free stand-in
    (:class:`FreeRx`, any flits on every receive stream under the contract), its send adapter
    is the real one, checked against a receiver of ``tx_credits`` flits per VC (never sends
    without a credit). Asserted: the contract on the block's own stream/AXI outputs, on the
    streams its core sends into the send adapter and on the submodules named in
    ``observed``."""

    module = None
    observed: tuple[str, ...] = ()
    label = "block"
    #: Other module-level names of ``module`` swapped for stand-ins during elaboration.
    swaps: dict = {}
    #: Send-adapter streams proved elsewhere (not asserted here).
    unobserved_tx: tuple[int, ...] = ()
    #: VCs the block never sends on (asserted; no covers).
    idle_tx: tuple[int, ...] = ()

    def __init__(self, params, *, dut_cls: type):
        self.params, self.dut_cls = params, dut_cls

    def elaborate(self, platform):
        m = Module()
        p = self.params
        with _swapped(self.module, FabricToStreams=FreeRx, **self.swaps):
            FreeRx.made.clear()
            dut = self.dut_cls(p)
            mod, sigs = peek(dut)
            rx = FreeRx.made[-1]
        m.submodules.dut = mod
        tx, tx_sigs = _peek_sub(mod, "tx")
        self.dut, self.tx = dut, tx
        free_environment(m, dut, self.label, skip=("fabric_out",))
        free_environment(m, rx, f"{self.label}.rx", env=True)
        for v, stream_ in enumerate(tx.streams):
            if v in self.idle_tx:
                m.d.comb += Assert(~stream_.valid, f"{self.label}: never sends on VC {v}")
            elif v not in self.unobserved_tx:
                observe_stream(m, stream_, f"{self.label}.tx.streams.{v}")
        for name in self.observed:
            observe(m, mod._named_submodules[name][0], f"{self.label}.{name}")
        held = credit_sink(
            m, dut.fabric_out, p.tx_credits, f"{self.label}.fabric_out", idle=self.idle_tx
        )
        # Induction: the adapter's counters mirror the receiver's (its own proof, again).
        out = dut.fabric_out
        for v, count in enumerate(held):
            wire = out.valid & (out.vc == v)
            m.d.comb += Assert(
                tx_sigs[f"credits{v}"] + count + wire == p.tx_credits,
                f"inv: VC {v}: adapter credits + receiver + wire",
            )
        self.invariants(m, mod, sigs)
        return m

    def invariants(self, m: Module, mod: Module, sigs: dict) -> None:
        """Induction strengthening on the block's internal state (asserted, so proved)."""


class EndpointStreamsHarness(_CreditedBlock):
    """The :class:`Endpoint`: AXI R and B asserted (AW, W, AR assumed), the AXI front's
    operation and answer streams, the streams into the fabric send adapter (the request
    sender's included) and the credit rule at ``fabric_out``."""

    module = endpoint_module
    observed = ("front",)
    #: The REQ stream is the request sender's output: :class:`RequestSenderHarness`.
    unobserved_tx = (0,)
    idle_tx = (1,)  # SNP
    label = "endpoint"

    def __init__(self, params: EndpointParams | None = None, *, dut_cls: type = Endpoint):
        super().__init__(params or small_endpoint_params(), dut_cls=dut_cls)

    def _rq_layout(self) -> data.StructLayout:
        """The answer queue's entry (as in ``Endpoint.elaborate``)."""
        p = self.params
        return data.StructLayout(
            {
                "write": 1,
                "last": 1,
                "id": p.axi_id_width,
                "wait": 1,
                "idx": range(p.mshrs),
                "resp": 2,
                "data": p.fabric.data_width,
                "buser": 64,
            }
        )

    def invariants(self, m, mod, sigs):
        n = self.params.mshrs
        main = _in_state(mod)
        assert_arbiter_pointers(m, mod, ("tx", "arbiter"))
        # The answer queue's pointers, and an answered MSHR is left alone until its answer
        # has left (its rdata/resp/buser are the AXI answer's payload).
        rq, rq_sigs = _peek_sub(mod, "rq")
        level, produce, consume = rq_sigs["level"], rq_sigs["produce"], rq_sigs["consume"]
        d = rq.depth
        m.d.comb += [
            Assert(level <= d, "inv: answer queue level"),
            Assert((produce < d) & (consume < d), "inv: answer queue pointers in range"),
            Assert(
                produce == Mux(consume + level >= d, consume + level - d, consume + level),
                "inv: answer queue pointers agree",
            ),
        ]
        g = CacheGeometry(self.params.cache, self.params.fabric)
        layout = mshr_layout(self.params.fabric, way_bits=g.way_bits)
        mshr = data.View(data.ArrayLayout(layout, n), sigs["mshr"])
        for i in range(n):
            with m.If(mshr[i].done & mshr[i].busy):
                m.d.comb += Assert(~mshr[i].active, "inv: an answered MSHR")
        # The held AXI operation was taken with room in the answer queue, and only it pushes.
        with m.If(sigs["op_held"]):
            m.d.comb += Assert(level < d, "inv: room for the held operation's answer")
        with m.If(main("OP")):
            m.d.comb += Assert(sigs["op_held"], "inv: OP works on the held operation")
        # k_ok is a flop loaded in IDLE: where it is used, it is the response's MSHR test.
        tag = data.View(Header, sigs["hdr"]).tag
        k_ok = Cat((tag == i) & mshr[i].busy & mshr[i].active for i in range(n)).any()
        with m.If(main("RSP", "DAT", "DAT_END")):
            m.d.comb += Assert(sigs["k_ok"] == k_ok, "inv: k_ok is the response's MSHR test")
        # The queue (HeadRegFIFO) writes its RAM a cycle late: while stage_en the newest entry
        # is in the stage register, for the RAM word stage_addr (produce's predecessor).
        storage = mod._named_submodules["rq"][0]._named_submodules["storage"][0]
        stage, stage_en, stage_addr = (rq_sigs[k] for k in ("stage", "stage_en", "stage_addr"))
        head_stage = rq_sigs["head_stage"]

        def entry_at(addr: Value) -> Value:
            port = storage.read_port(domain="comb")
            m.d.comb += port.addr.eq(addr)
            return Mux(stage_en & (stage_addr == addr), stage, port.data)

        with m.If(stage_en):
            m.d.comb += [
                Assert(level != 0, "inv: answer queue stage holds an entry"),
                Assert(
                    produce == Mux(stage_addr == d - 1, 0, stage_addr + 1),
                    "inv: answer queue stage is the newest entry",
                ),
            ]
        with m.If(head_stage):
            m.d.comb += Assert(stage_en & (level == 1), "inv: answer queue head in the stage")
        # The head registers hold the entry at the read pointer, and the second read's
        # address is the pointer's successor.
        m.d.comb += Assert(
            rq_sigs["consume_next"] == Mux(consume == d - 1, 0, consume + 1),
            "inv: answer queue read-ahead pointer",
        )
        with m.If(level != 0):
            m.d.comb += Assert(rq_sigs["r_data"] == entry_at(consume), "inv: answer queue head")
        # An MSHR is busy exactly while one queued answer waits for it.
        waits = [[] for _ in range(n)]
        for j in range(d):
            entry = data.View(self._rq_layout(), entry_at(j))
            offset = Mux(j >= consume, j - consume, j + d - consume)
            for i in range(n):
                waits[i].append((offset < level) & entry.wait & (entry.idx == i))
        for i in range(n):
            m.d.comb += Assert(
                sum(waits[i]) == mshr[i].busy, "inv: an MSHR is busy while its answer is queued"
            )


class RequestSenderHarness(Elaboratable):
    """The endpoint's :class:`RequestSender` alone: any MSHR and eviction-slot contents, the
    REQ stream asserted. Assumed: the eviction buffer is memory, so a word read at an address
    that does not change while the stream waits does not change (the endpoint never writes a
    slot whose request is pending: ``EVICT_COPY`` fills a free slot; not proved here)."""

    def __init__(self, params: EndpointParams | None = None, *, dut_cls: type = RequestSender):
        self.params = params or small_endpoint_params()
        self.dut_cls = dut_cls

    def elaborate(self, platform):
        m = Module()
        p = self.params
        g = CacheGeometry(p.cache, p.fabric)
        dut = self.dut_cls(p.fabric, node_id=p.node_id, n=p.mshrs, way_bits=g.way_bits)
        mod, sigs = peek(dut)
        m.submodules.dut = mod
        free_environment(m, dut, "sender")
        # `last` is loaded a flit ahead: it is the tail test it replaced, in both sending
        # states (so `tail` and the end of a request are those of the compares).
        in_state = _in_state(mod)
        last, b, nbeats = sigs["last"], sigs["b"], sigs["nbeats"]
        with m.If(in_state("HEAD")):
            m.d.comb += [
                Assert(last == (nbeats == 0), "inv: sender last in HEAD"),
                Assert(b == 0, "inv: sender beat count starts at 0"),
            ]
        with m.If(in_state("BEATS")):
            m.d.comb += [
                Assert(b < nbeats, "inv: sender beat in range"),
                Assert(last == (b == nbeats - 1), "inv: sender last in BEATS"),
            ]
        out = dut.out
        addr0 = past(m, dut.edata_addr, "edata_addr_past")
        data0 = past(m, dut.edata, "edata_past")
        waited = past(m, out.valid & ~out.ready, "sender_waited")
        with m.If(past_valid(m) & waited & (dut.edata_addr == addr0)):
            m.d.comb += Assume(dut.edata == data0)
        return m


class CheapAlu(AtomicAlu):
    """Stand-in for the home's :class:`AtomicAlu` in the stream proof: XOR of its inputs.

    Sound for the valid/ready contract: the ALU is combinational and its outputs reach only
    data (the W data of an atomic write, the data beat of ``ATOMIC_DATA``), never a control
    decision, and :class:`HomeStreamsHarness` proves that the ALU's inputs hold while either
    of those channels waits; so the real ALU's outputs hold too. With the real ALU (adders,
    signed comparisons, 64-bit masks) the induction step took minutes instead of seconds.
    """

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [
            self.old_value.eq(self.old),
            self.result.eq(
                self.old ^ self.operand ^ self.compare ^ self.opcode.as_value() ^ self.size
            ),
        ]
        return m


class HomeStreamsHarness(_CreditedBlock):
    """The :class:`HomeAgent`: AXI AW, W and AR asserted (B, R assumed), the streams into the
    fabric send adapter and the credit rule at ``fabric_out``. The atomic ALU is a stand-in
    (:class:`CheapAlu`), whose inputs are proved to hold while the channels carrying its
    outputs wait."""

    module = home_module
    label = "home"
    idle_tx = (0,)  # REQ
    swaps = {"AtomicAlu": CheapAlu}

    def __init__(self, params=None, *, dut_cls: type = HomeAgent):
        super().__init__(params or small_home_params(), dut_cls=dut_cls)

    def invariants(self, m, mod, sigs):
        in_state = _in_state(mod)
        # The ALU's inputs hold while a channel that carries its outputs waits: W with an
        # atomic write's data, the DAT stream with an ATOMIC_DATA beat.
        alu = mod._named_submodules["alu"][0]
        inputs = Cat(alu.opcode.as_value(), alu.size, alu.old, alu.operand, alu.compare)
        mem, dat = self.dut.mem, self.tx.streams[3]
        atomic = home_module._WriteFrom.ATOMIC.value
        carries = (mem.wvalid & ~mem.wready & (sigs["write_from"] == atomic)) | (
            dat.valid
            & ~dat.ready
            & in_state("RESPOND_DATA")
            & (sigs["response"] == home_module._Response.ATOMIC_DATA.value)
        )
        inputs0 = past(m, inputs, "alu_past_inputs")
        with m.If(past_valid(m) & past(m, carries, "alu_carries")):
            m.d.comb += Assert(inputs == inputs0, "the ALU's inputs hold")

        held = sigs["snoop_held"]
        snoop_phase = in_state("SNOOP", "SNOOP_DATA") | (
            in_state(*_WRITES) & sigs["write_then_snoop"]
        )
        with m.If(snoop_phase):
            m.d.comb += Assert(sigs["snooping"], "inv: snooping while snooping")
        with m.If(held):
            m.d.comb += [
                Assert(sigs["targets"] != 0, "inv: a held snoop has a target"),
                Assert(snoop_phase, "inv: a snoop is held while the engine takes snoop data"),
            ]


class LinkTrainingHarness(Elaboratable):
    """:class:`LinkTraining` under any receiver events.

    Checked: the link goes up only in a cycle with ``start`` and a completed handshake (the
    buffers drained, and the peer's INIT with "seen you", or the peer's INIT seen earlier and
    now a good IDLE/SEQ from it); ``start`` pulses only while going up; once up it stays up
    until an INIT without "seen you" (a peer reset), and then goes down, counting it in
    ``downs``; ``init_seen`` is set exactly by a good INIT received while down or by a drop.
    """

    def __init__(self, *, dut_cls: type = LinkTraining):
        self.dut_cls = dut_cls

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut_cls()
        got_init = any_seq(m, 1, "got_init")
        seen = any_seq(m, 1, "got_init_seen")
        other = any_seq(m, 1, "got_other")
        drained = any_seq(m, 1, "drained")
        m.d.comb += [
            dut.got_init.eq(got_init),
            dut.got_init_seen.eq(seen),
            dut.got_other.eq(other),
            dut.drained.eq(drained),
        ]
        pv = past_valid(m)
        up0 = past(m, dut.up, "past_up")
        start0 = past(m, dut.start, "past_start")
        init0 = past(m, got_init, "past_got_init")
        seen0 = past(m, seen, "past_seen")
        other0 = past(m, other, "past_other")
        drained0 = past(m, drained, "past_drained")
        init_seen0 = past(m, dut.init_seen, "past_init_seen")
        downs0 = past(m, dut.downs, "past_downs")
        handshake = drained0 & ((init0 & seen0) | (init_seen0 & other0))
        peer_reset = init0 & ~seen0
        with m.If(pv):
            with m.If(~up0):
                m.d.comb += [
                    Assert(dut.up == handshake, "up exactly after a completed handshake"),
                    Assert(dut.up == start0, "start pulses exactly when going up"),
                    Assert(dut.init_seen == (init_seen0 | init0), "init_seen: a good INIT"),
                    Assert(dut.downs == downs0, "downs only counts drops"),
                ]
            with m.Else():
                m.d.comb += [
                    Assert(~start0, "no start while up"),
                    Assert(dut.up == ~peer_reset, "up until the peer resets"),
                    Assert(dut.downs == (downs0 + peer_reset)[:32], "downs counts each drop"),
                    Assert(dut.init_seen == (init_seen0 | peer_reset), "init_seen while up"),
                ]
        with m.If(dut.up):
            m.d.comb += Assert(~dut.start, "start only while down")
        # Covers: up by each handshake, a drop, up again after a drop.
        was_up = Signal()
        with m.If(dut.up):
            m.d.sync += was_up.eq(1)
        m.d.comb += [
            Cover(pv & dut.up & ~up0 & init0 & seen0),
            Cover(pv & dut.up & ~up0 & ~init0 & other0),
            Cover(pv & ~dut.up & up0),
            Cover(was_up & dut.start & (dut.downs == 1)),
            Cover(pv & ~dut.up & ~up0 & Cat(init0, other0).all() & ~drained0),
        ]
        return m
