"""The far-atomic ALU of the home agent (``docs/coherence.md`` §2.3)."""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from unifab.flit import Opcode

__all__ = ["AtomicAlu", "sign_extend", "size_mask"]


def size_mask(size: int) -> int:
    """Byte-lane value mask of an access of ``1 << size`` bytes."""
    return (1 << (8 << size)) - 1


def sign_extend(m: Module, value: Value, size: Value, name: str) -> Signal:
    """The low ``1 << size`` bytes of the 64-bit ``value``, sign-extended to 64 bits."""
    extended = Signal(signed(64), name=name)
    with m.Switch(size):
        for s in range(4):
            with m.Case(s):
                m.d.comb += extended.eq(value[: 8 << s].as_signed())
    return extended


class AtomicAlu(wiring.Component):
    """Combinational atomic operation on 1, 2, 4 or 8 bytes.

    Values are little-endian and use the low ``1 << size`` bytes of each 64-bit port; the
    upper bytes of the inputs are ignored and those of ``old_value``/``result`` are zero.

    With ``presized``, ``old`` must instead be the old value already sign-extended from the
    access size (:func:`sign_extend`; the home does it as it takes the value from its read
    beat), and the operand side (``operand``, ``compare`` masked and sign-extended, the
    opcode decoded) is registered inside: ``result`` is then right one cycle after
    ``operand``, ``compare``, ``size`` and ``opcode`` settle, as long as they hold. The
    signed compare then starts from flops on both sides.

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

    def __init__(self, *, presized: bool = False):
        self.presized = presized
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
        b_signed = Signal(signed(64))
        opcode = Signal(Opcode, init=Opcode.ATOMIC_ADD)
        with m.Switch(self.size):
            for size in range(4):
                with m.Case(size):
                    m.d.comb += mask.eq(size_mask(size))
        # The operand side is a function of inputs that hold (presized: registered).
        operand_side = m.d.sync if self.presized else m.d.comb
        operand_side += [
            b.eq(self.operand & mask),
            c.eq(self.compare & mask),
            b_signed.eq(sign_extend(m, self.operand, self.size, "operand_signed")),
            opcode.eq(self.opcode),
        ]
        if self.presized:
            a_signed = self.old.as_signed()
        else:
            a_signed = sign_extend(m, self.old, self.size, "old_signed")
        m.d.comb += [a.eq(self.old & mask), self.old_value.eq(a)]
        value = Signal(64)
        with m.Switch(opcode):
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
