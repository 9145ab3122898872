"""Unit tests of the switch blocks on Amaranth's simulator, against the golden models.

Allocators, crossbar and output unit are compared cycle by cycle with
:mod:`unifab.models.switch_alloc`; the input unit with a queue model built on
:func:`unifab.models.switch_route.route_reference`; the fabric-port stream adapters back to
back; and a whole 4-port :class:`Switch` (iSLIP, wavefront, FIFO) under random single- and
multi-flit traffic with a credit-returning Python environment and a scoreboard.

Every random case draws from ``random.Random`` seeded by ``UNIFAB_SEED`` (if set, else a fixed
default) and the case name; the seed is printed (``pytest -s`` or on failure). Replay with::

    UNIFAB_SEED=<seed> .venv/bin/python -m pytest 'tests/test_switch_units.py::<case id>' -s

Signals are driven and sampled in bulk (one ``ctx.set`` of a ``Cat`` of all inputs and one
``ctx.get`` of a ``Cat`` of all outputs per step): each ``ctx.set`` settles the whole design.
"""

import random
from collections import defaultdict, deque
from dataclasses import dataclass, field

import pytest
from amaranth import Cat, Elaboratable, Module, Value
from amaranth.lib import wiring

from unifab.codec import header, pack_header, unpack_header
from unifab.flit import (
    HEADER_BITS,
    ErrorCode,
    FabricParams,
    MsgClass,
    Opcode,
    data_beats,
    flit_layout,
)
from unifab.hdl.lib.port import FabricToStreams, StreamsToFabric
from unifab.hdl.switch.allocator import ISlipAllocator, WavefrontAllocator
from unifab.hdl.switch.crossbar import Crossbar
from unifab.hdl.switch.input_unit import INPUT_COUNTERS, InputUnit
from unifab.hdl.switch.output_unit import OUTPUT_COUNTERS, OutputUnit
from unifab.hdl.switch.switch import PORT_COUNTERS, Switch, counter_address
from unifab.hdl.switch.tables import SwitchTables
from unifab.models.link import RoundRobinModel
from unifab.models.switch_alloc import (
    CrossbarModel,
    ISlipModel,
    OutputSend,
    OutputUnitModel,
    WavefrontModel,
    check_matching,
)
from unifab.models.switch_route import route_reference
from unifab.switch_config import AddressRange, SwitchConfig, SwitchParams
from unifab.testing import seed_from_env, simulate

DEFAULT_SEED = 20240611

# --------------------------------------------------------------------------------------------
# Harness


def make_rng(case: str) -> random.Random:
    """The case's generator: ``UNIFAB_SEED`` (else :data:`DEFAULT_SEED`) and the case name."""
    return random.Random(f"{seed_from_env(DEFAULT_SEED, label=case)}/{case}")


class Bus:
    """Several signals (or views) as one ``Cat``, packed and unpacked by name."""

    def __init__(self, fields: list[tuple[str, object]]) -> None:
        self.spans: dict[str, tuple[int, int]] = {}
        values = []
        offset = 0
        for name, sig in fields:
            v = Value.cast(sig)
            self.spans[name] = (offset, len(v))
            values.append(v)
            offset += len(v)
        self.value = Cat(*values)

    def pack(self, values: dict[str, int]) -> int:
        raw = 0
        for name, v in values.items():
            offset, width = self.spans[name]
            if not 0 <= v < 1 << width:
                raise ValueError(f"{name} = {v:#x} does not fit {width} bits")
            raw |= v << offset
        return raw

    def unpack(self, raw: int) -> dict[str, int]:
        return {n: (raw >> o) & ((1 << w) - 1) for n, (o, w) in self.spans.items()}


def pack_rows(rows: list[int], width: int) -> int:
    return sum(r << (i * width) for i, r in enumerate(rows))


def unpack_rows(raw: int, width: int, count: int) -> list[int]:
    return [(raw >> (i * width)) & ((1 << width) - 1) for i in range(count)]


def flit_raw(head: bool, tail: bool, payload: int) -> int:
    """The ``flit_layout`` bits: head, tail, payload."""
    return int(head) | int(tail) << 1 | payload << 2


def flit_fields(raw: int) -> tuple[bool, bool, int]:
    return bool(raw & 1), bool(raw >> 1 & 1), raw >> 2


# --------------------------------------------------------------------------------------------
# Allocators


ISLIP_CASES = [
    (2, 2, 1),
    (3, 3, 2),
    (4, 4, 3),
    (5, 3, 1),
    (3, 7, 2),
    (6, 6, 2),
    (9, 9, 3),
    (8, 2, 3),
]
WAVEFRONT_CASES = [(2, 2), (3, 3), (5, 5), (4, 7), (7, 4), (9, 9)]


def _random_requests(rng: random.Random, n_in: int, n_out: int, density: float) -> list[int]:
    return [sum(1 << o for o in range(n_out) if rng.random() < density) for _ in range(n_in)]


def _run_allocator(
    dut,
    model,
    n_in: int,
    n_out: int,
    rng: random.Random,
    *,
    name: str,
    cycles: int = 160,
    maximal: bool = False,
) -> None:
    """Random request matrices, RTL grants against the model every cycle."""

    async def bench(ctx):
        for cycle in range(cycles):
            density = rng.choice((0.1, 0.3, 0.6, 0.95))
            requests = _random_requests(rng, n_in, n_out, density)
            ctx.set(dut.requests.as_value(), pack_rows(requests, n_out))
            grants = unpack_rows(ctx.get(dut.grants.as_value()), n_out, n_in)
            expected = model.step(requests)
            assert grants == expected, f"cycle {cycle}: requests {requests} grants {grants}"
            check_matching(requests, grants, n_out)
            if maximal:
                used = 0
                for g in grants:
                    used |= g
                for i in range(n_in):
                    if not grants[i]:
                        assert not requests[i] & ~used, f"cycle {cycle}: not maximal at {i}"
            await ctx.tick()

    simulate(dut, bench, name=name)


@pytest.mark.heavy
@pytest.mark.parametrize(("n_in", "n_out", "iterations"), ISLIP_CASES)
def test_islip_matches_model(n_in: int, n_out: int, iterations: int) -> None:
    name = f"islip_{n_in}x{n_out}_i{iterations}"
    rng = make_rng(name)
    dut = ISlipAllocator(n_in=n_in, n_out=n_out, iterations=iterations)
    _run_allocator(dut, ISlipModel(n_in, n_out, iterations), n_in, n_out, rng, name=name)


@pytest.mark.parametrize(("n_in", "n_out"), WAVEFRONT_CASES)
def test_wavefront_matches_model(n_in: int, n_out: int) -> None:
    name = f"wavefront_{n_in}x{n_out}"
    rng = make_rng(name)
    dut = WavefrontAllocator(n_in=n_in, n_out=n_out)
    model = WavefrontModel(n_in, n_out)
    _run_allocator(dut, model, n_in, n_out, rng, name=name, maximal=True)


@pytest.mark.parametrize(
    ("kind", "n_in", "n_out"),
    [
        ("islip1", 2, 2),
        ("islip1", 5, 5),
        ("islip2", 9, 9),
        ("islip3", 7, 3),
        ("islip2", 3, 7),
        ("wavefront", 2, 2),
        ("wavefront", 5, 5),
        ("wavefront", 9, 9),
        ("wavefront", 3, 7),
        ("wavefront", 7, 3),
    ],
)
def test_allocator_fairness(kind: str, n_in: int, n_out: int) -> None:
    """All inputs request one output continuously: each is granted within a bounded wait.

    The bound is ``n_in`` cycles for iSLIP; for the wavefront allocator it is the padded
    square's size ``max(n_in, n_out)`` (``n_in`` for the square matrices the switch uses).
    """
    name = f"fair_{kind}_{n_in}x{n_out}"
    rng = make_rng(name)
    if kind == "wavefront":
        dut = WavefrontAllocator(n_in=n_in, n_out=n_out)
        model = WavefrontModel(n_in, n_out)
        bound = max(n_in, n_out)
    else:
        it = int(kind[-1])
        dut = ISlipAllocator(n_in=n_in, n_out=n_out, iterations=it)
        model = ISlipModel(n_in, n_out, it)
        bound = n_in
    target = rng.randrange(n_out)

    async def bench(ctx):
        # Scramble the pointers / diagonal first with random traffic.
        for _ in range(rng.randrange(12)):
            requests = _random_requests(rng, n_in, n_out, 0.5)
            ctx.set(dut.requests.as_value(), pack_rows(requests, n_out))
            model.step(requests)
            await ctx.tick()
        waited = [0] * n_in
        for cycle in range(4 * bound):
            requests = [1 << target for _ in range(n_in)]
            ctx.set(dut.requests.as_value(), pack_rows(requests, n_out))
            grants = unpack_rows(ctx.get(dut.grants.as_value()), n_out, n_in)
            assert grants == model.step(requests)
            check_matching(requests, grants, n_out)
            assert sum(bool(g) for g in grants) == 1, "the requested output must be granted"
            for i in range(n_in):
                waited[i] = 0 if grants[i] else waited[i] + 1
                assert waited[i] < bound, f"cycle {cycle}: input {i} waited {bound} cycles"
            await ctx.tick()

    simulate(dut, bench, name=name)


# --------------------------------------------------------------------------------------------
# Crossbar


def _random_matching(rng: random.Random, n_in: int, n_out: int) -> list[int]:
    outs = list(range(n_out))
    rng.shuffle(outs)
    select = [0] * n_in
    for i in range(n_in):
        if outs and rng.random() < 0.75:
            select[i] = 1 << outs.pop()
    return select


@pytest.mark.parametrize(("n_in", "n_out"), [(2, 2), (3, 5), (5, 3), (9, 9)])
def test_crossbar(n_in: int, n_out: int) -> None:
    """One-hot selects route the right words with the right valid/source; a non-one-hot
    select raises the sticky ``onehot_error`` the next cycle."""
    name = f"crossbar_{n_in}x{n_out}"
    rng = make_rng(name)
    width = 21
    dut = Crossbar(n_in=n_in, n_out=n_out, width=width)
    model = CrossbarModel(n_in, n_out, width)
    drive = Bus([("select", dut.select), ("inputs", dut.inputs)])
    src_w = len(Value.cast(dut.source[0]))
    sense = Bus(
        [
            ("outputs", dut.outputs),
            ("valid", dut.valid),
            ("source", dut.source),
            ("error", dut.onehot_error),
        ]
    )
    cycles = 120
    bad_at = rng.randrange(60, 100)

    async def bench(ctx):
        for cycle in range(cycles):
            if cycle == bad_at:
                select = _random_matching(rng, n_in, n_out)
                i, o = rng.randrange(n_in), rng.randrange(n_out)
                if rng.random() < 0.5:  # two outputs in one row
                    select[i] |= 1 << o | 1 << (o + 1) % n_out
                else:  # two inputs in one column
                    select[i] |= 1 << o
                    select[(i + 1) % n_in] = 1 << o
            else:
                select = _random_matching(rng, n_in, n_out)
            words = [rng.getrandbits(width) for _ in range(n_in)]
            ctx.set(
                drive.value,
                drive.pack({"select": pack_rows(select, n_out), "inputs": pack_rows(words, width)}),
            )
            got = sense.unpack(ctx.get(sense.value))
            assert bool(got["error"]) == model.error == (cycle > bad_at), f"cycle {cycle}"
            exp = model.step(select, words)
            assert unpack_rows(got["outputs"], width, n_out) == exp.outputs, f"cycle {cycle}"
            assert got["valid"] == exp.valid, f"cycle {cycle}"
            source = unpack_rows(got["source"], src_w, n_out)
            assert source == exp.source, f"cycle {cycle}"
            for o in range(n_out):
                rows = [i for i in range(n_in) if select[i] >> o & 1]
                if cycle != bad_at and rows:
                    assert source[o] == rows[0]
                    assert unpack_rows(got["outputs"], width, n_out)[o] == words[rows[0]]
            await ctx.tick()
        assert model.error

    simulate(dut, bench, name=name)


# --------------------------------------------------------------------------------------------
# Output unit


@pytest.mark.parametrize(("depth", "crossing_delay"), [(1, 0), (3, 0), (2, 1)])
def test_output_unit(depth: int, crossing_delay: int) -> None:
    """Credits and VC ownership against the model under random sends and credit returns;
    the granted flit crosses to the output register in its grant's cycle, or one later (a
    switch with ``registered_grant``)."""
    name = f"output_unit_d{depth}_x{crossing_delay}"
    rng = make_rng(name)
    params = SwitchParams(ports=4, downstream_depth=depth)
    vcs = params.vcs
    n_in = params.ports + 1
    dut = OutputUnit(params, n_in=n_in)
    model = OutputUnitModel(vcs, depth)
    drive = Bus(
        [
            ("alloc_vcs", dut.alloc_vcs),
            ("alloc_head", dut.alloc_head),
            ("alloc_tail", dut.alloc_tail),
            ("alloc_src", dut.alloc_src),
            ("in_valid", dut.in_valid),
            ("in_vc", dut.in_vc),
            ("in_flit", dut.in_flit),
            ("credit", dut.out.credit),
            ("wanted", dut.wanted),
        ]
    )
    owner_w = len(Value.cast(dut.owner[0]))
    counted = [0] * len(OUTPUT_COUNTERS)  # the unit's events so far, per counter
    sense = Bus(
        [
            ("credit_ok", dut.credit_ok),
            ("may_head", dut.may_head),
            ("owner", dut.owner),
            ("out_valid", dut.out.valid),
            ("out_vc", dut.out.vc),
            ("out_flit", dut.out.flit),
        ]
    )
    # Per VC: the input whose multi-flit message is in progress (None when the VC is free).
    holder: list[int | None] = [None] * vcs
    single_flit_messages = multi_flit_messages = 0

    async def bench(ctx):
        nonlocal single_flit_messages, multi_flit_messages
        last: tuple[int, int] | None = None  # (vc, flit raw) crossing in the previous cycle
        granted: tuple[int, int] | None = None  # (vc, flit raw) granted in the previous cycle
        for cycle in range(500):
            got = sense.unpack(ctx.get(sense.value))
            owner = unpack_rows(got["owner"], owner_w, vcs)
            for v in range(vcs):
                assert bool(got["credit_ok"] >> v & 1) == model.credit_ok(v), f"{cycle} vc {v}"
                assert 0 <= model.credits[v] <= depth
                assert bool(got["may_head"] >> v & 1) == model.may_head(v), f"{cycle} vc {v}"
                if holder[v] is not None:
                    assert not got["may_head"] >> v & 1, f"cycle {cycle}: VC {v} not held"
                    assert owner[v] == holder[v], f"cycle {cycle}: VC {v} owner {owner[v]}"
                if not model.may_head(v):
                    assert owner[v] == model.owner[v]
            if last is None:
                assert not got["out_valid"]
            else:
                assert got["out_valid"] and (got["out_vc"], got["out_flit"]) == last
            assert counted[:4] == model.flits_out
            assert counted[4] == model.credit_stalls

            send = None
            v = rng.randrange(vcs)
            if rng.random() < 0.8 and model.credit_ok(v):
                if holder[v] is not None:
                    tail = rng.random() < 0.35
                    send = OutputSend(vc=v, head=False, tail=tail, src=holder[v])
                    if tail:
                        holder[v] = None
                else:
                    src = rng.randrange(n_in)
                    single = rng.random() < 0.5
                    send = OutputSend(vc=v, head=True, tail=single, src=src)
                    if single:
                        single_flit_messages += 1
                    else:
                        multi_flit_messages += 1
                        holder[v] = src
            returns = 0
            for r in range(vcs):
                if model.credits[r] < depth and rng.random() < 0.4:
                    returns |= 1 << r
            wanted = rng.random() < 0.3
            values = {"credit": returns, "wanted": int(wanted)}
            this = None
            if send is not None:
                raw = flit_raw(send.head, send.tail, rng.getrandbits(params.fabric.payload_bits))
                this = (send.vc, raw)
                values.update(
                    alloc_vcs=1 << send.vc,
                    alloc_head=int(send.head),
                    alloc_tail=int(send.tail),
                    alloc_src=1 << send.src,
                )
            last = granted if crossing_delay else this
            granted = this
            if last is not None:
                values.update(in_valid=1, in_vc=last[0], in_flit=last[1])
            ctx.set(drive.value, drive.pack(values))
            events = ctx.get(dut.events)
            for k in range(len(OUTPUT_COUNTERS)):
                counted[k] += events >> k & 1
            model.step(send, returns, wanted=wanted)
            await ctx.tick()
        assert single_flit_messages > 20 and multi_flit_messages > 20

    simulate(dut, bench, name=name)


# --------------------------------------------------------------------------------------------
# Traffic


NODES = 8  # nodes 0..7; node n sits behind port n % 4
UNMAPPED = 0x40  # a node ID with no route: its requests are refused with DECODE
SWITCH_NODE = 0x80

_SINGLE = {
    MsgClass.REQ: (Opcode.READ_SHARED, Opcode.NC_READ, Opcode.CLEAN_EVICT),
    MsgClass.SNP: (Opcode.SNP_INV, Opcode.SNP_SHARED),
    MsgClass.RSP: (Opcode.COMP, Opcode.COMP_ACK, Opcode.SNP_RESP_I),
    MsgClass.DAT: (),
}
_MULTI = {
    MsgClass.REQ: (Opcode.NC_WRITE, Opcode.WRITE_BACK, Opcode.ATOMIC_ADD),
    MsgClass.SNP: (),
    MsgClass.RSP: (),
    MsgClass.DAT: (Opcode.COMP_DATA, Opcode.ATOMIC_DATA),
}


def random_opcode(rng: random.Random, cls: MsgClass, multi_p: float) -> Opcode:
    """A random opcode of ``cls``; one with data (a multi-flit message) with ``multi_p``."""
    single, multi = _SINGLE[cls], _MULTI[cls]
    if multi and (not single or rng.random() < multi_p):
        return rng.choice(multi)
    return rng.choice(single)


def message_flits(
    rng: random.Random, fabric: FabricParams, header_bits: int, opcode: Opcode, msg_id: int
) -> list[int]:
    """Raw flits of a message: the header flit, then its data flits (tail on the last)."""
    beats = data_beats(opcode, fabric.data_width)
    spare = fabric.payload_bits - HEADER_BITS
    flits = [flit_raw(True, beats == 0, header_bits | rng.getrandbits(spare) << HEADER_BITS)]
    for b in range(beats):
        payload = rng.getrandbits(fabric.payload_bits - 40) << 40 | msg_id << 8 | b
        flits.append(flit_raw(False, b == beats - 1, payload))
    return flits


# --------------------------------------------------------------------------------------------
# Input unit


class InputHarness(Elaboratable):
    """An :class:`InputUnit` with its tables (registers and node table) reset to a
    configuration and never written."""

    def __init__(self, params: SwitchParams, config: SwitchConfig, port: int) -> None:
        self.unit = InputUnit(params, port=port)
        self.tables = SwitchTables(params, config, lookups=1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = self.unit
        m.submodules.tables = t = self.tables
        m.d.comb += [
            self.unit.tables.eq(t.tables),
            t.route_node[0].eq(self.unit.route_node),
            self.unit.route.eq(t.route[0]),
        ]
        return m


INPUT_CASES = {
    "voq": dict(allocator="islip", edge=False, vcs=4, depth=4),
    "voq_edge_vc6": dict(allocator="islip", edge=True, vcs=6, depth=3),
    "fifo": dict(allocator="fifo", edge=False, vcs=4, depth=4),
    "fifo_edge": dict(allocator="fifo", edge=True, vcs=5, depth=2),
    "voq_registered": dict(allocator="islip", edge=False, vcs=4, depth=2, registered_grant=True),
    "fifo_registered": dict(allocator="fifo", edge=True, vcs=4, depth=3, registered_grant=True),
    "voq_edge_pipelined": dict(
        allocator="islip", edge=True, vcs=4, depth=3, registered_grant=True, registered_route=True
    ),
    "fifo_route_registered": dict(
        allocator="fifo", edge=False, vcs=4, depth=2, registered_route=True
    ),
}


@pytest.mark.parametrize("case", list(INPUT_CASES))
def test_input_unit(case: str) -> None:
    """Random arrivals within credits, random grants of requested outputs; every departure,
    request and credit is checked against a queue model (per (VC, output) FIFOs, or one FIFO
    per VC in FIFO mode) fed by the route-compute golden model."""
    name = f"input_unit_{case}"
    rng = make_rng(name)
    c = INPUT_CASES[case]
    fabric = FabricParams(vcs=c["vcs"])
    registered = c.get("registered_grant", False)
    registered_route = c.get("registered_route", False)
    params = SwitchParams(
        fabric=fabric,
        ports=4,
        buffer_depth=c["depth"],
        allocator=c["allocator"],
        registered_grant=registered,
        registered_route=registered_route,
    )
    port = 1
    rng_range = AddressRange(base=0x40000, size=0x40000, targets=(2, 5), granularity=256)
    config = SwitchConfig(
        node_id=SWITCH_NODE,
        routes={n: n % params.ports for n in range(NODES)},
        edge_ports={port} if c["edge"] else set(),
        ranges=(rng_range,) if c["edge"] else (),
    )
    voq = params.allocator != "fifo"
    vcs, depth = fabric.vcs, params.buffer_depth
    n_out = params.ports + 1
    harness = InputHarness(params, config, port)
    u = harness.unit
    drive = Bus(
        [
            ("valid", u.inp.valid),
            ("vc", u.inp.vc),
            ("flit", u.inp.flit),
            ("credit_ok", u.credit_ok),
            ("may_head", u.may_head),
            ("may_body", u.may_body),
        ]
    )
    sense_req = Bus([("requests", u.requests), ("credit_blocked", u.credit_blocked)])
    sense_out = Bus(
        [
            ("alloc_valid", u.alloc_valid),
            ("alloc_vc", u.alloc_vc),
            ("alloc_head", u.alloc_head),
            ("alloc_tail", u.alloc_tail),
            ("credit", u.inp.credit),
        ]
    )
    sense_flit = Bus([("out_valid", u.out_valid), ("out_vc", u.out_vc), ("out_flit", u.out_flit)])
    sense_offer = Bus(
        [("offer_vcs", u.offer_vcs), ("offer_head", u.offer_head), ("offer_tail", u.offer_tail)]
    )
    # The flit granted in the previous cycle, which crosses now with registered_grant.
    crossing: tuple[int, int] | None = None
    # The flit that arrived in the previous cycle, which is queued now with registered_route.
    held: tuple[int, int] | None = None

    # Model: queues[(v, o)] of raw flits (VOQ) or queues[(v, 0)] of (o, raw flit) (FIFO).
    queues: dict[tuple[int, int], deque] = defaultdict(deque)
    route_of = [0] * vcs
    vc_rr = RoundRobinModel(vcs)
    credits = [depth] * vcs
    pending: list[deque[int]] = [deque() for _ in range(vcs)]
    msg_id = 0
    stats = defaultdict(int)

    def new_message(v: int) -> None:
        nonlocal msg_id
        msg_id += 1
        cls = MsgClass(v % 4)
        op = random_opcode(rng, cls, 0.5)
        dst = rng.randrange(NODES) if rng.random() < 0.9 else UNMAPPED
        addr = msg_id
        if cls is MsgClass.REQ and c["edge"]:
            inside = rng.random() < 0.85
            base = rng_range.base if inside else 0x100000
            addr = base + rng.randrange(rng_range.size // 64) * 64
        h = header(op, src=rng.randrange(NODES), dst=dst, tag=msg_id & 0xFF, addr=addr)
        pending[v].extend(message_flits(rng, fabric, pack_header(h), op, msg_id))

    def head_of(v: int, o: int) -> int | None:
        """The flit at the head of the queue of (v, o), or None."""
        if voq:
            q = queues[(v, o)]
            return q[0] if q else None
        q = queues[(v, 0)]
        return q[0][1] if q and q[0][0] == o else None

    def candidates(o: int, ok: int, mh: int, mb: int) -> tuple[int, int]:
        """(may leave, waits only for a credit) VC masks for output o."""
        cand = blocked = 0
        for v in range(vcs):
            flit = head_of(v, o)
            if flit is None:
                continue
            bit = o * vcs + v
            lock_ok = (mh if flit & 1 else mb) >> bit & 1
            if lock_ok and ok >> bit & 1:
                cand |= 1 << v
            elif lock_ok:
                blocked |= 1 << v
        return cand, blocked

    async def bench(ctx):
        nonlocal crossing, held
        cycles, drain_limit = 700, 400
        cycle = 0
        while True:
            draining = cycle >= cycles
            if draining and not any(queues.values()) and not any(pending) and held is None:
                if registered and crossing is not None:  # the last departure, a cycle late
                    ctx.set(u.grant, 0)
                    flit_now = sense_flit.unpack(ctx.get(sense_flit.value))
                    assert flit_now["out_valid"] and flit_now["out_flit"] == crossing[1]
                break
            assert cycle < cycles + drain_limit, "input unit did not drain"
            # Arrival on a random VC that has a credit.
            arrival = None
            if not draining and rng.random() < 0.7:
                ready = [v for v in range(vcs) if credits[v]]
                if ready:
                    v = rng.choice(ready)
                    if not pending[v]:
                        new_message(v)
                    arrival = (v, pending[v].popleft())
                    credits[v] -= 1
            elif draining:
                ready = [v for v in range(vcs) if credits[v] and pending[v]]
                if ready:
                    v = rng.choice(ready)
                    arrival = (v, pending[v].popleft())
                    credits[v] -= 1
            bits = vcs * n_out
            if draining:
                ok = mh = mb = (1 << bits) - 1
            else:
                ok, mh, mb = (
                    sum(1 << b for b in range(bits) if rng.random() < p) for p in (0.8, 0.7, 0.8)
                )
            values = {"credit_ok": ok, "may_head": mh, "may_body": mb}
            if arrival:
                values.update(valid=1, vc=arrival[0], flit=arrival[1])
            ctx.set(drive.value, drive.pack(values))
            got = sense_req.unpack(ctx.get(sense_req.value))
            cands, exp_req, exp_blocked = [], 0, 0
            for o in range(n_out):
                cand, blocked = candidates(o, ok, mh, mb)
                cands.append(cand)
                exp_req |= bool(cand) << o
                exp_blocked |= bool(blocked) << o
            assert got["requests"] == exp_req, f"cycle {cycle}: requests"
            assert got["credit_blocked"] == exp_blocked, f"cycle {cycle}: credit_blocked"
            # Each output's offer: the VC the round robin picks among its candidates, and
            # that queue's front flit's framing.
            offers = sense_offer.unpack(ctx.get(sense_offer.value))
            offer_vcs = unpack_rows(offers["offer_vcs"], vcs, n_out)
            for o in range(n_out):
                pick = vc_rr.grant(cands[o])
                if pick is None:
                    assert offer_vcs[o] == 0, f"cycle {cycle}: output {o} offered no candidate"
                    continue
                assert offer_vcs[o] == 1 << pick, f"cycle {cycle}: output {o} offer"
                head, tail, _ = flit_fields(head_of(pick, o))
                framing = (offers["offer_head"] >> o & 1, offers["offer_tail"] >> o & 1)
                assert framing == (head, tail), f"cycle {cycle}: output {o} offer framing"
            # Allocator stand-in: grant one requested output, or none.
            asked = [o for o in range(n_out) if exp_req >> o & 1]
            grant = rng.choice(asked) if asked and rng.random() < 0.85 else None
            ctx.set(u.grant, 0 if grant is None else 1 << grant)
            got = sense_out.unpack(ctx.get(sense_out.value))
            departure = None
            if grant is None:
                assert not got["alloc_valid"] and got["credit"] == 0, f"cycle {cycle}"
                vc_rr.step(0, False)
            else:
                v = vc_rr.grant(cands[grant])
                vc_rr.step(cands[grant], True)
                assert got["alloc_valid"] and got["alloc_vc"] == v, f"cycle {cycle}: VC choice"
                q = queues[(v, 0 if not voq else grant)]
                expected = q.popleft() if voq else q.popleft()[1]
                head, tail, _ = flit_fields(expected)
                assert (got["alloc_head"], got["alloc_tail"]) == (head, tail), f"cycle {cycle}"
                assert got["credit"] == 1 << v, f"cycle {cycle}: credit"
                departure = (v, expected)
                stats["departed"] += 1
            # The flit: this cycle's departure, or with registered_grant the previous one.
            shown = crossing if registered else departure
            crossing = departure
            flit_now = sense_flit.unpack(ctx.get(sense_flit.value))
            if shown is None:
                assert not flit_now["out_valid"], f"cycle {cycle}: a flit without a grant"
            else:
                assert flit_now["out_valid"] and flit_now["out_vc"] == shown[0], f"cycle {cycle}"
                assert flit_now["out_flit"] == shown[1], f"cycle {cycle}: flit out of order"
            for v in range(vcs):
                if got["credit"] >> v & 1:
                    credits[v] += 1
                    assert credits[v] <= depth
            # With registered_route a flit joins its queue a cycle after it arrives.
            if registered_route:
                arrival, held = held, arrival
            if arrival:
                v, raw = arrival
                head, _, payload = flit_fields(raw)
                if head:
                    header_bits = payload & ((1 << HEADER_BITS) - 1)
                    d = route_reference(params, config, port=port, vc=v, header_bits=header_bits)
                    route_of[v] = d.out_port
                    stored = flit_raw(True, raw >> 1 & 1, payload ^ header_bits ^ d.header_bits_out)
                    stats[f"to_port{d.out_port}"] += 1
                else:
                    stored = raw
                o = route_of[v]
                if voq:
                    queues[(v, o)].append(stored)
                    assert len(queues[(v, o)]) <= depth
                else:
                    queues[(v, 0)].append((o, stored))
                stats["arrived"] += 1
            await ctx.tick()
            cycle += 1
        assert credits == [depth] * vcs, "credits not all returned"
        assert stats["arrived"] == stats["departed"] > 300
        assert stats[f"to_port{params.ports}"] > 0, "no message went to the responder"

    simulate(harness, bench, name=name)


# --------------------------------------------------------------------------------------------
# Stream adapters


class AdapterPair(Elaboratable):
    """StreamsToFabric feeding FabricToStreams over one fabric port."""

    def __init__(self, fabric: FabricParams, depth: int, registered: bool = False) -> None:
        self.tx = StreamsToFabric(fabric, credits=depth)
        self.rx = FabricToStreams(fabric, depth=depth, registered=registered)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        wiring.connect(m, self.tx.port, self.rx.port)
        return m


@pytest.mark.parametrize(
    ("vcs", "depth", "registered"),
    [(4, 1, False), (4, 2, False), (5, 4, False), (4, 1, True), (4, 2, True), (5, 4, True)],
)
def test_stream_adapters(vcs: int, depth: int, registered: bool) -> None:
    """Random valid/ready on both sides: order per VC kept, no overflow, nothing lost."""
    name = f"adapters_v{vcs}_d{depth}" + ("_reg" if registered else "")
    rng = make_rng(name)
    fabric = FabricParams(vcs=vcs)
    dut = AdapterPair(fabric, depth, registered)
    fw = flit_layout(fabric).size
    drive = Bus(
        [(f"valid{v}", dut.tx.streams[v].valid) for v in range(vcs)]
        + [(f"payload{v}", dut.tx.streams[v].payload) for v in range(vcs)]
        + [(f"ready{v}", dut.rx.streams[v].ready) for v in range(vcs)]
    )
    sense = Bus(
        [(f"tx_ready{v}", dut.tx.streams[v].ready) for v in range(vcs)]
        + [(f"rx_valid{v}", dut.rx.streams[v].valid) for v in range(vcs)]
        + [(f"rx_payload{v}", dut.rx.streams[v].payload) for v in range(vcs)]
        + [("overflow", dut.rx.overflow), ("can_send", dut.tx.can_send)]
    )
    to_send = [deque(rng.getrandbits(fw) for _ in range(60)) for _ in range(vcs)]
    sent: list[list[int]] = [[] for _ in range(vcs)]
    received: list[list[int]] = [[] for _ in range(vcs)]
    offered: list[int | None] = [None] * vcs

    async def bench(ctx):
        for cycle in range(3000):
            if all(len(received[v]) == 60 for v in range(vcs)):
                break
            values = {}
            for v in range(vcs):
                # A stream's valid, once raised, stays up with the same payload until ready.
                if offered[v] is None and to_send[v] and rng.random() < 0.6:
                    offered[v] = to_send[v].popleft()
                values[f"valid{v}"] = int(offered[v] is not None)
                values[f"payload{v}"] = offered[v] or 0
                values[f"ready{v}"] = int(rng.random() < 0.5)
            ctx.set(drive.value, drive.pack(values))
            got = sense.unpack(ctx.get(sense.value))
            assert not got["overflow"], f"cycle {cycle}: overflow"
            offering = [v for v in range(vcs) if values[f"valid{v}"]]
            for v in range(vcs):
                can_send = bool(got["can_send"] >> v & 1)
                # Taken only with a credit; offered alone, taken exactly when one is held.
                assert can_send or not got[f"tx_ready{v}"], f"cycle {cycle}: VC {v}"
                if offering == [v]:
                    assert bool(got[f"tx_ready{v}"]) == can_send, f"cycle {cycle}: VC {v} alone"
                if offered[v] is not None and got[f"tx_ready{v}"]:
                    sent[v].append(offered[v])
                    offered[v] = None
                else:
                    assert not got[f"tx_ready{v}"] or offered[v] is not None
                if got[f"rx_valid{v}"] and values[f"ready{v}"]:
                    received[v].append(got[f"rx_payload{v}"])
                    assert received[v] == sent[v][: len(received[v])], f"VC {v} order"
            await ctx.tick()
        for v in range(vcs):
            assert received[v] == sent[v] and len(sent[v]) == 60, f"VC {v} lost flits"
        got = sense.unpack(ctx.get(sense.value))
        assert not got["overflow"]

    simulate(dut, bench, name=name)


@pytest.mark.parametrize("registered", [False, True], ids=["ram_out", "registered"])
@pytest.mark.parametrize("depth", [1, 3])
def test_fabric_to_streams_credit_violation(depth: int, registered: bool) -> None:
    """A sender that sends more flits than it has credits: the flits that fit are kept and
    delivered in order, the extra one is discarded and ``overflow`` flags it; another VC is
    unaffected."""
    fabric = FabricParams()
    rx = FabricToStreams(fabric, depth=depth, registered=registered)
    latency = 2 if registered else 1

    async def bench(ctx):
        ctx.set(rx.port.valid, 1)
        ctx.set(rx.port.vc, 1)
        for k in range(depth + 1):  # one more than the credits
            ctx.set(Value.cast(rx.port.flit), flit_raw(k == 0, k == depth, 0x100 + k))
            await ctx.tick()
            if k < depth:
                assert not ctx.get(rx.overflow), f"flit {k} was within the credits"
        ctx.set(rx.port.vc, 2)  # a legal flit on another VC
        ctx.set(Value.cast(rx.port.flit), flit_raw(True, True, 0x2FF))
        await ctx.tick()
        ctx.set(rx.port.valid, 0)
        assert ctx.get(rx.overflow), "the flit beyond the credits is flagged"
        for _ in range(latency):
            await ctx.tick()
        got: list[int] = []
        for _ in range(depth + 4):
            if ctx.get(rx.streams[1].valid):
                got.append(ctx.get(Value.cast(rx.streams[1].payload)))
            ctx.set(rx.streams[1].ready, 1)
            await ctx.tick()
        expected = [flit_raw(k == 0, k == depth, 0x100 + k) for k in range(depth)]
        assert got == expected, "the flits within the credits, in order; the extra one dropped"
        assert ctx.get(rx.streams[2].valid)
        assert ctx.get(Value.cast(rx.streams[2].payload)) == flit_raw(True, True, 0x2FF)
        assert ctx.get(rx.overflow), "overflow is sticky"

    simulate(rx, bench, name=f"rx_credit_violation_d{depth}_{int(registered)}")


def test_fabric_to_streams_latency() -> None:
    """A flit arriving at cycle 0 is on its stream at cycle 1 (RAM read), or 2 registered;
    its credit goes back in the cycle it is taken, or the cycle after registered."""
    fabric = FabricParams()
    for registered, latency in ((False, 1), (True, 2)):
        rx = FabricToStreams(fabric, depth=2, registered=registered)

        async def bench(ctx, rx=rx, latency=latency, registered=registered):
            ctx.set(rx.port.valid, 1)
            ctx.set(rx.port.vc, 0)
            ctx.set(Value.cast(rx.port.flit), flit_raw(True, True, 0x55))
            await ctx.tick()
            ctx.set(rx.port.valid, 0)
            for cycle in range(1, 4):
                assert ctx.get(rx.streams[0].valid) == (cycle >= latency), f"cycle {cycle}"
                assert not ctx.get(rx.port.credit), f"cycle {cycle}: no credit before a pop"
                await ctx.tick()
            ctx.set(rx.streams[0].ready, 1)  # taken now
            assert ctx.get(rx.port.credit) == (0 if registered else 1)
            await ctx.tick()
            ctx.set(rx.streams[0].ready, 0)
            assert ctx.get(rx.port.credit) == (1 if registered else 0)
            await ctx.tick()
            assert not ctx.get(rx.port.credit), "one credit per flit"

        simulate(rx, bench, name=f"rx_latency_{int(registered)}")


def test_fabric_to_streams_arguments() -> None:
    with pytest.raises(ValueError, match=r"depth must be at least 1, not 0"):
        FabricToStreams(FabricParams(), depth=0)
    with pytest.raises(ValueError, match=r"registered must be True or False, not 1"):
        FabricToStreams(FabricParams(), depth=2, registered=1)


def test_nonexistent_vc_is_flagged() -> None:
    """A flit on a VC number the fabric does not have (VC 4-7 of a 4-VC fabric: the field has
    3 bits) has no credit and no queue. It is discarded, but not silently: FabricToStreams
    raises ``overflow``, an input unit counts it in ``dropped``; real VCs are unaffected."""
    fabric = FabricParams()
    rx = FabricToStreams(fabric, depth=2)
    params = SwitchParams(fabric=fabric, ports=4, buffer_depth=2, allocator="islip")
    config = SwitchConfig(node_id=SWITCH_NODE, routes={n: n % params.ports for n in range(NODES)})
    unit = InputHarness(params, config, 1)

    class Both(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            m.submodules.rx, m.submodules.unit = rx, unit
            return m

    body = flit_raw(False, True, 0x1234)

    dropped_bit = INPUT_COUNTERS.index("dropped")

    async def bench(ctx):
        for port in (rx.port, unit.unit.inp):
            ctx.set(port.valid, 1)
            ctx.set(port.vc, 0)
            ctx.set(Value.cast(port.flit), body)
        assert not ctx.get(unit.unit.events) >> dropped_bit & 1
        await ctx.tick()  # a flit on a real VC: nothing flagged
        assert not ctx.get(rx.overflow)
        assert ctx.get(rx.streams[0].valid)
        dropped = 0
        for vc in range(fabric.vcs, 8):
            for port in (rx.port, unit.unit.inp):
                ctx.set(port.vc, vc)
            dropped += ctx.get(unit.unit.events) >> dropped_bit & 1
            await ctx.tick()
        for port in (rx.port, unit.unit.inp):
            ctx.set(port.valid, 0)
        await ctx.tick()
        assert ctx.get(rx.overflow), "FabricToStreams flags a flit on a nonexistent VC"
        assert dropped == 8 - fabric.vcs, "the input unit counts each"
        assert [ctx.get(s.valid) for s in rx.streams] == [1, 0, 0, 0]

    simulate(Both(), bench, name="nonexistent_vc")


# --------------------------------------------------------------------------------------------
# Whole switch


@dataclass
class SentMessage:
    """A message injected into the switch, as the scoreboard expects it back."""

    msg_id: int
    port: int  # injection port
    vc: int
    dst: int
    flits: list[int]
    out_port: int  # where it must leave (for refused requests: where the ERROR goes)
    refused: bool = False


@dataclass
class PortSide:
    """The environment at one switch port: a sender with credits, a receiver returning them."""

    credits: list[int]
    pending: list[deque] = field(default_factory=list)  # per VC: flits waiting to be sent
    returns: list[deque] = field(default_factory=list)  # per VC: cycles when credits go back
    outstanding: list[int] = field(default_factory=list)  # per VC: flits not yet credited
    in_progress: list[list[int] | None] = field(default_factory=list)  # per VC at the output


SWITCH_CASES = {
    "islip": dict(allocator="islip", downstream=4),
    "wavefront": dict(allocator="wavefront", downstream=3),
    "fifo": dict(allocator="fifo", downstream=4),
    "islip_vc6": dict(allocator="islip", downstream=2, vcs=6),
    "islip_registered": dict(allocator="islip", downstream=2, registered_grant=True),
    "fifo_registered": dict(allocator="fifo", downstream=3, registered_grant=True),
    "wavefront_pipelined": dict(
        allocator="wavefront", downstream=2, registered_grant=True, registered_route=True
    ),
    # Most requests refused and credits slow to come back: the responder's queue fills and
    # must refuse (withhold credits on the REQ VCs) instead of losing an ERROR response.
    "islip_refusals": dict(allocator="islip", downstream=2, refuse=0.6, slow_credits=True),
    "registered_refusals": dict(
        allocator="islip", downstream=2, registered_grant=True, refuse=0.6, slow_credits=True
    ),
}


@pytest.mark.parametrize("case", list(SWITCH_CASES))
def test_switch(case: str) -> None:
    """A 4-port switch under random single- and multi-flit traffic on random VCs.

    Scoreboard: every message leaves at the port its destination maps to, whole and in order
    per (source port, destination, VC); multi-flit messages are never interleaved with another
    message on one output VC; no output sends beyond its downstream credits; refused requests
    (unmapped destination) come back as ERROR responses; ``xbar_error`` stays 0; at the end
    every credit is back (all queues empty) and the flit counters agree.
    """
    name = f"switch_{case}"
    rng = make_rng(name)
    c = SWITCH_CASES[case]
    ports = 4
    params = SwitchParams(
        fabric=FabricParams(vcs=c.get("vcs", 4)),
        ports=ports,
        buffer_depth=4,
        downstream_depth=c["downstream"],
        allocator=c["allocator"],
        registered_grant=c.get("registered_grant", False),
        registered_route=c.get("registered_route", False),
    )
    fabric = params.fabric
    vcs = fabric.vcs
    routes = {n: n % ports for n in range(NODES)}
    config = SwitchConfig(node_id=SWITCH_NODE, routes=routes)
    dut = Switch(params, config)
    drive = Bus(
        [
            (f"in{i}", Cat(dut.inputs[i].valid, dut.inputs[i].vc, dut.inputs[i].flit))
            for i in range(ports)
        ]
        + [(f"credit{o}", dut.outputs[o].credit) for o in range(ports)]
    )
    sense = Bus(
        [
            (f"out{o}", Cat(dut.outputs[o].valid, dut.outputs[o].vc, dut.outputs[o].flit))
            for o in range(ports)
        ]
        + [(f"credit{i}", dut.inputs[i].credit) for i in range(ports)]
        + [("xbar_error", dut.xbar_error)]
    )
    vc_bits = fabric.vc_bits
    sides = [
        PortSide(
            credits=[params.buffer_depth] * vcs,
            pending=[deque() for _ in range(vcs)],
            returns=[deque() for _ in range(vcs)],
            outstanding=[0] * vcs,
            in_progress=[None] * vcs,
        )
        for _ in range(ports)
    ]
    messages: dict[int, SentMessage] = {}
    order: dict[tuple[int, int, int], deque[int]] = defaultdict(deque)
    errors_expected: dict[int, SentMessage] = {}
    counts = {"in": [[0] * 4 for _ in range(ports)], "out": [[0] * 4 for _ in range(ports)]}
    stats = defaultdict(int)
    next_id = 0

    def inject(i: int) -> None:
        nonlocal next_id
        next_id += 1
        v = rng.randrange(vcs)
        cls = MsgClass(v % 4)
        op = random_opcode(rng, cls, 0.5)
        src = i + ports * rng.randrange(NODES // ports)
        refused = cls is MsgClass.REQ and rng.random() < c.get("refuse", 0.08)
        dst = UNMAPPED if refused else rng.randrange(NODES)
        h = header(op, src=src, dst=dst, tag=next_id & 0xFF, addr=next_id)
        flits = message_flits(rng, fabric, pack_header(h), op, next_id)
        out = routes[src] if refused else routes[dst]
        msg = SentMessage(next_id, i, v, dst, flits, out, refused)
        messages[next_id] = msg
        if refused:
            errors_expected[next_id] = msg
        else:
            order[(i, dst, v)].append(next_id)
        sides[i].pending[v].extend(flits)
        stats["multi" if len(flits) > 1 else "single"] += 1

    def complete(o: int, v: int, flits: list[int], cycle: int) -> None:
        _, _, payload = flit_fields(flits[0])
        h = unpack_header(payload & ((1 << HEADER_BITS) - 1))
        if h.opcode is Opcode.ERROR and h.src == SWITCH_NODE:
            msg = errors_expected.pop(h.addr, None)
            assert msg is not None, f"cycle {cycle}: unexpected ERROR {h}"
            rsp_vc = msg.vc + 2 if msg.vc + 2 < vcs else fabric.vc_of(MsgClass.RSP)
            assert (o, v) == (msg.out_port, rsp_vc), f"cycle {cycle}: ERROR at {o}/{v}"
            assert len(flits) == 1 and h.err is ErrorCode.DECODE
            assert h.dst == unpack_header(flit_fields(msg.flits[0])[2] % (1 << 128)).src
            stats["errors"] += 1
            stats[f"errors_vc{msg.vc}"] += 1
            return
        msg = messages.get(h.addr)
        assert msg is not None and not msg.refused, f"cycle {cycle}: unknown message {h}"
        key = (msg.port, msg.dst, msg.vc)
        assert order[key] and order[key][0] == msg.msg_id, f"cycle {cycle}: order {key}"
        order[key].popleft()
        assert (o, v) == (msg.out_port, msg.vc), f"cycle {cycle}: message {msg.msg_id} at {o}/{v}"
        assert flits == msg.flits, f"cycle {cycle}: message {msg.msg_id} corrupted"
        del messages[msg.msg_id]
        stats["delivered"] += 1

    def all_done() -> bool:
        return (
            not any(order.values())
            and not errors_expected
            and all(
                s.credits == [params.buffer_depth] * vcs
                and not any(s.pending)
                and not any(s.returns)
                for s in sides
            )
        )

    credit_delays = (6, 12, 20, 30) if c.get("slow_credits") else (0, 0, 1, 2, 3, 6, 12)

    async def bench(ctx):
        inject_cycles, drain_limit = 450, 1500
        load = rng.choice((0.5, 0.7))
        cycle = 0
        while True:
            if cycle >= inject_cycles and all_done():
                break
            assert cycle < inject_cycles + drain_limit, (
                f"switch did not drain: {sum(map(len, order.values()))} messages missing, "
                f"pending {[sum(map(len, s.pending)) for s in sides]}, "
                f"credits {[s.credits for s in sides]}"
            )
            got = sense.unpack(ctx.get(sense.value))
            assert not got["xbar_error"], f"cycle {cycle}: crossbar select not one-hot"
            values = {}
            for o in range(ports):
                side = sides[o]
                raw = got[f"out{o}"]
                if raw & 1:
                    v = raw >> 1 & ((1 << vc_bits) - 1)
                    flit = raw >> (1 + vc_bits)
                    head, tail, _ = flit_fields(flit)
                    side.outstanding[v] += 1
                    assert side.outstanding[v] <= params.downstream_depth, (
                        f"cycle {cycle}: output {o} VC {v} sent beyond its credits"
                    )
                    delay = rng.choice(credit_delays)
                    side.returns[v].append(cycle + delay)
                    counts["out"][o][v % 4] += 1
                    if head:
                        assert side.in_progress[v] is None, (
                            f"cycle {cycle}: output {o} VC {v}: a message started inside "
                            "another one"
                        )
                        side.in_progress[v] = [flit]
                    else:
                        assert side.in_progress[v] is not None, f"cycle {cycle}: stray body"
                        side.in_progress[v].append(flit)
                    if tail:
                        complete(o, v, side.in_progress[v], cycle)
                        side.in_progress[v] = None
                mask = 0
                for v in range(vcs):
                    if side.returns[v] and side.returns[v][0] <= cycle:
                        side.returns[v].popleft()
                        side.outstanding[v] -= 1
                        mask |= 1 << v
                values[f"credit{o}"] = mask
            for i in range(ports):
                side = sides[i]
                backlog = sum(map(len, side.pending))
                if cycle < inject_cycles and backlog < 12 and rng.random() < load:
                    inject(i)
                ready = [v for v in range(vcs) if side.pending[v] and side.credits[v]]
                word = 0
                if ready:
                    v = rng.choice(ready)
                    side.credits[v] -= 1
                    flit = side.pending[v].popleft()
                    word = 1 | v << 1 | flit << (1 + vc_bits)
                    counts["in"][i][v % 4] += 1
                values[f"in{i}"] = word
                # A credit returned this cycle can be spent from the next cycle on.
                for v in range(vcs):
                    if got[f"credit{i}"] >> v & 1:
                        side.credits[v] += 1
                        assert side.credits[v] <= params.buffer_depth
            ctx.set(drive.value, drive.pack(values))
            await ctx.tick()
            cycle += 1
        ctx.set(drive.value, 0)
        for _ in range(4):
            await ctx.tick()
            got = sense.unpack(ctx.get(sense.value))
            assert all(not got[f"out{o}"] & 1 for o in range(ports)), "flits after the end"
        assert not got["xbar_error"]
        assert all(s.in_progress == [None] * vcs for s in sides), "a message was cut short"
        # The per-port flit counters agree with the environment.
        for p in range(ports):
            for k in range(4):
                for kind, ctr in (("in", f"flits_in{k}"), ("out", f"flits_out{k}")):
                    assert ctr in PORT_COUNTERS
                    ctx.set(dut.ctr_addr, counter_address(params, p, ctr))
                    await ctx.tick()
                    assert ctx.get(dut.ctr_data) == counts[kind][p][k], f"port {p} {ctr}"
        print(f"{name}: {cycle} cycles, {dict(stats)}")
        if c.get("slow_credits"):  # fewer messages get through, more are refused
            assert stats["delivered"] > 100 and stats["multi"] > 30 and stats["errors"] > 15
        else:
            assert stats["delivered"] > 300 and stats["multi"] > 50 and stats["errors"] > 0
        if vcs > 4:
            assert stats["errors_vc4"] > 0, "no refused request on the second REQ VC"

    simulate(dut, bench, name=name)


@pytest.mark.parametrize(
    ("registered_grant", "registered_route", "cycles"),
    [(False, False, 2), (True, False, 3), (False, True, 3), (True, True, 4)],
)
def test_switch_zero_load_latency(
    registered_grant: bool, registered_route: bool, cycles: int
) -> None:
    """One single-flit and one multi-flit message through an idle switch: the head leaves
    ``cycles`` after it arrives (2, one more for each of ``registered_grant`` and
    ``registered_route``) and the data flits follow back to back, on the input's VC."""
    # Buffers and downstream credits for every flit: nothing waits for a credit.
    params = SwitchParams(
        ports=4,
        buffer_depth=8,
        downstream_depth=8,
        registered_grant=registered_grant,
        registered_route=registered_route,
    )
    fabric = params.fabric
    config = SwitchConfig(node_id=SWITCH_NODE, routes={n: n % 4 for n in range(NODES)})
    dut = Switch(params, config)
    name = f"switch_latency_{cycles}_{int(registered_grant)}{int(registered_route)}"
    rng = make_rng(name)
    single = header(Opcode.READ_SHARED, src=0, dst=3, tag=1, addr=0x40)
    multi = header(Opcode.NC_WRITE, src=0, dst=2, tag=2, addr=0x80)
    messages = [
        (3, message_flits(rng, fabric, pack_header(single), Opcode.READ_SHARED, 1)),
        (2, message_flits(rng, fabric, pack_header(multi), Opcode.NC_WRITE, 2)),
    ]

    async def bench(ctx):
        for out_port, flits in messages:
            seen = []
            for cycle in range(12):
                if cycle < len(flits):
                    ctx.set(dut.inputs[0].valid, 1)
                    ctx.set(dut.inputs[0].vc, 0)
                    ctx.set(Value.cast(dut.inputs[0].flit), flits[cycle])
                else:
                    ctx.set(dut.inputs[0].valid, 0)
                for o in range(4):
                    if ctx.get(dut.outputs[o].valid):
                        assert o == out_port and ctx.get(dut.outputs[o].vc) == 0
                        seen.append((cycle, ctx.get(Value.cast(dut.outputs[o].flit))))
                await ctx.tick()
            assert [c for c, _ in seen] == [cycles + k for k in range(len(flits))]
            assert [f for _, f in seen] == flits
        assert not ctx.get(dut.xbar_error)

    simulate(dut, bench, name=name)
