"""Two switches joined port to port route with the same tables: requests are decoded by
address at the edge switch only, then everything travels by destination node.

Leaf A holds nodes 0-2 (edge ports 0-2), leaf B nodes 4-6 (edge ports 0-2); port 3 of each is
the inter-switch link. Requests from every node to addresses homed on every node, and
responses back, must reach the right node through one or two switches, in order per flow.
"""

import random
from collections import defaultdict, deque

import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from unifab.codec import header, pack_header, unpack_header
from unifab.flit import Opcode
from unifab.hdl.switch.switch import Switch
from unifab.switch_config import AddressRange, SwitchConfig, SwitchParams
from unifab.testing import seed_from_env

PARAMS = SwitchParams(ports=4, buffer_depth=8)
NODES_A, NODES_B = (0, 1, 2), (4, 5, 6)
PAGE = 4096
# Three 2-way interleaved windows; one of them spans both leaves (nodes 2 and 4).
RANGES = (
    AddressRange(base=0, size=1 << 20, targets=(0, 1), granularity=PAGE),
    AddressRange(base=1 << 20, size=1 << 20, targets=(2, 4), granularity=PAGE),
    AddressRange(base=2 << 20, size=1 << 20, targets=(5, 6), granularity=PAGE),
)


def leaf_config(local: tuple[int, ...], remote: tuple[int, ...], node_id: int) -> SwitchConfig:
    routes = {n: i for i, n in enumerate(local)} | {n: 3 for n in remote}
    return SwitchConfig(
        node_id=node_id, routes=routes, edge_ports=frozenset({0, 1, 2}), ranges=RANGES
    )


def home_of(addr: int) -> int:
    for r in RANGES:
        if r.contains(addr):
            return r.target(addr)
    raise AssertionError(addr)


class TwoLeaves(Elaboratable):
    def __init__(self):
        self.a = Switch(PARAMS, leaf_config(NODES_A, NODES_B, 0xA0))
        self.b = Switch(PARAMS, leaf_config(NODES_B, NODES_A, 0xB0))

    def elaborate(self, platform):
        m = Module()
        m.submodules.a, m.submodules.b = self.a, self.b
        wiring.connect(m, self.a.outputs[3], self.b.inputs[3])
        wiring.connect(m, self.b.outputs[3], self.a.inputs[3])
        return m


@pytest.mark.heavy
def test_two_leaf_switches_route_by_address_then_node() -> None:
    rng = random.Random(seed_from_env(77))
    dut = TwoLeaves()
    attach = {n: (dut.a, i) for i, n in enumerate(NODES_A)} | {
        n: (dut.b, i) for i, n in enumerate(NODES_B)
    }
    nodes = list(attach)
    expected: dict[tuple[int, int, int], deque] = defaultdict(deque)  # (src, dst, vc) -> tags
    sent = received = 0

    async def bench(ctx):
        nonlocal sent, received
        credits = {n: [PARAMS.buffer_depth] * 4 for n in nodes}
        tags = defaultdict(int)
        for cycle in range(1500):
            # Inject: requests (VC 0, by address) and responses (VC 2, by node).
            for n in nodes:
                sw, port = attach[n]
                inp = sw.inputs[port]
                if cycle < 1000 and rng.random() < 0.3:
                    if rng.random() < 0.5:
                        addr = rng.randrange(3 << 20) & ~63
                        dst, vc = home_of(addr), 0
                        h = header(Opcode.READ_SHARED, src=n, dst=0, tag=tags[n] & 255, addr=addr)
                    else:
                        dst, vc = rng.choice(nodes), 2
                        h = header(Opcode.COMP, src=n, dst=dst, tag=tags[n] & 255)
                    if credits[n][vc]:
                        credits[n][vc] -= 1
                        ctx.set(inp.valid, 1)
                        ctx.set(inp.vc, vc)
                        ctx.set(inp.flit.head, 1)
                        ctx.set(inp.flit.tail, 1)
                        ctx.set(inp.flit.payload, pack_header(h))
                        expected[(n, dst, vc)].append(tags[n] & 255)
                        tags[n] += 1
                        sent += 1
                        continue
                ctx.set(inp.valid, 0)
            # Sinks take everything and return a credit per flit.
            arrivals = []
            for n in nodes:
                sw, port = attach[n]
                out = sw.outputs[port]
                ctx.set(out.credit, 0)
                if ctx.get(out.valid):
                    vc = ctx.get(out.vc)
                    h = unpack_header(ctx.get(out.flit.payload))
                    arrivals.append((n, vc, h))
                    ctx.set(out.credit, 1 << vc)
            for n, vc, h in arrivals:
                assert h.dst == n, f"message for node {h.dst} delivered to node {n}"
                flow = expected[(h.src, n, vc)]
                assert flow and flow[0] == h.tag, f"flow {h.src}->{n} VC{vc}: tag {h.tag}"
                flow.popleft()
                received += 1
            await ctx.tick()
            for n in nodes:
                sw, port = attach[n]
                credits[n] = [
                    c + (ctx.get(sw.inputs[port].credit) >> v & 1) for v, c in enumerate(credits[n])
                ]
        assert not ctx.get(dut.a.xbar_error) and not ctx.get(dut.b.xbar_error)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert sent > 500
    assert received == sent, f"{sent - received} messages never arrived"
    assert not any(expected.values())
