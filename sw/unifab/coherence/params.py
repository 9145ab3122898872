"""User parameters of the home agent and the caching endpoint (frozen, validated)."""

from dataclasses import dataclass, field

from unifab.flit import ADDR_BITS, LINE_BYTES, NODE_BITS, FabricParams
from unifab.params import check_flag
from unifab.switch_config import SwitchParams

__all__ = [
    "SYSTEM_PRESETS",
    "AddressWindow",
    "CacheParams",
    "EndpointParams",
    "HomeParams",
    "SystemParams",
]


def _pow2(value: int) -> bool:
    return isinstance(value, int) and value > 0 and value & (value - 1) == 0


def _check_node(what: str, node: object) -> None:
    if not isinstance(node, int) or not 0 <= node < 1 << NODE_BITS:
        raise ValueError(f"{what} must be a {NODE_BITS}-bit node ID, not {node!r}")


@dataclass(frozen=True, kw_only=True)
class AddressWindow:
    """``[base, base + size)`` of the global address space, line aligned."""

    base: int
    size: int

    def __post_init__(self) -> None:
        if not isinstance(self.base, int) or not 0 <= self.base < 1 << ADDR_BITS:
            raise ValueError(f"window base {self.base!r} is not a {ADDR_BITS}-bit address")
        if not isinstance(self.size, int) or self.size < LINE_BYTES:
            raise ValueError(f"window size {self.size!r} is smaller than a line ({LINE_BYTES} B)")
        if self.base % LINE_BYTES or self.size % LINE_BYTES:
            raise ValueError(
                f"window [{self.base:#x}, +{self.size:#x}) is not aligned to {LINE_BYTES} B lines"
            )
        if self.base + self.size > 1 << ADDR_BITS:
            raise ValueError(
                f"window [{self.base:#x}, +{self.size:#x}) ends past the address space"
            )

    @property
    def end(self) -> int:
        return self.base + self.size

    def __contains__(self, addr: int) -> bool:
        return self.base <= addr < self.end


@dataclass(frozen=True, kw_only=True)
class HomeParams:
    """A home agent: its node, window, directory, transaction table and ports.

    ``dir_sets`` x ``dir_ways`` directory entries (a line needs one while cached);
    ``table_entries`` transactions awaiting ``COMP_ACK`` at once; ``max_sharers`` caching
    agents (node IDs ``0 .. max_sharers - 1``); ``rx_depth`` flits buffered per VC at the
    fabric input (the sender's credits); ``tx_credits`` the receiver's buffer per VC at the
    fabric output; ``mem_addr_width`` the AXI address width of the memory port;
    ``registered_rx`` reads the fabric input through a register (one more cycle, shorter
    paths: :class:`~unifab.hdl.lib.port.FabricToStreams`).
    """

    fabric: FabricParams = field(default_factory=FabricParams)
    node_id: int
    window: AddressWindow
    dir_sets: int = 64
    dir_ways: int = 4
    table_entries: int = 8
    max_sharers: int = 16
    rx_depth: int = 4
    tx_credits: int = 4
    axi_id_width: int = 4
    registered_rx: bool = False

    def __post_init__(self) -> None:
        _check_node("node_id", self.node_id)
        check_flag("registered_rx", self.registered_rx)
        if not isinstance(self.window, AddressWindow):
            raise TypeError(f"window must be an AddressWindow, not {type(self.window).__name__}")
        if not _pow2(self.dir_sets):
            raise ValueError(f"dir_sets must be a power of two, not {self.dir_sets!r}")
        if not isinstance(self.dir_ways, int) or not 1 <= self.dir_ways <= 16:
            raise ValueError(f"dir_ways must be 1..16, not {self.dir_ways!r}")
        if not isinstance(self.table_entries, int) or not 1 <= self.table_entries <= 64:
            raise ValueError(f"table_entries must be 1..64, not {self.table_entries!r}")
        if self.max_sharers not in (2, 4, 8, 16, 32, 64):
            raise ValueError(f"max_sharers must be 2, 4, 8, 16, 32 or 64, not {self.max_sharers!r}")
        for name in ("rx_depth", "tx_credits"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 64:
                raise ValueError(f"{name} must be 1..64, not {value!r}")

    @property
    def mem_addr_width(self) -> int:
        return max(12, (self.window.size - 1).bit_length())

    @property
    def dir_entries(self) -> int:
        return self.dir_sets * self.dir_ways


@dataclass(frozen=True, kw_only=True)
class CacheParams:
    """A set-associative write-back MESI cache of 64-byte lines."""

    sets: int = 16
    ways: int = 2

    def __post_init__(self) -> None:
        if not _pow2(self.sets):
            raise ValueError(f"cache sets must be a power of two, not {self.sets!r}")
        if not isinstance(self.ways, int) or not 1 <= self.ways <= 8:
            raise ValueError(f"cache ways must be 1..8, not {self.ways!r}")

    @property
    def lines(self) -> int:
        return self.sets * self.ways


@dataclass(frozen=True, kw_only=True)
class EndpointParams:
    """A caching endpoint: its node, optional cache, MSHRs, non-cacheable ranges and ports.

    ``cache=None`` makes every access non-coherent (``NC_READ``/``NC_WRITE``);
    ``registered_rx`` reads the fabric input through a register (as :class:`HomeParams`).
    """

    fabric: FabricParams = field(default_factory=FabricParams)
    node_id: int
    cache: CacheParams | None = field(default_factory=CacheParams)
    mshrs: int = 4
    noncacheable: tuple[AddressWindow, ...] = ()
    rx_depth: int = 4
    tx_credits: int = 4
    axi_id_width: int = 4
    registered_rx: bool = False

    def __post_init__(self) -> None:
        _check_node("node_id", self.node_id)
        check_flag("registered_rx", self.registered_rx)
        if self.cache is not None and not isinstance(self.cache, CacheParams):
            raise TypeError(f"cache must be CacheParams or None, not {type(self.cache).__name__}")
        if not isinstance(self.mshrs, int) or not 1 <= self.mshrs <= 16:
            raise ValueError(f"mshrs must be 1..16, not {self.mshrs!r}")
        object.__setattr__(self, "noncacheable", tuple(self.noncacheable))
        for w in self.noncacheable:
            if not isinstance(w, AddressWindow):
                raise TypeError(f"noncacheable entries must be AddressWindow, not {w!r}")
        for name in ("rx_depth", "tx_credits"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 64:
                raise ValueError(f"{name} must be 1..64, not {value!r}")

    def cacheable(self, addr: int) -> bool:
        return self.cache is not None and not any(addr in w for w in self.noncacheable)


FIRST_HOME_NODE = 16


@dataclass(frozen=True, kw_only=True)
class SystemParams:
    """A one-switch coherent system: ``endpoints`` caching endpoints (node IDs 0..E-1, switch
    ports 0..E-1) and ``homes`` home agents (node IDs 16.., the next switch ports), the
    window ``[base, base + size)`` interleaved over the homes every ``granularity`` bytes.

    ``noncacheable`` windows are the same for every endpoint. Home ``j`` serves the whole
    window's AXI address space (``addr - base``), of which it receives every ``homes``-th
    granule. ``switch_*`` are the switch's options (:class:`~unifab.switch_config.SwitchParams`);
    ``agent_registered_rx`` gives every endpoint and home a registered fabric input.
    """

    fabric: FabricParams = field(default_factory=FabricParams)
    endpoints: int = 4
    homes: int = 2
    base: int = 0x1_0000_0000
    size: int = 0x1_0000
    granularity: int = 256
    cache: CacheParams | None = field(default_factory=lambda: CacheParams(sets=16, ways=2))
    mshrs: int = 4
    noncacheable: tuple[AddressWindow, ...] = ()
    dir_sets: int = 16
    dir_ways: int = 4
    table_entries: int = 4
    switch_buffer_depth: int = 8
    agent_rx_depth: int = 4
    switch_islip_iterations: int = 3
    switch_registered_grant: bool = False
    switch_registered_route: bool = False
    agent_registered_rx: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.endpoints, int) or not 1 <= self.endpoints <= 14:
            raise ValueError(f"endpoints must be 1..14, not {self.endpoints!r}")
        if self.homes not in (1, 2, 4, 8):
            raise ValueError(f"homes must be 1, 2, 4 or 8 (an interleave set), not {self.homes!r}")
        if self.endpoints + self.homes > 16:
            raise ValueError(
                f"{self.endpoints} endpoints + {self.homes} homes need more than 16 switch ports"
            )
        if self.switch_islip_iterations not in (1, 2, 3, 4):
            raise ValueError(
                f"switch_islip_iterations must be 1..4, not {self.switch_islip_iterations!r}"
            )
        for name in ("switch_registered_grant", "switch_registered_route", "agent_registered_rx"):
            check_flag(name, getattr(self, name))
        AddressWindow(base=self.base, size=self.size)  # validates alignment
        if self.granularity not in (256, 512, 1024, 2048, 4096):
            raise ValueError(f"granularity must be 256..4096 bytes, not {self.granularity!r}")
        if self.size % (self.granularity * self.homes):
            raise ValueError(
                f"size {self.size:#x} is not a multiple of granularity x homes"
                f" = {self.granularity * self.homes:#x}"
            )
        object.__setattr__(self, "noncacheable", tuple(self.noncacheable))

    @property
    def ports(self) -> int:
        return max(2, self.endpoints + self.homes)

    @property
    def window(self) -> AddressWindow:
        return AddressWindow(base=self.base, size=self.size)

    def home_node(self, j: int) -> int:
        return FIRST_HOME_NODE + j

    def home_of(self, addr: int) -> int:
        """The home node of a global address (the switch's interleave decode)."""
        return self.home_node((addr - self.base) // self.granularity % self.homes)

    def switch_params(self) -> SwitchParams:
        """The switch joining the agents: one port per agent, one address range, no rules."""
        return SwitchParams(
            fabric=self.fabric,
            ports=self.ports,
            buffer_depth=self.switch_buffer_depth,
            downstream_depth=self.agent_rx_depth,
            islip_iterations=self.switch_islip_iterations,
            registered_grant=self.switch_registered_grant,
            registered_route=self.switch_registered_route,
            ranges=1,
            rules=1,
        )

    def endpoint_params(self, i: int) -> EndpointParams:
        return EndpointParams(
            fabric=self.fabric,
            node_id=i,
            cache=self.cache,
            mshrs=self.mshrs,
            noncacheable=self.noncacheable,
            rx_depth=self.agent_rx_depth,
            tx_credits=self.switch_buffer_depth,
            registered_rx=self.agent_registered_rx,
        )

    def home_params(self, j: int) -> HomeParams:
        return HomeParams(
            fabric=self.fabric,
            node_id=self.home_node(j),
            window=self.window,
            dir_sets=self.dir_sets,
            dir_ways=self.dir_ways,
            table_entries=self.table_entries,
            rx_depth=self.agent_rx_depth,
            tx_credits=self.switch_buffer_depth,
            registered_rx=self.agent_registered_rx,
        )


SYSTEM_PRESETS: dict[str, SystemParams] = {
    # Two endpoints and one home: the smallest coherent system.
    "small": SystemParams(endpoints=2, homes=1, cache=CacheParams(sets=8, ways=2), dir_sets=8),
    # Four caching endpoints, two interleaved homes, one 6-port switch; the first 1 KiB of the
    # window is non-cacheable (the put/get path).
    "default": SystemParams(
        noncacheable=(AddressWindow(base=0x1_0000_0000, size=0x400),),
    ),
}
