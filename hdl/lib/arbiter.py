"""Round-robin arbitration."""

from collections.abc import Sequence

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RoundRobin", "first_after", "onehot_index", "onehot_mux"]


def first_after(requests: Value, at: Sequence[Value], *, inclusive: bool) -> Value:
    """One-hot of the first set bit of ``requests`` from a start position, cyclically: with
    ``inclusive`` the search starts at the position, else just after it. ``at[b]`` is true
    when the position is ``b`` (a one-hot pointer's bits, or ``pointer == b``); with none
    true the result is zero, as it is with no request.

    Written flat, as an OR over start positions of "requested, and nobody requested between
    the start and here", rather than as a priority chain of ``m.If``: a chain of ``n * n``
    tests synthesizes ``n`` levels deep (12 LUTs for 8 requesters on ECP5), the flat form two
    or three."""
    n = len(at)
    bits = []
    for idx in range(n):
        terms = []
        for base in range(n):
            first = 0 if inclusive else 1
            offset = (idx - base) % n
            if not inclusive and offset == 0:
                offset = n
            between = [(base + k) % n for k in range(first, offset)]
            clear = Cat(requests[j] for j in between) if between else C(0, 1)
            terms.append(at[base] & ~clear.any())
        bits.append(requests[idx] & Cat(terms).any())
    return Cat(bits)


def onehot_index(onehot: Value, n: int) -> Value:
    """The index of a one-hot value's set bit (zero for zero): an OR per index bit."""
    width = max(n - 1, 1).bit_length()
    return Cat(Cat(onehot[i] for i in range(n) if i >> b & 1).any() for b in range(width))


def onehot_mux(onehot: Value, values: Sequence[Value]) -> Value:
    """``values[i]`` for the set bit ``i`` of a one-hot (zero for zero): an AND-OR, without
    encoding the one-hot into an index first."""
    width = max(len(Value.cast(v)) for v in values)
    return Cat(
        Cat(
            onehot[i] & Value.cast(v)[b] for i, v in enumerate(values) if b < len(Value.cast(v))
        ).any()
        for b in range(width)
    )


class RoundRobin(wiring.Component):
    """Combinational round-robin arbiter with a registered priority pointer.

    Ports
    -----
    requests : In(count)
        One bit per requester.
    grant : Out(range(count))
        Index of the granted requester; meaningful when ``valid``.
    grant_onehot : Out(count)
        The same grant, one-hot (zero when nobody asks): for consumers that select with it.
    valid : Out(1)
        Some requester is asking.
    advance : In(1)
        The grant was used: the requester after it gets the highest priority next cycle.
    """

    def __init__(self, *, count: int):
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        self.count = count
        super().__init__(
            {
                "requests": In(count),
                "grant": Out(range(max(count, 2))),
                "grant_onehot": Out(count),
                "valid": Out(1),
                "advance": In(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        n = self.count
        m.d.comb += self.valid.eq(self.requests.any())
        if n == 1:
            m.d.comb += [self.grant.eq(0), self.grant_onehot.eq(self.requests[0])]
            return m
        # The most recent grant, one-hot (a flop per requester, no decoder in front of the
        # search); the search starts just after it.
        last = Signal(n, init=1 << (n - 1))
        m.d.comb += [
            self.grant_onehot.eq(first_after(self.requests, list(last), inclusive=False)),
            self.grant.eq(onehot_index(self.grant_onehot, n)),
        ]
        with m.If(self.advance & self.valid):
            m.d.sync += last.eq(self.grant_onehot)
        return m
