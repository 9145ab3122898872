"""Formal proofs of the shared blocks: round-robin arbiter, credit counter, fabric port
adapters (issue 7). See docs/verification.md; ``make formal`` runs every ``test_formal_*``."""

import pytest

from unifab.hdl.lib.port import StreamsToFabric
from unifab.hdl.link.credits import CreditCounter
from unifab.tb.formal.check import expect_fail, expect_pass
from unifab.tb.formal.harness_lib import CreditLoopHarness, PortPairHarness, RoundRobinHarness
from unifab.tb.formal.mutate import mutant

COVER_DEPTH = 12


@pytest.mark.parametrize("count", [2, 3, 4])
def test_formal_round_robin_proof(count: int) -> None:
    expect_pass(f"round_robin{count}", RoundRobinHarness(count), mode="prove", depth=2)


def test_formal_round_robin_cover() -> None:
    expect_pass("round_robin_cover", RoundRobinHarness(3), mode="cover", depth=COVER_DEPTH)


def test_formal_credit_counter_proof() -> None:
    expect_pass("credit_counter", CreditLoopHarness(depth=3, max_give=3), mode="prove", depth=3)


def test_formal_credit_counter_cover() -> None:
    expect_pass("credit_counter_cover", CreditLoopHarness(), mode="cover", depth=COVER_DEPTH)


def test_formal_credit_counter_mutant_no_decrement() -> None:
    """Removing the credit decrement on a send breaks credit conservation."""
    broken = mutant(
        CreditCounter,
        "self.count.eq(spent)",
        "self.count.eq(gained)",
    )
    expect_fail(
        "credit_counter_mutant",
        CreditLoopHarness(dut_cls=broken),
        mode="prove",
        depth=3,
        expect="credits conserved",
    )


def test_formal_port_pair_proof() -> None:
    expect_pass("port_pair", PortPairHarness(depth=2), mode="prove", depth=3)


def test_formal_port_pair_depth3_proof() -> None:
    expect_pass("port_pair_d3", PortPairHarness(depth=3), mode="prove", depth=3)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_formal_port_pair_registered_proof(depth: int) -> None:
    """The same with the registered receiver (the board's agents and link adapters)."""
    harness = PortPairHarness(depth=depth, registered=True)
    expect_pass(f"port_pair_registered_d{depth}", harness, mode="prove", depth=3)


def test_formal_port_pair_cover() -> None:
    expect_pass("port_pair_cover", PortPairHarness(depth=2), mode="cover", depth=COVER_DEPTH)


def test_formal_port_pair_mutant_no_decrement() -> None:
    """A sender that never spends credits overruns the receiver's buffer."""
    broken = mutant(
        StreamsToFabric,
        "count[v].eq(count[v] - sent + self.port.credit[v])",
        "count[v].eq(count[v] + self.port.credit[v])",
    )
    expect_fail(
        "port_pair_mutant",
        PortPairHarness(send_cls=broken),
        mode="prove",
        depth=3,
        expect="credits conserved",
    )
