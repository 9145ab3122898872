"""The system top of any topology file: switches, endpoints, homes and the links between them.

:class:`SuperNode` elaborates a validated :class:`unifab.topology.Topology`: one ``Switch``
per switch (tables reset to :meth:`Topology.switch_configs`), one ``Endpoint`` per endpoint
node and one ``HomeAgent`` per home node. A link is either direct (``wiring.connect``, or
``latency`` register stages on both the flit and the credit direction) or a pair of
``LinkLayer``\\ s joined by a ``latency``-stage channel each way, each link layer behind
per-VC buffers that turn the fabric port's credits into streams and back.

Ports (Verilog names in parentheses; one clock ``clk``, one synchronous active-high reset
``rst``; cocotbext-axi attaches with ``AxiBus.from_prefix(dut, "ep0_axi_")``)
-----
ep{ID}_axi : In(Axi4Signature)  (``ep{ID}_axi__awaddr`` ... ``ep{ID}_axi__rlast``)
    The AXI4 subordinate port of endpoint node ``ID``.
ep{ID}_state : Out(state_change_layout)
    Endpoint ``ID``'s line-state events.
ep{ID}_busy : Out(1)
    Endpoint ``ID`` has an MSHR or an eviction outstanding.
home{J}_mem : Out(Axi4Signature)  (``home{J}_mem__awaddr`` ...)
    The AXI4 memory port of the ``J``-th home of the file (in file order; node IDs differ:
    :attr:`SuperNode.home_nodes` maps ``J`` to the node). AXI address = global - window base.
home{J}_busy : Out(1)
    Home ``J`` has a transaction outstanding.
xbar_error : Out(1)
    Some switch's crossbar one-hot check failed.
links_up : Out(L)  (only when L > 0 links have link layers)
    Bit ``k``: both link layers of the ``k``-th link with ``link_layer = true`` are up.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from unifab.flit import FabricParams, flit_layout
from unifab.hdl.coherence.home import HomeAgent
from unifab.hdl.endpoint import Endpoint, state_change_layout
from unifab.hdl.lib.port import FabricLink, FabricToStreams, StreamsToFabric
from unifab.hdl.link.layer import LinkLayer, PhySignature
from unifab.hdl.switch.switch import Switch
from unifab.params import LinkParams
from unifab.topology import Terminal, Topology

__all__ = ["FabricDelay", "LayeredLink", "PhyDelay", "SuperNode"]


class FabricDelay(wiring.Component):
    """``latency`` register stages on a fabric port: flits forward, credits back.

    Credit flow control is latency-insensitive, so the sender's credits stay what the
    receiver buffers; the round trip only grows.
    """

    def __init__(self, fabric: FabricParams, latency: int):
        if latency < 1:
            raise ValueError(f"latency must be at least 1, not {latency!r}")
        self.fabric, self.latency = fabric, latency
        super().__init__({"inp": In(FabricLink(fabric)), "out": Out(FabricLink(fabric))})

    def elaborate(self, platform):
        m = Module()
        f = self.fabric
        fwd = Cat(self.inp.valid, self.inp.vc, self.inp.flit)
        back = self.out.credit
        for k in range(self.latency):
            nf = Signal(len(fwd), name=f"fwd{k}")
            nb = Signal(len(back), name=f"back{k}")
            m.d.sync += [nf.eq(fwd), nb.eq(back)]
            fwd, back = nf, nb
        fb = flit_layout(f).size
        m.d.comb += [
            self.out.valid.eq(fwd[0]),
            self.out.vc.eq(fwd[1 : 1 + f.vc_bits]),
            self.out.flit.eq(fwd[1 + f.vc_bits : 1 + f.vc_bits + fb]),
            self.inp.credit.eq(back),
        ]
        return m


class PhyDelay(wiring.Component):
    """A physical channel of ``latency`` register stages (never stalls, never loses)."""

    def __init__(self, width: int, latency: int):
        if latency < 1:
            raise ValueError(f"latency must be at least 1, not {latency!r}")
        self.width, self.latency = width, latency
        super().__init__({"inp": In(PhySignature(width)), "out": Out(PhySignature(width))})

    def elaborate(self, platform):
        m = Module()
        v, d = self.inp.valid, self.inp.data
        for k in range(self.latency):
            nv = Signal(name=f"valid{k}")
            nd = Signal(self.width, name=f"data{k}")
            m.d.sync += [nv.eq(v), nd.eq(d)]
            v, d = nv, nd
        m.d.comb += [self.out.valid.eq(v), self.out.data.eq(d)]
        return m


class LayeredLink(wiring.Component):
    """A fabric link through two link layers and a ``latency``-stage channel each way.

    Side ``s`` (``a`` or ``b``) attaches to a fabric port: ``s_in`` takes the flits it sends
    (it starts with ``credits[s]`` credits per VC, which a per-VC buffer of that depth backs)
    and ``s_out`` delivers the flits for it (into its buffer of ``depths[s]`` flits per VC).

    Ports
    -----
    a_in, b_in : In(FabricLink)
    a_out, b_out : Out(FabricLink)
    up : Out(1)
        Both link layers are up.
    """

    def __init__(
        self,
        params: LinkParams,
        *,
        latency: int,
        credits: tuple[int, int],
        depths: tuple[int, int],
    ):
        if latency < 1:
            raise ValueError(f"latency must be at least 1, not {latency!r}")
        self.params, self.latency = params, latency
        self.credits, self.depths = credits, depths
        f = params.fabric
        super().__init__(
            {
                "a_in": In(FabricLink(f)),
                "a_out": Out(FabricLink(f)),
                "b_in": In(FabricLink(f)),
                "b_out": Out(FabricLink(f)),
                "up": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        f = self.params.fabric
        layers = {}
        for k, side in enumerate("ab"):
            m.submodules[side] = layer = LinkLayer(self.params)
            layers[side] = layer
            m.submodules[f"{side}_tx"] = tx_buf = FabricToStreams(f, depth=self.credits[k])
            m.submodules[f"{side}_rx"] = rx_buf = StreamsToFabric(f, credits=self.depths[k])
            wiring.connect(m, wiring.flipped(getattr(self, f"{side}_in")), tx_buf.port)
            wiring.connect(m, rx_buf.port, wiring.flipped(getattr(self, f"{side}_out")))
            for v in range(f.vcs):
                wiring.connect(m, tx_buf.streams[v], layer.tx[v])
                wiring.connect(m, layer.rx[v], rx_buf.streams[v])
        for d in ("ab", "ba"):
            m.submodules[f"channel_{d}"] = channel = PhyDelay(self.params.link_bits, self.latency)
            wiring.connect(m, layers[d[0]].phy_tx, channel.inp)
            wiring.connect(m, channel.out, layers[d[1]].phy_rx)
        m.d.comb += self.up.eq(layers["a"].up & layers["b"].up)
        return m


class SuperNode(wiring.Component):
    """Any valid topology as one component (see the module docstring for the ports)."""

    def __init__(self, topology: Topology):
        if not isinstance(topology, Topology):
            raise TypeError(f"topology must be a Topology, not {type(topology).__name__}")
        self.topology = t = topology
        params, configs = t.switch_params(), t.switch_configs()
        self.switches = {s.name: Switch(params[s.name], configs[s.name]) for s in t.switches}
        self.endpoints = {n.id: Endpoint(t.endpoint_params(n.id)) for n in t.endpoints}
        self.home_nodes = tuple(n.id for n in t.homes)
        self.homes = {n: HomeAgent(t.home_params(n)) for n in self.home_nodes}
        self.layered_links = tuple(i for i, link in enumerate(t.links) if link.link_layer)
        members: dict = {}
        for node, ep in self.endpoints.items():
            members[f"ep{node}_axi"] = ep.signature.members["axi"]
            members[f"ep{node}_state"] = Out(state_change_layout)
            members[f"ep{node}_busy"] = Out(1)
        for j, node in enumerate(self.home_nodes):
            members[f"home{j}_mem"] = self.homes[node].signature.members["mem"]
            members[f"home{j}_busy"] = Out(1)
        members["xbar_error"] = Out(1)
        if self.layered_links:
            members["links_up"] = Out(len(self.layered_links))
        super().__init__(members)

    def fabric_probes(self) -> list[tuple[str, str, str, int]]:
        """``(label, probe prefix, switch, port)`` for both directions of every linked switch
        port. The top holds plain wires ``{prefix}_valid``, ``_vc``, ``_flit`` and ``_credit``
        with these values, so waveform viewers find them under stable names."""
        out = []
        t = self.topology
        for s in t.switches:
            for port, far in t.switch_ports(s.name).items():
                peer = far.short
                out.append(
                    (f"{s.name}.{port} from {peer}", f"fab_{s.name}_{port}_in", s.name, port)
                )
                out.append((f"{s.name}.{port} to {peer}", f"fab_{s.name}_{port}_out", s.name, port))
        return out

    def _terminal(self, term: Terminal):
        """(flits leaving the terminal, flits arriving at it, its credits out, its buffer)."""
        if term.switch is not None:
            sw = self.switches[term.switch]
            return (
                sw.outputs[term.port],
                sw.inputs[term.port],
                sw.params.downstream_depth,
                sw.params.buffer_depth,
            )
        agent = self.endpoints.get(term.node) or self.homes[term.node]
        return agent.fabric_out, agent.fabric_in, agent.params.tx_credits, agent.params.rx_depth

    def elaborate(self, platform):
        m = Module()
        t = self.topology
        f = t.fabric
        for name, sw in self.switches.items():
            m.submodules[f"sw_{name}"] = sw
        for node, ep in self.endpoints.items():
            m.submodules[f"ep{node}"] = ep
            wiring.connect(m, wiring.flipped(getattr(self, f"ep{node}_axi")), ep.axi)
            m.d.comb += [
                getattr(self, f"ep{node}_state").eq(ep.state_change),
                getattr(self, f"ep{node}_busy").eq(ep.mshr_busy.any() | ep.evict_busy.any()),
            ]
        for j, node in enumerate(self.home_nodes):
            home = self.homes[node]
            m.submodules[f"home{j}"] = home
            wiring.connect(m, home.mem, wiring.flipped(getattr(self, f"home{j}_mem")))
            m.d.comb += getattr(self, f"home{j}_busy").eq(home.busy)
        m.d.comb += self.xbar_error.eq(Cat(sw.xbar_error for sw in self.switches.values()).any())

        f_bits = flit_layout(f).size
        for _label, prefix, name, port in self.fabric_probes():
            sw = self.switches[name]
            link = sw.inputs[port] if prefix.endswith("_in") else sw.outputs[port]
            probes = {
                "valid": (1, link.valid),
                "vc": (f.vc_bits, link.vc),
                "flit": (f_bits, link.flit.as_value()),
                "credit": (f.vcs, link.credit),
            }
            for key, (width, value) in probes.items():
                probe = Signal(width, name=f"{prefix}_{key}")
                m.d.comb += probe.eq(value)

        ups = []
        for i, link in enumerate(t.links):
            out_a, in_a, credits_a, depth_a = self._terminal(link.a)
            out_b, in_b, credits_b, depth_b = self._terminal(link.b)
            if not link.link_layer:
                for d, src, dst in (("ab", out_a, in_b), ("ba", out_b, in_a)):
                    if link.latency == 0:
                        wiring.connect(m, src, dst)
                    else:
                        delay = FabricDelay(f, link.latency)
                        m.submodules[f"link{i}_{d}"] = delay
                        wiring.connect(m, src, delay.inp)
                        wiring.connect(m, delay.out, dst)
                continue
            layered = LayeredLink(
                link.link_params(f),
                latency=link.latency,
                credits=(credits_a, credits_b),
                depths=(depth_a, depth_b),
            )
            m.submodules[f"link{i}"] = layered
            wiring.connect(m, out_a, layered.a_in)
            wiring.connect(m, layered.a_out, in_a)
            wiring.connect(m, out_b, layered.b_in)
            wiring.connect(m, layered.b_out, in_b)
            ups.append(layered.up)
        if ups:
            m.d.comb += self.links_up.eq(Cat(ups))
        return m
