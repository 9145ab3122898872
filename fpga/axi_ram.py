"""A block-RAM AXI4 subordinate: the home agent's memory on the board.

Full-width INCR bursts (any length) on one single-port RAM; one burst at a time, reads and
writes taken alternately when both wait. Reads stream one beat per cycle; writes take one beat
per cycle under ``wstrb``. Addresses wrap modulo ``size`` (the upper bits are ignored), so a
small RAM can stand behind a wide address space. Narrow and non-INCR bursts are served as INCR
full-width bursts (the self-test issues none).
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from unifab.hdl.lib.axi import Axi4Signature, AxiParams, AxiResp

__all__ = ["AxiRam"]


class AxiRam(wiring.Component):
    """``size`` bytes of block RAM behind an AXI4 subordinate port.

    ``fault_mask`` is XORed into every read beat (0 on boards; tests use it to check that the
    self-test's checkers catch corrupted data).

    Ports
    -----
    axi : In(Axi4Signature(params))
        The subordinate port.
    writes, reads : Out(32)
        Bursts completed (for the self-test's counters).
    """

    def __init__(self, *, params: AxiParams, size: int, fault_mask: int = 0):
        if not isinstance(params, AxiParams):
            raise TypeError(f"params must be AxiParams, not {type(params).__name__}")
        beat = params.data_width // 8
        if not isinstance(size, int) or size < 2 * beat or size & (size - 1):
            raise ValueError(f"size must be a power of two of at least two beats, not {size!r}")
        if size > 1 << params.addr_width:
            raise ValueError(f"size {size:#x} exceeds the {params.addr_width}-bit address space")
        if not isinstance(fault_mask, int) or not 0 <= fault_mask < 1 << params.data_width:
            raise ValueError(
                f"fault_mask must be a {params.data_width}-bit mask, not {fault_mask!r}"
            )
        self.params, self.size, self.fault_mask = params, size, fault_mask
        self.depth = size // beat
        super().__init__({"axi": In(Axi4Signature(params)), "writes": Out(32), "reads": Out(32)})

    def elaborate(self, platform):
        m = Module()
        p, axi = self.params, self.axi
        shift = p.size_full
        index_bits = (self.depth - 1).bit_length()

        m.submodules.mem = mem = Memory(shape=p.data_width, depth=self.depth, init=[])
        wr = mem.write_port(granularity=8)
        rd = mem.read_port()

        index = Signal(index_bits)
        left = Signal(8)  # beats after the current one
        bid = Signal(p.id_width)
        prefer_read = Signal()

        m.d.comb += [
            wr.addr.eq(index),
            wr.data.eq(axi.wdata),
            axi.rdata.eq(rd.data ^ self.fault_mask),
            axi.rid.eq(bid),
            axi.bid.eq(bid),
            axi.rresp.eq(AxiResp.OKAY),
            axi.bresp.eq(AxiResp.OKAY),
            axi.rlast.eq(left == 0),
            rd.addr.eq(index),
        ]

        with m.FSM():
            with m.State("IDLE"):
                take_read = axi.arvalid & (prefer_read | ~axi.awvalid)
                with m.If(take_read):
                    m.d.comb += [
                        axi.arready.eq(1),
                        rd.addr.eq(axi.araddr[shift : shift + index_bits]),
                        rd.en.eq(1),
                    ]
                    m.d.sync += [
                        index.eq(axi.araddr[shift : shift + index_bits]),
                        left.eq(axi.arlen),
                        bid.eq(axi.arid),
                        prefer_read.eq(0),
                    ]
                    m.next = "READ"
                with m.Elif(axi.awvalid):
                    m.d.comb += axi.awready.eq(1)
                    m.d.sync += [
                        index.eq(axi.awaddr[shift : shift + index_bits]),
                        left.eq(axi.awlen),
                        bid.eq(axi.awid),
                        prefer_read.eq(1),
                    ]
                    m.next = "WRITE"
            with m.State("READ"):
                # rd.data holds beat ``index`` (the read port is enabled only when it advances)
                m.d.comb += [axi.rvalid.eq(1), rd.en.eq(0)]
                with m.If(axi.rready):
                    with m.If(left == 0):
                        m.d.sync += self.reads.eq(self.reads + 1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += [rd.addr.eq(index + 1), rd.en.eq(1)]
                        m.d.sync += [index.eq(index + 1), left.eq(left - 1)]
            with m.State("WRITE"):
                m.d.comb += axi.wready.eq(1)
                with m.If(axi.wvalid):
                    m.d.comb += wr.en.eq(axi.wstrb)
                    m.d.sync += [index.eq(index + 1), left.eq(left - 1)]
                    with m.If(axi.wlast | (left == 0)):
                        m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += axi.bvalid.eq(1)
                with m.If(axi.bready):
                    m.d.sync += self.writes.eq(self.writes + 1)
                    m.next = "IDLE"
        return m
