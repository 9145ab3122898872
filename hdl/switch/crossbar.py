"""The crossbar: each output takes the flit of the one input the allocator matched to it."""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Crossbar"]


class Crossbar(wiring.Component):
    """An AND-OR crossbar driven by a one-hot select matrix.

    Ports
    -----
    select : In(ArrayLayout(n_out, n_in))
        ``select[i][o]``: input ``i`` drives output ``o``. At most one bit per row and per
        column may be set.
    inputs : In(ArrayLayout(width, n_in))
        Input words.
    outputs : Out(ArrayLayout(width, n_out))
        ``outputs[o]`` is the word of the input selecting ``o`` (zero when none).
    valid : Out(n_out)
        Output ``o`` is driven this cycle.
    source : Out(ArrayLayout(range(n_in), n_out))
        Which input drives each output.
    onehot_error : Out(1)
        Sticky: a row or a column of ``select`` had more than one bit set (an allocator bug).
    """

    def __init__(self, *, n_in: int, n_out: int, width: int):
        self.n_in, self.n_out, self.width = n_in, n_out, width
        super().__init__(
            {
                "select": In(data.ArrayLayout(n_out, n_in)),
                "inputs": In(data.ArrayLayout(width, n_in)),
                "outputs": Out(data.ArrayLayout(width, n_out)),
                "valid": Out(n_out),
                "source": Out(data.ArrayLayout(range(max(n_in, 2)), n_out)),
                "onehot_error": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        ni, no = self.n_in, self.n_out

        def more_than_one(bits: list) -> Value:
            seen = C(0, 1)
            twice = C(0, 1)
            for b in bits:
                twice = twice | (seen & b)
                seen = seen | b
            return twice

        bad = []
        for o in range(no):
            column = [self.select[i][o] for i in range(ni)]
            word = C(0, self.width)
            for i in range(ni):
                word = word | Mux(column[i], self.inputs[i], 0)
            m.d.comb += [self.outputs[o].eq(word), self.valid[o].eq(Cat(column).any())]
            for i in range(ni):
                with m.If(column[i]):
                    m.d.comb += self.source[o].eq(i)
            bad.append(more_than_one(column))
        for i in range(ni):
            bad.append(more_than_one([self.select[i][o] for o in range(no)]))
        with m.If(Cat(bad).any()):
            m.d.sync += self.onehot_error.eq(1)
        return m
