"""Topology files: presets load, every validation error names its entry, routes are shortest
paths, deadlock cycles are found, and the system top elaborates for every preset."""

import copy
import tomllib
from collections import deque
from dataclasses import replace
from importlib import resources

import pytest

from unifab.coherence.params import SYSTEM_PRESETS, AddressWindow
from unifab.flit import MsgClass
from unifab.topology import (
    Topology,
    TopologyError,
    load_topology,
    preset_names,
    topology_from_dict,
)

PRESETS = ("small", "default", "two-level")


def preset_dict(name: str) -> dict:
    text = resources.files("unifab").joinpath(f"data/topologies/{name}.toml").read_text()
    return tomllib.loads(text)


SMALL = preset_dict("small")


def error_of(mutate) -> str:
    data = copy.deepcopy(SMALL)
    mutate(data)
    with pytest.raises(TopologyError) as info:
        topology_from_dict(data, source="t.toml")
    return str(info.value)


# -- presets ----------------------------------------------------------------------------------


def test_presets_are_shipped():
    assert set(PRESETS) <= set(preset_names())


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_and_validates(name):
    t = load_topology(name)
    assert isinstance(t, Topology)
    assert t.name == name
    assert t.find_cycle() is None
    for h in t.homes:
        t.home_params(h.id)
    for e in t.endpoints:
        t.endpoint_params(e.id)


def test_preset_shapes():
    default = load_topology("default")
    assert len(default.endpoints) == 8 and len(default.homes) == 4 and len(default.switches) == 1
    two = load_topology("two-level")
    assert len(two.switches) == 3
    assert sum(link.link_layer for link in two.links) == 2


def test_small_matches_system_preset():
    from unifab.hdl.top.coherent import switch_config

    t = load_topology("small")
    p = SYSTEM_PRESETS["small"]
    (config,) = t.switch_configs().values()
    assert config == switch_config(p)
    (sp,) = t.switch_params().values()
    assert (sp.ports, sp.buffer_depth, sp.downstream_depth) == (
        p.ports,
        p.switch_buffer_depth,
        p.agent_rx_depth,
    )
    # The topology adds the workloads' memory pool (non-cacheable) to the preset system.
    assert t.noncacheable == (AddressWindow(base=0x1_0000_8000, size=0x8000),)
    for i in range(p.endpoints):
        assert replace(t.endpoint_params(i), noncacheable=()) == p.endpoint_params(i)
    assert t.home_params(16) == p.home_params(0)


def test_load_from_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(resources.files("unifab").joinpath("data/topologies/small.toml").read_text())
    assert load_topology(path).source == "mine.toml"
    assert load_topology(str(path)).name == "small"


def test_unknown_preset():
    with pytest.raises(TopologyError, match=r"topology nope: no such preset \(presets: .*small"):
        load_topology("nope")


def test_bad_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("name = \n")
    with pytest.raises(TopologyError, match=r"^topology bad.toml: not valid TOML"):
        load_topology(path)


# -- validation errors ------------------------------------------------------------------------


def test_overlapping_ranges():
    def mutate(d):
        d["range"].append(
            {"base": 0x1_0000_8000, "size": 0x1000, "targets": [16], "granularity": 256}
        )

    assert error_of(mutate) == (
        "topology t.toml: range[1] 0x1_0000_8000+0x1000 overlaps range[0] 0x1_0000_0000+0x1_0000"
    )


def test_unaligned_range():
    def mutate(d):
        d["range"][0]["base"] = 0x1_0000_0040

    assert error_of(mutate) == (
        "topology t.toml: range[0] 0x1_0000_0040+0x1_0000 is unaligned: base and size must be "
        "multiples of granularity x ways = 0x100"
    )


def test_unaligned_window():
    def mutate(d):
        d["node"][2]["window"]["base"] = 0x1_0000_0020

    assert error_of(mutate) == (
        "topology t.toml: node[2] (home 16).window: 0x1_0000_0020+0x1_0000 is not aligned to "
        "64-byte lines"
    )


def test_window_not_covered():
    def mutate(d):
        d["node"][2]["window"]["size"] = 0x2_0000

    assert error_of(mutate) == (
        "topology t.toml: node[2] (home 16): window 0x1_0000_0000+0x2_0000 is not covered by the "
        "address map (0x1_0000 bytes of it are mapped to this home)"
    )


def test_range_outside_window():
    def mutate(d):
        d["node"][2]["window"]["size"] = 0x8000

    assert error_of(mutate) == (
        "topology t.toml: range[0] 0x1_0000_0000+0x1_0000 targets node[2] (home 16) but is "
        "outside its window 0x1_0000_0000+0x8000"
    )


def test_overlapping_home_windows():
    def mutate(d):
        d["node"].append(
            {"kind": "home", "id": 17, "window": {"base": 0x1_0000_8000, "size": 0x8000}}
        )
        d["switch"][0]["ports"] = 4
        d["link"].append({"a": "node:17", "b": "switch:s0:3"})
        d["range"].append({"base": 0x1_0001_0000, "size": 0x1000, "targets": [17]})

    assert error_of(mutate) == (
        "topology t.toml: range[1] 0x1_0001_0000+0x1000 targets node[3] (home 17) but is outside "
        "its window 0x1_0000_8000+0x8000"
    )

    def mutate2(d):
        mutate(d)
        d["range"][1] = {"base": 0x1_0000_8000, "size": 0x8000, "targets": [17]}
        d["range"][0]["size"] = 0x8000

    assert error_of(mutate2) == (
        "topology t.toml: node[2] (home 16): window 0x1_0000_0000+0x1_0000 is not covered by the "
        "address map (0x8000 bytes of it are mapped to this home)"
    )

    def mutate3(d):
        mutate2(d)
        d["node"][2]["window"]["size"] = 0x8000
        d["node"][3]["window"] = {"base": 0x1_0000_4000, "size": 0xC000}
        d["range"][1] = {"base": 0x1_0000_8000, "size": 0x8000, "targets": [17]}
        d["range"].append({"base": 0x1_0000_4000, "size": 0x4000, "targets": [17]})

    assert error_of(mutate3) == (
        "topology t.toml: range[2] 0x1_0000_4000+0x4000 overlaps range[0] 0x1_0000_0000+0x8000"
    )


def test_unreachable_node_without_link():
    assert error_of(lambda d: d["link"].pop(1)) == (
        "topology t.toml: node[1] (endpoint 1) is unreachable: no link attaches it"
    )


def test_unreachable_node_on_isolated_switch():
    def mutate(d):
        d["switch"].append({"name": "s1", "ports": 2})
        d["link"][1] = {"a": "node:1", "b": "switch:s1:0"}

    assert error_of(mutate) == (
        "topology t.toml: node[1] (endpoint 1) is unreachable from node[0] (endpoint 0)"
    )


def test_port_over_capacity():
    def mutate(d):
        d["link"][1]["b"] = "switch:s0:3"

    assert error_of(mutate) == (
        "topology t.toml: link[1] (node:1 - switch:s0:3): switch:s0:3 is over capacity: "
        "switch s0 has 3 ports (0..2)"
    )


def test_port_used_twice():
    def mutate(d):
        d["link"][1]["b"] = "switch:s0:0"

    assert error_of(mutate) == (
        "topology t.toml: link[1] (node:1 - switch:s0:0): switch:s0:0 is already used by link[0]"
    )


def test_unknown_key_top_level():
    assert error_of(lambda d: d.__setitem__("colour", "red")) == (
        "topology t.toml: top level: unknown key 'colour' (expected one of: name, fabric, "
        "address_map, switch, node, link, range, rule)"
    )


def test_unknown_key_nested():
    assert error_of(lambda d: d["node"][0].__setitem__("cahce", 1)) == (
        "topology t.toml: node[0] (endpoint 0): unknown key 'cahce' (expected one of: kind, id, "
        "axi_id_width, cache, mshrs)"
    )
    assert error_of(lambda d: d["node"][0]["cache"].__setitem__("assoc", 4)) == (
        "topology t.toml: node[0] (endpoint 0).cache: unknown key 'assoc' (expected one of: "
        "sets, ways)"
    )
    assert error_of(lambda d: d["link"][0].__setitem__("delay", 4)) == (
        "topology t.toml: link[0]: unknown key 'delay' (expected one of: a, b, link_layer, "
        "latency, link_preset)"
    )
    assert error_of(lambda d: d.__setitem__("fabric", {"vc": 4})) == (
        "topology t.toml: fabric: unknown key 'vc' (expected one of: data_width, vcs, seq_bits, "
        "credit_bits)"
    )


def test_home_keys_are_not_endpoint_keys():
    assert error_of(lambda d: d["node"][2].__setitem__("cache", False)).startswith(
        "topology t.toml: node[2] (home 16): unknown key 'cache'"
    )


def test_types():
    assert error_of(lambda d: d["node"][0].__setitem__("id", "x")) == (
        "topology t.toml: node[0] (endpoint x): id must be an integer, not 'x'"
    )
    assert error_of(lambda d: d["link"][0].__setitem__("link_layer", 1)) == (
        "topology t.toml: link[0]: link_layer must be true or false, not 1"
    )
    assert error_of(lambda d: d["switch"][0].__setitem__("ports", 40)) == (
        "topology t.toml: switch[0] (s0): ports must be 2..16, not 40"
    )


def test_node_ids():
    assert error_of(lambda d: d["node"][1].__setitem__("id", 0)) == (
        "topology t.toml: node[1] (endpoint 0): id 0 duplicates node[0] (endpoint 0)"
    )

    def caching_20(d):
        d["node"][1]["id"] = 20
        d["link"][1]["a"] = "node:20"

    assert error_of(caching_20) == (
        "topology t.toml: node[1] (endpoint 20): a caching endpoint needs an ID below 16 (the "
        "directory's sharer vector); use cache = false or a smaller ID"
    )

    def uncached_20(d):
        caching_20(d)
        d["node"][1]["cache"] = False

    data = copy.deepcopy(SMALL)
    uncached_20(data)
    t = topology_from_dict(data, source="t.toml")
    assert t.endpoint_params(20).cache is None
    # A non-caching endpoint is never snooped.
    assert not any(cls is MsgClass.SNP and dst == 20 for cls, _k, _s, dst in t.paths)


def test_link_layer_needs_latency():
    assert error_of(lambda d: d["link"][0].__setitem__("link_layer", True)) == (
        "topology t.toml: link[0] (node:0 - switch:s0:0): latency must be at least 1 cycle on a "
        "link with a link layer"
    )


def test_route_override_checked():
    assert error_of(lambda d: d["switch"][0].__setitem__("routes", {"16": 0})) == (
        "topology t.toml: switch[0] (s0): route to node 16 leads to node[0] (endpoint 0) "
        "(needed by node[0] (endpoint 0))"
    )


# -- routes and deadlock ----------------------------------------------------------------------


def ring(routes: bool) -> dict:
    """Three switches in a ring (s{k}.1 -> s{k+1}.0), an endpoint and a home on each; with
    ``routes`` every switch sends remote nodes clockwise (two hops for the far neighbour)."""
    d: dict = {"switch": [], "node": [], "link": [], "range": []}
    for k in range(3):
        d["switch"].append({"name": f"s{k}", "ports": 4})
        d["node"].append({"kind": "endpoint", "id": k})
        d["node"].append(
            {"kind": "home", "id": 16 + k, "window": {"base": 0x10000 * (k + 1), "size": 0x10000}}
        )
        d["link"].append({"a": f"node:{k}", "b": f"switch:s{k}:2"})
        d["link"].append({"a": f"node:{16 + k}", "b": f"switch:s{k}:3"})
        d["link"].append({"a": f"switch:s{k}:1", "b": f"switch:s{(k + 1) % 3}:0"})
        d["range"].append({"base": 0x10000 * (k + 1), "size": 0x10000, "targets": [16 + k]})
    if routes:
        for k in range(3):
            d["switch"][k]["routes"] = {str(n): 1 for j in range(3) if j != k for n in (j, 16 + j)}
    return d


def test_ring_shortest_paths_are_deadlock_free():
    t = topology_from_dict(ring(False), source="ring.toml")
    assert t.find_cycle() is None
    # Shortest paths: every remote node is one hop away, s0 reaches s2 through port 0.
    assert t.routes["s0"][2] == 0 and t.routes["s0"][1] == 1


def test_ring_clockwise_routes_deadlock():
    with pytest.raises(TopologyError) as info:
        topology_from_dict(ring(True), source="ring.toml")
    assert str(info.value) == (
        "topology ring.toml: channel dependency cycle (deadlock) in the routes: "
        "s0.1->s1.0/REQ -> s1.1->s2.0/REQ -> s2.1->s0.0/REQ -> s0.1->s1.0/REQ"
    )


def _bfs_hops(t: Topology, start: str) -> dict[str, int]:
    dist = {start: 0}
    todo = deque([start])
    while todo:
        s = todo.popleft()
        for far in t.switch_ports(s).values():
            if far.switch is not None and far.switch not in dist:
                dist[far.switch] = dist[s] + 1
                todo.append(far.switch)
    return dist


@pytest.mark.parametrize("name", PRESETS)
def test_routes_agree_with_graph_search(name):
    t = load_topology(name)
    configs = t.switch_configs()
    for s in t.switches:
        cfg = configs[s.name]
        ports = t.switch_ports(s.name)
        assert cfg.edge_ports == {
            p
            for p, far in ports.items()
            if far.switch is None and t.node(far.node).kind == "endpoint"
        }
        for n in t.nodes:
            port = cfg.routes[n.id]
            far = ports[port]
            target = t.node_switch(n.id).switch
            if far.switch is None:
                assert far.node == n.id
            else:  # one hop closer to the node's switch, by an independent BFS
                from_here = _bfs_hops(t, s.name)[target]
                assert _bfs_hops(t, far.switch)[target] == from_here - 1


def test_two_level_routes_through_spine():
    t = load_topology("two-level")
    path = t.paths[(MsgClass.REQ, "node", 0, 18)]
    assert [t.channel_text(c) for c in path] == [
        "node 0->leaf0.0/REQ",
        "leaf0.6->spine.0/REQ",
        "spine.1->leaf1.6/REQ",
        "leaf1.4->node 18/REQ",
    ]
    configs = t.switch_configs()
    assert configs["spine"].edge_ports == frozenset()
    assert configs["leaf0"].decode(0x1_0010_0100) == 19
    assert t.home_of(0x1_0010_0100) == 19 and t.home_of(0x1_0000_0000) == 16
    assert t.home_of(0x2_0000_0000) is None


# -- the system top ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_supernode_elaborates(name):
    from amaranth.hdl import Fragment

    from unifab.hdl.top.supernode import SuperNode

    top = SuperNode(load_topology(name))
    t = top.topology
    members = top.signature.members
    for e in t.endpoints:
        assert f"ep{e.id}_axi" in members and f"ep{e.id}_busy" in members
    for j in range(len(t.homes)):
        assert f"home{j}_mem" in members and f"home{j}_busy" in members
    assert ("links_up" in members) == any(link.link_layer for link in t.links)
    Fragment.get(top, None)


def test_verilog_small(tmp_path):
    from unifab.cli import main

    out = tmp_path / "small.v"
    assert main(["verilog", "--preset", "small", "-o", str(out)]) == 0
    text = out.read_text()
    assert "module supernode(" in text
    for port in ("clk", "rst", "ep0_axi__awaddr", "ep1_axi__rdata", "home0_mem__araddr"):
        assert port in text
    # The waveform probes survive conversion.
    assert "fab_s0_0_in_flit" in text and "fab_s0_2_out_valid" in text


def test_small_supernode_has_the_coherent_system_ports():
    from unifab.hdl.top.coherent import CoherentSystem
    from unifab.hdl.top.supernode import SuperNode
    from unifab.waves import silence_unused

    ours, theirs = SuperNode(load_topology("small")), CoherentSystem(SYSTEM_PRESETS["small"])
    silence_unused([ours, theirs])  # built for their signatures only
    assert dict(ours.signature.members.items()) == dict(theirs.signature.members.items())


def _send_flits(dut, inp, out, *, n: int = 6, vc: int = 2, max_cycles: int = 3000) -> list:
    """Send ``n`` single-flit messages into ``inp``; take them at ``out``, returning a credit
    for each at once. Returns ``(vc, payload)`` in arrival order."""
    from amaranth.sim import Simulator

    got = []

    async def bench(ctx):
        sent = 0
        for _ in range(max_cycles):
            ctx.set(out.credit, 0)
            if ctx.get(out.valid):
                got.append((ctx.get(out.vc), ctx.get(out.flit.payload)))
                ctx.set(out.credit, 1 << ctx.get(out.vc))
            ctx.set(inp.valid, sent < n)
            if sent < n:
                ctx.set(inp.vc, vc)
                ctx.set(inp.flit.head, 1)
                ctx.set(inp.flit.tail, 1)
                ctx.set(inp.flit.payload, 0x100 + sent)
                sent += 1
            await ctx.tick()
            if len(got) == n:
                return

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


def test_fabric_delay_carries_flits():
    from unifab.flit import FabricParams
    from unifab.hdl.top.supernode import FabricDelay

    d = FabricDelay(FabricParams(), 3)
    assert _send_flits(d, d.inp, d.out) == [(2, 0x100 + i) for i in range(6)]


@pytest.mark.parametrize("direction", ["ab", "ba"])
def test_layered_link_carries_flits(direction):
    from unifab.hdl.top.supernode import LayeredLink
    from unifab.params import LINK_PRESETS

    link = LayeredLink(LINK_PRESETS["small"], latency=2, credits=(8, 8), depths=(4, 4))
    inp, out = getattr(link, f"{direction[0]}_in"), getattr(link, f"{direction[1]}_out")
    assert _send_flits(link, inp, out) == [(2, 0x100 + i) for i in range(6)]
