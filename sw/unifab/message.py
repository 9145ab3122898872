"""Message semantics: the RDMA-style engine's modelled steps and their documented costs.

The design brief's message path has five steps: (1) copy the data out of device memory into
a buffer the NIC can reach, (2) encapsulate it into packets with headers, posted through a
work-queue entry and a doorbell, (3) switch the packets to the target, (4) decapsulate, (5)
write the data at the target and report completion. In the workload bench
(:mod:`unifab.tb.supernode_bench`) the *switching and the access at the target memory are
RTL*: the payload crosses the simulated fabric through the requester's endpoint as
non-cacheable AXI accesses, exactly the accesses memory semantics makes, and the home agent
reads or writes the pooled memory. Everything a NIC and PCIe add around that is *modelled*:
:class:`MessageCosts` holds each step's cost as a parameter, with its source, and
:func:`read_steps` / :func:`write_steps` lay them out in time around the RTL part.

Costs are in nanoseconds and become cycles at ``clock_ghz`` (the fabric clock an ASIC
implementation would run at; the RTL's cycles are the same at any clock, so the ratio between
modes depends on it: see :func:`MessageCosts.cycles`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

__all__ = [
    "COST_SOURCES",
    "MessageCosts",
    "Step",
    "completion_steps",
    "read_steps",
    "write_steps",
]


@dataclass(frozen=True, kw_only=True)
class MessageCosts:
    """Costs of the modelled steps of one RDMA-style transfer (ns, bytes, GB/s).

    See :data:`COST_SOURCES` for where each default comes from.
    """

    clock_ghz: float = 1.0
    doorbell_ns: float = 250.0
    wqe_fetch_ns: float = 500.0
    dma_read_ns: float = 500.0
    dma_write_ns: float = 250.0
    pcie_gbytes_per_s: float = 25.0
    nic_tx_ns: float = 50.0
    nic_rx_ns: float = 50.0
    responder_ns: float = 100.0
    completion_ns: float = 250.0
    poll_ns: float = 50.0
    mtu: int = 4096
    header_bytes: int = 78
    wire_bytes_per_cycle: int = 16

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
                raise ValueError(f"message cost {f.name} must be a non-negative number, not {v!r}")
        for name in ("clock_ghz", "pcie_gbytes_per_s", "mtu", "wire_bytes_per_cycle"):
            if getattr(self, name) <= 0:
                raise ValueError(
                    f"message cost {name} must be positive, not {getattr(self, name)!r}"
                )

    def cycles(self, ns: float) -> int:
        """``ns`` nanoseconds in fabric cycles at ``clock_ghz`` (rounded up)."""
        return math.ceil(ns * self.clock_ghz - 1e-9)

    def pcie_cycles(self, nbytes: int) -> int:
        """Time to move ``nbytes`` across PCIe at ``pcie_gbytes_per_s`` (GB/s = bytes/ns)."""
        return self.cycles(nbytes / self.pcie_gbytes_per_s)

    def packets(self, nbytes: int) -> list[int]:
        """Payload bytes of each packet of an ``nbytes`` message."""
        full, rest = divmod(nbytes, self.mtu)
        return [self.mtu] * full + ([rest] if rest else [])

    def header_cycles(self) -> int:
        """Wire time of one packet's headers (they are not sent through the RTL)."""
        return math.ceil(self.header_bytes / self.wire_bytes_per_cycle)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_overrides(cls, text: str) -> MessageCosts:
        """``"name=value,name=value"`` over the defaults (the CLI's ``--cost``)."""
        values: dict[str, float] = {}
        names = {f.name: f.type for f in fields(cls)}
        for item in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = item.partition("=")
            if not sep or name not in names:
                raise ValueError(
                    f"message cost {item!r}: expected name=value with name one of "
                    f"{', '.join(names)}"
                )
            try:
                values[name] = int(value) if names[name] in (int, "int") else float(value)
            except ValueError:
                raise ValueError(f"message cost {name}: {value!r} is not a number") from None
        return cls(**values)


COST_SOURCES: dict[str, str] = {
    "clock_ghz": "assumed fabric clock of an ASIC implementation (1 GHz); the FPGA build runs "
    "the same RTL at about 23 MHz (docs/fpga.md)",
    "doorbell_ns": "step 2: the CPU's MMIO doorbell write reaching the NIC; a posted PCIe write, "
    "taken as half of the ~0.5 us PCIe round trip measured by Neugebauer et al., "
    "'Understanding PCIe performance for end host networking', SIGCOMM 2018",
    "wqe_fetch_ns": "step 2: the NIC DMA-reads the work-queue entry after the doorbell (the "
    "sequence described by Kalia et al., 'Design Guidelines for High Performance RDMA "
    "Systems', USENIX ATC 2016); one PCIe round trip, ~0.5 us (Neugebauer et al. 2018)",
    "dma_read_ns": "step 1: latency of the NIC's DMA read of the payload out of device memory "
    "(a PCIe round trip, ~0.5 us, Neugebauer et al. 2018)",
    "dma_write_ns": "step 5 at a receiving device: the NIC's posted DMA write into device memory "
    "becoming visible (half a PCIe round trip)",
    "pcie_gbytes_per_s": "PCIe 4.0 x16: 31.5 GB/s raw, ~25 GB/s after TLP overheads",
    "nic_tx_ns": "step 2: NIC transmit pipeline per packet (header build, segmentation); "
    "assumed order of magnitude of one NIC pipeline pass, no single published figure",
    "nic_rx_ns": "step 4: NIC receive pipeline per packet (parse, strip headers, find the "
    "queue); assumed like nic_tx_ns",
    "responder_ns": "the target NIC turning an RDMA READ request into a response (queue "
    "lookup, protection check); assumed",
    "completion_ns": "step 5: the NIC's DMA write of a completion-queue entry (posted PCIe "
    "write, half a round trip)",
    "poll_ns": "the CPU noticing the completion entry while polling (one cache miss on a "
    "line the NIC wrote); assumed",
    "mtu": "RoCE v2 path MTU of 4096 bytes",
    "header_bytes": "RoCE v2 headers per packet: Ethernet 14 + IPv4 20 + UDP 8 + BTH 12 + "
    "RETH 16 + ICRC 4 + FCS 4",
    "wire_bytes_per_cycle": "one 128-bit flit per cycle on a fabric link (FabricParams)",
}


@dataclass(frozen=True)
class Step:
    """One modelled step of a transfer, ``cycles`` long (the RTL part is measured, not a
    step)."""

    name: str
    cycles: int


def read_steps(c: MessageCosts, nbytes: int) -> tuple[list[Step], list[Step]]:
    """Modelled steps of an RDMA READ of ``nbytes`` from pooled memory into device memory:
    ``(before, after)`` the RTL read. ``after`` is per packet (pipelined behind each packet's
    RTL completion, see the bench); its PCIe time grows with the packet size."""
    packets = len(c.packets(nbytes))
    before = [
        Step("doorbell (MMIO write)", c.cycles(c.doorbell_ns)),
        Step("WQE fetch (DMA read)", c.cycles(c.wqe_fetch_ns)),
        Step("encapsulate request (NIC tx)", c.cycles(c.nic_tx_ns)),
        Step("request headers on the wire", c.header_cycles()),
        Step("decapsulate request (target NIC rx)", c.cycles(c.nic_rx_ns)),
        Step("READ responder", c.cycles(c.responder_ns)),
        Step("encapsulate response (target NIC tx)", c.cycles(c.nic_tx_ns)),
        Step("response headers on the wire", c.header_cycles() * packets),
    ]
    after = [
        Step("decapsulate response (NIC rx)", c.cycles(c.nic_rx_ns)),
        Step("DMA write into device memory", c.cycles(c.dma_write_ns)),
    ]
    return before, after


def write_steps(c: MessageCosts, nbytes: int) -> tuple[list[Step], list[Step]]:
    """Modelled steps of an RDMA WRITE of ``nbytes`` from device memory into pooled memory:
    ``(before, after)`` the RTL writes. Each packet's payload is DMA-read out of device memory
    (pipelined at PCIe bandwidth) before its RTL write starts; ``after`` is the ACK and the
    completion once the last write is done (the last write's AXI response, which crosses the
    fabric back, is the RTL part of the ACK)."""
    before = [
        Step("doorbell (MMIO write)", c.cycles(c.doorbell_ns)),
        Step("WQE fetch (DMA read)", c.cycles(c.wqe_fetch_ns)),
        Step("copy out of device memory (DMA read latency)", c.cycles(c.dma_read_ns)),
        Step("encapsulate (NIC tx)", c.cycles(c.nic_tx_ns)),
        Step("headers on the wire", c.header_cycles()),
        Step("decapsulate (target NIC rx)", c.cycles(c.nic_rx_ns)),
    ]
    after = [
        Step("ACK (target NIC tx)", c.cycles(c.nic_tx_ns)),
        Step("ACK (NIC rx)", c.cycles(c.nic_rx_ns)),
    ]
    return before, after


def completion_steps(c: MessageCosts) -> list[Step]:
    """The completion every transfer ends with."""
    return [
        Step("completion entry (DMA write)", c.cycles(c.completion_ns)),
        Step("poll sees the completion", c.cycles(c.poll_ns)),
    ]
