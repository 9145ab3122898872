"""AXI4 interface signatures with the standard signal names.

The members are flat and named as in the AMBA AXI4 specification (``awvalid``, ``awaddr``,
..., ``rlast``), so a port ``m_axi`` of a top becomes ``m_axi__awaddr`` etc. in Verilog and
cocotbext-axi attaches with ``AxiBus.from_prefix(dut, "m_axi_")`` (its separator ``_`` plus
Amaranth's trailing ``_`` make the ``__``).

Directions are the manager's: ``Axi4Signature(...)`` is what a manager drives (a home agent's
memory port is ``Out(Axi4Signature(...))``); a subordinate port is ``In(Axi4Signature(...))``.
"""

from dataclasses import dataclass

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Axi4Signature", "AxiBurst", "AxiParams", "AxiResp"]


class AxiResp:
    """``bresp``/``rresp`` encodings."""

    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


class AxiBurst:
    """``awburst``/``arburst`` encodings."""

    FIXED = 0
    INCR = 1
    WRAP = 2


@dataclass(frozen=True, kw_only=True)
class AxiParams:
    """Widths of one AXI4 interface.

    ``awuser_width``/``buser_width`` of 0 leave those sideband signals out.
    """

    addr_width: int = 48
    data_width: int = 128
    id_width: int = 4
    awuser_width: int = 0
    buser_width: int = 0

    def __post_init__(self) -> None:
        if not 12 <= self.addr_width <= 64:
            raise ValueError(f"addr_width must be 12..64, not {self.addr_width!r}")
        if self.data_width not in (32, 64, 128, 256, 512):
            raise ValueError(f"data_width must be 32, 64, 128, 256 or 512, not {self.data_width!r}")
        if not 1 <= self.id_width <= 16:
            raise ValueError(f"id_width must be 1..16, not {self.id_width!r}")
        for name in ("awuser_width", "buser_width"):
            if not 0 <= getattr(self, name) <= 128:
                raise ValueError(f"{name} must be 0..128, not {getattr(self, name)!r}")

    @property
    def strb_width(self) -> int:
        return self.data_width // 8

    @property
    def size_full(self) -> int:
        """``axsize`` of a full-width beat (log2 of the bytes per beat)."""
        return (self.data_width // 8).bit_length() - 1


class Axi4Signature(wiring.Signature):
    """An AXI4 interface from the manager's side (five channels, standard names)."""

    def __init__(self, params: AxiParams):
        self.params = p = params
        members = {
            # write address
            "awvalid": Out(1),
            "awready": In(1),
            "awid": Out(p.id_width),
            "awaddr": Out(p.addr_width),
            "awlen": Out(8),
            "awsize": Out(3),
            "awburst": Out(2),
            "awlock": Out(1),
            "awcache": Out(4),
            "awprot": Out(3),
            "awqos": Out(4),
            # write data
            "wvalid": Out(1),
            "wready": In(1),
            "wdata": Out(p.data_width),
            "wstrb": Out(p.strb_width),
            "wlast": Out(1),
            # write response
            "bvalid": In(1),
            "bready": Out(1),
            "bid": In(p.id_width),
            "bresp": In(2),
            # read address
            "arvalid": Out(1),
            "arready": In(1),
            "arid": Out(p.id_width),
            "araddr": Out(p.addr_width),
            "arlen": Out(8),
            "arsize": Out(3),
            "arburst": Out(2),
            "arlock": Out(1),
            "arcache": Out(4),
            "arprot": Out(3),
            "arqos": Out(4),
            # read data
            "rvalid": In(1),
            "rready": Out(1),
            "rid": In(p.id_width),
            "rdata": In(p.data_width),
            "rresp": In(2),
            "rlast": In(1),
        }
        if p.awuser_width:
            members["awuser"] = Out(p.awuser_width)
        if p.buser_width:
            members["buser"] = In(p.buser_width)
        super().__init__(members)

    def __eq__(self, other):
        return isinstance(other, Axi4Signature) and self.params == other.params

    def __hash__(self):
        return hash(self.params)
