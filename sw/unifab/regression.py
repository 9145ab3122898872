"""``make sim`` / ``unifab sim``: the regression at full sizes, a summary table and a report.

Each case is an independent, seeded simulation; cases run ``jobs`` at a time (each simulator
is its own process). Results land in ``build/report/results.json`` and
``build/report/report.md``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from unifab.tools import build_root

__all__ = [
    "Case",
    "coherence_cases",
    "format_figure",
    "regression_cases",
    "run_regression",
]


@dataclass(frozen=True)
class Case:
    """One regression point: a bench, its settings and the checks its figures must pass."""

    name: str
    bench: str
    settings: dict[str, Any] = field(default_factory=dict)
    # (description, predicate on the result); a failed predicate fails the regression. Loss,
    # duplication and reordering need no check here: the benches' scoreboards raise on them.
    checks: tuple[tuple[str, Callable[[dict], bool]], ...] = ()


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


def _run_case(case: Case, sim: str | None) -> dict:
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
            result.update(switch_summary(result))
        result["sim_cycles_per_s"] = min(p["sim_cycles_per_s"] for p in result["points"])
        return result
    if case.bench == "coherence":
        from unifab.tb.benches import coherence_bench

        return coherence_bench(sim=sim, **case.settings)
    raise ValueError(f"unknown bench {case.bench!r}")


def run_regression(*, jobs: int = 2, seed: int = 1, sim: str | None = None) -> int:
    """Run every case, print a summary, write the report; 0 when every check passed."""
    import os

    os.environ["UNIFAB_QUIET"] = "1"  # simulator logs go to files; the table goes to the terminal
    cases = regression_cases(seed) + switch_cases(seed) + coherence_cases(seed)
    out = build_root() / "report"
    out.mkdir(parents=True, exist_ok=True)
    print(f"unifab regression: {len(cases)} cases, {jobs} at a time, base seed {seed}")
    results: dict[str, dict] = {}
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_run_case, c, sim): c for c in cases}
        for n, fut in enumerate(as_completed(futures), 1):
            case = futures[fut]
            try:
                r = fut.result()
                failed = [d for d, pred in case.checks if not pred(r)]
                r["checks"] = {d: d not in failed for d, _ in case.checks}
                r["status"] = "FAIL" if failed else "pass"
            except AssertionError as e:
                r = {"status": "FAIL", "error": str(e)}
            results[case.name] = r
            print(f"[{n}/{len(cases)}] {r['status']:4}  {case.name}", flush=True)
    elapsed = time.perf_counter() - start

    from unifab.cli import LINK_COLUMNS

    cols = tuple(c for c in LINK_COLUMNS if c not in ("p_err", "latency"))
    lines = ["| case | status | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for case in (c for c in cases if c.bench == "link"):
        r = results[case.name]
        cells = [format_figure(r.get(c, "")) for c in cols]
        lines.append(f"| {case.name} | {r['status']} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print()
    print(table)
    failed = [name for name, r in results.items() if r["status"] != "pass"]
    print(f"\n{len(cases) - len(failed)} passed, {len(failed)} failed ({elapsed:.0f} s)")

    switch_rows = [c for c in cases if c.bench == "switch"]
    scols = ("saturation_throughput", "zero_load_latency", "latency_at_0_8", "sim_cycles_per_s")
    slines = ["| case | status | " + " | ".join(scols) + " |", "|---" * (len(scols) + 2) + "|"]
    for case in switch_rows:
        r = results[case.name]
        slines.append(
            f"| {case.name} | {r['status']} | "
            + " | ".join(format_figure(r.get(c, "")) for c in scols)
            + " |"
        )
    print()
    print("\n".join(slines))

    from unifab.cli import COHERENCE_COLUMNS

    ccols = ("ops", "checked_loads", "violations", *COHERENCE_COLUMNS)
    clines = ["| case | status | " + " | ".join(ccols) + " |", "|---" * (len(ccols) + 2) + "|"]
    for case in (c for c in cases if c.bench == "coherence"):
        r = results[case.name]
        clines.append(
            f"| {case.name} | {r['status']} | "
            + " | ".join(format_figure(r.get(c, "")) for c in ccols)
            + " |"
        )
    print()
    print("\n".join(clines))

    payload = {name: {k: v for k, v in r.items() if k != "counters"} for name, r in results.items()}
    (out / "results.json").write_text(json.dumps(payload, indent=1, sort_keys=True))
    report = [
        "# unifab regression report",
        "",
        f"Command: `make sim` (or `unifab sim --seed {seed} --jobs {jobs}`), "
        f"simulator {sim or 'verilator'}, {elapsed:.0f} s wall.",
        "",
        "## Link layer (two link layers over lossy channels, all VCs at once)",
        "",
        "Goodput is payload flits per cycle per direction; lost/duplicated/reordered come from "
        "the per-VC ordered scoreboard.",
        "",
        table,
        "",
        "## Switch (offered-load sweeps, Python traffic generators and scoreboards)",
        "",
        "\n".join(slines),
        "",
        "## Coherent system (endpoints, homes, one switch; AXI VIP on every port)",
        "",
        "Latencies in cycles at the endpoints' AXI ports (one switch hop, no link layer);"
        " memory_read is the AXI RAM's own latency, remote_read_clean_fabric the rest. The"
        " stress runs every workload with every coherence checker on.",
        "",
        "\n".join(clines),
        "",
    ]
    (out / "report.md").write_text("\n".join(report))
    print(f"report: {out / 'report.md'}; results: {out / 'results.json'}")
    for name in failed:
        print(f"FAILED: {name}: {results[name].get('error') or results[name]['checks']}")
    return 1 if failed else 0


def format_figure(v: Any) -> str:
    """Numbers as the terminal tables and the report print them."""
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)
