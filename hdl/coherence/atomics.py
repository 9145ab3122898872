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
    """The home's atomic operation on 1, 2, 4 or 8 bytes, its operand side registered.

    Values are little-endian and use the low ``1 << size`` bytes of each 64-bit port; the
    upper bytes of ``operand`` and ``compare`` are ignored and those of
    ``old_value``/``result`` are zero. ``old`` must be the old value already sign-extended
    from the access size (:func:`sign_extend`; the home does it as it takes the value from
    its read beat). The operand side (``operand`` and ``compare`` sign-extended, the access
    size's mask, the opcode) is registered inside: ``result`` is right one cycle after
    ``operand``, ``compare``, ``size`` and ``opcode`` settle, as long as they hold, so the
    adder and the compares start from flops on both sides.

    With ``stages=2``, the sum, the signed compares and the CAS equality are registered too,
    and the opcode's selection starts from them: ``result`` is right one cycle after ``old``
    settles (at once with ``stages=1``), as long as it holds. For a user with a cycle to
    spare between the old value and the use of the result (the home, when a line takes at
    least two beats).

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

    def __init__(self, *, stages: int = 1):
        if stages not in (1, 2):
            raise ValueError(f"stages must be 1 or 2, not {stages!r}")
        self.stages = stages
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
        # Everything but the old value is registered: the inputs hold. The operand and the
        # compare value are kept sign-extended from the access size, like the old value, and
        # the value is masked only at the end: the low bytes of a sum, of a bitwise operation
        # or of a choice do not depend on the bytes above them, two sign-extended values are
        # equal exactly when their low bytes are, and compare as the signed values of the
        # access size. So no mask (a decoder of ``size``) stands between the old value's flop
        # and the adder or the comparators.
        mask = Signal(64)
        b = Signal(signed(64))
        c = Signal(signed(64))
        opcode = Signal(Opcode, init=Opcode.ATOMIC_ADD)
        with m.Switch(self.size):
            for size in range(4):
                with m.Case(size):
                    m.d.sync += mask.eq(size_mask(size))
        m.d.sync += [
            b.eq(sign_extend(m, self.operand, self.size, "operand_signed")),
            c.eq(sign_extend(m, self.compare, self.size, "compare_signed")),
            opcode.eq(self.opcode),
        ]
        old = self.old.as_signed()
        m.d.comb += self.old_value.eq(self.old & mask)
        # The carry chains (sum, signed compares) and the equality tree. With two stages they
        # end at flops and the opcode's selection below starts from them: ``result`` is then
        # right one cycle after ``old`` settles (at once with one stage).
        stage = m.d.sync if self.stages == 2 else m.d.comb
        total = Signal(64)
        equal = Signal()
        less = Signal()
        greater = Signal()
        stage += [
            total.eq(old + b),
            equal.eq(old == c),
            less.eq(old < b),
            greater.eq(old > b),
        ]
        value = Signal(64)
        with m.Switch(opcode):
            with m.Case(Opcode.ATOMIC_ADD):
                m.d.comb += value.eq(total)
            with m.Case(Opcode.ATOMIC_SWAP):
                m.d.comb += value.eq(b)
            with m.Case(Opcode.ATOMIC_CAS):
                m.d.comb += value.eq(Mux(equal, b, old))
            with m.Case(Opcode.ATOMIC_AND):
                m.d.comb += value.eq(old & b)
            with m.Case(Opcode.ATOMIC_OR):
                m.d.comb += value.eq(old | b)
            with m.Case(Opcode.ATOMIC_XOR):
                m.d.comb += value.eq(old ^ b)
            with m.Case(Opcode.ATOMIC_MIN):
                m.d.comb += value.eq(Mux(less, old, b))
            with m.Case(Opcode.ATOMIC_MAX):
                m.d.comb += value.eq(Mux(greater, old, b))
            with m.Default():
                m.d.comb += value.eq(old)
        m.d.comb += self.result.eq(value & mask)
        return m
