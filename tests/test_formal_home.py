"""Formal proofs of the home agent: directory entries, transaction table, bounded liveness
(issue 7). See docs/verification.md ("Home agent"); ``make formal`` runs every
``test_formal_*``."""

import pytest

from unifab.hdl.coherence.home import HomeAgent
from unifab.tb.formal.check import expect_fail, expect_pass
from unifab.tb.formal.harness_home import (
    HomeLivenessHarness,
    HomeSafetyHarness,
    small_home_params,
)
from unifab.tb.formal.mutate import mutant

#: Covers of the safety harness: the last (a row with both ways valid) is reached in step 23.
COVER_DEPTH = 24
#: Bounded liveness: an entry is freed within LIVENESS_BOUND cycles of entering the table;
#: checked for every entry that enters within the first LIVENESS_DEPTH - LIVENESS_BOUND - 1
#: cycles (the first enters in step 4).
LIVENESS_BOUND = 16
LIVENESS_DEPTH = 40
LIVENESS_COVER_DEPTH = 12

GEOMETRIES = {
    "2way_2entries": dict(ways=2, entries=2, lines=4),
    "1way_1entry": dict(ways=1, entries=1, lines=2),
}


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_formal_home_directory_table_proof(geometry: str) -> None:
    """Directory rows written are well formed and hold one entry per line; the table holds
    one entry per line; a COMP_ACK frees exactly its entry (k-induction)."""
    harness = HomeSafetyHarness(small_home_params(**GEOMETRIES[geometry]))
    expect_pass(f"home_safety_{geometry}", harness, mode="prove", depth=2)


def test_formal_home_directory_table_cover() -> None:
    """An EM entry and an S entry are written, a set fills, a COMP_ACK frees an entry and
    the table fills: the proof is not vacuous."""
    expect_pass("home_safety_cover", HomeSafetyHarness(), mode="cover", depth=COVER_DEPTH)


def test_formal_home_liveness_bmc() -> None:
    """Under a fair environment every table entry is freed within LIVENESS_BOUND cycles."""
    harness = HomeLivenessHarness(bound=LIVENESS_BOUND)
    expect_pass("home_liveness", harness, mode="bmc", depth=LIVENESS_DEPTH)


def test_formal_home_liveness_cover() -> None:
    """An entry enters and leaves the table under the fair environment."""
    harness = HomeLivenessHarness(bound=LIVENESS_BOUND)
    expect_pass("home_liveness_cover", harness, mode="cover", depth=LIVENESS_COVER_DEPTH)


def test_formal_home_mutant_em_keeps_sharers() -> None:
    """Granting EM without clearing the sharer set (an UPGRADE from S with another sharer)
    writes an entry that is an owner and a sharer at once."""
    broken = mutant(
        HomeAgent,
        "e_owned_by_r = entry(valid=1, em=1, owner=req.src[:owner_bits])",
        "e_owned_by_r = entry(valid=1, em=1, sharers=cur.sharers, owner=req.src[:owner_bits])",
    )
    harness = HomeSafetyHarness(dut_cls=broken, invariants=False)
    expect_fail("home_mutant_em_sharers", harness, mode="bmc", depth=30, expect="EM has no")


def test_formal_home_mutant_ignore_busy_line() -> None:
    """A request whose line is busy in the table is taken anyway: two entries for one line."""
    broken = mutant(
        HomeAgent,
        "with m.Elif(table.lookup_busy[0] | (is_coh_read & table.full)):",
        "with m.Elif(is_coh_read & table.full):",
    )
    harness = HomeSafetyHarness(dut_cls=broken, invariants=False)
    expect_fail("home_mutant_busy_line", harness, mode="bmc", depth=20, expect="never hold one")


def test_formal_home_mutant_never_frees() -> None:
    """A home that ignores COMP_ACK never frees a table entry: the liveness bound fails."""
    broken = mutant(HomeAgent, "table.ack.eq(ack_ok)", "table.ack.eq(0)")
    harness = HomeLivenessHarness(dut_cls=broken, bound=LIVENESS_BOUND)
    expect_fail(
        "home_mutant_never_frees",
        harness,
        mode="bmc",
        depth=LIVENESS_DEPTH,
        expect="leaves the table within bound",
    )
