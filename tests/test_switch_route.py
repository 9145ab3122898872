"""Switch route compute and tables on Amaranth's simulator, against the golden model.

* Differential: random :class:`SwitchConfig` s (interleaved ranges at every granularity,
  overlapping access rules, partial routes, random edge ports) and thousands of biased random
  head flits per config, every :class:`RouteCompute` of a switch driven at once, compared
  with :func:`route_reference`. The first config is the reset value; the others are loaded
  through the register port with :func:`config_writes`.
* Tables: register writes against :func:`apply_write`, fixed bit positions, unmapped writes.
* Validation messages, and a Verilog conversion of tables + route compute.

Random cases draw from ``random.Random(seed)``; the seed is ``UNIFAB_SEED`` if set, else the
case's default, and is printed (``pytest -s`` or on failure). To replay a failure::

    UNIFAB_SEED=<seed> .venv/bin/python -m pytest 'tests/test_switch_route.py::<case id>' -s
"""

import itertools
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from functools import cache

import pytest
from amaranth import Cat, Elaboratable, Module, Signal
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from unifab.codec import header, pack_fields, pack_header, unpack_fields
from unifab.flit import ADDR_BITS, HEADER_BITS, ErrorCode, Header, MsgClass, Opcode
from unifab.hdl.switch.route import RouteCompute
from unifab.hdl.switch.tables import (
    SwitchTables,
    route_entry_layout,
    split_routes,
    tables_layout,
)
from unifab.models.switch_route import RouteDecision, route_reference
from unifab.switch_config import (
    GRANULARITIES,
    INTERLEAVE_WAYS,
    AccessRule,
    AddressRange,
    SwitchConfig,
    SwitchParams,
)
from unifab.switch_regs import (
    CONTROL,
    NODE_ENTRIES,
    RANGE_BASE,
    RULE_BASE,
    apply_write,
    config_writes,
    tables_init,
)

TOP = 1 << ADDR_BITS
MAX_UNIT = max(GRANULARITIES) * max(INTERLEAVE_WAYS)
DEFINED = sorted(op.value for op in Opcode)
UNDEFINED = sorted(set(range(64)) - set(DEFINED))
REQ_OPS = [op for op in Opcode if op.value < 0x10]
OTHER_OPS = [op for op in Opcode if op.value >= 0x10]


# --------------------------------------------------------------------------------------------
# Harness


def make_rng(default: int) -> random.Random:
    """The case's random generator; ``UNIFAB_SEED`` overrides the default seed."""
    env = os.environ.get("UNIFAB_SEED")
    seed = int(env, 0) if env else default
    print(f"UNIFAB_SEED={seed}")
    return random.Random(seed)


def simulate(dut: Elaboratable, bench: Callable) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


STIM_BITS = HEADER_BITS + 3  # per port: header, vc


class Harness(Elaboratable):
    """SwitchTables feeding one RouteCompute per input port, each on its own node table
    lookup port.

    ``stim`` packs every port's ``{header, vc}`` and ``result`` every port's
    ``{header_out, out_port, error, drop}``, so one ``ctx.set`` drives a whole step.
    """

    def __init__(self, params: SwitchParams, config: SwitchConfig) -> None:
        self.params = params
        self.tables = SwitchTables(params, config, lookups=params.ports)
        self.routes = [RouteCompute(params, port=p) for p in range(params.ports)]
        self.port_bits = self.routes[0].out_port.shape().width
        self.result_bits = HEADER_BITS + self.port_bits + 3 + 1
        self.stim = Signal(params.ports * STIM_BITS)
        self.result = Signal(params.ports * self.result_bits)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tables = self.tables
        results = []
        for p, rc in enumerate(self.routes):
            m.submodules[f"route{p}"] = rc
            s = self.stim.word_select(p, STIM_BITS)
            m.d.comb += [
                rc.tables.eq(self.tables.tables),
                self.tables.route_node[p].eq(rc.route_node),
                rc.route.eq(self.tables.route[p]),
                rc.header.eq(s[:HEADER_BITS]),
                rc.vc.eq(s[HEADER_BITS:]),
            ]
            results.append(Cat(rc.header_out, rc.out_port, rc.error, rc.drop))
        m.d.comb += self.result.eq(Cat(*results))
        return m

    def pack_stim(self, flits: list[tuple[int, int]]) -> int:
        return sum((h | vc << HEADER_BITS) << (p * STIM_BITS) for p, (vc, h) in enumerate(flits))

    def unpack_result(self, value: int) -> list[RouteDecision]:
        out = []
        for p in range(self.params.ports):
            r = (value >> (p * self.result_bits)) & ((1 << self.result_bits) - 1)
            h = r & ((1 << HEADER_BITS) - 1)
            r >>= HEADER_BITS
            port = r & ((1 << self.port_bits) - 1)
            r >>= self.port_bits
            out.append(RouteDecision(port, h, ErrorCode(r & 7), bool(r >> 3)))
        return out


def tables_value(params: SwitchParams, tables: dict) -> int:
    """The bits of the register part of a :func:`tables_init` value (everything but the node
    table), through Amaranth's ``Layout.const`` (slow: ~10 ms)."""
    return tables_layout(params).const(split_routes(tables)[0]).as_value().value


def entry_fields(bits: int) -> dict[str, int]:
    """The ``{valid, port}`` fields of a node table entry's bits (the low bits of ``bits``)."""
    return {name: bits >> f.offset & ((1 << f.width) - 1) for name, f in route_entry_layout}


def read_node_table(ctx, t: SwitchTables, k: int = 0) -> list[dict[str, int]]:
    """Every node table entry, read by sweeping lookup port ``k`` of ``t`` over 0..255."""
    entries = []
    for n in range(NODE_ENTRIES):
        ctx.set(t.route_node[k], n)
        entries.append(entry_fields(ctx.get(t.route[k].as_value())))
    return entries


def check_routes_by_outcome(ctx, dut: Harness, routes: list[dict[str, int]], what: str) -> None:
    """Every node table entry, through routing: a COMP for each node ``n`` (RSP class, so
    routed by ``dst`` at any port) goes to ``routes[n].port`` if that entry is valid and the
    port exists, else to the responder with DECODE (dropped). Each port looks up a different
    node in the same step."""
    ports = dut.params.ports
    vc = MsgClass.RSP.value
    for first in range(0, NODE_ENTRIES, ports):
        nodes = [(first + p) % NODE_ENTRIES for p in range(ports)]
        flits = [(vc, pack_header(header(Opcode.COMP, dst=n, tag=n))) for n in nodes]
        ctx.set(dut.stim, dut.pack_stim(flits))
        got = dut.unpack_result(ctx.get(dut.result))
        for p, (n, (_, bits), g) in enumerate(zip(nodes, flits, got, strict=True)):
            e = routes[n]
            if e["valid"] and e["port"] < ports:
                want = RouteDecision(e["port"], bits, ErrorCode.OK, False)
            else:
                want = RouteDecision(ports, bits, ErrorCode.DECODE, True)
            assert g == want, f"{what}: node {n} (entry {e}) looked up at port {p}: {g}"


def flatten(value: object, prefix: str = "") -> dict[str, int]:
    """A tables value as flat fields, named like :func:`unifab.codec.layout_fields`."""
    if isinstance(value, dict):
        items = [(f"{prefix}.{k}" if prefix else k, v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{prefix}[{i}]", v) for i, v in enumerate(value)]
    else:
        return {prefix: int(value)}
    return {name: bit for k, v in items for name, bit in flatten(v, k).items()}


@cache
def cached_layout(params: SwitchParams):
    return tables_layout(params)


def rtl_fields(params: SwitchParams, bits: int) -> dict[str, int]:
    return unpack_fields(cached_layout(params), bits, what="tables")


async def write_regs(ctx, t: SwitchTables, writes: list[tuple[int, int]]) -> None:
    ctx.set(t.cfg_we, 1)
    for addr, value in writes:
        ctx.set(t.cfg_addr, addr)
        ctx.set(t.cfg_data, value)
        await ctx.tick()
    ctx.set(t.cfg_we, 0)


# --------------------------------------------------------------------------------------------
# Random configs and headers


def all_shapes(rng: random.Random) -> Iterator[tuple[int, int]]:
    """Every (ways, granularity) pair, shuffled, repeated forever."""
    shapes = [(w, g) for w in INTERLEAVE_WAYS for g in GRANULARITIES]
    rng.shuffle(shapes)
    return itertools.cycle(shapes)


def random_config(
    rng: random.Random,
    params: SwitchParams,
    shapes: Iterator[tuple[int, int]] | None = None,
    *,
    full: bool = False,
) -> SwitchConfig:
    """Random tables; range shapes (ways, granularity) from ``shapes`` (default random);
    ``full`` uses every range of the decoder."""
    shapes = shapes or all_shapes(rng)
    pool = rng.sample(range(256), 24)
    routes = {n: rng.randrange(params.ports) for n in pool if rng.random() < 0.75}
    routes |= {rng.randrange(256): rng.randrange(params.ports) for _ in range(8)}
    ports = list(range(params.ports))
    edge = {p for p in ports if rng.random() < 0.5} | {rng.choice(ports)}
    if len(edge) == params.ports:
        edge.discard(rng.choice(ports))

    ranges = []
    n_ranges = params.ranges if full or rng.random() < 0.7 else rng.randint(0, params.ranges)
    top_down = rng.random() < 0.4
    cursor = TOP if top_down else rng.choice([0, rng.randrange(TOP // 2) // MAX_UNIT * MAX_UNIT])
    for k in range(n_ranges):
        ways, gran = next(shapes)
        unit = gran * ways
        size = unit * rng.choice([1, 1, 2, 3, 5])
        gap = unit * (0 if k == 0 else rng.choice([0, 0, 1, 2]))
        targets = tuple(rng.choice(pool) for _ in range(ways))
        if top_down:
            limit = (cursor - gap) // unit * unit
            base = cursor = limit - size
        else:
            base = -(-(cursor + gap) // unit) * unit
            cursor = base + size
        ranges.append(AddressRange(base=base, size=size, targets=targets, granularity=gran))
    rng.shuffle(ranges)

    lo = min((r.base for r in ranges), default=0)
    hi = max((r.base + r.size for r in ranges), default=MAX_UNIT)
    rules = []
    for _ in range(rng.randint(0, params.rules)):
        if rng.random() < 0.1:
            base, size = 0, TOP
        else:
            base = max(0, rng.randrange(max(lo - 4096, 0), hi + 4096))
            base = min(base, TOP - 1)
            size = min(rng.randint(1, max(2, (hi - lo) // 2)), TOP - base)
        a, b = sorted(rng.choice([rng.choice(pool), rng.randrange(256)]) for _ in range(2))
        if rng.random() < 0.2:
            a, b = 0, 255
        rules.append(
            AccessRule(
                src_lo=a,
                src_hi=b,
                base=base,
                size=size,
                read=rng.random() < 0.6,
                write=rng.random() < 0.5,
                atomic=rng.random() < 0.4,
            )
        )
    return SwitchConfig(
        node_id=rng.randrange(256),
        routes=routes,
        edge_ports=edge,
        ranges=tuple(ranges),
        rules=tuple(rules),
        default_allow=rng.random() < 0.6,
    )


def random_addr(rng: random.Random, config: SwitchConfig) -> int:
    r = rng.random()
    if config.ranges and r < 0.45:
        rg = rng.choice(config.ranges)
        addr = rg.base + rng.randrange(rg.size)
    elif config.ranges and r < 0.65:
        rg = rng.choice(config.ranges)
        edge = rng.choice(
            [rg.base, rg.base + rg.size, rg.base + rg.granularity * rng.randrange(rg.size // 256)]
        )
        addr = edge + rng.choice([-1, 0, 0, 1])
    elif config.rules and r < 0.78:
        rule = rng.choice(config.rules)
        addr = rng.choice([rule.base, rule.base + rule.size]) + rng.choice([-1, 0])
    elif config.ranges and r < 0.9:
        lo = min(rg.base for rg in config.ranges)
        hi = max(rg.base + rg.size for rg in config.ranges)
        addr = rng.randrange(max(0, lo - 65536), min(TOP, hi + 65536))
    else:
        addr = rng.getrandbits(ADDR_BITS)
    return min(max(addr, 0), TOP - 1)


def random_src(rng: random.Random, config: SwitchConfig) -> int:
    if config.rules and rng.random() < 0.6:
        rule = rng.choice(config.rules)
        src = rng.choice([rule.src_lo, rule.src_hi, rng.randint(rule.src_lo, rule.src_hi)])
        return min(max(src + rng.choice([-1, 0, 0, 0, 1]), 0), 255)
    return rng.randrange(256)


def random_flit(rng: random.Random, config: SwitchConfig) -> tuple[int, int]:
    """``(vc, header bits)`` of a random head flit, mostly well-formed."""
    op = rng.choice(REQ_OPS) if rng.random() < 0.55 else rng.choice(OTHER_OPS)
    cls = header(op).cls.value
    opcode = op.value
    rsvd = 0
    r = rng.random()
    if r < 0.04:
        opcode = rng.choice(UNDEFINED)
    elif r < 0.08:
        cls = rng.randrange(4)
    elif r < 0.11:
        rsvd = 1 << rng.randrange(HEADER_BITS - 99)
    vc = cls + 4 * rng.randrange(2)
    if rng.random() < 0.04:
        vc = rng.randrange(8)
    dests = list(config.routes) or [0]
    fields = {
        "opcode": opcode,
        "cls": cls,
        "src": random_src(rng, config),
        "dst": rng.choice(dests) if rng.random() < 0.8 else rng.randrange(256),
        "tag": rng.randrange(256),
        "fwd": rng.randrange(256),
        "addr": random_addr(rng, config),
        "size": rng.randrange(8),
        "state": rng.randrange(4),
        "err": rng.randrange(8) if rng.random() < 0.2 else 0,
        "poison": rng.randrange(2),
        "qos": rng.randrange(4),
        "rsvd": rsvd,
    }
    return vc, pack_fields(Header, fields, what="Header")


def classify(config: SwitchConfig, port: int, vc: int, bits: int, d: RouteDecision) -> list:
    """Coverage buckets of one routed flit."""
    f = unpack_fields(Header, bits)
    is_req = vc % 4 == 0 and f["cls"] == 0
    buckets = [f"{d.error.name}-{'drop' if d.drop else 'req'}"]
    if d.error is ErrorCode.OK:
        buckets = ["routed"]
    rg = next((r for r in config.ranges if r.contains(f["addr"])), None)
    edge = is_req and port in config.edge_ports
    if edge and rg and d.error in (ErrorCode.OK, ErrorCode.DECODE):
        # Decoded: the home node is visible in header_out.dst.
        way = (f["addr"] // rg.granularity) % len(rg.targets)
        buckets.append("decoded-way>0" if way else "decoded-way0")
        buckets.append(("shape", len(rg.targets), rg.granularity))
        if way == len(rg.targets) - 1:
            buckets.append(("last way", len(rg.targets)))
        if f["addr"] == TOP - 1:
            buckets.append("decoded-top-byte")
    return buckets


# --------------------------------------------------------------------------------------------
# Differential tests


@pytest.mark.parametrize(
    "ports,ranges,rules,seed",
    [(4, 8, 8, 1), (8, 8, 8, 2), (16, 12, 5, 3), (5, 1, 1, 4)],
    ids=["p4", "p8", "p16", "p5-tiny"],
)
def test_route_differential(ports: int, ranges: int, rules: int, seed: int) -> None:
    """RouteCompute equals the golden model for random configs, at reset and reprogrammed."""
    rng = make_rng(seed)
    params = SwitchParams(ports=ports, ranges=ranges, rules=rules)
    shapes = all_shapes(rng)
    configs = [random_config(rng, params, shapes, full=c < 5) for c in range(6)]
    dut = Harness(params, configs[0])
    steps = -(-3000 // ports)
    coverage: Counter[str] = Counter()

    async def bench(ctx):
        for c, config in enumerate(configs):
            if c:
                await write_regs(ctx, dut.tables, config_writes(params, config))
            init = tables_init(params, config)
            expect = tables_value(params, init)
            assert ctx.get(dut.tables.tables.as_value()) == expect, f"config {c}: tables"
            check_routes_by_outcome(ctx, dut, init["routes"], f"config {c}")
            for step in range(steps):
                flits = [random_flit(rng, config) for _ in range(ports)]
                ctx.set(dut.stim, dut.pack_stim(flits))
                got = dut.unpack_result(ctx.get(dut.result))
                for p, ((vc, bits), g) in enumerate(zip(flits, got, strict=True)):
                    want = route_reference(params, config, port=p, vc=vc, header_bits=bits)
                    assert g == want, (
                        f"config {c} step {step} port {p} vc {vc} header {bits:#034x}:\n"
                        f"  rtl   {g}\n  model {want}\n  config {config}"
                    )
                    coverage.update(classify(config, p, vc, bits, want))

    simulate(dut, bench)
    print({k: v for k, v in coverage.items() if isinstance(k, str)})
    for bucket in ("routed", "decoded-way0", "MALFORMED-req", "MALFORMED-drop", "DECODE-drop"):
        assert coverage[bucket] > 0, bucket
    if ranges > 1:
        for bucket in ("decoded-way>0", "DECODE-req", "DENIED-req"):
            assert coverage[bucket] > 0, bucket
    if ranges >= 8:  # 5 full configs x 8 ranges: every shape twice
        missing = [
            shape
            for shape in itertools.product(INTERLEAVE_WAYS, GRANULARITIES)
            if not coverage["shape", *shape]
        ]
        assert not missing, f"(ways, granularity) never decoded: {missing}"
        for ways in INTERLEAVE_WAYS:
            assert coverage["last way", ways] > 0, ways


def test_route_examples() -> None:
    """Hand-worked cases (the ones in docs/switch.md), on the RTL and on the model."""
    params = SwitchParams(ports=4, ranges=2, rules=2)
    config = SwitchConfig(
        node_id=0xF0,
        routes={0x10: 1, 0x11: 2, 0x12: 3, 0x13: 3, 0x05: 0},
        edge_ports={0},
        ranges=(
            AddressRange(
                base=0x1_0000_0000,
                size=0x4000_0000,
                targets=(0x10, 0x11, 0x12, 0x13),
                granularity=1024,
            ),
            AddressRange(base=0x2_0000_0000, size=0x1000, targets=(0x77,), granularity=4096),
        ),
        rules=(AccessRule(src_lo=0x05, src_hi=0x05, base=0x1_0000_0000, size=0x1000, write=False),),
        default_allow=False,
    )
    OK, DEC, DEN, MAL = ErrorCode.OK, ErrorCode.DECODE, ErrorCode.DENIED, ErrorCode.MALFORMED
    rd = Opcode.READ_SHARED
    wr = Opcode.NC_WRITE
    # (port, vc, header, expected out_port, expected dst, expected error, expected drop)
    cases = [
        # 0x1_0000_0C40 >> 10 = ...3: way 3 of 4 -> node 0x13 -> port 3
        (0, 0, header(rd, src=5, addr=0x1_0000_0C40), 3, 0x13, OK, False),
        (0, 0, header(rd, src=5, addr=0x1_0000_0400), 2, 0x11, OK, False),
        (0, 0, header(wr, src=5, addr=0x1_0000_0400), 4, 0, DEN, False),  # rule: no writes
        (0, 0, header(wr, src=6, addr=0x1_0000_0400), 4, 0, DEN, False),  # default deny
        (0, 0, header(Opcode.CLEAN_EVICT, src=6, addr=0x1_0000_0400), 2, 0x11, OK, False),
        (0, 0, header(rd, src=5, addr=0x1_4000_0000), 4, 0, DEC, False),  # past the limit
        (0, 0, header(Opcode.CLEAN_EVICT, src=5, addr=0x2_0000_0000), 4, 0x77, DEC, False),
        (1, 0, header(rd, src=5, dst=0x12, addr=0x9), 3, 0x12, OK, False),  # not an edge
        (1, 4, header(rd, src=5, dst=0x99), 4, 0x99, DEC, False),  # unreachable node
        (2, 2, header(Opcode.COMP, dst=0x05), 0, 0x05, OK, False),
        (2, 2, header(Opcode.COMP, dst=0x06), 4, 0x06, DEC, True),
        (2, 1, header(Opcode.COMP, dst=0x05), 4, 0x05, MAL, True),  # wrong VC for its class
        (2, 0, header(Opcode.COMP, cls=MsgClass.REQ, dst=5), 4, 5, MAL, False),
        (2, 2, header(rd, cls=MsgClass.RSP, dst=0x05), 4, 0x05, MAL, True),
    ]
    dut = Harness(params, config)

    async def bench(ctx):
        for port, vc, h, out_port, dst, error, drop in cases:
            bits = pack_header(h, strict=False)
            flits = [(0, 0)] * params.ports
            flits[port] = (vc, bits)
            ctx.set(dut.stim, dut.pack_stim(flits))
            got = dut.unpack_result(ctx.get(dut.result))[port]
            want = route_reference(params, config, port=port, vc=vc, header_bits=bits)
            assert got == want, (h, got, want)
            out = unpack_fields(Header, got.header_bits_out)
            err = error.value if error is not OK and not drop else h.err.value
            assert (got.out_port, out["dst"], got.error, got.drop) == (out_port, dst, error, drop)
            assert out == {**unpack_fields(Header, bits), "dst": dst, "err": err}, h

    simulate(dut, bench)


def test_rsvd_and_undefined_opcode() -> None:
    """Reserved bits and unknown opcodes are MALFORMED; a REQ gets an ERROR, others drop."""
    params = SwitchParams(ports=2, ranges=1, rules=1)
    config = SwitchConfig(routes={1: 1})
    base = unpack_fields(Header, pack_header(header(Opcode.READ_SHARED, dst=1)))
    for vc, fields, drop in [
        (0, {"rsvd": 1 << 28}, False),
        (0, {"opcode": 0x00}, False),
        (0, {"opcode": 0x3F}, False),
        (3, {"opcode": 0x3F, "cls": 3}, True),
    ]:
        bits = pack_fields(Header, {**base, **fields})
        d = route_reference(params, config, port=0, vc=vc, header_bits=bits)
        assert (d.out_port, d.error, d.drop) == (2, ErrorCode.MALFORMED, drop)


# --------------------------------------------------------------------------------------------
# Tables and register port


def random_write(rng: random.Random, params: SwitchParams) -> tuple[int, int]:
    r = rng.random()
    if r < 0.3:
        addr = rng.randrange(256)
    elif r < 0.55:
        addr = RANGE_BASE + rng.randrange(4 * params.ranges + 8)
    elif r < 0.8:
        addr = RULE_BASE + rng.randrange(4 * params.rules + 8)
    elif r < 0.9:
        addr = CONTROL + rng.choice([-1, 0, 0, 1])
    else:
        addr = rng.randrange(1 << 16)
    return addr, rng.getrandbits(64)


@pytest.mark.parametrize("ports,ranges,rules,seed", [(4, 3, 2, 11), (16, 8, 8, 12)])
def test_register_writes(ports: int, ranges: int, rules: int, seed: int) -> None:
    """Random writes (mapped and unmapped) match apply_write; config_writes reload a config.

    After every write the register part is compared field by field and all 256 node table
    entries are read back through lookup port 0 (and port 1, swept in the opposite order).
    """
    rng = make_rng(seed)
    params = SwitchParams(ports=ports, ranges=ranges, rules=rules)
    config = random_config(rng, params)
    other = random_config(rng, params)
    dut = SwitchTables(params, config, lookups=2)
    model = tables_init(params, config)
    unmapped = 0

    def regs(tables: dict) -> dict[str, int]:
        return flatten(split_routes(tables)[0])

    both = Cat(dut.route[0], dut.route[1])

    def check_node_table(ctx, routes: list[dict[str, int]], what: str) -> None:
        for n in range(NODE_ENTRIES):
            ctx.set(dut.route_node[0], n)
            ctx.set(dut.route_node[1], NODE_ENTRIES - 1 - n)
            got = ctx.get(both)
            for k, node in enumerate((n, NODE_ENTRIES - 1 - n)):
                entry = entry_fields(got >> (k * route_entry_layout.size))
                assert entry == routes[node], f"{what}: node {node} (lookup port {k})"

    async def bench(ctx):
        nonlocal unmapped
        value = dut.tables.as_value()
        assert ctx.get(value) == tables_value(params, model)
        check_node_table(ctx, model["routes"], "reset")
        for _ in range(1000):
            addr, data = random_write(rng, params)
            await write_regs(ctx, dut, [(addr, data)])
            before = flatten(model)
            if not apply_write(params, model, addr, data):
                unmapped += 1
                assert flatten(model) == before
            got = rtl_fields(params, ctx.get(value))
            assert got == regs(model), f"write {addr:#x} {data:#x}"
            check_node_table(ctx, model["routes"], f"write {addr:#x} {data:#x}")
        # Idle cycles with cfg_we low and a mapped address change nothing.
        for addr in (CONTROL, rng.randrange(NODE_ENTRIES)):
            ctx.set(dut.cfg_addr, addr)
            ctx.set(dut.cfg_data, rng.getrandbits(64))
            await ctx.tick().repeat(3)
            assert rtl_fields(params, ctx.get(value)) == regs(model)
            check_node_table(ctx, model["routes"], f"idle at {addr:#x}")
        # From garbage, config_writes gives exactly the tables of an elaborated config.
        for cfg in (other, config):
            await write_regs(ctx, dut, config_writes(params, cfg))
            init = tables_init(params, cfg)
            assert ctx.get(value) == tables_value(params, init)
            check_node_table(ctx, init["routes"], "config_writes")

    simulate(dut, bench)
    assert unmapped > 20


def test_register_bit_positions() -> None:
    """The register map of docs/switch.md, with literal values."""
    params = SwitchParams(ports=8, ranges=2, rules=2)
    dut = SwitchTables(params, SwitchConfig())
    writes = [
        (0x005, 0x31),  # node 5 -> valid, port 3
        (0x0FF, 0xF1),  # node 255 -> valid, port 15 (treated as unreachable on 8 ports)
        (0x104, 0x1234_5678_9000),  # range 1 base
        (0x105, 1 << 48),  # range 1 limit: the top of the address space
        (0x106, 0x0807_0605_0403_0201),  # range 1 targets, way 0 in the low byte
        (0x107, 0xC21),  # range 1: gran_log2 12, ways_log2 2, valid
        (0x200, 0x1000),  # rule 0 base
        (0x201, 0x2000),  # rule 0 limit
        (0x202, 0x0907),  # rule 0 sources 7..9
        (0x203, 0b1011),  # rule 0: atomic, read, valid (no write)
        (0x300, 0x00A5_0142),  # node_id 0x42, default_allow, edge ports 0, 2, 5, 7
        (0x108, 0xFFFF),  # unmapped: range 2 of 2
        (0x208, 0xFFFF),  # unmapped: rule 2 of 2
        (0x301, 0xFFFF),  # unmapped
    ]

    async def bench(ctx):
        await write_regs(ctx, dut, writes)
        t = ctx.get(dut.tables)
        routes = read_node_table(ctx, dut)
        assert routes[5] == {"valid": 1, "port": 3}
        assert routes[255] == {"valid": 1, "port": 15}
        assert all(e == {"valid": 0, "port": 0} for n, e in enumerate(routes) if n not in (5, 255))
        r = t.ranges[1]
        assert (r.valid, r.base, r.limit, r.ways_log2, r.gran_log2) == (
            1,
            0x1234_5678_9000,
            1 << 48,
            2,
            12,
        )
        assert [r.targets[w] for w in range(8)] == list(range(1, 9))
        u = t.rules[0]
        assert (u.valid, u.base, u.limit, u.src_lo, u.src_hi) == (1, 0x1000, 0x2000, 7, 9)
        assert (u.read, u.write, u.atomic) == (1, 0, 1)
        assert (t.node_id, t.default_allow, t.edge_mask) == (0x42, 1, 0xA5)
        assert ctx.get(dut.tables.ranges[0].as_value()) == 0
        assert ctx.get(dut.tables.rules[1].as_value()) == 0

    simulate(dut, bench)


def test_route_port_beyond_switch() -> None:
    """A node entry naming a port the switch lacks (only by register write) is unreachable."""
    params = SwitchParams(ports=8, ranges=1, rules=1)
    dut = Harness(params, SwitchConfig(routes={5: 2}))

    async def bench(ctx):
        flits = [(2, pack_header(header(Opcode.COMP, dst=5)))] * params.ports
        ctx.set(dut.stim, dut.pack_stim(flits))
        got = dut.unpack_result(ctx.get(dut.result))[0]
        assert got == RouteDecision(2, flits[0][1], ErrorCode.OK, False)
        await write_regs(ctx, dut.tables, [(0x005, 0xF1)])
        got = dut.unpack_result(ctx.get(dut.result))[0]
        assert (got.out_port, got.error, got.drop) == (8, ErrorCode.DECODE, True)

    simulate(dut, bench)


def test_decoder_register_edge_cases() -> None:
    """Tables a SwitchConfig cannot express, written through registers: overlapping ranges
    (the lowest index wins), empty windows (limit <= base), granularities outside 256..4096."""
    params = SwitchParams(ports=4, ranges=4, rules=1)
    dut = Harness(params, SwitchConfig(routes={n: n % 4 for n in range(256)}, edge_ports={0}))
    targets = [0x0706_0504_0302_0100 + 0x0101_0101_0101_0101 * k for k in (0xA0, 0xB0, 0xC0)]
    writes = [
        (0x100, 0x1000), (0x101, 0x2000), (0x102, targets[0]), (0x103, 0x811),  # 2 x 256 B
        (0x104, 0x0000), (0x105, 0x10000), (0x106, targets[1]), (0x107, 0x621),  # 4 x 64 B
        (0x108, 0x30000), (0x109, 0x20000), (0x10A, targets[2]), (0x10B, 0x001),  # empty
        (0x10C, 0x40000), (0x10D, 0x80000), (0x10E, targets[2]), (0x10F, 0xF31),  # 8 x 32 KiB
    ]  # fmt: skip
    cases = [  # (addr, home node or None for DECODE)
        (0x1100, 0xA1),  # ranges 0 and 1 overlap: range 0 wins, way (0x1100 >> 8) & 1
        (0x1000, 0xA0),
        (0x1FFF, 0xA1),
        (0x2000, 0xB0),  # past range 0: range 1, way (0x2000 >> 6) & 3
        (0x00C0, 0xB3),
        (0xFFFF, 0xB3),
        (0x10000, None),
        (0x28000, None),  # range 2 is empty
        (0x40000 + 5 * 0x8000, 0xC5),  # way (addr >> 15) & 7
        (0x7FFFF, 0xC7),
    ]

    async def bench(ctx):
        await write_regs(ctx, dut.tables, writes)
        for addr, home in cases:
            bits = pack_header(header(Opcode.READ_SHARED, src=1, dst=0x33, addr=addr))
            ctx.set(dut.stim, dut.pack_stim([(0, bits)] * params.ports))
            got = dut.unpack_result(ctx.get(dut.result))
            dst = unpack_fields(Header, got[0].header_bits_out)["dst"]
            if home is None:
                assert (got[0].out_port, got[0].error, dst) == (4, ErrorCode.DECODE, 0x33)
            else:
                assert (got[0].out_port, got[0].error, dst) == (home % 4, ErrorCode.OK, home)
            # Port 1 is not an edge port: routed by dst.
            assert (got[1].out_port, got[1].header_bits_out) == (0x33 % 4, bits), hex(addr)

    simulate(dut, bench)


def test_config_writes_shape() -> None:
    """Every entry is written; ranges and rules are invalidated before they are filled."""
    params = SwitchParams(ports=4, ranges=3, rules=2)
    config = SwitchConfig(
        routes={1: 0},
        ranges=(AddressRange(base=0, size=0x2000, targets=(1, 1), granularity=4096),),
        rules=(AccessRule(src_lo=0, src_hi=3, base=0, size=64, atomic=False),),
    )
    writes = config_writes(params, config)
    addrs = [a for a, _ in writes]
    assert set(addrs) == (
        set(range(256))
        | set(range(RANGE_BASE, RANGE_BASE + 12))
        | set(range(RULE_BASE, RULE_BASE + 8))
        | {CONTROL}
    )
    assert writes[256:261] == [
        (0x103, 0),
        (0x100, 0),
        (0x101, 0x2000),
        (0x102, 0x0101),
        (0x103, 0xC11),
    ]
    assert writes[-6:] == [
        (0x207, 0),
        (0x204, 0),
        (0x205, 0),
        (0x206, 0),
        (0x207, 0),
        (0x300, 0x1FF),
    ]
    model = tables_init(params, SwitchConfig(default_allow=False, edge_ports={1, 2}))
    for a, d in writes:
        assert apply_write(params, model, a, d)
    assert model == tables_init(params, config)


# --------------------------------------------------------------------------------------------
# Validation


def tampered(obj, **changes):
    """A copy of a frozen dataclass with fields changed behind its validation."""
    import copy

    new = copy.copy(obj)
    for name, value in changes.items():
        object.__setattr__(new, name, value)
    return new


def test_validation_messages() -> None:
    small = SwitchParams(ports=4, ranges=2, rules=1)
    r = AddressRange(base=0, size=0x1000, targets=(1,))
    ranges3 = tuple(AddressRange(base=i << 20, size=0x1000, targets=(1,)) for i in range(3))
    rule = AccessRule(src_lo=0, src_hi=1, base=0, size=64)
    cases = [
        (SwitchConfig(ranges=ranges3), "3 address ranges, the switch has 2"),
        (SwitchConfig(rules=(rule, rule)), "2 access rules, the switch has 1"),
        (SwitchConfig(routes={7: 4}), "routes: node 7 -> port 4, the switch has 4 ports"),
        (SwitchConfig(edge_ports={9}), "edge port 9 does not exist (4 ports)"),
        (
            SwitchConfig(ranges=(tampered(r, targets=(1, 2, 3)),)),
            "range 0: interleave over 1, 2, 4 or 8 nodes, not 3",
        ),
        (
            SwitchConfig(ranges=(tampered(r, granularity=128),)),
            "range 0: granularity must be one of (256, 512, 1024, 2048, 4096) bytes, not 128",
        ),
        (
            SwitchConfig(ranges=(tampered(r, base=0x800),)),
            "range 0: base and size must be multiples of granularity x ways = 0x1000",
        ),
        (
            SwitchConfig(ranges=(tampered(r, base=TOP - 0x1000, size=0x2000),)),
            "range 0: 0xfffffffff000 + 0x2000 runs past the 48-bit global address space",
        ),
        (
            SwitchConfig(ranges=(tampered(r, targets=(256,)),)),
            "range 0: target 0 = 0x100 does not fit in 8 bits",
        ),
        (
            SwitchConfig(rules=(tampered(rule, src_lo=5),)),
            "access rule 0: src_lo 5 exceeds src_hi 1",
        ),
        (SwitchConfig(rules=(tampered(rule, size=0),)), "access rule 0: size must be a positive"),
        (tampered(SwitchConfig(), node_id=300), "node_id = 0x12c does not fit in 8 bits"),
    ]
    for config, message in cases:
        for build in (lambda c: tables_init(small, c), lambda c: SwitchTables(small, c)):
            with pytest.raises(ValueError) as info:
                build(config)
            assert message in str(info.value), (message, str(info.value))
        with pytest.raises(ValueError):
            config_writes(small, config)
    # Ranges that cannot even be built.
    for kwargs, message in [
        ({"granularity": 128}, "granularity must be one of (256, 512, 1024, 2048, 4096)"),
        ({"base": 0x800}, "base and size must be multiples of granularity x ways = 0x1000"),
        ({"targets": (1, 2, 3)}, "interleave over 1, 2, 4 or 8 nodes, not 3"),
        ({"size": 0}, "size must be a positive integer"),
    ]:
        with pytest.raises(ValueError, match="range") as info:
            AddressRange(**{"base": 0, "size": 0x1000, "targets": (1,), **kwargs})
        assert message in str(info.value)
    with pytest.raises(ValueError, match="overlap"):
        SwitchConfig(ranges=(r, AddressRange(base=0, size=0x2000, targets=(2,))))
    with pytest.raises(TypeError, match="params must be a SwitchParams"):
        SwitchTables(None, SwitchConfig())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config must be a SwitchConfig"):
        tables_init(small, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"port must be 0\.\.3, not 4"):
        RouteCompute(small, port=4)
    with pytest.raises(ValueError, match="cfg_addr = 0x10000 does not fit in 16 bits"):
        apply_write(small, tables_init(small, SwitchConfig()), 1 << 16, 0)
    with pytest.raises(ValueError, match="cfg_data = -0x1 does not fit in 64 bits"):
        apply_write(small, tables_init(small, SwitchConfig()), 0, -1)


# --------------------------------------------------------------------------------------------
# Verilog


def test_verilog_convert() -> None:
    """Tables + route compute convert to Verilog (the form Verilator simulates)."""
    params = SwitchParams(ports=4, ranges=2, rules=2)
    config = SwitchConfig(
        routes={1: 0, 2: 3},
        edge_ports={0},
        ranges=(AddressRange(base=0, size=0x2000, targets=(1, 2), granularity=4096),),
    )

    class Top(wiring.Component):
        def __init__(self) -> None:
            super().__init__(
                {
                    "cfg_we": In(1),
                    "cfg_addr": In(16),
                    "cfg_data": In(64),
                    "vc": In(3),
                    "header": In(Header),
                    "out_port": Out(range(params.ports + 1)),
                    "header_out": Out(Header),
                    "error": Out(ErrorCode),
                    "drop": Out(1),
                }
            )

        def elaborate(self, platform):
            m = Module()
            m.submodules.tables = t = SwitchTables(params, config)
            m.submodules.route = r = RouteCompute(params, port=0)
            m.d.comb += [
                r.tables.eq(t.tables),
                t.route_node[0].eq(r.route_node),
                r.route.eq(t.route[0]),
                t.cfg_we.eq(self.cfg_we),
                t.cfg_addr.eq(self.cfg_addr),
                t.cfg_data.eq(self.cfg_data),
                r.vc.eq(self.vc),
                r.header.eq(self.header),
                self.out_port.eq(r.out_port),
                self.header_out.eq(r.header_out),
                self.error.eq(r.error),
                self.drop.eq(r.drop),
            ]
            return m

    text = verilog.convert(Top(), name="route_top")
    assert "module route_top" in text
    assert "cfg_data" in text and "header_out" in text
