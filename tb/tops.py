"""Amaranth wrappers that turn RTL blocks into simulation tops with flat, packed bench ports.

Python callbacks per simulated cycle are the cost of a cocotb bench, so every per-VC stream
of the design is packed into one wide vector per direction: a bench reads or writes all VCs of
a port in one call. Nothing here imports cocotb.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from unifab.flit import flit_layout
from unifab.hdl.link.channel import LossyChannel
from unifab.hdl.link.layer import LINK_COUNTERS, LinkLayer
from unifab.params import LinkParams

__all__ = ["CHANNEL_CONFIG", "CHANNEL_COUNTERS", "LinkPairBench"]

#: Runtime settings of each lossy channel (one Verilator build serves every error rate).
CHANNEL_CONFIG = (
    "latency",
    "drop_thresh",
    "flip_thresh",
    "burst_enter_thresh",
    "burst_exit_thresh",
    "burst_flip_thresh",
    "stall_thresh",
    "stall_len",
    "seed",
    "seed_load",
)
CHANNEL_COUNTERS = ("flits_in", "flits_out", "dropped", "corrupted", "overflow", "stall_cycles")


class LinkPairBench(wiring.Component):
    """Two link layers, ``a`` and ``b``, joined by a lossy channel in each direction.

    Ports (``s`` is ``a`` or ``b``; ``d`` is ``ab`` or ``ba``)
    ---------------------------------------------------------
    s_rst : In(1)
        Resets side ``s``'s link layer alone (recovery tests).
    s_tx_valid, s_tx_data, s_tx_ready : In(vcs), In(vcs * flit_bits), Out(vcs)
        Flits to send from side ``s``, VC ``v`` at bits ``[v*flit_bits, (v+1)*flit_bits)``.
    s_rx_valid, s_rx_data, s_rx_ready : Out(vcs), Out(vcs * flit_bits), In(vcs)
        Flits received at side ``s``, packed the same way.
    s_up : Out(1)
        Side ``s`` considers the link up.
    s_<counter> : Out(32)
        The link layer's counters (:data:`LINK_COUNTERS`).
    d_<config> : In(...)
        The channel's runtime settings (:data:`CHANNEL_CONFIG`).
    d_<counter> : Out(32)
        The channel's counters (:data:`CHANNEL_COUNTERS`).
    """

    def __init__(self, params: LinkParams | None = None, *, max_latency: int = 64):
        self.params = params = params or LinkParams()
        self.max_latency = max_latency
        f = params.fabric
        self.flit_bits = flit_layout(f).size
        self._channels = {
            d: LossyChannel(width=params.link_bits, max_latency=max_latency) for d in ("ab", "ba")
        }
        members = {}
        for s in ("a", "b"):
            members[f"{s}_rst"] = In(1)
            members[f"{s}_tx_valid"] = In(f.vcs)
            members[f"{s}_tx_data"] = In(f.vcs * self.flit_bits)
            members[f"{s}_tx_ready"] = Out(f.vcs)
            members[f"{s}_rx_valid"] = Out(f.vcs)
            members[f"{s}_rx_data"] = Out(f.vcs * self.flit_bits)
            members[f"{s}_rx_ready"] = In(f.vcs)
            members[f"{s}_up"] = Out(1)
            members[f"{s}_credit_overflow"] = Out(1)
            for name in LINK_COUNTERS:
                members[f"{s}_{name}"] = Out(32)
        for d, channel in self._channels.items():
            for name in CHANNEL_CONFIG:
                members[f"{d}_{name}"] = In(channel.signature.members[name].shape)
            for name in CHANNEL_COUNTERS:
                members[f"{d}_{name}"] = Out(32)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        f = self.params.fabric
        fb = self.flit_bits
        layers = {}
        for s in ("a", "b"):
            layer = ResetInserter(getattr(self, f"{s}_rst"))(LinkLayer(self.params))
            m.submodules[f"link_{s}"] = layer
            layers[s] = layer
            for v in range(f.vcs):
                tx, rx = layer.tx[v], layer.rx[v]
                m.d.comb += [
                    tx.valid.eq(getattr(self, f"{s}_tx_valid")[v]),
                    tx.payload.eq(getattr(self, f"{s}_tx_data")[v * fb : (v + 1) * fb]),
                    getattr(self, f"{s}_tx_ready")[v].eq(tx.ready),
                    getattr(self, f"{s}_rx_valid")[v].eq(rx.valid),
                    getattr(self, f"{s}_rx_data")[v * fb : (v + 1) * fb].eq(rx.payload),
                    rx.ready.eq(getattr(self, f"{s}_rx_ready")[v]),
                ]
            m.d.comb += [
                getattr(self, f"{s}_up").eq(layer.up),
                getattr(self, f"{s}_credit_overflow").eq(layer.credit_overflow),
            ]
            for name in LINK_COUNTERS:
                m.d.comb += getattr(self, f"{s}_{name}").eq(getattr(layer, name))
        for d, channel in self._channels.items():
            m.submodules[f"channel_{d}"] = channel
            src, dst = layers[d[0]], layers[d[1]]
            m.d.comb += [
                channel.tx_in.valid.eq(src.phy_tx.valid),
                channel.tx_in.payload.eq(src.phy_tx.data),
                dst.phy_rx.valid.eq(channel.rx_out.valid),
                dst.phy_rx.data.eq(channel.rx_out.payload),
            ]
            for name in CHANNEL_CONFIG:
                m.d.comb += getattr(channel, name).eq(getattr(self, f"{d}_{name}"))
            for name in CHANNEL_COUNTERS:
                m.d.comb += getattr(self, f"{d}_{name}").eq(getattr(channel, name))
        return m
