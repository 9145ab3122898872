"""CounterBank against plain Python counters (the golden model)."""

import random

import pytest

from unifab.hdl.lib.counters import CounterBank
from unifab.testing import seed_from_env, simulate


@pytest.mark.parametrize(("count", "width"), [(1, 8), (3, 4), (42, 32)])
def test_counter_bank_matches_counters(count: int, width: int) -> None:
    """Random events (bursts on some counters every cycle, others idle for long stretches)
    and a random counter read every cycle: each read shows every event up to the cycle before
    the address was presented, wrapping at ``width`` bits."""
    name = f"counter_bank_{count}x{width}"
    rng = random.Random(f"{seed_from_env(7, label=name)}/{name}")
    dut = CounterBank(count=count, width=width)
    mask = (1 << width) - 1
    # Per counter an event probability: some always on (the pending count's worst case).
    rates = [rng.choice((0.0, 0.1, 0.5, 1.0)) for _ in range(count)]
    rates[0] = 1.0

    async def bench(ctx):
        totals = [0] * count
        expected = None
        for cycle in range(40 * count + 300):
            events = sum(1 << k for k in range(count) if rng.random() < rates[k])
            addr = rng.randrange(count)
            ctx.set(dut.events, events)
            ctx.set(dut.addr, addr)
            if expected is not None:
                assert ctx.get(dut.data) == expected, f"cycle {cycle}"
            expected = totals[addr] & mask
            await ctx.tick()
            for k in range(count):
                totals[k] += events >> k & 1
        assert totals[0] > mask or width > 8, "counter 0 wrapped at least once"
        assert ctx.get(dut.data) == expected

    simulate(dut, bench, name=name)


def test_counter_bank_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="count must be a positive integer, not 0"):
        CounterBank(count=0)
    with pytest.raises(ValueError, match="width must be a positive integer, not -1"):
        CounterBank(count=2, width=-1)
