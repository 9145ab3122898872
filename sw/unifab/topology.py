"""Topology files: one TOML file describes a whole fabric, one Python object drives RTL and tests.

A topology lists the **nodes** (caching or non-caching endpoints, memory homes with their
windows), the **switches**, the **links** between them (direct, or through a pair of link
layers, with a channel latency), the global **address map** (ranges with interleave), the
**access rules** and the non-cacheable windows. :func:`load_topology` reads a file (or a
shipped preset by name) into a :class:`Topology`, which validates itself completely: unknown
keys, types, overlapping or unaligned windows, unreachable nodes, ports over capacity or used
twice, and deadlock (a cycle in the channel dependency graph of the routes the switches will
hold). Every error is one :class:`TopologyError` line naming the offending entry.

From a valid topology come the switch tables (:meth:`Topology.switch_configs`), the switch
sizes (:meth:`Topology.switch_params`) and the agents' parameters
(:meth:`Topology.home_params`, :meth:`Topology.endpoint_params`);
:class:`unifab.hdl.top.supernode.SuperNode` elaborates it. The file format is documented in
``docs/topology.md``.
"""

import itertools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from unifab.coherence.params import (
    AddressWindow,
    CacheParams,
    EndpointParams,
    HomeParams,
)
from unifab.flit import LINE_BYTES, NODE_BITS, FabricParams, MsgClass
from unifab.params import LINK_PRESETS, LinkParams
from unifab.switch_config import (
    ALLOCATORS,
    GRANULARITIES,
    INTERLEAVE_WAYS,
    AccessRule,
    AddressRange,
    SwitchConfig,
    SwitchParams,
)

__all__ = [
    "MAX_SHARERS",
    "Channel",
    "LinkSpec",
    "NodeSpec",
    "SwitchSpec",
    "Terminal",
    "Topology",
    "TopologyError",
    "load_topology",
    "preset_names",
    "topology_from_dict",
]

#: Caching endpoints need node IDs below this (the home's sharer vector width).
MAX_SHARERS = 16
MAX_LATENCY = 64
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_PRESET_DIR = "data/topologies"


class TopologyError(ValueError):
    """A topology that cannot be built; the message names the file and the entry."""


def hexa(value: int) -> str:
    """``0x1_0000_0040``: hex with ``_`` every four digits."""
    digits = f"{value:x}"
    groups = []
    while digits:
        groups.insert(0, digits[-4:])
        digits = digits[:-4]
    return "0x" + "_".join(groups or ["0"])


def _window_text(base: int, size: int) -> str:
    return f"{hexa(base)}+{hexa(size)}"


# --------------------------------------------------------------------------------------------
# Entries


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    """An agent on the fabric: an ``endpoint`` (AXI4 subordinate, with a cache or without)
    or a ``home`` (directory + AXI4 memory manager port serving ``window``).

    Endpoint fields: ``cache`` (None: every access non-coherent), ``mshrs``. Home fields:
    ``window`` (None: the span of the address ranges that target the home), ``dir_sets``,
    ``dir_ways``, ``table_entries``. Both: ``axi_id_width``.
    """

    kind: str
    id: int
    cache: CacheParams | None = field(default_factory=lambda: CacheParams(sets=16, ways=2))
    mshrs: int = 4
    window: AddressWindow | None = None
    dir_sets: int = 16
    dir_ways: int = 4
    table_entries: int = 4
    axi_id_width: int = 4

    def __post_init__(self) -> None:
        if self.kind not in ("endpoint", "home"):
            raise ValueError(f"kind must be 'endpoint' or 'home', not {self.kind!r}")
        if not _is_int(self.id) or not 0 <= self.id < 1 << NODE_BITS:
            raise ValueError(f"id must be a {NODE_BITS}-bit node ID, not {self.id!r}")
        if self.cache is not None and not isinstance(self.cache, CacheParams):
            raise TypeError(f"cache must be CacheParams or None, not {self.cache!r}")
        if self.window is not None and not isinstance(self.window, AddressWindow):
            raise TypeError(f"window must be an AddressWindow or None, not {self.window!r}")
        if not _is_int(self.axi_id_width) or not 1 <= self.axi_id_width <= 16:
            raise ValueError(f"axi_id_width must be 1..16, not {self.axi_id_width!r}")

    @property
    def caching(self) -> bool:
        return self.kind == "endpoint" and self.cache is not None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.id}"


@dataclass(frozen=True, kw_only=True)
class SwitchSpec:
    """A switch: ``ports`` fabric ports, ``buffer_depth`` flits per VC at each input,
    ``downstream_depth`` credits per VC at each output (the receivers' buffers),
    the allocator, its own ``node_id`` (None: ``0xF0 +`` its index) and route overrides
    ``routes`` (destination node -> output port; other nodes get shortest-path routes)."""

    name: str
    ports: int = 8
    buffer_depth: int = 8
    downstream_depth: int = 4
    allocator: str = "islip"
    islip_iterations: int = 3
    node_id: int | None = None
    routes: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"name must be an identifier (letter, then letters, digits, _), not {self.name!r}"
            )
        if self.node_id is not None and (
            not _is_int(self.node_id) or not 0 <= self.node_id < 1 << NODE_BITS
        ):
            raise ValueError(f"node_id must be a {NODE_BITS}-bit node ID, not {self.node_id!r}")
        for node, port in self.routes.items():
            if not _is_int(node) or not 0 <= node < 1 << NODE_BITS:
                raise ValueError(f"routes: {node!r} is not a {NODE_BITS}-bit node ID")
            if not _is_int(port) or port < 0:
                raise ValueError(f"routes: node {node} -> {port!r} is not a port number")
        object.__setattr__(self, "routes", MappingProxyType(dict(self.routes)))
        self.params()  # validates sizes

    def params(
        self, fabric: FabricParams | None = None, *, ranges: int = 1, rules: int = 1
    ) -> SwitchParams:
        return SwitchParams(
            fabric=fabric or FabricParams(),
            ports=self.ports,
            buffer_depth=self.buffer_depth,
            downstream_depth=self.downstream_depth,
            allocator=self.allocator,
            islip_iterations=self.islip_iterations,
            ranges=ranges,
            rules=rules,
        )


@dataclass(frozen=True, kw_only=True)
class Terminal:
    """One end of a link: ``node:ID`` (``switch`` None) or ``switch:NAME:PORT``."""

    node: int | None = None
    switch: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: object) -> "Terminal":
        if not isinstance(text, str):
            raise TypeError(
                f"link end must be a string 'node:ID' or 'switch:NAME:PORT', not {text!r}"
            )
        parts = text.split(":")
        try:
            if parts[0] == "node" and len(parts) == 2:
                return cls(node=int(parts[1], 0))
            if parts[0] == "switch" and len(parts) == 3:
                return cls(switch=parts[1], port=int(parts[2], 0))
        except ValueError:
            pass
        raise ValueError(f"link end {text!r} is not 'node:ID' or 'switch:NAME:PORT'")

    def __str__(self) -> str:
        return f"node:{self.node}" if self.switch is None else f"switch:{self.switch}:{self.port}"

    @property
    def short(self) -> str:
        return f"node {self.node}" if self.switch is None else f"{self.switch}.{self.port}"


@dataclass(frozen=True, kw_only=True)
class LinkSpec:
    """A bidirectional fabric link between ``a`` and ``b``; ``link_layer`` puts a pair of link
    layers (``link_preset`` of :data:`unifab.params.LINK_PRESETS`) on it; ``latency`` cycles of
    channel each way (register stages; at least 1 with a link layer)."""

    a: Terminal
    b: Terminal
    link_layer: bool = False
    latency: int = 0
    link_preset: str = "small"

    def __post_init__(self) -> None:
        if not isinstance(self.link_layer, bool):
            raise TypeError(f"link_layer must be true or false, not {self.link_layer!r}")
        if not _is_int(self.latency) or not 0 <= self.latency <= MAX_LATENCY:
            raise ValueError(f"latency must be 0..{MAX_LATENCY} cycles, not {self.latency!r}")
        if self.link_layer and self.latency < 1:
            raise ValueError("latency must be at least 1 cycle on a link with a link layer")
        if self.link_preset not in LINK_PRESETS:
            raise ValueError(
                f"link_preset must be one of {', '.join(LINK_PRESETS)}, not {self.link_preset!r}"
            )

    @property
    def label(self) -> str:
        return f"{self.a} - {self.b}"

    def link_params(self, fabric: FabricParams) -> LinkParams:
        p = LINK_PRESETS[self.link_preset]
        return LinkParams(
            fabric=fabric,
            replay_depth=p.replay_depth,
            rx_depth=p.rx_depth,
            ack_timeout=p.ack_timeout,
            credit_delay=p.credit_delay,
        )


@dataclass(frozen=True)
class Channel:
    """A directed link (``link`` index, ``forward`` = from ``a`` to ``b``) and a message class."""

    link: int
    forward: bool
    cls: MsgClass


# --------------------------------------------------------------------------------------------
# The topology


@dataclass(frozen=True, kw_only=True)
class Topology:
    """A whole fabric. Construct through :func:`load_topology` / :func:`topology_from_dict`
    (which call :meth:`validate`), or directly and then call :meth:`validate`."""

    name: str
    source: str = "<topology>"
    fabric: FabricParams = field(default_factory=FabricParams)
    nodes: tuple[NodeSpec, ...] = ()
    switches: tuple[SwitchSpec, ...] = ()
    links: tuple[LinkSpec, ...] = ()
    ranges: tuple[AddressRange, ...] = ()
    rules: tuple[AccessRule, ...] = ()
    default_allow: bool = True
    noncacheable: tuple[AddressWindow, ...] = ()

    def __post_init__(self) -> None:
        for name in ("nodes", "switches", "links", "ranges", "rules", "noncacheable"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    # -- naming --------------------------------------------------------------------------

    def _fail(self, message: str) -> TopologyError:
        return TopologyError(f"topology {self.source}: {message}")

    def node_entry(self, node_id: int) -> str:
        i = self._node_index[node_id]
        return f"node[{i}] ({self.nodes[i].label})"

    def switch_entry(self, name: str) -> str:
        i = self._switch_index[name]
        return f"switch[{i}] ({name})"

    @cached_property
    def _node_index(self) -> dict[int, int]:
        index: dict[int, int] = {}
        for i, n in enumerate(self.nodes):
            index.setdefault(n.id, i)
        return index

    @cached_property
    def _switch_index(self) -> dict[str, int]:
        index: dict[str, int] = {}
        for i, s in enumerate(self.switches):
            index.setdefault(s.name, i)
        return index

    def node(self, node_id: int) -> NodeSpec:
        return self.nodes[self._node_index[node_id]]

    def switch(self, name: str) -> SwitchSpec:
        return self.switches[self._switch_index[name]]

    @property
    def endpoints(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.kind == "endpoint")

    @property
    def homes(self) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.kind == "home")

    def switch_node_id(self, name: str) -> int:
        i = self._switch_index[name]
        s = self.switches[i]
        return 0xF0 + i if s.node_id is None else s.node_id

    # -- validation ----------------------------------------------------------------------

    def validate(self) -> "Topology":
        """Check everything; raise :class:`TopologyError` naming the first offending entry."""
        self._check_ids()
        self._check_links()
        self._check_connected()
        self._check_address_map()
        self._check_routes()
        self._check_deadlock()
        return self

    def _check_ids(self) -> None:
        if not self.switches:
            raise self._fail("no switches (a fabric needs at least one [[switch]])")
        if not self.homes:
            raise self._fail("no home nodes (a fabric needs at least one kind = 'home' node)")
        if not self.endpoints:
            raise self._fail("no endpoint nodes")
        seen: dict[int, str] = {}
        for i, n in enumerate(self.nodes):
            where = f"node[{i}] ({n.label})"
            if n.id in seen:
                raise self._fail(f"{where}: id {n.id} duplicates {seen[n.id]}")
            seen[n.id] = where
            if n.caching and n.id >= MAX_SHARERS:
                raise self._fail(
                    f"{where}: a caching endpoint needs an ID below {MAX_SHARERS} "
                    "(the directory's sharer vector); use cache = false or a smaller ID"
                )
            if n.kind == "endpoint" and n.window is not None:
                raise self._fail(f"{where}: only homes have a window")
        names: dict[str, int] = {}
        for i, s in enumerate(self.switches):
            if s.name in names:
                raise self._fail(f"switch[{i}] ({s.name}): name duplicates switch[{names[s.name]}]")
            names[s.name] = i
            sid = self.switch_node_id(s.name)
            where = f"switch[{i}] ({s.name})"
            if sid >= 1 << NODE_BITS:
                raise self._fail(f"{where}: default node_id {hexa(sid)} is too large; set node_id")
            if sid in seen:
                raise self._fail(f"{where}: node_id {hexa(sid)} duplicates {seen[sid]}")
            seen[sid] = where

    def _check_links(self) -> None:
        used: dict[tuple, int] = {}
        for i, link in enumerate(self.links):
            where = f"link[{i}] ({link.label})"
            for t in (link.a, link.b):
                if t.switch is None:
                    if t.node not in self._node_index:
                        raise self._fail(f"{where}: unknown node {t.node}")
                    key: tuple = ("node", t.node)
                else:
                    if t.switch not in self._switch_index:
                        raise self._fail(f"{where}: unknown switch {t.switch!r}")
                    ports = self.switch(t.switch).ports
                    if not 0 <= t.port < ports:
                        raise self._fail(
                            f"{where}: {t} is over capacity: switch {t.switch} has {ports} "
                            f"ports (0..{ports - 1})"
                        )
                    key = ("switch", t.switch, t.port)
                if key in used:
                    raise self._fail(f"{where}: {t} is already used by link[{used[key]}]")
                used[key] = i
            if link.a.switch is None and link.b.switch is None:
                raise self._fail(f"{where}: links join a node to a switch or two switches")
            if link.a.switch is not None and link.b.switch is not None and not link.link_layer:
                for s, d in ((link.a, link.b), (link.b, link.a)):
                    up, down = self.switch(s.switch), self.switch(d.switch)
                    if up.downstream_depth > down.buffer_depth:
                        raise self._fail(
                            f"{where}: switch {up.name} sends with downstream_depth "
                            f"{up.downstream_depth} credits but switch {down.name} buffers "
                            f"{down.buffer_depth} flits (buffer_depth); make them agree or use "
                            "a link layer"
                        )
        for i, n in enumerate(self.nodes):
            if ("node", n.id) not in used:
                raise self._fail(f"node[{i}] ({n.label}) is unreachable: no link attaches it")

    @cached_property
    def _adjacency(self) -> dict[str, dict[int, tuple[int, Terminal]]]:
        """switch -> port -> (link index, far end)."""
        adj: dict[str, dict[int, tuple[int, Terminal]]] = {s.name: {} for s in self.switches}
        for i, link in enumerate(self.links):
            for near, far in ((link.a, link.b), (link.b, link.a)):
                if near.switch is not None:
                    adj[near.switch][near.port] = (i, far)
        return adj

    @cached_property
    def _attach(self) -> dict[int, tuple[int, Terminal]]:
        """node -> (link index, the switch end)."""
        out = {}
        for i, link in enumerate(self.links):
            for near, far in ((link.a, link.b), (link.b, link.a)):
                if near.switch is None:
                    out[near.node] = (i, far)
        return out

    def switch_ports(self, name: str) -> dict[int, Terminal]:
        """The linked ports of switch ``name`` and what each attaches, by port."""
        return {port: far for port, (_l, far) in sorted(self._adjacency[name].items())}

    def _check_connected(self) -> None:
        start = self._attach[self.nodes[0].id][1].switch
        seen = {start}
        todo = [start]
        while todo:
            s = todo.pop()
            for _port, (_link, far) in sorted(self._adjacency[s].items()):
                if far.switch is not None and far.switch not in seen:
                    seen.add(far.switch)
                    todo.append(far.switch)
        first = f"node[0] ({self.nodes[0].label})"
        for i, n in enumerate(self.nodes):
            if self._attach[n.id][1].switch not in seen:
                raise self._fail(f"node[{i}] ({n.label}) is unreachable from {first}")
        for i, s in enumerate(self.switches):
            if s.name not in seen:
                raise self._fail(f"switch[{i}] ({s.name}) is unreachable from {first}")

    def home_window(self, node_id: int) -> AddressWindow:
        """A home's window: its own, or the span of the ranges that target it."""
        n = self.node(node_id)
        if n.window is not None:
            return n.window
        mine = [r for r in self.ranges if node_id in r.targets]
        if not mine:
            raise self._fail(f"{self.node_entry(node_id)}: no window and no range targets it")
        lo = min(r.base for r in mine)
        hi = max(r.base + r.size for r in mine)
        return AddressWindow(base=lo, size=hi - lo)

    def _check_address_map(self) -> None:
        if len(self.ranges) > 64:
            raise self._fail(f"{len(self.ranges)} ranges; a switch decodes at most 64")
        if len(self.rules) > 64:
            raise self._fail(f"{len(self.rules)} rules; a switch checks at most 64")
        for i, r in enumerate(self.ranges):
            for j in range(i):
                o = self.ranges[j]
                if r.base < o.base + o.size and o.base < r.base + r.size:
                    raise self._fail(
                        f"range[{i}] {_window_text(r.base, r.size)} overlaps "
                        f"range[{j}] {_window_text(o.base, o.size)}"
                    )
            for t in r.targets:
                if t not in self._node_index or self.node(t).kind != "home":
                    raise self._fail(
                        f"range[{i}] {_window_text(r.base, r.size)}: target {t} is not a home node"
                    )
        homes = self.homes
        for h in homes:
            where = self.node_entry(h.id)
            w = self.home_window(h.id)
            for i, r in enumerate(self.ranges):
                if h.id in r.targets and not (w.base <= r.base and r.base + r.size <= w.end):
                    raise self._fail(
                        f"range[{i}] {_window_text(r.base, r.size)} targets {where} but is "
                        f"outside its window {_window_text(w.base, w.size)}"
                    )
            covered = sum(r.size for r in self.ranges if h.id in r.targets)
            if covered != w.size:
                raise self._fail(
                    f"{where}: window {_window_text(w.base, w.size)} is not covered by the "
                    f"address map ({hexa(covered)} bytes of it are mapped to this home)"
                )
        for k, h in enumerate(homes):
            w = self.home_window(h.id)
            for o in homes[:k]:
                v = self.home_window(o.id)
                if w.base < v.end and v.base < w.end and w != v:
                    raise self._fail(
                        f"{self.node_entry(h.id)}: window {_window_text(w.base, w.size)} "
                        f"overlaps {self.node_entry(o.id)} window {_window_text(v.base, v.size)}"
                        " (homes share a window only as one interleave set)"
                    )

    # -- routes --------------------------------------------------------------------------

    @cached_property
    def routes(self) -> dict[str, dict[int, int]]:
        """switch -> destination node -> output port: shortest path (fewest switch hops), ties
        to the lowest port, then the switch's ``routes`` overrides."""
        out: dict[str, dict[int, int]] = {s.name: {} for s in self.switches}
        adj = self._adjacency
        for n in self.nodes:
            _link, home_end = self._attach[n.id]
            dist = {home_end.switch: 0}
            frontier = [home_end.switch]
            while frontier:
                nxt = []
                for s in frontier:
                    for _port, (_l, far) in sorted(adj[s].items()):
                        if far.switch is not None and far.switch not in dist:
                            dist[far.switch] = dist[s] + 1
                            nxt.append(far.switch)
                frontier = nxt
            for s in self.switches:
                if s.name == home_end.switch:
                    out[s.name][n.id] = home_end.port
                elif s.name in dist:
                    out[s.name][n.id] = min(
                        port
                        for port, (_l, far) in adj[s.name].items()
                        if far.switch is not None and dist.get(far.switch) == dist[s.name] - 1
                    )
        for s in self.switches:
            out[s.name].update(s.routes)
        return out

    def _route_path(self, start: str, dst: int, origin: str) -> list[tuple[int, bool]]:
        """Directed links from switch ``start`` to node ``dst`` following the tables."""
        path: list[tuple[int, bool]] = []
        visited = [start]
        s = start
        while True:
            port = self.routes[s].get(dst)
            if port is None:
                raise self._fail(
                    f"{self.switch_entry(s)} has no route to {self.node_entry(dst)} "
                    f"(needed by {origin})"
                )
            if port not in self._adjacency[s]:
                raise self._fail(
                    f"{self.switch_entry(s)}: route to node {dst} uses port {port}, "
                    "which has no link"
                )
            link, far = self._adjacency[s][port]
            path.append((link, self.links[link].a == Terminal(switch=s, port=port)))
            if far.switch is None:
                if far.node != dst:
                    raise self._fail(
                        f"{self.switch_entry(s)}: route to node {dst} leads to "
                        f"{self.node_entry(far.node)} (needed by {origin})"
                    )
                return path
            s = far.switch
            if s in visited:
                loop = " -> ".join([*visited[visited.index(s) :], s])
                raise self._fail(f"route from {origin} to node {dst} loops: {loop}")
            visited.append(s)

    def _flows(self) -> list[tuple[MsgClass, str, int | str, int]]:
        """(class, source kind, source node ID or switch name, destination node) of every
        message the protocol can send."""
        eps = self.endpoints
        caching = [n for n in eps if n.caching]
        homes = self.homes
        flows: list[tuple[MsgClass, str, int | str, int]] = []
        for e in eps:
            flows += [(MsgClass.REQ, "node", e.id, h.id) for h in homes]
        for h in homes:
            flows += [(MsgClass.SNP, "node", h.id, c.id) for c in caching]
        for h in homes:
            flows += [(MsgClass.RSP, "node", h.id, e.id) for e in eps]
        for e in eps:
            flows += [(MsgClass.RSP, "node", e.id, h.id) for h in homes]
        for s in self.switches:  # ERROR responses from the switch's responder
            flows += [(MsgClass.RSP, "switch", s.name, e.id) for e in eps]
        for h in homes:
            flows += [(MsgClass.DAT, "node", h.id, e.id) for e in eps]
        for c in caching:
            flows += [(MsgClass.DAT, "node", c.id, h.id) for h in homes]
            flows += [(MsgClass.DAT, "node", c.id, d.id) for d in caching if d.id != c.id]
        return flows

    @cached_property
    def paths(self) -> dict[tuple[MsgClass, str, int | str, int], tuple[Channel, ...]]:
        """Channels used by every flow of :meth:`_flows`, in order."""
        out = {}
        for flow in self._flows():
            cls, kind, src, dst = flow
            if kind == "node":
                link, sw_end = self._attach[src]
                first = [(link, self.links[link].a == Terminal(node=src))]
                origin = self.node_entry(src)
                rest = self._route_path(sw_end.switch, dst, origin)
                hops = first + rest
            else:
                hops = self._route_path(src, dst, self.switch_entry(src))
            out[flow] = tuple(Channel(link, fwd, cls) for link, fwd in hops)
        return out

    def _check_routes(self) -> None:
        for s in self.switches:
            for node, port in s.routes.items():
                if node not in self._node_index:
                    raise self._fail(f"{self.switch_entry(s.name)}: routes: unknown node {node}")
                if port not in self._adjacency[s.name]:
                    raise self._fail(
                        f"{self.switch_entry(s.name)}: routes: node {node} -> port {port}, "
                        "which has no link"
                    )
        self.paths  # noqa: B018 — traces every flow, raising on loops and dead ends

    def channel_text(self, ch: Channel) -> str:
        link = self.links[ch.link]
        src, dst = (link.a, link.b) if ch.forward else (link.b, link.a)
        return f"{src.short}->{dst.short}/{ch.cls.name}"

    @cached_property
    def dependencies(self) -> dict[Channel, set[Channel]]:
        """The channel dependency graph: ``a -> b`` when a message holding ``a`` may wait for
        ``b`` (consecutive channels of a route, and the protocol's class dependencies at the
        agents and at each switch's error responder)."""
        deps: dict[Channel, set[Channel]] = {}

        def edge(a: Channel, b: Channel) -> None:
            deps.setdefault(a, set()).add(b)
            deps.setdefault(b, set())

        outgoing: dict[tuple[str, int | str], set[Channel]] = {}
        for (_cls, kind, src, _dst), chans in self.paths.items():
            for ch in chans:
                deps.setdefault(ch, set())
            for a, b in itertools.pairwise(chans):
                edge(a, b)
            if kind == "switch":
                outgoing.setdefault(("switch", src), set()).add(chans[0])
            else:
                outgoing.setdefault(("node", src), set()).add(chans[0])
        causes = {
            MsgClass.REQ: (MsgClass.SNP, MsgClass.RSP, MsgClass.DAT),
            MsgClass.SNP: (MsgClass.RSP, MsgClass.DAT),
        }
        for a in list(deps):
            if a.cls not in causes:
                continue
            link = self.links[a.link]
            dst = link.b if a.forward else link.a
            if dst.switch is None:
                outs = outgoing.get(("node", dst.node), set())
            elif a.cls is MsgClass.REQ:  # a refused request: ERROR from the responder
                outs = outgoing.get(("switch", dst.switch), set())
            else:
                continue
            for b in outs:
                if b.cls in causes[a.cls]:
                    edge(a, b)
        return deps

    def find_cycle(self) -> list[Channel] | None:
        """A cycle of the channel dependency graph, or None. Cycles within one class (the
        lowest first) are looked for before cycles across classes."""
        for cls in MsgClass:
            sub = {
                a: {b for b in bs if b.cls is cls}
                for a, bs in self.dependencies.items()
                if a.cls is cls
            }
            cycle = self._cycle_in(sub)
            if cycle:
                return cycle
        return self._cycle_in(self.dependencies)

    @staticmethod
    def _cycle_in(deps: Mapping[Channel, set[Channel]]) -> list[Channel] | None:
        order = sorted(deps, key=lambda c: (c.cls.value, c.link, not c.forward))
        rank = {c: i for i, c in enumerate(order)}
        color: dict[Channel, int] = {}
        for root in order:
            if root in color:
                continue
            stack = [(root, iter(sorted(deps[root], key=rank.__getitem__)))]
            color[root] = 1
            path = [root]
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    color[node] = 2
                    stack.pop()
                    path.pop()
                elif color.get(nxt) == 1:
                    return path[path.index(nxt) :]
                elif nxt not in color:
                    color[nxt] = 1
                    path.append(nxt)
                    stack.append((nxt, iter(sorted(deps[nxt], key=rank.__getitem__))))
        return None

    def _check_deadlock(self) -> None:
        cycle = self.find_cycle()
        if cycle:
            text = " -> ".join(self.channel_text(c) for c in [*cycle, cycle[0]])
            raise self._fail(f"channel dependency cycle (deadlock) in the routes: {text}")

    # -- outputs -------------------------------------------------------------------------

    def edge_ports(self, name: str) -> frozenset[int]:
        """Ports of switch ``name`` that attach endpoints (requests are routed by address)."""
        return frozenset(
            port
            for port, (_l, far) in self._adjacency[name].items()
            if far.switch is None and self.node(far.node).kind == "endpoint"
        )

    def switch_params(self) -> dict[str, SwitchParams]:
        """Sizes of every switch, by name."""
        return {
            s.name: s.params(
                self.fabric, ranges=max(1, len(self.ranges)), rules=max(1, len(self.rules))
            )
            for s in self.switches
        }

    def switch_configs(self) -> dict[str, SwitchConfig]:
        """Table contents of every switch, by name."""
        return {
            s.name: SwitchConfig(
                node_id=self.switch_node_id(s.name),
                routes=dict(sorted(self.routes[s.name].items())),
                edge_ports=self.edge_ports(s.name),
                ranges=self.ranges,
                rules=self.rules,
                default_allow=self.default_allow,
            )
            for s in self.switches
        }

    def home_of(self, addr: int) -> int | None:
        """The home node of a global address (the edge switches' decode), or None."""
        for r in self.ranges:
            if r.contains(addr):
                return r.target(addr)
        return None

    def node_switch(self, node_id: int) -> Terminal:
        """The switch port a node is attached to."""
        return self._attach[node_id][1]

    def node_link(self, node_id: int) -> LinkSpec:
        return self.links[self._attach[node_id][0]]

    def home_params(self, node_id: int) -> HomeParams:
        n = self.node(node_id)
        if n.kind != "home":
            raise ValueError(f"node {node_id} is not a home")
        sw = self.switch(self.node_switch(node_id).switch)
        return HomeParams(
            fabric=self.fabric,
            node_id=n.id,
            window=self.home_window(n.id),
            dir_sets=n.dir_sets,
            dir_ways=n.dir_ways,
            table_entries=n.table_entries,
            max_sharers=MAX_SHARERS,
            rx_depth=sw.downstream_depth,
            tx_credits=sw.buffer_depth,
            axi_id_width=n.axi_id_width,
        )

    def endpoint_params(self, node_id: int) -> EndpointParams:
        n = self.node(node_id)
        if n.kind != "endpoint":
            raise ValueError(f"node {node_id} is not an endpoint")
        sw = self.switch(self.node_switch(node_id).switch)
        return EndpointParams(
            fabric=self.fabric,
            node_id=n.id,
            cache=n.cache,
            mshrs=n.mshrs,
            noncacheable=self.noncacheable,
            rx_depth=sw.downstream_depth,
            tx_credits=sw.buffer_depth,
            axi_id_width=n.axi_id_width,
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------
# Parsing


_TYPE_NAMES = {int: "an integer", bool: "true or false", str: "a string", dict: "a table"}


class _Parser:
    def __init__(self, source: str):
        self.source = source

    def fail(self, message: str) -> TopologyError:
        return TopologyError(f"topology {self.source}: {message}")

    def table(
        self, value: object, where: str, keys: Mapping[str, tuple[Any, Any]]
    ) -> dict[str, Any]:
        """Check a table's keys and value types; fill defaults (``...`` = required)."""
        if not isinstance(value, dict):
            raise self.fail(f"{where} must be a table, not {value!r}")
        for key in value:
            if key not in keys:
                raise self.fail(
                    f"{where}: unknown key {key!r} (expected one of: {', '.join(keys)})"
                )
        out = {}
        for key, (kind, default) in keys.items():
            if key not in value:
                if default is ...:
                    raise self.fail(f"{where}: missing key {key!r}")
                out[key] = default
                continue
            v = value[key]
            if kind is not None and not self.is_type(v, kind):
                names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in _kinds(kind))
                raise self.fail(f"{where}: {key} must be {names}, not {v!r}")
            out[key] = v
        return out

    @staticmethod
    def is_type(value: object, kind: Any) -> bool:
        for k in _kinds(kind):
            if k is int and _is_int(value):
                return True
            if k is not int and isinstance(value, k):
                return True
        return False

    def build(self, cls: Any, where: str, **kwargs: Any) -> Any:
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise self.fail(f"{where}: {e}") from None

    def window(self, value: object, where: str) -> AddressWindow:
        t = self.table(value, where, {"base": (int, ...), "size": (int, ...)})
        if t["base"] < 0 or t["size"] <= 0:
            raise self.fail(f"{where}: base must be >= 0 and size > 0")
        if t["base"] % LINE_BYTES or t["size"] % LINE_BYTES:
            raise self.fail(
                f"{where}: {_window_text(t['base'], t['size'])} is not aligned to "
                f"{LINE_BYTES}-byte lines"
            )
        return self.build(AddressWindow, where, **t)


def _kinds(kind: Any) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


_NODE_COMMON = {"kind": (str, ...), "id": (int, ...), "axi_id_width": (int, 4)}
_ENDPOINT_KEYS = {**_NODE_COMMON, "cache": ((bool, dict), True), "mshrs": (int, 4)}
_HOME_KEYS = {
    **_NODE_COMMON,
    "window": (dict, None),
    "dir_sets": (int, 16),
    "dir_ways": (int, 4),
    "table_entries": (int, 4),
}


def topology_from_dict(data: Mapping[str, Any], *, source: str = "<dict>") -> Topology:
    """Build and validate a :class:`Topology` from parsed TOML."""
    p = _Parser(source)
    top = p.table(
        dict(data),
        "top level",
        {
            "name": (str, Path(source).stem),
            "fabric": (dict, {}),
            "address_map": (dict, {}),
            "switch": (list, ...),
            "node": (list, ...),
            "link": (list, ...),
            "range": (list, ()),
            "rule": (list, ()),
        },
    )
    f = p.table(
        top["fabric"],
        "fabric",
        {"data_width": (int, 128), "vcs": (int, 4), "seq_bits": (int, 8), "credit_bits": (int, 4)},
    )
    fabric = p.build(FabricParams, "fabric", **f)
    amap = p.table(
        top["address_map"],
        "address_map",
        {"default_allow": (bool, True), "noncacheable": (list, ())},
    )
    noncacheable = tuple(
        p.window(w, f"address_map.noncacheable[{i}]") for i, w in enumerate(amap["noncacheable"])
    )

    switches = []
    for i, raw in enumerate(top["switch"]):
        name = raw.get("name", "?") if isinstance(raw, dict) else "?"
        where = f"switch[{i}] ({name})"
        t = p.table(
            raw,
            where,
            {
                "name": (str, ...),
                "ports": (int, 8),
                "buffer_depth": (int, 8),
                "downstream_depth": (int, 4),
                "allocator": (str, "islip"),
                "islip_iterations": (int, 3),
                "node_id": (int, None),
                "routes": (dict, {}),
            },
        )
        if t["allocator"] not in ALLOCATORS:
            raise p.fail(
                f"{where}: allocator must be one of {', '.join(ALLOCATORS)}, not {t['allocator']!r}"
            )
        routes = {}
        for key, port in t["routes"].items():
            try:
                node = int(key, 0)
            except ValueError:
                raise p.fail(f"{where}: routes: key {key!r} is not a node ID") from None
            if not _is_int(port):
                raise p.fail(f"{where}: routes: node {node} -> {port!r} is not a port number")
            if not 0 <= port < t["ports"]:
                raise p.fail(
                    f"{where}: routes: node {node} -> port {port} is over capacity "
                    f"({t['ports']} ports)"
                )
            routes[node] = port
        t["routes"] = routes
        switches.append(p.build(SwitchSpec, where, **t))

    nodes = []
    for i, raw in enumerate(top["node"]):
        kind = raw.get("kind") if isinstance(raw, dict) else None
        if kind not in ("endpoint", "home"):
            raise p.fail(f"node[{i}]: kind must be 'endpoint' or 'home', not {kind!r}")
        where = f"node[{i}] ({kind} {raw.get('id', '?')})"
        t = p.table(raw, where, _ENDPOINT_KEYS if kind == "endpoint" else _HOME_KEYS)
        if kind == "endpoint":
            cache = t["cache"]
            if cache is False:
                t["cache"] = None
            elif cache is True:
                t["cache"] = CacheParams(sets=16, ways=2)
            else:
                c = p.table(cache, f"{where}.cache", {"sets": (int, 16), "ways": (int, 2)})
                t["cache"] = p.build(CacheParams, f"{where}.cache", **c)
            p.build(EndpointParams, where, node_id=t["id"], cache=t["cache"], mshrs=t["mshrs"])
        else:
            if t["window"] is not None:
                t["window"] = p.window(t["window"], f"{where}.window")
            home_window = t["window"] or AddressWindow(base=0, size=LINE_BYTES)
            p.build(
                HomeParams,
                where,
                node_id=t["id"],
                window=home_window,
                dir_sets=t["dir_sets"],
                dir_ways=t["dir_ways"],
                table_entries=t["table_entries"],
            )
        nodes.append(p.build(NodeSpec, where, **t))

    links = []
    for i, raw in enumerate(top["link"]):
        where = f"link[{i}]"
        t = p.table(
            raw,
            where,
            {
                "a": (str, ...),
                "b": (str, ...),
                "link_layer": (bool, False),
                "latency": (int, 0),
                "link_preset": (str, "small"),
            },
        )
        where = f"link[{i}] ({t['a']} - {t['b']})"
        try:
            t["a"], t["b"] = Terminal.parse(t["a"]), Terminal.parse(t["b"])
        except (TypeError, ValueError) as e:
            raise p.fail(f"{where}: {e}") from None
        links.append(p.build(LinkSpec, where, **t))

    ranges = []
    for i, raw in enumerate(top["range"]):
        t = p.table(
            raw,
            f"range[{i}]",
            {
                "base": (int, ...),
                "size": (int, ...),
                "targets": (list, ...),
                "granularity": (int, 4096),
            },
        )
        where = f"range[{i}] {_window_text(t['base'], t['size'])}"
        if not all(_is_int(x) for x in t["targets"]):
            raise p.fail(f"{where}: targets must be node IDs, not {t['targets']!r}")
        ways = len(t["targets"])
        if ways not in INTERLEAVE_WAYS:
            raise p.fail(f"{where}: interleave over 1, 2, 4 or 8 homes, not {ways}")
        if t["granularity"] not in GRANULARITIES:
            raise p.fail(
                f"{where}: granularity must be one of {GRANULARITIES} bytes, "
                f"not {t['granularity']!r}"
            )
        unit = t["granularity"] * ways
        if t["base"] % unit or t["size"] % unit:
            raise p.fail(
                f"{where} is unaligned: base and size must be multiples of granularity x ways "
                f"= {hexa(unit)}"
            )
        t["targets"] = tuple(t["targets"])
        ranges.append(p.build(AddressRange, where, **t))

    rules = []
    for i, raw in enumerate(top["rule"]):
        t = p.table(
            raw,
            f"rule[{i}]",
            {
                "src_lo": (int, ...),
                "src_hi": (int, ...),
                "base": (int, ...),
                "size": (int, ...),
                "read": (bool, True),
                "write": (bool, True),
                "atomic": (bool, True),
            },
        )
        rules.append(p.build(AccessRule, f"rule[{i}]", **t))

    return Topology(
        name=top["name"],
        source=source,
        fabric=fabric,
        nodes=tuple(nodes),
        switches=tuple(switches),
        links=tuple(links),
        ranges=tuple(ranges),
        rules=tuple(rules),
        default_allow=amap["default_allow"],
        noncacheable=noncacheable,
    ).validate()


def preset_names() -> tuple[str, ...]:
    """Names of the topologies shipped in ``unifab/data/topologies``."""
    folder = resources.files("unifab").joinpath(_PRESET_DIR)
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml")))


def load_topology(path_or_name: str | Path) -> Topology:
    """Read a topology file, or a shipped preset by name (``small``, ``default``,
    ``two-level``), and validate it."""
    path = Path(path_or_name)
    if isinstance(path_or_name, Path) or path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise TopologyError(f"topology {path}: no such file")
        text, source = path.read_text(), path.name
    else:
        name = str(path_or_name)
        entry = resources.files("unifab").joinpath(_PRESET_DIR, f"{name}.toml")
        if not entry.is_file():
            raise TopologyError(
                f"topology {name}: no such preset (presets: {', '.join(preset_names())})"
            )
        text, source = entry.read_text(), f"{name}.toml"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TopologyError(f"topology {source}: not valid TOML: {e}") from None
    return topology_from_dict(data, source=source)
