"""AXI4 subordinate front end of the endpoint: bursts in, per-beat operations out.

Accepts one burst at a time (write and read address channels alternate when both are
waiting) and splits it into one operation per beat, in order. Full-width INCR bursts become
``read``/``write`` operations; any other burst (FIXED, WRAP, a narrow ``axsize``, or an atomic
``awuser`` on a multi-beat write) becomes ``err`` operations, answered ``SLVERR`` by the core
with the right number of R beats or one B. Responses come back in operation order, one per
operation; write responses are merged (worst ``resp``) into one B at the burst's last beat.
"""

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from unifab.flit import ADDR_BITS
from unifab.hdl.lib.axi import Axi4Signature, AxiBurst, AxiParams

__all__ = ["AxiFront", "op_layout", "resp_layout"]


def op_layout(params: AxiParams) -> data.StructLayout:
    """One beat of a burst, as handed to the core."""
    return data.StructLayout(
        {
            "write": 1,  # from the write channels (gets a B, merged per burst)
            "err": 1,  # unsupported burst: answer SLVERR, touch nothing
            "last": 1,  # last beat of its burst
            "id": params.id_width,
            "addr": ADDR_BITS,
            "data": params.data_width,
            "strb": params.strb_width,
            "user": 6,  # awuser: atomic op [3:0], size [5:4]
        }
    )


def resp_layout(params: AxiParams) -> data.StructLayout:
    """The core's answer to one operation."""
    return data.StructLayout(
        {
            "write": 1,
            "last": 1,
            "id": params.id_width,
            "resp": 2,
            "data": params.data_width,
            "buser": 64,
        }
    )


class AxiFront(wiring.Component):
    """AXI4 subordinate: bursts into per-beat operations, per-operation answers into R/B.

    Ports
    -----
    axi : In(Axi4Signature(params))
        The subordinate port (standard AXI4 names; ``awuser``, ``buser`` required).
    ops : Out(stream(op_layout))
        Operations in AXI acceptance order, one per beat.
    resps : In(stream(resp_layout))
        One answer per operation, in operation order. A read answer becomes an R beat; write
        answers are merged and the one with ``last`` becomes the B response.
    """

    def __init__(self, params: AxiParams):
        if not params.awuser_width >= 6 or not params.buser_width >= 64:
            raise ValueError("the endpoint AXI port needs awuser_width >= 6 and buser_width >= 64")
        self.params = params
        super().__init__(
            {
                "axi": In(Axi4Signature(params)),
                "ops": Out(stream.Signature(op_layout(params))),
                "resps": In(stream.Signature(resp_layout(params))),
            }
        )

    def elaborate(self, platform):
        m = Module()
        p = self.params
        axi = self.axi
        beat_bytes = p.strb_width

        write = Signal()
        err = Signal()
        bid = Signal(p.id_width)
        addr = Signal(ADDR_BITS)
        left = Signal(8)  # beats after the current one
        user = Signal(6)
        prefer_write = Signal()

        op = self.ops.payload
        m.d.comb += [
            op.write.eq(write),
            op.err.eq(err),
            op.last.eq(left == 0),
            op.id.eq(bid),
            op.addr.eq(addr),
            # A read's beat carries no W data: zero, so that the payload holds while the
            # operation waits (W may change under a read; found by the stream-contract proof).
            op.data.eq(Mux(write, axi.wdata, 0)),
            op.strb.eq(Mux(write, axi.wstrb, 0)),
            op.user.eq(user),
        ]

        with m.FSM():
            with m.State("IDLE"):
                take_w = Signal()
                m.d.comb += take_w.eq(axi.awvalid & (prefer_write | ~axi.arvalid))
                with m.If(take_w):
                    m.d.comb += axi.awready.eq(1)
                    atomic = axi.awuser[:6] != 0
                    m.d.sync += [
                        write.eq(1),
                        err.eq(
                            (axi.awburst != AxiBurst.INCR)
                            | (axi.awsize != p.size_full)
                            | (atomic & (axi.awlen != 0))
                        ),
                        bid.eq(axi.awid),
                        addr.eq(axi.awaddr),
                        left.eq(axi.awlen),
                        user.eq(axi.awuser[:6]),
                        prefer_write.eq(0),
                    ]
                    m.next = "BEATS"
                with m.Elif(axi.arvalid):
                    m.d.comb += axi.arready.eq(1)
                    m.d.sync += [
                        write.eq(0),
                        err.eq((axi.arburst != AxiBurst.INCR) | (axi.arsize != p.size_full)),
                        bid.eq(axi.arid),
                        addr.eq(axi.araddr),
                        left.eq(axi.arlen),
                        user.eq(0),
                        prefer_write.eq(1),
                    ]
                    m.next = "BEATS"
            with m.State("BEATS"):
                m.d.comb += self.ops.valid.eq(~write | axi.wvalid)
                m.d.comb += axi.wready.eq(write & self.ops.ready)
                with m.If(self.ops.valid & self.ops.ready):
                    # Full-width INCR: next beat at the next aligned beat address.
                    m.d.sync += [
                        addr.eq((addr & ~(beat_bytes - 1)) + beat_bytes),
                        left.eq(left - 1),
                    ]
                    with m.If(left == 0):
                        m.next = "IDLE"

        # Responses: reads to R, writes merged into B on the burst's last answer.
        r = self.resps.payload
        worst = Signal(2)  # worst resp of the current write burst so far
        merged = Signal(2)
        m.d.comb += merged.eq(Mux(r.resp > worst, r.resp, worst))
        m.d.comb += [
            axi.rvalid.eq(self.resps.valid & ~r.write),
            axi.rid.eq(r.id),
            axi.rdata.eq(r.data),
            axi.rresp.eq(r.resp),
            axi.rlast.eq(r.last),
            axi.bvalid.eq(self.resps.valid & r.write & r.last),
            axi.bid.eq(r.id),
            axi.bresp.eq(merged),
            axi.buser.eq(r.buser),
        ]
        with m.If(r.write):
            m.d.comb += self.resps.ready.eq(~r.last | axi.bready)
        with m.Else():
            m.d.comb += self.resps.ready.eq(axi.rready)
        with m.If(self.resps.valid & self.resps.ready & r.write):
            m.d.sync += worst.eq(Mux(r.last, 0, merged))
        return m
