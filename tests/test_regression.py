"""The regression machinery: case lists, one measured case, sharding and CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from unifab import regression
from unifab.cli import main
from unifab.regression import Case, all_cases, case_slug, run_case_measured

KNOWN_BENCHES = {"link", "switch", "coherence", "workload"}


def test_case_slug():
    assert case_slug("link P=1e-3 L=32") == "link-p-1e-3-l-32"
    assert case_slug("switch 8p islip uniform") == "switch-8p-islip-uniform"
    assert case_slug("  Coherence (default) stress ") == "coherence-default-stress"


@pytest.mark.parametrize("seed", [1, 1234])
def test_case_lists(seed):
    cases = all_cases(seed)
    assert len({c.slug for c in cases}) == len(cases)
    assert {c.bench for c in cases} <= KNOWN_BENCHES
    assert isinstance(regression.workload_cases(seed), list)
    assert isinstance(regression.two_level_cases(seed), list)
    # Seeds follow the base seed; settings survive a JSON round trip (the child reads them).
    assert any(c.settings.get("seed") == seed for c in cases)
    for c in cases:
        json.dumps(c.settings)


def test_duplicate_slugs_are_refused(monkeypatch):
    twice = [Case("a b", "link"), Case("a-b", "link")]
    monkeypatch.setattr(regression, "CASE_LISTS", (lambda seed: twice,))
    with pytest.raises(ValueError, match="share the id 'a-b'"):
        all_cases(1)


def test_measured_case_writes_its_record(tmp_path, monkeypatch):
    """A tiny link case in a child process: record, checks, wall time and peak RSS."""
    monkeypatch.setattr(regression, "cases_dir", lambda: tmp_path / "cases")
    case = Case(
        "tiny link",
        "link",
        dict(p_err=1e-3, latency=8, flits=300, seed=5),
        (
            ("goodput > 0.1", lambda r: r["goodput"] > 0.1),
            ("impossible goodput", lambda r: r["goodput"] > 2),
        ),
    )
    record = run_case_measured(case, 5)
    assert record["checks"] == {"goodput > 0.1": True, "impossible goodput": False}
    assert record["status"] == "FAIL" and record["error"] is None
    assert record["wall_s"] > 0 and record["peak_rss_mb"] > 10
    # The simulator reports its own peak (a Verilator model with an embedded Python bench is
    # tens of MB); it is one process of the case's tree, whose peak wait4 reports, so it can
    # never exceed that. A missing measurement (None) fails the comparison.
    assert 20 < record["sim_peak_rss_mb"] <= record["peak_rss_mb"]
    assert record["result"]["lost"] == 0 and record["result"]["latency"] == 8
    stored = json.loads((tmp_path / "cases" / "tiny-link.json").read_text())
    assert stored["checks"] == record["checks"] and stored["base_seed"] == 5


def test_failing_bench_is_a_failed_record(tmp_path, monkeypatch):
    monkeypatch.setattr(regression, "cases_dir", lambda: tmp_path / "cases")
    record = run_case_measured(Case("bad bench", "nonsense", {}), 1)
    assert record["status"] == "FAIL"
    assert record["error"].startswith("ValueError: unknown bench 'nonsense'")


def collect(*args: str) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "sim",
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    run = subprocess.run(
        [*command, *args],
        cwd=regression.repo_root(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return [line for line in run.stdout.splitlines() if "::test_case[" in line]


def test_shards_partition_the_cases():
    every = collect()
    assert every == [f"sim/test_sim.py::test_case[{c.slug}]" for c in all_cases(1)]
    shards = [
        collect(
            *("--splits", "3", "--group", str(g), "--splitting-algorithm", "least_duration"),
            *("--durations-path", "sim/.test_durations"),
        )
        for g in (1, 2, 3)
    ]
    assert all(shards)
    assert sorted(node for shard in shards for node in shard) == sorted(every)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--splits", "2"], "--splits and --group go together"),
        (["--splits", "2", "--group", "3"], "--group must be 1..2"),
        (["-k", "no_such_case_anywhere"], "-k 'no_such_case_anywhere' selects no regression case"),
    ],
)
def test_sim_usage_errors(argv, message, capsys):
    assert main(["sim", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"unifab: error: {message}" + err[0].split(message, 1)[1]]
    assert message in err[0]
