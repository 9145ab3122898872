"""pytest glue: run a harness and fail with the counterexample's VCD path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from amaranth.hdl import Elaboratable

from .engine import FormalResult, run_formal

__all__ = ["expect_fail", "expect_pass", "failed_asserts"]


def expect_pass(name: str, harness: Elaboratable, *, mode: str, depth: int) -> FormalResult:
    """Run a proof, BMC or cover task and fail the test unless sby says PASS."""
    result = run_formal(name, harness, mode=mode, depth=depth)
    if not result.passed:
        pytest.fail(result.summary() + f"\n(sby log: {result.workdir}/logfile.txt)")
    return result


def failed_asserts(result: FormalResult) -> list[str]:
    """Source text of each ``Assert(...)`` call sby reports failed."""
    texts = []
    for path, line in re.findall(r"Assert failed in \S+: (\S+?):(\d+)", result.log):
        source = "\n".join(Path(path).read_text().splitlines()[int(line) - 1 :])
        start = source.find("Assert(")
        depth = 0
        for end in range(start, len(source)):
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            if depth == 0 and source[end] == ")":
                break
        texts.append(source[start : end + 1])
    return texts


def expect_fail(
    name: str, harness: Elaboratable, *, mode: str, depth: int, expect: str
) -> FormalResult:
    """Run a task on a deliberately broken design: sby must find a counterexample (FAIL) of
    an assertion whose source contains ``expect`` and leave it as a VCD. An ERROR, TIMEOUT or
    a different assertion does not count."""
    result = run_formal(name, harness, mode=mode, depth=depth)
    if result.status != "FAIL":
        pytest.fail(f"the mutant was not caught: {result.summary()}")
    assert result.vcds, "a failing proof leaves a counterexample trace"
    texts = failed_asserts(result)
    if not any(expect in text for text in texts):
        pytest.fail(f"the mutant failed other assertions than {expect!r}: {texts}")
    return result
