"""A bare round-robin crossbar: the area yardstick for the switch.

``ports`` inputs, each with a destination port, ``width`` data bits and valid/ready; per output
a round-robin arbiter (:class:`~unifab.hdl.lib.arbiter.RoundRobin`), a data multiplexer and an
output register. No buffering, routing, virtual channels or credits: what every router needs
at least. The issue's reference point, 8 ports x 64 bits, measured 4,542 LUT4 on ECP5
(``synth_ecp5 -nowidelut``).
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from unifab.hdl.lib.arbiter import RoundRobin

__all__ = ["Crossbar"]


class Crossbar(wiring.Component):
    """``ports`` x ``ports`` round-robin crossbar of ``width``-bit words.

    Ports
    -----
    in_valid, in_ready : In(ports), Out(ports)
    in_data : In(ports * width)
    in_dest : In(ports * dest_bits)
    out_valid : Out(ports)
    out_data : Out(ports * width)
    out_ready : In(ports)
    """

    def __init__(self, *, ports: int, width: int):
        if not isinstance(ports, int) or not 2 <= ports <= 64:
            raise ValueError(f"ports must be 2..64, not {ports!r}")
        if not isinstance(width, int) or not 1 <= width <= 4096:
            raise ValueError(f"width must be 1..4096, not {width!r}")
        self.ports, self.width = ports, width
        self.dest_bits = (ports - 1).bit_length()
        super().__init__(
            {
                "in_valid": In(ports),
                "in_ready": Out(ports),
                "in_data": In(ports * width),
                "in_dest": In(ports * self.dest_bits),
                "out_valid": Out(ports),
                "out_data": Out(ports * width),
                "out_ready": In(ports),
            }
        )

    def elaborate(self, platform):
        m = Module()
        n, w, db = self.ports, self.width, self.dest_bits
        data = [self.in_data[i * w : (i + 1) * w] for i in range(n)]
        dest = [self.in_dest[i * db : (i + 1) * db] for i in range(n)]
        ready_terms: list[list[Value]] = [[] for _ in range(n)]
        for o in range(n):
            arb = RoundRobin(count=n)
            m.submodules[f"arb{o}"] = arb
            m.d.comb += arb.requests.eq(Cat(self.in_valid[i] & (dest[i] == o) for i in range(n)))
            free = ~self.out_valid[o] | self.out_ready[o]
            take = arb.valid & free
            m.d.comb += arb.advance.eq(take)
            with m.If(free):
                m.d.sync += [
                    self.out_valid[o].eq(arb.valid),
                    self.out_data[o * w : (o + 1) * w].eq(Array(data)[arb.grant]),
                ]
            for i in range(n):
                ready_terms[i].append(take & (arb.grant == i))
        for i in range(n):
            m.d.comb += self.in_ready[i].eq(Cat(*ready_terms[i]).any())
        return m
