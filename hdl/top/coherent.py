"""A one-switch coherent system: caching endpoints and home agents around one switch.

Endpoint ``i`` (node ``i``) sits on switch port ``i``; home ``j`` (node ``16 + j``) on port
``endpoints + j``. Requests are decoded by address at the endpoints' ports (one range over the
window, interleaved over the homes every ``granularity`` bytes); everything else travels by
node ID. The agents attach to the switch directly (no link layer).

Ports (Verilog names in parentheses; cocotbext-axi attaches with
``AxiBus.from_prefix(dut, "ep0_axi_")``)
-----
ep{i}_axi : In(Axi4Signature)  (``ep{i}_axi__awaddr`` ... ``ep{i}_axi__rlast``)
    Endpoint ``i``'s AXI4 subordinate port: loads, stores and atomics (``awuser``/``buser``,
    docs/coherence.md section 4) to global addresses.
home{j}_mem : Out(Axi4Signature)  (``home{j}_mem__awaddr`` ...)
    Home ``j``'s AXI4 manager port to its memory (AXI address = global address - base).
ep{i}_state : Out(state_change_layout)
    Endpoint ``i``'s line-state events (for the coherence checkers).
ep{i}_busy, home{j}_busy : Out(1)
    The agent has a transaction outstanding (MSHR, eviction, table entry, engine busy).
xbar_error : Out(1)
    The switch crossbar's one-hot check failed.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from unifab.coherence.params import SystemParams
from unifab.hdl.coherence.home import HomeAgent
from unifab.hdl.endpoint import Endpoint, state_change_layout
from unifab.hdl.switch.switch import Switch
from unifab.switch_config import AddressRange, SwitchConfig

__all__ = ["CoherentSystem", "switch_config"]


def switch_config(params: SystemParams) -> SwitchConfig:
    """The switch tables of a :class:`CoherentSystem`."""
    homes = tuple(params.home_node(j) for j in range(params.homes))
    routes = {i: i for i in range(params.endpoints)}
    routes |= {params.home_node(j): params.endpoints + j for j in range(params.homes)}
    return SwitchConfig(
        node_id=0xF0,
        routes=routes,
        edge_ports=frozenset(range(params.endpoints)),
        ranges=(
            AddressRange(
                base=params.base, size=params.size, targets=homes, granularity=params.granularity
            ),
        ),
    )


class CoherentSystem(wiring.Component):
    """Endpoints, homes and one switch (see the module docstring for the ports)."""

    def __init__(self, params: SystemParams):
        if not isinstance(params, SystemParams):
            raise TypeError(f"params must be SystemParams, not {type(params).__name__}")
        self.params = params
        self.switch = Switch(params.switch_params(), switch_config(params))
        self.endpoints = [Endpoint(params.endpoint_params(i)) for i in range(params.endpoints)]
        self.homes = [HomeAgent(params.home_params(j)) for j in range(params.homes)]
        members: dict = {}
        for i, ep in enumerate(self.endpoints):
            members[f"ep{i}_axi"] = ep.signature.members["axi"]
            members[f"ep{i}_state"] = Out(state_change_layout)
            members[f"ep{i}_busy"] = Out(1)
        for j, home in enumerate(self.homes):
            members[f"home{j}_mem"] = home.signature.members["mem"]
            members[f"home{j}_busy"] = Out(1)
        members["xbar_error"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.switch = sw = self.switch
        for i, ep in enumerate(self.endpoints):
            m.submodules[f"ep{i}"] = ep
            wiring.connect(m, ep.fabric_out, sw.inputs[i])
            wiring.connect(m, sw.outputs[i], ep.fabric_in)
            wiring.connect(m, wiring.flipped(getattr(self, f"ep{i}_axi")), ep.axi)
            m.d.comb += [
                getattr(self, f"ep{i}_state").eq(ep.state_change),
                getattr(self, f"ep{i}_busy").eq(ep.mshr_busy.any() | ep.evict_busy.any()),
            ]
        for j, home in enumerate(self.homes):
            port = self.params.endpoints + j
            m.submodules[f"home{j}"] = home
            wiring.connect(m, home.fabric_out, sw.inputs[port])
            wiring.connect(m, sw.outputs[port], home.fabric_in)
            wiring.connect(m, home.mem, wiring.flipped(getattr(self, f"home{j}_mem")))
            m.d.comb += getattr(self, f"home{j}_busy").eq(home.busy)
        m.d.comb += self.xbar_error.eq(sw.xbar_error)
        return m
