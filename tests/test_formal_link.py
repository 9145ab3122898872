"""Formal proofs of the link layer: replay buffer and transmitter → lossy channel → receiver
(issue 7). See docs/verification.md; ``make formal`` runs every ``test_formal_*``."""

from dataclasses import replace

import pytest

from unifab.hdl.link.replay import ReplayBuffer
from unifab.hdl.link.rx import LinkRx
from unifab.hdl.link.tx import LinkTx
from unifab.tb.formal.check import expect_fail, expect_pass
from unifab.tb.formal.harness_link import LinkHarness, ReplayHarness
from unifab.tb.formal.mutate import mutant

#: BMC depth of the end-to-end link proof. Each step costs more than the last (about 20 s for
#: 15 on one core, over three minutes for 17); 15 cycles hold a corrupted flit, its NAK and
#: go-back-N replay, a duplicate, and a sequence-number wrap (the covers show each, the wrap
#: at step 13).
LINK_DEPTH = 15
LINK_COVER_DEPTH = 15


@pytest.mark.parametrize(
    ("depth", "seq_bits"), [(2, 3), (4, 3), (4, 4), (8, 4)], ids=lambda v: str(v)
)
def test_formal_replay_proof(depth: int, seq_bits: int) -> None:
    harness = ReplayHarness(depth, 4, seq_bits)
    expect_pass(f"replay_d{depth}_s{seq_bits}", harness, mode="prove", depth=3)


def test_formal_replay_cover() -> None:
    expect_pass("replay_cover", ReplayHarness(2, 4, 3), mode="cover", depth=24)


def test_formal_replay_mutant_overfill() -> None:
    """Accepting a write with the ring full overwrites the oldest unacknowledged entry: here
    the registered ``wr_ready`` stays high when the last free entry is written."""
    broken = mutant(
        ReplayBuffer,
        "~self.wr_ready | (write & (fill == self.depth - 1))",
        "~self.wr_ready",
    )
    expect_fail(
        "replay_mutant_overfill",
        ReplayHarness(dut_cls=broken),
        mode="prove",
        depth=3,
        expect=("never overwrite an unacknowledged entry", "wr_ready is fill < depth"),
    )


def test_formal_replay_mutant_full_forever() -> None:
    """A registered ``wr_ready`` that ignores this cycle's ACK keeps a full ring full (a BMC:
    filling the two-entry ring and acknowledging takes more steps than the proof's depth)."""
    broken = mutant(ReplayBuffer, "full_next.eq(~ack_ok & (", "full_next.eq((")
    expect_fail(
        "replay_mutant_full_forever",
        ReplayHarness(dut_cls=broken),
        mode="bmc",
        depth=6,
        expect="wr_ready is fill < depth",
    )


def test_formal_replay_mutant_send_slips() -> None:
    """A send pointer that advances with nothing to send slips past the tail: the pointer
    leaves [head, tail], and ``rd_valid`` (nothing to send) no longer matches ``send !=
    tail``. Both fail in the same step, and which one the solver reports varies from run to
    run (a clean-clone CI run got the second), so either counts."""
    broken = mutant(
        ReplayBuffer,
        "send_next.eq(send + (self.rd_next & self.rd_valid))",
        "send_next.eq(send + self.rd_next)",
    )
    expect_fail(
        "replay_mutant_slip",
        ReplayHarness(dut_cls=broken),
        mode="prove",
        depth=3,
        expect=("head <= send <= tail", "rd_valid is send != tail"),
    )


def test_formal_replay_mutant_rd_valid_late() -> None:
    """A registered ``rd_valid`` that misses this cycle's write offers nothing for a cycle
    (and, from a caught-up send pointer, keeps the flit waiting)."""
    broken = mutant(
        ReplayBuffer,
        "self.rd_valid.eq(write | (send_next != tail))",
        "self.rd_valid.eq(send_next != tail)",
    )
    expect_fail(
        "replay_mutant_rd_valid_late",
        ReplayHarness(dut_cls=broken),
        mode="prove",
        depth=3,
        expect="rd_valid is send != tail",
    )


@pytest.mark.heavy
def test_formal_link_bmc() -> None:
    expect_pass("link", LinkHarness(), mode="bmc", depth=LINK_DEPTH)


@pytest.mark.heavy
def test_formal_link_registered_crc_bmc() -> None:
    """The same properties with the receiver's CRC verdict registered (the board's links)."""
    harness = LinkHarness()
    harness.params = replace(harness.params, registered_crc=True)
    expect_pass("link_registered_crc", harness, mode="bmc", depth=LINK_DEPTH)


def test_formal_link_registered_select_bmc() -> None:
    """The same properties with the transmitter's choice of VC registered and both board
    options on (the board's links)."""
    harness = LinkHarness()
    harness.params = replace(harness.params, registered_crc=True, registered_select=True)
    expect_pass("link_registered_select", harness, mode="bmc", depth=LINK_DEPTH)


def test_formal_link_cover() -> None:
    expect_pass("link_cover", LinkHarness(), mode="cover", depth=LINK_COVER_DEPTH)


def test_formal_link_mutant_no_credit_consume() -> None:
    """A transmitter that never spends a credit overruns the receiver's buffer."""
    broken = mutant(
        LinkTx,
        "m.d.comb += [self.flits[v].ready.eq(1), counters[v].consume.eq(1)]",
        "m.d.comb += [self.flits[v].ready.eq(1)]",
        method="_select_direct",
    )
    expect_fail(
        "link_mutant_credit",
        LinkHarness(tx_cls=broken),
        mode="bmc",
        depth=LINK_DEPTH,
        expect="credit",
    )


def test_formal_link_registered_select_mutant_no_credit_consume() -> None:
    """The same with the registered choice of VC: a choice that takes no credit overruns
    the receiver's buffer."""
    broken = mutant(
        LinkTx,
        "m.d.comb += counters[v].consume.eq(1)",
        "pass",
        method="_select_registered",
    )
    harness = LinkHarness(tx_cls=broken)
    harness.params = replace(harness.params, registered_select=True)
    expect_fail(
        "link_registered_select_mutant_credit",
        harness,
        mode="bmc",
        depth=LINK_DEPTH,
        expect="credit",
    )


def test_formal_link_mutant_accept_any_seq() -> None:
    """A receiver that takes every good SEQ flit as in order delivers duplicates."""
    broken = mutant(LinkRx, "in_order.eq(raw.seq == expected)", "in_order.eq(1)")
    expect_fail(
        "link_mutant_order",
        LinkHarness(rx_cls=broken),
        mode="bmc",
        depth=LINK_DEPTH,
        # Both fail at step 7 (a duplicate taken as new is delivered twice and fills a buffer
        # slot the peer holds no credit for); which one the solver reports depends on how the
        # transmitter's logic is written (the stored CRC share changed it).
        expect=("k-th delivered is k-th sent", "B never refuses an in-order flit"),
    )
