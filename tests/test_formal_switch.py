"""Formal proofs of the switch blocks: allocators, crossbar, output unit (issue 7).
See docs/verification.md; ``make formal`` runs every ``test_formal_*``."""

import pytest

from unifab.hdl.switch.allocator import ISlipAllocator, WavefrontAllocator
from unifab.hdl.switch.input_unit import InputUnit
from unifab.hdl.switch.output_unit import OutputUnit
from unifab.tb.formal.check import expect_fail, expect_pass
from unifab.tb.formal.harness_switch import (
    AllocatorHarness,
    CrossbarHarness,
    InputUnitHarness,
    OutputUnitHarness,
)
from unifab.tb.formal.mutate import mutant

COVER_DEPTH = 12
#: BMC depth of the input-unit proof: a VC's two-slot shared VOQ fills and drains within it;
#: each further step roughly triples the solver time.
INPUT_UNIT_DEPTH = 6

ALLOCATORS = {
    "islip1": (ISlipAllocator, {"iterations": 1}),
    "islip3": (ISlipAllocator, {"iterations": 3}),
    "wavefront": (WavefrontAllocator, {}),
}


@pytest.mark.parametrize("size", [(3, 3), (4, 4), (2, 3)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kind", list(ALLOCATORS))
def test_formal_allocator_proof(kind: str, size: tuple[int, int]) -> None:
    cls, kwargs = ALLOCATORS[kind]
    harness = AllocatorHarness(cls, *size, **kwargs)
    expect_pass(f"alloc_{kind}_{size[0]}x{size[1]}", harness, mode="prove", depth=2)


@pytest.mark.parametrize("kind", list(ALLOCATORS))
def test_formal_allocator_cover(kind: str) -> None:
    cls, kwargs = ALLOCATORS[kind]
    harness = AllocatorHarness(cls, 3, 3, **kwargs)
    expect_pass(f"alloc_{kind}_cover", harness, mode="cover", depth=COVER_DEPTH)


def test_formal_allocator_mutant_islip_rematch_input() -> None:
    """iSLIP's later rounds must skip inputs matched earlier; without it an input gets two."""
    broken = mutant(
        ISlipAllocator,
        "Cat(self.requests[i][o] for i in range(ni)) & ~matched_in",
        "Cat(self.requests[i][o] for i in range(ni))",
    )
    harness = AllocatorHarness(broken, 3, 3, iterations=2)
    expect_fail("alloc_islip_mutant", harness, mode="prove", depth=2, expect="per input")


def test_formal_allocator_mutant_wavefront_column() -> None:
    """A wavefront cell that does not claim its column grants one output twice."""
    broken = mutant(WavefrontAllocator, "new_col[o] = col_free[o] & ~g", "new_col[o] = col_free[o]")
    expect_fail(
        "alloc_wavefront_mutant",
        AllocatorHarness(broken, 3, 3),
        mode="prove",
        depth=2,
        expect="per output",
    )


def test_formal_crossbar_proof() -> None:
    expect_pass("crossbar", CrossbarHarness(3, 3, 4), mode="prove", depth=2)


def test_formal_crossbar_cover() -> None:
    expect_pass("crossbar_cover", CrossbarHarness(3, 3, 4), mode="cover", depth=4)


def test_formal_output_unit_proof() -> None:
    expect_pass("output_unit", OutputUnitHarness(), mode="prove", depth=3)


def test_formal_output_unit_registered_grant_proof() -> None:
    harness = OutputUnitHarness(registered_grant=True)
    expect_pass("output_unit_registered", harness, mode="prove", depth=3)


def test_formal_output_unit_cover() -> None:
    expect_pass("output_unit_cover", OutputUnitHarness(), mode="cover", depth=COVER_DEPTH)


def test_formal_output_unit_mutant_no_credit_decrement() -> None:
    broken = mutant(
        OutputUnit,
        "spent.eq(credits + self.out.credit[v] - 1)",
        "spent.eq(credits + self.out.credit[v])",
    )
    expect_fail(
        "output_unit_mutant_credit",
        OutputUnitHarness(dut_cls=broken),
        mode="prove",
        depth=3,
        expect="credits conserved",
    )


def test_formal_output_unit_mutant_no_vc_lock() -> None:
    """An output VC that is not marked busy by a head flit lets messages interleave."""
    broken = mutant(
        OutputUnit,
        "busy[v].eq(1),",
        "",
    )
    # Without the strengthening invariants (which the mutant breaks first), so that the
    # counterexample is an actual interleaving at the output.
    harness = OutputUnitHarness(dut_cls=broken, invariants=False)
    expect_fail("output_unit_mutant_lock", harness, mode="bmc", depth=6, expect="inside a message")


def test_formal_input_unit_bmc() -> None:
    expect_pass("input_unit", InputUnitHarness(), mode="bmc", depth=INPUT_UNIT_DEPTH)


def test_formal_input_unit_cover() -> None:
    expect_pass("input_unit_cover", InputUnitHarness(), mode="cover", depth=8)


def test_formal_input_unit_mutant_wrong_queue() -> None:
    """Reading the VOQ of the wrong output sends a flit where its route did not say, one
    that is not there (a stale slot of an empty queue), or one whose framing the granted
    queue's did not describe (onto a VC it may not use): the solver finds any of them."""
    broken = mutant(
        InputUnit,
        "q.r_queue.eq(Cat(leave[o][v] for o in range(n_out)))",
        "q.r_queue.eq(Cat(leave[o][v] for o in range(n_out)).any())",
    )
    expect_fail(
        "input_unit_mutant",
        InputUnitHarness(dut_cls=broken),
        mode="bmc",
        depth=INPUT_UNIT_DEPTH,
        expect=(
            "on the output its route computed",
            "leaves once, after it arrived",
            "onto a VC it may use",
        ),
    )
