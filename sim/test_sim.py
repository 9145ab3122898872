"""The regression: one seeded pytest case per :class:`unifab.regression.Case`.

Run by ``unifab sim`` (``pytest sim -n JOBS``, optionally ``--splits K --group G``). Each case
simulates in a child process, leaves ``build/report/cases/<slug>.json`` and fails when its
bench failed or one of its checks did not hold; ``unifab report`` merges the case files.
"""

from __future__ import annotations

import os

import pytest

from unifab.regression import Case, all_cases, run_case_measured
from unifab.testing import seed_from_env

BASE_SEED = seed_from_env(1)
CASES = all_cases(BASE_SEED)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.slug for c in CASES])
def test_case(case: Case) -> None:
    """Run ``case`` and check its figures."""
    record = run_case_measured(case, BASE_SEED, sim=os.environ.get("SIM") or None)
    print(
        f"{case.name}: {record['status']} in {record['wall_s']} s, "
        f"peak RSS {record['peak_rss_mb']} MB (simulator {record['sim_peak_rss_mb']} MB)"
    )
    if record["error"]:
        pytest.fail(f"{case.name}: {record['error']}", pytrace=False)
    broken = [d for d, ok in record["checks"].items() if not ok]
    if broken:
        pytest.fail(f"{case.name}: checks failed: {', '.join(broken)}", pytrace=False)
