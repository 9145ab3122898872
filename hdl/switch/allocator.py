"""Switch allocators: which input sends to which output this cycle.

Both take a request matrix (``requests[i]`` has bit ``o`` set when input ``i`` has a flit for
output ``o`` that may leave now) and return a matching (``grants[i]`` one-hot or zero, and no
two inputs granted the same output).

* :class:`ISlipAllocator` — separable input/output round-robin allocation with iSLIP's pointer
  rule (pointers move only past an accepted grant of the first round), ``iterations`` rounds.
* :class:`WavefrontAllocator` — a maximal matching in one pass over the diagonals of the
  request matrix, the starting diagonal rotating every cycle.
"""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from unifab.hdl.lib.arbiter import first_after

__all__ = ["ISlipAllocator", "WavefrontAllocator", "allocator_signature"]


def allocator_signature(n_in: int, n_out: int) -> dict:
    return {
        "requests": In(data.ArrayLayout(n_out, n_in)),
        "grants": Out(data.ArrayLayout(n_out, n_in)),
    }


def _round_robin_pick(requests: Value, pointer: Value, n: int) -> Value:
    """One-hot of the first set bit of ``requests`` at or after ``pointer`` (cyclically)."""
    return first_after(requests, [pointer == start for start in range(n)], inclusive=True)


class ISlipAllocator(wiring.Component):
    """iSLIP: requests, grants by output round-robin, accepts by input round-robin.

    Ports
    -----
    requests : In(ArrayLayout(n_out, n_in))
        ``requests[i][o]``: input ``i`` wants output ``o``.
    grants : Out(ArrayLayout(n_out, n_in))
        The matching; combinational from ``requests``.
    """

    def __init__(self, *, n_in: int, n_out: int, iterations: int = 1):
        if n_in < 1 or n_out < 1:
            raise ValueError(f"need at least one input and one output, not {n_in}x{n_out}")
        if not 1 <= iterations <= 8:
            raise ValueError(f"iterations must be 1..8, not {iterations!r}")
        self.n_in, self.n_out, self.iterations = n_in, n_out, iterations
        super().__init__(allocator_signature(n_in, n_out))

    def elaborate(self, platform):
        m = Module()
        ni, no = self.n_in, self.n_out
        grant_ptr = [Signal(range(max(ni, 2)), name=f"grant_ptr{o}") for o in range(no)]
        accept_ptr = [Signal(range(max(no, 2)), name=f"accept_ptr{i}") for i in range(ni)]

        matched_in = Const(0, ni)
        matched_out = Const(0, no)
        match: list[Value] = [Const(0, no) for _ in range(ni)]
        for it in range(self.iterations):
            # Grant: each free output picks one requesting free input.
            grant_to = []  # grant_to[o]: one-hot over inputs
            for o in range(no):
                col = Signal(ni, name=f"it{it}_req_o{o}")
                m.d.comb += col.eq(
                    Mux(
                        matched_out[o], 0, Cat(self.requests[i][o] for i in range(ni)) & ~matched_in
                    )
                )
                grant_to.append(_round_robin_pick(col, grant_ptr[o], ni))
            # Accept: each input picks one granting output.
            next_match = []
            for i in range(ni):
                row = Signal(no, name=f"it{it}_grant_i{i}")
                m.d.comb += row.eq(Cat(grant_to[o][i] for o in range(no)))
                accepted = _round_robin_pick(row, accept_ptr[i], no)
                if it == 0:
                    # iSLIP: pointers move one past the accepted partner, first round only.
                    for o in range(no):
                        with m.If(accepted[o]):
                            m.d.sync += [
                                accept_ptr[i].eq((o + 1) % no),
                                grant_ptr[o].eq((i + 1) % ni),
                            ]
                merged = Signal(no, name=f"it{it}_match{i}")
                m.d.comb += merged.eq(match[i] | accepted)
                next_match.append(merged)
            match = next_match
            matched_in = Signal(ni, name=f"it{it}_matched_in")
            matched_out = Signal(no, name=f"it{it}_matched_out")
            m.d.comb += [
                matched_in.eq(Cat(match[i].any() for i in range(ni))),
                matched_out.eq(Cat(Cat(match[i][o] for i in range(ni)).any() for o in range(no))),
            ]
        for i in range(ni):
            m.d.comb += self.grants[i].eq(match[i])
        return m


class WavefrontAllocator(wiring.Component):
    """Wavefront allocator: a maximal matching, rotating diagonal priority.

    Ports as :class:`ISlipAllocator`. The matrix is padded to a square of ``max(n_in, n_out)``.
    """

    def __init__(self, *, n_in: int, n_out: int):
        if n_in < 1 or n_out < 1:
            raise ValueError(f"need at least one input and one output, not {n_in}x{n_out}")
        self.n_in, self.n_out = n_in, n_out
        super().__init__(allocator_signature(n_in, n_out))

    def elaborate(self, platform):
        m = Module()
        ni, no = self.n_in, self.n_out
        n = max(ni, no)
        top = Signal(range(max(n, 2)))  # the diagonal with the highest priority
        m.d.sync += top.eq(Mux(top == n - 1, 0, top + 1))

        def req(i: int, o: int) -> Value:
            return self.requests[i][o] if i < ni and o < no else C(0, 1)

        # For each starting diagonal, sweep the n diagonals in order; each cell grants when its
        # row and column are still free.
        grants = {(i, o): Signal(name=f"g_{i}_{o}") for i in range(ni) for o in range(no)}
        for start in range(n):
            row_free = [C(1, 1)] * n
            col_free = [C(1, 1)] * n
            cell = {}
            for d in range(n):
                diag = (start + d) % n
                new_row, new_col = list(row_free), list(col_free)
                for i in range(n):
                    o = (diag - i) % n
                    g = Signal(name=f"w{start}_{i}_{o}")
                    m.d.comb += g.eq(req(i, o) & row_free[i] & col_free[o])
                    cell[(i, o)] = g
                    new_row[i] = row_free[i] & ~g
                    new_col[o] = col_free[o] & ~g
                row_free, col_free = new_row, new_col
            with m.If(top == start):
                for (i, o), g in grants.items():
                    m.d.comb += g.eq(cell[(i, o)])
        for i in range(ni):
            m.d.comb += self.grants[i].eq(Cat(grants[(i, o)] for o in range(no)))
        return m
