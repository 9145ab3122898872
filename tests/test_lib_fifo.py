""":class:`HeadRegFIFO` (the endpoint's answer queue) against Amaranth's ``SyncFIFO``.

Both FIFOs get the same random writes and reads every cycle; their ``w_rdy``, ``r_rdy``,
``level`` and (while not empty) ``r_data`` must be equal every cycle. The read and write
probabilities change in phases so that the queue fills, empties and sits at every level,
including the stage cases (a write into an empty queue, a write while a pop empties it, a pop
at level 2 with the newest entry still in the stage). The seed comes from ``UNIFAB_SEED``
(printed; rerun with the same value to replay).
"""

import random

import pytest
from amaranth import Module
from amaranth.lib.fifo import SyncFIFO

from unifab.hdl.lib.fifo import HeadRegFIFO
from unifab.tb.formal.mutate import mutant
from unifab.testing import seed_from_env, simulate

WIDTH = 12
CYCLES = 3000


def compare(dut_cls: type, depth: int, seed: int, *, cycles: int = CYCLES) -> None:
    """Drive ``dut_cls`` and a ``SyncFIFO`` alike for ``cycles`` cycles; assert equal outputs."""
    m = Module()
    dut = m.submodules.dut = dut_cls(width=WIDTH, depth=depth)
    ref = m.submodules.ref = SyncFIFO(width=WIDTH, depth=depth)
    rng = random.Random(seed)

    async def bench(ctx):
        p_write = p_read = 0.5
        for cyc in range(cycles):
            if cyc % 50 == 0:
                # Phases: filling, draining, balanced, every-cycle traffic.
                p_write, p_read = rng.choice(
                    [(0.9, 0.2), (0.2, 0.9), (0.5, 0.5), (1.0, 1.0), (0.7, 0.7)]
                )
            w_en, r_en = rng.random() < p_write, rng.random() < p_read
            w_data = rng.getrandbits(WIDTH)
            for fifo in (dut, ref):
                ctx.set(fifo.w_en, w_en)
                ctx.set(fifo.r_en, r_en)
                ctx.set(fifo.w_data, w_data)
            got = [ctx.get(s) for s in (dut.w_rdy, dut.r_rdy, dut.level)]
            want = [ctx.get(s) for s in (ref.w_rdy, ref.r_rdy, ref.level)]
            where = f"seed={seed} depth={depth} cycle {cyc}"
            assert got == want, f"{where}: w_rdy, r_rdy, level {got} != SyncFIFO {want}"
            if want[1]:
                got_data, want_data = ctx.get(dut.r_data), ctx.get(ref.r_data)
                assert got_data == want_data, (
                    f"{where}: r_data {got_data:#x} != SyncFIFO {want_data:#x}"
                )
            await ctx.tick()

    simulate(m, bench, name=f"headreg_fifo_d{depth}")


@pytest.mark.parametrize("depth", [2, 3, 4, 8])
def test_headreg_fifo_matches_syncfifo(depth: int) -> None:
    compare(HeadRegFIFO, depth, seed_from_env(20261201 + depth, label=f"depth={depth}"))


# Each mutant breaks one piece of the head/stage logic; the comparison must catch it.
MUTANTS = {
    # A pop at level 2 reads the RAM (where the newest entry is not yet written), not the stage.
    "pop_level2_from_ram": (
        "from_stage.eq(head_stage | (stage_en & (self.level == 2)))",
        "from_stage.eq(head_stage)",
    ),
    # A write in the cycle a pop empties the queue is not read from the stage the next cycle.
    "no_head_stage_at_level1_pop": ("((self.level == 1) & self.r_en)", "0"),
    # The second read's address not advanced on a pop.
    "consume_next_stuck": (
        "consume_next.eq(incr(consume_next))",
        "consume_next.eq(consume_next)",
    ),
    # The RAM write a cycle late but at the current produce pointer.
    "stage_addr_late": ("stage_addr.eq(produce)", "stage_addr.eq(incr(produce))"),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_headreg_fifo_mutant_caught(name: str) -> None:
    old, new = MUTANTS[name]
    broken = mutant(HeadRegFIFO, old, new)
    seed = seed_from_env(20261201, label=f"mutant={name}")
    with pytest.raises(AssertionError, match="SyncFIFO"):
        for depth in (2, 3, 8):
            compare(broken, depth, seed)
