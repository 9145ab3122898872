"""pytest configuration of the regression cases (``unifab sim`` / ``make sim``)."""

from __future__ import annotations

import os

from unifab.regression import all_cases
from unifab.testing import seed_from_env


def pytest_report_header(config) -> str:
    """The base seed and simulator, printed before the cases run."""
    seed = seed_from_env(1)
    sim = os.environ.get("SIM") or "verilator"
    return f"unifab regression: {len(all_cases(seed))} cases, base seed {seed}, simulator {sim}"
