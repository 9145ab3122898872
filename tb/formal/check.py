"""pytest glue: run a harness and fail with the counterexample's VCD path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from amaranth.hdl import Elaboratable

from .engine import FormalResult, run_formal

__all__ = ["expect_fail", "expect_pass", "expect_unproved", "failed_asserts"]


def expect_pass(name: str, harness: Elaboratable, *, mode: str, depth: int) -> FormalResult:
    """Run a proof, BMC or cover task and fail the test unless sby says PASS."""
    result = run_formal(name, harness, mode=mode, depth=depth)
    if not result.passed:
        pytest.fail(result.summary() + f"\n(sby log: {result.workdir}/logfile.txt)")
    return result


def _messages(result: FormalResult) -> dict[str, str]:
    """Message of each assertion, by its witness name in sby's model."""
    model = result.workdir / "model" / "design.il"
    if not model.exists():
        return {}
    messages = {}
    for cell in model.read_text().split("  cell $check \\")[1:]:
        name, _, body = cell.partition("\n")
        text = re.search(r'parameter \\FORMAT "([^"]*)"', body.split("\n  end")[0])
        messages[name] = text.group(1) if text else ""
    return messages


def failed_asserts(result: FormalResult) -> list[str]:
    """Source text of each ``Assert(...)`` call sby reports failed, followed by its message
    (which tells apart the assertions one helper line makes for several channels)."""
    texts = []
    messages = _messages(result)
    for path, line, witness in re.findall(
        r"Assert failed in \S+: (\S+?):(\d+)(?: \((\S+)\))?", result.log
    ):
        source = "\n".join(Path(path).read_text().splitlines()[int(line) - 1 :])
        start = source.find("Assert(")
        depth = 0
        for end in range(start, len(source)):
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            if depth == 0 and source[end] == ")":
                break
        texts.append(source[start : end + 1] + f"  # {messages.get(witness, '')}")
    return texts


def expect_fail(
    name: str, harness: Elaboratable, *, mode: str, depth: int, expect: str | tuple[str, ...]
) -> FormalResult:
    """Run a task on a deliberately broken design: sby must find a counterexample (FAIL) of
    an assertion whose source contains ``expect`` (or one of several) and leave it as a VCD.
    An ERROR, TIMEOUT or a different assertion does not count."""
    expected = (expect,) if isinstance(expect, str) else expect
    result = run_formal(name, harness, mode=mode, depth=depth)
    if result.status != "FAIL":
        pytest.fail(f"the mutant was not caught: {result.summary()}")
    assert result.vcds, "a failing proof leaves a counterexample trace"
    texts = failed_asserts(result)
    if not any(e in text for text in texts for e in expected):
        pytest.fail(f"the mutant failed other assertions than {expect!r}: {texts}")
    return result


def expect_unproved(name: str, harness: Elaboratable, *, depth: int, expect: str) -> FormalResult:
    """Like :func:`expect_fail` for a mutant whose counterexample from reset is too deep for a
    BMC in the test's time: the k-induction proof must fail (FAIL, or UNKNOWN from a failed
    induction step) on an assertion whose source or message contains ``expect``, leaving a
    trace. Weaker evidence than a trace from reset, as the docs say where it is used."""
    result = run_formal(name, harness, mode="prove", depth=depth)
    if result.status not in ("FAIL", "UNKNOWN"):
        pytest.fail(f"the mutant was not caught: {result.summary()}")
    assert result.vcds, "a failed proof leaves a trace"
    texts = failed_asserts(result)
    if not any(expect in text for text in texts):
        pytest.fail(f"the mutant failed other assertions than {expect!r}: {texts}")
    return result
