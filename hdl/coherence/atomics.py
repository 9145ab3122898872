"""The far-atomic ALU of the home agent (``docs/coherence.md`` §2.3)."""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from unifab.flit import Opcode

__all__ = ["AtomicAlu", "size_mask"]


def size_mask(size: int) -> int:
    """Byte-lane value mask of an access of ``1 << size`` bytes."""
    return (1 << (8 << size)) - 1


class AtomicAlu(wiring.Component):
    """Combinational atomic operation on 1, 2, 4 or 8 bytes.

    Values are little-endian and use the low ``1 << size`` bytes of each 64-bit port; the
    upper bytes of the inputs are ignored and those of ``old_value``/``result`` are zero.

    Ports
    -----
    opcode : In(Opcode)
        ``ATOMIC_ADD`` .. ``ATOMIC_MAX`` (any other opcode returns the old value).
    size : In(2)
        log2 of the access size in bytes.
    old : In(64)
        The memory value before the operation.
    operand : In(64)
        The request's operand (bytes 0..7 of its data beat).
    compare : In(64)
        ``ATOMIC_CAS``: the compare value (bytes 8..15 of the data beat).
    old_value : Out(64)
        ``old`` zero-extended from the access size (what ``ATOMIC_DATA`` returns).
    result : Out(64)
        The value to store, zero-extended: the sum for ADD (modulo the size), the operand for
        SWAP and for a CAS whose compare value equals the old value (else the old value),
        AND/OR/XOR, and the signed minimum/maximum of old value and operand.
    """

    def __init__(self):
        super().__init__(
            {
                "opcode": In(Opcode, init=Opcode.ATOMIC_ADD),
                "size": In(2),
                "old": In(64),
                "operand": In(64),
                "compare": In(64),
                "old_value": Out(64),
                "result": Out(64),
            }
        )

    def elaborate(self, platform):
        m = Module()
        mask = Signal(64)
        a, b, c = Signal(64), Signal(64), Signal(64)
        a_signed, b_signed = Signal(signed(64)), Signal(signed(64))
        with m.Switch(self.size):
            for size in range(4):
                with m.Case(size):
                    bits = 8 << size
                    m.d.comb += [
                        mask.eq(size_mask(size)),
                        a_signed.eq(self.old[:bits].as_signed()),
                        b_signed.eq(self.operand[:bits].as_signed()),
                    ]
        m.d.comb += [
            a.eq(self.old & mask),
            b.eq(self.operand & mask),
            c.eq(self.compare & mask),
            self.old_value.eq(a),
        ]
        value = Signal(64)
        with m.Switch(self.opcode):
            with m.Case(Opcode.ATOMIC_ADD):
                m.d.comb += value.eq(a + b)
            with m.Case(Opcode.ATOMIC_SWAP):
                m.d.comb += value.eq(b)
            with m.Case(Opcode.ATOMIC_CAS):
                m.d.comb += value.eq(Mux(a == c, b, a))
            with m.Case(Opcode.ATOMIC_AND):
                m.d.comb += value.eq(a & b)
            with m.Case(Opcode.ATOMIC_OR):
                m.d.comb += value.eq(a | b)
            with m.Case(Opcode.ATOMIC_XOR):
                m.d.comb += value.eq(a ^ b)
            with m.Case(Opcode.ATOMIC_MIN):
                m.d.comb += value.eq(Mux(a_signed < b_signed, a, b))
            with m.Case(Opcode.ATOMIC_MAX):
                m.d.comb += value.eq(Mux(a_signed > b_signed, a, b))
            with m.Default():
                m.d.comb += value.eq(a)
        m.d.comb += self.result.eq(value & mask)
        return m
