"""Switch parameters (sizes, fixed at elaboration) and switch configuration (table contents).

:class:`SwitchParams` says how big a switch is; :class:`SwitchConfig` says what its tables
hold: the global address map (ranges with interleave, like CXL HDM decoders), the access
table, the node → output-port table and which ports are *edge* ports (attached to endpoints,
where requests are routed by address). Both are frozen dataclasses with validated keyword-only
fields; a configuration elaborates into the RTL's reset values and into the register writes
that reprogram a running switch (``docs/switch.md`` has the register map).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from unifab.flit import ADDR_BITS, NODE_BITS, FabricParams, Opcode
from unifab.params import check_flag

__all__ = [
    "ALLOCATORS",
    "SWITCH_PRESETS",
    "AccessKind",
    "AccessRule",
    "AddressRange",
    "SwitchConfig",
    "SwitchParams",
    "access_kind",
]

ALLOCATORS = ("islip", "wavefront", "fifo")
INTERLEAVE_WAYS = (1, 2, 4, 8)
GRANULARITIES = (256, 512, 1024, 2048, 4096)


@dataclass(frozen=True, kw_only=True)
class SwitchParams:
    """Sizes of one switch.

    ``ports`` fabric ports, each with ``fabric.vcs`` virtual channels; ``buffer_depth`` flits
    of input buffer per VC (the credits each upstream sender starts with); ``downstream_depth``
    credits per VC each output starts with; ``allocator`` is ``islip`` (virtual output queues
    with separable iSLIP allocation, ``islip_iterations`` rounds), ``wavefront`` (virtual
    output queues, wavefront allocation) or ``fifo`` (one FIFO per VC: the head-of-line-blocked
    reference); ``ranges`` and ``rules`` size the address decoder and the access table.
    ``registered_grant`` registers the allocator's matching and moves the queue read and the
    crossbar to the next cycle: port to port takes 3 cycles instead of 2 at zero load, with the
    same throughput, and allocation and traversal become separate timing paths (for FPGA
    clock rates). ``registered_route`` registers each arriving flit after route compute and
    queues it the next cycle (one more cycle port to port; route compute and the queue write
    become separate timing paths).
    """

    fabric: FabricParams = field(default_factory=FabricParams)
    ports: int = 8
    buffer_depth: int = 64
    downstream_depth: int = 4
    allocator: str = "islip"
    islip_iterations: int = 3
    ranges: int = 8
    rules: int = 8
    registered_grant: bool = False
    registered_route: bool = False

    def __post_init__(self) -> None:
        if not 2 <= self.ports <= 16:
            raise ValueError(f"ports must be 2..16, not {self.ports!r}")
        if not 2 <= self.buffer_depth <= 256:
            raise ValueError(f"buffer_depth must be 2..256, not {self.buffer_depth!r}")
        if not 1 <= self.downstream_depth <= 4096:
            raise ValueError(f"downstream_depth must be 1..4096, not {self.downstream_depth!r}")
        if self.allocator not in ALLOCATORS:
            raise ValueError(
                f"allocator must be one of {', '.join(ALLOCATORS)}, not {self.allocator!r}"
            )
        if not 1 <= self.islip_iterations <= 4:
            raise ValueError(f"islip_iterations must be 1..4, not {self.islip_iterations!r}")
        if not 1 <= self.ranges <= 64:
            raise ValueError(f"ranges must be 1..64, not {self.ranges!r}")
        if not 1 <= self.rules <= 64:
            raise ValueError(f"rules must be 1..64, not {self.rules!r}")
        for name in ("registered_grant", "registered_route"):
            check_flag(name, getattr(self, name))

    @property
    def vcs(self) -> int:
        return self.fabric.vcs


class AccessKind:
    """What a request does to memory, as the access table sees it."""

    NONE = 0  # not checked (clean evictions, non-requests)
    READ = 1
    WRITE = 2
    ATOMIC = 3


_ACCESS_KIND = {
    Opcode.READ_SHARED: AccessKind.READ,
    Opcode.NC_READ: AccessKind.READ,
    Opcode.READ_UNIQUE: AccessKind.WRITE,  # ownership is write intent
    Opcode.UPGRADE: AccessKind.WRITE,
    Opcode.WRITE_BACK: AccessKind.WRITE,
    Opcode.NC_WRITE: AccessKind.WRITE,
    Opcode.CLEAN_EVICT: AccessKind.NONE,
}


def access_kind(opcode: Opcode) -> int:
    """The :class:`AccessKind` of a request opcode (atomics are ATOMIC)."""
    if Opcode.ATOMIC_ADD.value <= opcode.value <= Opcode.ATOMIC_MAX.value:
        return AccessKind.ATOMIC
    return _ACCESS_KIND.get(opcode, AccessKind.NONE)


def _check_window(what: str, base: int, size: int) -> None:
    if not isinstance(base, int) or base < 0:
        raise ValueError(f"{what}: base must be a non-negative integer, not {base!r}")
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"{what}: size must be a positive integer, not {size!r}")
    if base + size > 1 << ADDR_BITS:
        raise ValueError(
            f"{what}: {base:#x} + {size:#x} runs past the {ADDR_BITS}-bit global address space"
        )


@dataclass(frozen=True, kw_only=True)
class AddressRange:
    """A window of the global address space served by one node or an interleave set.

    With ``n = len(targets)`` ways, the line at ``addr`` belongs to
    ``targets[(addr // granularity) % n]`` (address bits select the way, as in CXL HDM
    decoders), so ``base`` and ``size`` must be multiples of ``granularity * n``.
    """

    base: int
    size: int
    targets: tuple[int, ...]
    granularity: int = 4096

    def __post_init__(self) -> None:
        what = f"range {self.base:#x}+{self.size:#x}" if isinstance(self.base, int) else "range"
        _check_window(what, self.base, self.size)
        if len(self.targets) not in INTERLEAVE_WAYS:
            raise ValueError(f"{what}: interleave over 1, 2, 4 or 8 nodes, not {len(self.targets)}")
        for t in self.targets:
            if not isinstance(t, int) or not 0 <= t < 1 << NODE_BITS:
                raise ValueError(f"{what}: target node {t!r} is not a {NODE_BITS}-bit node ID")
        if self.granularity not in GRANULARITIES:
            raise ValueError(
                f"{what}: granularity must be one of {GRANULARITIES} bytes, "
                f"not {self.granularity!r}"
            )
        unit = self.granularity * len(self.targets)
        if self.base % unit or self.size % unit:
            raise ValueError(
                f"{what}: base and size must be multiples of granularity x ways = {unit:#x}"
            )

    def contains(self, addr: int) -> bool:
        return self.base <= addr < self.base + self.size

    def target(self, addr: int) -> int:
        """The node that owns ``addr`` (which must be inside the range)."""
        return self.targets[(addr // self.granularity) % len(self.targets)]


@dataclass(frozen=True, kw_only=True)
class AccessRule:
    """Which accesses sources ``src_lo..src_hi`` may make to ``[base, base + size)``."""

    src_lo: int
    src_hi: int
    base: int
    size: int
    read: bool = True
    write: bool = True
    atomic: bool = True

    def __post_init__(self) -> None:
        what = f"access rule {self.src_lo}..{self.src_hi}"
        for n in (self.src_lo, self.src_hi):
            if not isinstance(n, int) or not 0 <= n < 1 << NODE_BITS:
                raise ValueError(f"{what}: {n!r} is not a {NODE_BITS}-bit node ID")
        if self.src_lo > self.src_hi:
            raise ValueError(f"{what}: src_lo must not exceed src_hi")
        _check_window(what, self.base, self.size)

    def matches(self, src: int, addr: int) -> bool:
        return self.src_lo <= src <= self.src_hi and self.base <= addr < self.base + self.size

    def allows(self, kind: int) -> bool:
        return {
            AccessKind.NONE: True,
            AccessKind.READ: self.read,
            AccessKind.WRITE: self.write,
            AccessKind.ATOMIC: self.atomic,
        }[kind]


@dataclass(frozen=True, kw_only=True)
class SwitchConfig:
    """Table contents of one switch.

    ``node_id`` is the switch's own node ID (the source of the error responses it sends);
    ``routes`` maps destination node IDs to output ports (a node missing here is
    unreachable); ``edge_ports`` are the ports where requests are routed by address;
    ``ranges`` is the global address map; ``rules`` the access table, first match wins, and
    ``default_allow`` what happens when no rule matches.
    """

    node_id: int = 0xFF
    routes: Mapping[int, int] = field(default_factory=dict)
    edge_ports: frozenset[int] = frozenset()
    ranges: tuple[AddressRange, ...] = ()
    rules: tuple[AccessRule, ...] = ()
    default_allow: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, int) or not 0 <= self.node_id < 1 << NODE_BITS:
            raise ValueError(f"node_id {self.node_id!r} is not a {NODE_BITS}-bit node ID")
        for node, port in self.routes.items():
            if not isinstance(node, int) or not 0 <= node < 1 << NODE_BITS:
                raise ValueError(f"routes: {node!r} is not a {NODE_BITS}-bit node ID")
            if not isinstance(port, int) or not 0 <= port < 16:
                raise ValueError(f"routes: node {node} -> port {port!r} is not a port number")
        object.__setattr__(self, "routes", MappingProxyType(dict(self.routes)))
        object.__setattr__(self, "edge_ports", frozenset(self.edge_ports))
        object.__setattr__(self, "ranges", tuple(self.ranges))
        object.__setattr__(self, "rules", tuple(self.rules))
        for i, a in enumerate(self.ranges):
            for b in self.ranges[i + 1 :]:
                if a.base < b.base + b.size and b.base < a.base + a.size:
                    raise ValueError(
                        f"address ranges {a.base:#x}+{a.size:#x} and {b.base:#x}+{b.size:#x} "
                        "overlap"
                    )

    def check_fits(self, params: SwitchParams) -> None:
        """Raise if these tables do not fit a switch of ``params``."""
        if len(self.ranges) > params.ranges:
            raise ValueError(f"{len(self.ranges)} address ranges, the switch has {params.ranges}")
        if len(self.rules) > params.rules:
            raise ValueError(f"{len(self.rules)} access rules, the switch has {params.rules}")
        for node, port in self.routes.items():
            if port >= params.ports:
                raise ValueError(
                    f"routes: node {node} -> port {port}, the switch has {params.ports} ports"
                )
        for p in self.edge_ports:
            if not 0 <= p < params.ports:
                raise ValueError(f"edge port {p} does not exist ({params.ports} ports)")

    def decode(self, addr: int) -> int | None:
        """The node owning ``addr``, or None when no range holds it."""
        for r in self.ranges:
            if r.contains(addr):
                return r.target(addr)
        return None

    def allowed(self, src: int, addr: int, kind: int) -> bool:
        """May ``src`` make an access of ``kind`` at ``addr``?"""
        if kind == AccessKind.NONE:
            return True
        for rule in self.rules:
            if rule.matches(src, addr):
                return rule.allows(kind)
        return self.default_allow


SWITCH_PRESETS: dict[str, SwitchParams] = {
    "small": SwitchParams(ports=4, buffer_depth=8, islip_iterations=1),
    "default": SwitchParams(ports=8),
    "large": SwitchParams(ports=16),
    "fifo-reference": SwitchParams(ports=8, allocator="fifo"),
}
