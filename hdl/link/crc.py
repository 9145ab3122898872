"""Single-cycle CRC-32C over a fixed-width link flit.

The CRC is affine in the input bits (see :mod:`unifab.crc`), so each of the 32 output bits is
a constant XOR the parity of a fixed subset of input bits: one XOR tree per bit, no state.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from unifab.crc import crc32c_columns

__all__ = ["Crc32c"]


class Crc32c(wiring.Component):
    """Combinational CRC-32C of ``width`` bits, bit-exact with :func:`unifab.crc.crc32c_bits`.

    Ports
    -----
    data : In(width)
        The bits covered by the CRC.
    crc : Out(32)
        Their CRC-32C.
    """

    def __init__(self, *, width: int):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        self.width = width
        super().__init__({"data": In(width), "crc": Out(32)})

    def elaborate(self, platform):
        m = Module()
        base, columns = crc32c_columns(self.width)
        for bit in range(32):
            taps = [self.data[i] for i in range(self.width) if columns[i] >> bit & 1]
            parity = Cat(*taps).xor() if taps else C(0, 1)
            m.d.comb += self.crc[bit].eq(parity ^ (base >> bit & 1))
        return m
