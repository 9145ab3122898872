"""Round-robin arbitration."""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RoundRobin", "round_robin_pick"]


def round_robin_pick(
    m: Module, requests: Value, last: Value, n: int, *, grant: Signal | None = None, name: str = ""
) -> Signal:
    """Index of the first set bit of ``requests`` after ``last`` (cyclically): the grant of a
    round-robin arbiter whose most recent grant was ``last``, driven into ``grant`` (a new
    signal named ``name`` if not given). Meaningful when ``requests`` is not zero. Several
    picks may share one ``last`` (one pointer, many request vectors)."""
    if grant is None:
        grant = Signal(range(max(n, 2)), name=name)
    # Priority scan over the doubled request vector, lowest offset wins.
    for offset in reversed(range(1, n + 1)):
        for base in range(n):
            idx = (base + offset) % n
            with m.If((last == base) & requests[idx]):
                m.d.comb += grant.eq(idx)
    return grant


class RoundRobin(wiring.Component):
    """Combinational round-robin arbiter with a registered priority pointer.

    Ports
    -----
    requests : In(count)
        One bit per requester.
    grant : Out(range(count))
        Index of the granted requester; meaningful when ``valid``.
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
                "valid": Out(1),
                "advance": In(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        n = self.count
        if n == 1:
            m.d.comb += [self.grant.eq(0), self.valid.eq(self.requests[0])]
            return m
        # `last` is the most recently granted index; search starts just after it.
        last = Signal(range(n), init=n - 1)
        m.d.comb += self.valid.eq(self.requests.any())
        round_robin_pick(m, self.requests, last, n, grant=self.grant)
        with m.If(self.advance & self.valid):
            m.d.sync += last.eq(self.grant)
        return m
