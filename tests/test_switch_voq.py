"""VoqLinks: linked-list queues sharing slots, against per-queue deques (the golden model);
the flits are kept at the slots it names in a Python dict, as the input unit keeps them in RAM."""

import random
from collections import deque

import pytest
from amaranth.sim import Simulator

from unifab.hdl.switch.voq import VoqLinks
from unifab.testing import seed_from_env


@pytest.mark.parametrize(("outputs", "depth"), [(1, 2), (3, 4), (9, 8), (5, 16), (3, 2), (4, 8)])
def test_voq_links_match_deques(outputs: int, depth: int) -> None:
    """Every departure's slot holds the flit the model's queue has at its front, every
    arrival gets a free slot, and the framing bits and non-empty flags match every cycle."""
    rng = random.Random(seed_from_env(outputs * 100 + depth))
    dut = VoqLinks(outputs=outputs, depth=depth)
    model = [deque() for _ in range(outputs)]
    slots: dict[int, int] = {}  # the caller's memory: slot -> word, occupied slots only
    serial = [0]

    async def bench(ctx):
        for _ in range(3000):
            # Random arrival within the shared capacity (as credits guarantee), random departure
            # from a random non-empty queue, sometimes both in the same cycle.
            arrive = len(slots) < depth and rng.random() < 0.6
            queue_in = rng.randrange(outputs)
            word = serial[0] & 0xFFFF
            head = rng.random() < 0.5
            tail = rng.random() < 0.5
            ctx.set(dut.w_en, arrive)
            ctx.set(dut.w_queue, queue_in)
            ctx.set(dut.w_head, head)
            ctx.set(dut.w_tail, tail)
            ready = [o for o in range(outputs) if model[o]]
            leave = bool(ready) and rng.random() < 0.6
            queue_out = rng.choice(ready) if ready else 0
            ctx.set(dut.r_queue, leave << queue_out)
            # Combinational view before the edge matches the model.
            assert ctx.get(dut.nonempty) == sum(1 << o for o in range(outputs) if model[o])
            for o in range(outputs):
                if model[o]:
                    framing = (
                        ctx.get(dut.head_is_head) >> o & 1,
                        ctx.get(dut.head_is_tail) >> o & 1,
                    )
                    assert framing == model[o][0][1:], f"queue {o}"
            assert ctx.get(dut.w_store) == arrive
            new_slot = ctx.get(dut.w_slot)
            if arrive:
                assert new_slot not in slots, "an arrival was given an occupied slot"
            if leave:
                front_slot = ctx.get(dut.r_slot)
                assert slots.get(front_slot) == model[queue_out][0][0], f"queue {queue_out}"
            await ctx.tick()
            if leave:
                model[queue_out].popleft()
                del slots[front_slot]
            if arrive:
                model[queue_in].append((word, int(head), int(tail)))
                slots[new_slot] = word
                serial[0] += 1
            assert not ctx.get(dut.overflow)
        # Drain: everything comes out in order.
        ctx.set(dut.w_en, 0)
        for o in range(outputs):
            while model[o]:
                ctx.set(dut.r_queue, 1 << o)
                assert slots.pop(ctx.get(dut.r_slot)) == model[o].popleft()[0]
                await ctx.tick()
        ctx.set(dut.r_queue, 0)
        assert ctx.get(dut.nonempty) == 0 and not slots

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_overflow_is_flagged() -> None:
    dut = VoqLinks(outputs=2, depth=2)

    async def bench(ctx):
        ctx.set(dut.w_en, 1)
        for _ in range(3):
            await ctx.tick()
        assert ctx.get(dut.overflow)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
