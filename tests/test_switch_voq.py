"""SharedVoq: linked-list queues in one buffer, against per-queue deques (the golden model)."""

import random
from collections import deque

import pytest
from amaranth.sim import Simulator

from unifab.hdl.switch.voq import SharedVoq
from unifab.testing import seed_from_env


@pytest.mark.parametrize(
    ("outputs", "depth", "registered_read"),
    [(1, 2, False), (3, 4, False), (9, 8, False), (5, 16, False), (3, 4, True), (5, 8, True)],
)
def test_shared_voq_matches_deques(outputs: int, depth: int, registered_read: bool) -> None:
    """Every departure's flit and framing bits against per-queue deques; with
    ``registered_read`` the flit shows the cycle after its ``r_en``."""
    rng = random.Random(seed_from_env(outputs * 100 + depth + 1000 * registered_read))
    dut = SharedVoq(outputs=outputs, depth=depth, width=16, registered_read=registered_read)
    model = [deque() for _ in range(outputs)]
    serial = [0]

    async def bench(ctx):
        used = 0
        for _ in range(3000):
            # Random arrival within the shared capacity (as credits guarantee), random departure
            # from a random non-empty queue, sometimes both in the same cycle.
            arrive = used < depth and rng.random() < 0.6
            queue_in = rng.randrange(outputs)
            word = serial[0] & 0xFFFF
            head = rng.random() < 0.5
            tail = rng.random() < 0.5
            ctx.set(dut.w_en, arrive)
            ctx.set(dut.w_queue, queue_in)
            ctx.set(dut.w_data, word)
            ctx.set(dut.w_head, head)
            ctx.set(dut.w_tail, tail)
            ready = [o for o in range(outputs) if model[o]]
            leave = bool(ready) and rng.random() < 0.6
            queue_out = rng.choice(ready) if ready else 0
            ctx.set(dut.r_queue, queue_out)
            ctx.set(dut.r_en, leave)
            # Combinational view before the edge matches the model.
            assert ctx.get(dut.nonempty) == sum(1 << o for o in range(outputs) if model[o])
            for o in range(outputs):
                if model[o]:
                    framing = (
                        ctx.get(dut.head_is_head) >> o & 1,
                        ctx.get(dut.head_is_tail) >> o & 1,
                    )
                    assert framing == model[o][0][1:], f"queue {o}"
            if leave:
                front = model[queue_out][0]
                if not registered_read:
                    assert ctx.get(dut.r_data) == front[0]
            await ctx.tick()
            if leave:
                if registered_read:
                    assert ctx.get(dut.r_data) == front[0], "the departed flit, a cycle late"
                model[queue_out].popleft()
                used -= 1
            if arrive:
                model[queue_in].append((word, int(head), int(tail)))
                serial[0] += 1
                used += 1
            assert not ctx.get(dut.overflow)
        # Drain: everything comes out in order.
        ctx.set(dut.w_en, 0)
        for o in range(outputs):
            while model[o]:
                ctx.set(dut.r_queue, o)
                ctx.set(dut.r_en, 1)
                word = model[o].popleft()[0]
                if not registered_read:
                    assert ctx.get(dut.r_data) == word
                await ctx.tick()
                if registered_read:
                    assert ctx.get(dut.r_data) == word
        ctx.set(dut.r_en, 0)
        assert ctx.get(dut.nonempty) == 0

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_overflow_is_flagged() -> None:
    dut = SharedVoq(outputs=2, depth=2, width=8)

    async def bench(ctx):
        ctx.set(dut.w_en, 1)
        for _ in range(3):
            await ctx.tick()
        assert ctx.get(dut.overflow)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
