"""``make sim`` / ``unifab sim``: the regression cases, run as pytest cases, and the report.

The case lists below are the single source of the regression. ``sim/test_sim.py`` makes one
pytest case per :class:`Case` (id: :attr:`Case.slug`), so ``unifab sim --jobs N`` runs them
in parallel with pytest-xdist and ``--splits K --group G`` (pytest-split) runs one shard of
them. Each case runs its simulation in a child process (:func:`run_case_measured`) and leaves
``build/report/cases/<slug>.json``; :mod:`unifab.report` merges whatever case files are there
into ``build/report/report.md`` and ``results.json``.

Peak RSS: the child process is reaped with :func:`os.wait4`; its ``ru_maxrss`` is the largest
resident set of any single process of the case's tree (the Python bench driver, and the
Verilator compiler and C++ compiler when this case built the model). The simulator process
alone (the compiled model with the Python testbench embedded) reports its own peak with its
result (``BenchSettings.write_result``), as ``sim_peak_rss_mb``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unifab.tools import build_root

__all__ = [
    "Case",
    "all_cases",
    "case_slug",
    "cases_dir",
    "coherence_cases",
    "evaluate_checks",
    "find_case",
    "format_figure",
    "regression_cases",
    "run_case_measured",
    "run_regression",
    "switch_cases",
    "two_level_cases",
    "workload_cases",
]


def case_slug(name: str) -> str:
    """A case name as a pytest id and file name: lower case, runs of other characters as ``-``
    (``"link P=1e-3 L=32"`` → ``link-p-1e-3-l-32``)."""
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-")


@dataclass(frozen=True)
class Case:
    """One regression point: a bench, its settings and the checks its figures must pass."""

    name: str
    bench: str
    settings: dict[str, Any] = field(default_factory=dict)
    # (description, predicate on the result); a failed predicate fails the regression. Loss,
    # duplication and reordering need no check here: the benches' scoreboards raise on them.
    checks: tuple[tuple[str, Callable[[dict], bool]], ...] = ()

    @property
    def slug(self) -> str:
        """The pytest id and case-file name."""
        return case_slug(self.name)


def regression_cases(seed: int) -> list[Case]:
    """The full-size regression."""
    return [
        Case(
            "link clean L=32",
            "link",
            dict(p_err=0.0, latency=32, flits=100_000, seed=seed),
            (("goodput >= 0.97", lambda r: r["goodput"] >= 0.97),),
        ),
        Case(
            "link P=1e-3 L=32",
            "link",
            dict(p_err=1e-3, latency=32, flits=100_000, seed=seed + 1),
            (("goodput >= 0.90", lambda r: r["goodput"] >= 0.90),),
        ),
        Case(
            "link P=1e-2 L=32",
            "link",
            dict(p_err=1e-2, latency=32, flits=100_000, seed=seed + 2),
            (),
        ),
        Case(
            "link bursts+stalls",
            "link",
            dict(p_err=2e-3, latency=16, flits=50_000, burst=True, stall=True, seed=seed + 3),
            (),
        ),
        Case(
            "link back-pressure",
            "link",
            dict(p_err=5e-3, latency=32, flits=50_000, inject=0.8, ready=0.5, seed=seed + 4),
            (),
        ),
        Case(
            "link reset recovery",
            "link",
            dict(p_err=1e-3, latency=16, flits=20_000, reset=True, seed=seed + 5),
            (("link went down and recovered", lambda r: r["downs"] >= 1),),
        ),
    ]


def _switch_case(name: str, checks=(), **settings) -> Case:
    return Case(name, "switch", settings, tuple(checks))


def switch_cases(seed: int) -> list[Case]:
    """Switch sweeps at full size (targets of the switch issue as checks)."""
    sweep = (0.01, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0)
    return [
        _switch_case(
            "switch 8p islip uniform",
            (
                ("zero-load latency <= 2", lambda r: r["zero_load_latency"] <= 2.0),
                ("saturation >= 0.95", lambda r: r["saturation_throughput"] >= 0.95),
                (
                    "latency at 0.8 <= zero-load + 4",
                    lambda r: r["latency_at_0_8"] <= r["zero_load_latency"] + 4,
                ),
            ),
            ports=8,
            allocator="islip",
            pattern="uniform",
            loads=sweep,
            seed=seed,
        ),
        _switch_case(
            "switch 8p fifo reference",
            (
                (
                    "HOL-limited saturation 0.55..0.70",
                    lambda r: 0.55 <= r["saturation_throughput"] <= 0.70,
                ),
            ),
            ports=8,
            allocator="fifo",
            pattern="uniform",
            loads=(0.01, 0.5, 1.0),
            seed=seed + 1,
        ),
        _switch_case(
            "switch 8p mixed bp bad",
            (),
            ports=8,
            allocator="islip",
            pattern="uniform",
            mix="mixed",
            loads=(0.3, 0.6),
            bp=0.2,
            bad=0.005,
            seed=seed + 2,
        ),
        _switch_case(
            "switch 8p flood",
            (("victims served", lambda r: r["points"][0].get("victim_latency_max", 1e9) < 200),),
            ports=8,
            allocator="islip",
            pattern="flood",
            loads=(0.05,),
            seed=seed + 3,
        ),
    ]


def coherence_cases(seed: int) -> list[Case]:
    """The coherent system (``default`` preset) at full size, with the issue's targets."""
    return [
        Case(
            "coherence default latency",
            "coherence",
            dict(preset="default", test="coherence_latency", seed=seed),
            (
                ("no violations", lambda r: r["violations"] == 0),
                (
                    "clean remote read fabric overhead <= 24 cycles",
                    lambda r: r["remote_read_clean_fabric"] <= 24,
                ),
            ),
        ),
        Case(
            "coherence default stress",
            "coherence",
            dict(preset="default", ops=4500, seed=seed + 1),
            (("no violations", lambda r: r["violations"] == 0),),
        ),
    ]


# Scale of each workload in the regression (WorkloadSpec.scaled): the bulk workloads at half
# size keep `make sim` within the hour on 2 cores (KV blocks 8-32 KiB, 8 pages per endpoint).
WORKLOAD_SCALES = {
    "kv_cache": 0.5,
    "embedding_gather": 1.0,
    "page_swap": 0.5,
    "remote_read_64": 1.0,
}


def _no_violations(r: dict) -> bool:
    return r["violations"] == 0


def workload_cases(seed: int) -> list[Case]:
    """Workloads (KV cache, embedding gather, page swap, 64-byte remote read), memory and
    message semantics on the ``default`` super node; both modes of a workload share a seed,
    so they run the same transfers."""
    return [
        Case(
            f"workload {workload} {mode}",
            "workload",
            dict(workload=workload, mode=mode, preset="default", scale=scale, seed=seed + 10 + k),
            (("no violations", _no_violations),),
        )
        for k, (workload, scale) in enumerate(WORKLOAD_SCALES.items())
        for mode in ("memory", "message")
    ]


def supernode_cases(seed: int) -> list[Case]:
    """The coherence stress on the ``default`` topology's super node (8 endpoints, 4 homes)."""
    return [
        Case(
            "coherence supernode default stress",
            "coherence",
            dict(topology="default", ops=300, seed=seed + 5),
            (("no violations", _no_violations),),
        )
    ]


def two_level_cases(seed: int) -> list[Case]:
    """The two-level (leaf/spine, link layers) topology: the coherence stress and the
    workloads in memory semantics, plus the 64-byte read in both modes."""
    cases = [
        Case(
            "two-level coherence stress",
            "coherence",
            dict(topology="two-level", ops=1000, seed=seed + 20),
            (("no violations", _no_violations),),
        )
    ]
    for k, (workload, scale) in enumerate(WORKLOAD_SCALES.items()):
        modes = ("memory", "message") if workload == "remote_read_64" else ("memory",)
        cases += [
            Case(
                f"two-level workload {workload} {mode}",
                "workload",
                dict(
                    workload=workload,
                    mode=mode,
                    preset="two-level",
                    scale=scale,
                    seed=seed + 30 + k,
                ),
                (("no violations", _no_violations),),
            )
            for mode in modes
        ]
    return cases


CASE_LISTS: tuple[Callable[[int], list[Case]], ...] = (
    regression_cases,
    switch_cases,
    coherence_cases,
    supernode_cases,
    workload_cases,
    two_level_cases,
)


def all_cases(seed: int) -> list[Case]:
    """Every regression case for base seed ``seed``, in report order (slugs are unique)."""
    cases = [c for make in CASE_LISTS for c in make(seed)]
    seen: dict[str, str] = {}
    for c in cases:
        if c.slug in seen:
            raise ValueError(f"cases {seen[c.slug]!r} and {c.name!r} share the id {c.slug!r}")
        seen[c.slug] = c.name
    return cases


def find_case(slug: str, seed: int) -> Case:
    """The case whose :attr:`Case.slug` is ``slug``."""
    for c in all_cases(seed):
        if c.slug == slug:
            return c
    raise ValueError(f"no regression case {slug!r}")


def cases_dir() -> Path:
    """Where each case leaves its result file: ``build/report/cases``."""
    return build_root() / "report" / "cases"


def _run_case(case: Case, sim: str | None) -> dict:
    """Run one case's bench in this process and return its result dictionary."""
    if case.bench == "link":
        from unifab.tb.benches import link_bench

        return link_bench(sim=sim, **case.settings)
    if case.bench == "switch":
        from unifab.cli import switch_summary
        from unifab.tb.benches import switch_bench

        settings = dict(case.settings)
        loads = settings["loads"]
        result = switch_bench(sim=sim, **settings)
        if 0.01 in loads and 1.0 in loads:
            result.update(switch_summary(result))  # keeps the port counters for the report
        result["sim_cycles_per_s"] = min(p["sim_cycles_per_s"] for p in result["points"])
        return result
    if case.bench == "coherence":
        from unifab.tb.benches import coherence_bench

        return coherence_bench(sim=sim, **case.settings)
    if case.bench == "workload":
        from unifab.tb.benches import workload_bench

        return workload_bench(sim=sim, **case.settings)
    raise ValueError(f"unknown bench {case.bench!r}")


def evaluate_checks(case: Case, result: Any) -> dict[str, bool]:
    """Each check's description and whether it passed (a check that raises fails)."""
    outcome = {}
    for description, predicate in case.checks:
        try:
            outcome[description] = bool(predicate(result))
        except Exception:
            outcome[description] = False
    return outcome


# --------------------------------------------------------------------------------------------
# One case in a child process


def _child_main(argv: list[str]) -> int:
    """``python -m unifab.regression SPEC OUT``: run the case described by the JSON file SPEC
    (name, bench, settings) and write its result, or its error, and the simulator's peak RSS
    to OUT. The checks stay with the parent (they are Python predicates)."""
    spec, out = json.loads(Path(argv[0]).read_text()), Path(argv[1])
    case = Case(spec["name"], spec["bench"], spec["settings"])
    payload: dict[str, Any] = {}
    try:
        payload["result"] = _run_case(case, os.environ.get("SIM") or None)
    except Exception as e:  # the parent reports it; the traceback is in the case log
        import traceback

        traceback.print_exc()
        payload["error"] = f"{type(e).__name__}: {e}"
    out.write_text(json.dumps(payload, default=_jsonable))
    return 0 if "result" in payload else 1


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays, tuples and paths as JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_case_measured(case: Case, seed: int, *, sim: str | None = None) -> dict[str, Any]:
    """Run ``case`` in a child process and return its record (also written to
    ``build/report/cases/<slug>.json``): status, checks, error, wall seconds, peak RSS, the
    bench result and where it came from."""
    out_dir = cases_dir()
    logs = out_dir.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    spec_file = logs / f"{case.slug}.case.json"
    result_file = logs / f"{case.slug}.result.json"
    log_file = logs / f"{case.slug}.log"
    result_file.unlink(missing_ok=True)
    spec = {"name": case.name, "bench": case.bench, "settings": case.settings}
    spec_file.write_text(json.dumps(spec, default=_jsonable))
    env = dict(os.environ, UNIFAB_QUIET="1", UNIFAB_SEED=str(seed))
    if sim:
        env["SIM"] = sim
    cmd = [sys.executable, "-m", "unifab.regression", str(spec_file), str(result_file)]
    start = time.perf_counter()
    with open(log_file, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    try:
        payload = json.loads(result_file.read_text())
    except (OSError, ValueError):
        payload = {"error": f"case process exited with {proc.returncode} and wrote no result"}
    result = payload.get("result")
    checks = evaluate_checks(case, result) if result is not None else {}
    error = payload.get("error")
    if error:
        error = f"{error} (log: {log_file})\n{_tail(log_file)}"
    status_text = "pass" if result is not None and all(checks.values()) else "FAIL"

    def mb(kb: int | None) -> float | None:
        return round(kb / 1024, 1) if kb else None

    record = {
        "name": case.name,
        "slug": case.slug,
        "bench": case.bench,
        "settings": case.settings,
        "base_seed": seed,
        "sim": env.get("SIM") or "verilator",
        "status": status_text,
        "checks": checks,
        "error": error,
        "wall_s": round(wall, 2),
        "peak_rss_mb": mb(usage.ru_maxrss),
        # Written by the bench from inside the simulator (BenchSettings.write_result).
        "sim_peak_rss_mb": mb((result or {}).get("sim_peak_rss_kb")),
        "command": os.environ.get("UNIFAB_SIM_COMMAND") or "python -m pytest sim",
        "host": socket.gethostname(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "log": str(log_file),
        "result": result,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{case.slug}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=_jsonable))
    tmp.replace(path)
    return record


# --------------------------------------------------------------------------------------------
# The whole regression: pytest (xdist, pytest-split), then the report


def repo_root() -> Path:
    """The checkout holding ``sim/`` (this file is ``sw/unifab/regression.py``)."""
    return Path(__file__).resolve().parents[2]


def pytest_command(
    *,
    jobs: int,
    splits: int | None = None,
    group: int | None = None,
    keyword: str | None = None,
) -> list[str]:
    """The pytest command line that runs the regression cases (from the repository root)."""
    cmd = [sys.executable, "-m", "pytest", "sim", "-v", "-p", "no:cacheprovider"]
    cmd += ["-n", str(jobs)]
    if splits is not None:
        cmd += ["--splits", str(splits), "--group", str(group)]
        cmd += ["--splitting-algorithm", "least_duration"]
        cmd += ["--durations-path", str(repo_root() / "sim" / ".test_durations")]
    if keyword:
        cmd += ["-k", keyword]
    return cmd


def run_regression(
    *,
    jobs: int = 2,
    seed: int = 1,
    sim: str | None = None,
    splits: int | None = None,
    group: int | None = None,
    keyword: str | None = None,
    command: str | None = None,
) -> int:
    """Run the regression cases with pytest, then merge every case file into the report;
    0 when every case passed. A whole run (no shard, no ``-k``) first removes old case files."""
    from unifab.report import merge_report

    if (splits is None) != (group is None):
        raise ValueError("--splits and --group go together")
    if splits is not None and not 1 <= group <= splits:
        raise ValueError(f"--group must be 1..{splits} (the number of --splits), not {group}")
    cases = all_cases(seed)
    root = repo_root()
    if not (root / "sim" / "test_sim.py").is_file():
        raise ValueError(f"no sim/test_sim.py under {root}: run from a source checkout")
    if splits is None and not keyword:
        for old in cases_dir().glob("*.json"):
            old.unlink()
    cmd = pytest_command(jobs=jobs, splits=splits, group=group, keyword=keyword)
    command = command or f"unifab sim --jobs {jobs} --seed {seed}"
    print(
        f"unifab regression: {len(cases)} cases, {jobs} at a time, base seed {seed}"
        f" (replay with UNIFAB_SEED={seed} or --seed {seed})"
    )
    print("$ " + shlex.join(cmd), flush=True)
    env = dict(os.environ, UNIFAB_SEED=str(seed), UNIFAB_SIM_COMMAND=command)
    if sim:
        env["SIM"] = sim
    start = time.perf_counter()
    code = subprocess.call(cmd, cwd=root, env=env)
    elapsed = time.perf_counter() - start
    if code == 5:
        raise ValueError(
            f"-k {keyword!r} selects no regression case" if keyword else "no case was selected"
        )
    if code not in (0, 1):
        raise ValueError(f"pytest stopped with exit code {code} (see its output above)")
    failed = merge_report(commands=[command], elapsed_s=elapsed)
    return 1 if failed or code else 0


def format_figure(v: Any) -> str:
    """Numbers as the terminal tables and the report print them."""
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"
    if v is None:
        return ""
    return str(v)


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
