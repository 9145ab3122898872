"""The regression report: merges case files into ``report.md``, ``results.json`` and plots.

``unifab sim`` renders it after its cases ran; ``unifab report`` only merges, for shards run on
other machines whose ``build/report/cases/*.json`` were copied into one folder. Each case file
is the record :func:`unifab.regression.run_case_measured` wrote: name, bench, settings, status,
checks, wall time, peak RSS and the bench's result.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unifab.regression import all_cases, cases_dir, format_figure
from unifab.tools import build_root

__all__ = [
    "PUBLISHED_REMOTE_READ_RATIO",
    "RenderedReport",
    "case_durations",
    "load_case_records",
    "merge_report",
    "render_report",
    "workload_rows",
]

#: Published measurement the 64-byte remote read is compared with: a UB load against a RoCE
#: read of the same size, message latency over memory latency.
PUBLISHED_REMOTE_READ_RATIO = 4.4


def _link_columns() -> tuple[str, ...]:
    from unifab.cli import LINK_COLUMNS as BENCH_LINK_COLUMNS

    # The bench table's columns but the settings every regression row names already.
    return tuple(c for c in BENCH_LINK_COLUMNS if c not in ("p_err", "latency"))


LINK_COLUMNS = _link_columns()
SWITCH_COLUMNS = (
    "saturation_throughput",
    "zero_load_latency",
    "latency_at_0_8",
    "sim_cycles_per_s",
)


def _coherence_columns() -> tuple[str, ...]:
    from unifab.cli import COHERENCE_COLUMNS as LATENCY_COLUMNS

    return ("ops", "checked_loads", "violations", *LATENCY_COLUMNS)


COHERENCE_COLUMNS = _coherence_columns()
MODES = ("memory", "message")
#: The pytest function that runs one regression case (``sim/test_sim.py``).
SIM_TEST_NODE = "sim/test_sim.py::test_case"
#: Report order of cases that are not in the case lists (e.g. from another checkout).
BENCH_ORDER = ("link", "switch", "coherence", "workload")


@dataclass
class RenderedReport:
    """What :func:`render_report` wrote, and the summary it prints on the terminal."""

    markdown: Path
    results: Path
    plots: list[Path] = field(default_factory=list)
    terminal: str = ""
    failed: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Loading


def _case_order(records: Iterable[dict]) -> dict[str, int]:
    """Report order: the order of the case lists (for each base seed seen), unknown cases last."""
    order: dict[str, int] = {}
    for seed in sorted({r.get("base_seed", 1) for r in records}):
        try:
            for case in all_cases(seed):
                order.setdefault(case.slug, len(order))
        except Exception:  # a case list that cannot be built here still leaves its files
            continue
    return order


def load_case_records(directory: str | Path | None = None) -> list[dict]:
    """Every case file (``*.json``) of ``directory`` (default ``build/report/cases``), in
    report order; unreadable files raise ``ValueError`` naming the file."""
    folder = Path(directory) if directory is not None else cases_dir()
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"case file {path} is not readable JSON: {e}") from None
        if not isinstance(record, dict) or "name" not in record or "status" not in record:
            raise ValueError(f"case file {path} is not a regression case record")
        records.append(record)
    order = _case_order(records)
    benches = {b: n for n, b in enumerate(BENCH_ORDER)}
    return sorted(
        records,
        key=lambda r: (
            order.get(r.get("slug", ""), len(order)),
            benches.get(r.get("bench", ""), len(benches)),
            r["name"],
        ),
    )


# --------------------------------------------------------------------------------------------
# Tables


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format_figure(value)


def _terminal_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Right-aligned columns for the terminal (first column left-aligned)."""
    cells = [[str(h) for h in header], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(parts))
    return "\n".join(lines)


def _by_bench(records: Sequence[dict], bench: str) -> list[dict]:
    return [r for r in records if r.get("bench") == bench]


def _result(record: dict) -> dict:
    result = record.get("result")
    return result if isinstance(result, dict) else {}


def _link_table(records: Sequence[dict]) -> str:
    rows = [
        [r["name"], r["status"], *(_result(r).get(c, "") for c in LINK_COLUMNS)]
        for r in _by_bench(records, "link")
    ]
    return _table(["case", "status", *LINK_COLUMNS], rows)


def _switch_table(records: Sequence[dict]) -> str:
    rows = [
        [r["name"], r["status"], *(_result(r).get(c, "") for c in SWITCH_COLUMNS)]
        for r in _by_bench(records, "switch")
    ]
    return _table(["case", "status", *SWITCH_COLUMNS], rows)


def _coherence_table(records: Sequence[dict]) -> str:
    rows = [
        [
            r["name"],
            r["settings"].get("topology") or r["settings"].get("preset", ""),
            r["status"],
            *(_result(r).get(c, "") for c in COHERENCE_COLUMNS),
        ]
        for r in _by_bench(records, "coherence")
    ]
    return _table(["case", "system", "status", *COHERENCE_COLUMNS], rows)


def _cases_table(records: Sequence[dict]) -> str:
    rows = [
        [
            r["name"],
            r.get("bench", ""),
            r["status"],
            _fmt(r.get("wall_s")),
            _fmt(r.get("peak_rss_mb")),
            _fmt(r.get("sim_peak_rss_mb")),
            r.get("sim", ""),
            r.get("base_seed", ""),
            r.get("host", ""),
        ]
        for r in records
    ]
    header = [
        "case",
        "bench",
        "status",
        "wall (s)",
        "peak RSS (MB)",
        "simulator RSS (MB)",
        "simulator",
        "base seed",
        "host",
    ]
    return _table(header, rows)


def _is_default_preset(record: dict) -> bool:
    settings = record.get("settings") or {}
    return "default" in (settings.get("preset"), settings.get("topology"))


def default_preset_memory(records: Sequence[dict]) -> dict[str, Any]:
    """The largest peak RSS of the cases on the ``default`` preset (whole case, and the
    simulator process alone), with the cases they came from."""
    cases = [r for r in records if _is_default_preset(r)]
    out: dict[str, Any] = {"cases": len(cases)}
    for key in ("peak_rss_mb", "sim_peak_rss_mb"):
        measured = [r for r in cases if r.get(key)]
        if measured:
            top = max(measured, key=lambda r: r[key])
            out[key] = top[key]
            out[f"{key}_case"] = top["name"]
    return out


# --------------------------------------------------------------------------------------------
# Switch plots


def port_utilisation(result: dict) -> list[float] | None:
    """Flits each output port sent per cycle over the whole sweep.

    The switch's counters are cumulative from reset over every load point, so the flits out of
    a port (all VCs) are divided by the cycles of all points together; ``None`` without
    counters."""
    counters = result.get("counters")
    points = result.get("points") or []
    cycles = sum(p.get("cycles", 0) for p in points)
    if not isinstance(counters, dict) or not cycles:
        return None
    ports = sorted((k for k in counters if str(k).isdigit()), key=int)
    values = []
    for port in ports:
        c = counters[port]
        values.append(sum(v for k, v in c.items() if k.startswith("flits_out")) / cycles)
    return values or None


def _switch_plots(records: Sequence[dict], out: Path) -> tuple[list[Path], list[str]]:
    """The load-sweep plot and the utilisation plot, with their Markdown."""
    from unifab.plots import plot_load_sweep, plot_port_utilisation

    paths: list[Path] = []
    text: list[str] = []
    sweeps = {
        r["name"]: _result(r)["points"]
        for r in _by_bench(records, "switch")
        if len(_result(r).get("points") or []) >= 2
    }
    if sweeps:
        path = plot_load_sweep(
            sweeps, out / "switch-load-sweep.png", title="switch: offered-load sweeps"
        )
        paths.append(path)
        text += [
            f"![Switch throughput and latency against offered load]({path.name})",
            "",
            "Accepted throughput and port-to-port latency (mean, p99) against offered load, "
            "one curve per sweep case.",
            "",
        ]
    util = {
        r["name"]: u for r in _by_bench(records, "switch") if (u := port_utilisation(_result(r)))
    }
    if util:
        path = plot_port_utilisation(
            util, out / "switch-port-utilisation.png", title="switch output-port utilisation"
        )
        paths.append(path)
        text += [
            f"![Switch output-port utilisation]({path.name})",
            "",
            "Utilisation of each output port: flits it sent (all VCs, the switch's own "
            "counters) per cycle. The counters are cumulative over the whole sweep, so this "
            "is the average over all load points of a case (flits out / total cycles of the "
            "sweep, drain included), not the figure at the highest load.",
            "",
        ]
    return paths, text


# --------------------------------------------------------------------------------------------
# Workloads


def _workload_entries(result: Any) -> list[dict]:
    """The per-(workload, mode) result dicts in a workload case's result: the result itself,
    or the items of a list / of a ``results`` or ``workloads`` list."""
    if isinstance(result, dict):
        if "workload" in result and "mode" in result:
            return [result]
        for key in ("results", "workloads", "runs"):
            if isinstance(result.get(key), list):
                return _workload_entries(result[key])
        return []
    if isinstance(result, list):
        return [e for item in result for e in _workload_entries(item)]
    return []


def workload_results(records: Sequence[dict]) -> list[dict]:
    """Every workload result in the records, in case order."""
    return [e for r in records for e in _workload_entries(r.get("result"))]


def _ratio(numerator: Any, denominator: Any) -> float | None:
    if numerator is None or not denominator:
        return None
    return float(numerator) / float(denominator)


def workload_rows(entries: Sequence[dict]) -> list[dict]:
    """One row per (workload, preset): memory and message figures side by side and the ratios
    (latency message/memory, bandwidth memory/message)."""
    grouped: dict[tuple[str, str], dict[str, dict]] = {}
    for e in entries:
        grouped.setdefault((e["workload"], str(e.get("preset", ""))), {})[e["mode"]] = e
    presets = {preset for _, preset in grouped}
    rows = []
    for (workload, preset), modes in grouped.items():
        row: dict[str, Any] = {
            "workload": workload,
            "preset": preset,
            "label": workload if len(presets) <= 1 else f"{workload} ({preset})",
        }
        for mode in MODES:
            e = modes.get(mode, {})
            for key in ("latency_mean", "latency_p50", "latency_p99", "bandwidth", "ops"):
                row[f"{mode}_{key}"] = e.get(key)
            row[f"{mode}_violations"] = e.get("violations")
            row[f"{mode}_clock_ghz"] = e.get("clock_ghz")
            row[f"{mode}_rtl_cycles_mean"] = e.get("rtl_cycles_mean")
            row[f"{mode}_modelled_cycles_mean"] = e.get("modelled_cycles_mean")
        row["latency_ratio"] = _ratio(row["message_latency_mean"], row["memory_latency_mean"])
        row["bandwidth_ratio"] = _ratio(row["memory_bandwidth"], row["message_bandwidth"])
        rows.append(row)
    return rows


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def remote_read_headline(rows: Sequence[dict]) -> str | None:
    """The 64-byte remote read line, from the ``remote_read_64`` pair."""
    row = next((r for r in rows if r["workload"] == "remote_read_64"), None)
    if row is None or row["memory_latency_mean"] is None or row["message_latency_mean"] is None:
        return None
    memory, message = row["memory_latency_mean"], row["message_latency_mean"]
    text = (
        f"64-byte remote read: memory {_fmt(memory)} cycles, message {_fmt(message)} cycles, "
        f"ratio {_fmt(row['latency_ratio'], 2)}x (message/memory; published UB-load vs "
        f"RoCE-read measurement: about {PUBLISHED_REMOTE_READ_RATIO}x)"
    )
    clock = row["memory_clock_ghz"] or row["message_clock_ghz"]
    if clock:
        text += f"; at {clock:g} GHz {memory / clock:.1f} ns vs {message / clock:.1f} ns"
    return text


def _workload_section(records: Sequence[dict], out: Path) -> tuple[list[Path], list[str], str]:
    """Markdown, plots and the terminal table of the workloads (empty without any)."""
    from unifab.plots import plot_latency_histogram, plot_memory_vs_message

    entries = workload_results(records)
    if not entries:
        return [], [], ""
    rows = workload_rows(entries)
    header = [
        "workload",
        "memory mean",
        "memory p50",
        "memory p99",
        "message mean",
        "message p50",
        "message p99",
        "memory B/cycle",
        "message B/cycle",
        "latency ratio message/memory",
        "bandwidth ratio memory/message",
        "violations",
    ]
    table_rows = [
        [
            r["label"],
            _fmt(r["memory_latency_mean"]),
            _fmt(r["memory_latency_p50"]),
            _fmt(r["memory_latency_p99"]),
            _fmt(r["message_latency_mean"]),
            _fmt(r["message_latency_p50"]),
            _fmt(r["message_latency_p99"]),
            _fmt(r["memory_bandwidth"], 2),
            _fmt(r["message_bandwidth"], 2),
            _fmt(r["latency_ratio"], 2),
            _fmt(r["bandwidth_ratio"], 2),
            sum(r[f"{m}_violations"] or 0 for m in MODES),
        ]
        for r in rows
    ]
    split_rows = [
        [
            f"{e['workload']} {e['mode']}",
            e.get("ops"),
            e.get("bytes"),
            e.get("cycles"),
            _fmt(e.get("rtl_cycles_mean")),
            _fmt(e.get("modelled_cycles_mean")),
            _fmt(e.get("clock_ghz"), 3),
        ]
        for e in entries
    ]
    text = [
        "## Workloads: memory against message semantics",
        "",
        "Latencies in cycles per operation (mean, median, 99th percentile), bandwidth in bytes "
        "per cycle. The ratios are message over memory for latency and memory over message for "
        "bandwidth, so a ratio above 1 favours memory semantics.",
        "",
    ]
    headline = remote_read_headline(rows)
    if headline:
        text += [f"**{headline}**", ""]
    text += [_table(header, table_rows), ""]
    text += [
        "Where an operation's latency comes from: the mean part simulated in RTL and the mean "
        "part modelled (cycles).",
        "",
        _table(
            ["workload, mode", "ops", "bytes", "cycles", "RTL cycles", "modelled", "GHz"],
            split_rows,
        ),
        "",
    ]
    paths: list[Path] = []
    path = plot_memory_vs_message(
        rows, out / "workloads-memory-vs-message.png", title="memory vs message semantics"
    )
    paths.append(path)
    text += [f"![Mean latency and bandwidth per workload, memory vs message]({path.name})", ""]
    by_workload: dict[str, dict[str, list]] = {}
    for e in entries:
        label = f"{e['mode']} semantics" + (f" ({e['preset']})" if e.get("preset") else "")
        by_workload.setdefault(e["workload"], {})[label] = list(e.get("latencies") or [])
    for workload, latencies in by_workload.items():
        if not any(latencies.values()):
            continue
        path = plot_latency_histogram(
            latencies,
            out / f"workload-{workload}-latency.png",
            title=f"{workload}: latency per operation",
        )
        paths.append(path)
        text += [f"![{workload} latency histogram]({path.name})", ""]
    terminal = ""
    if headline:
        terminal = headline + "\n"
    terminal += _terminal_table(
        header[:1] + header[1:2] + header[4:5] + header[7:11],
        [[row[0], row[1], row[4], row[7], row[8], row[9], row[10]] for row in table_rows],
    )
    return paths, text, terminal


# --------------------------------------------------------------------------------------------
# The report


def _results_payload(records: Sequence[dict], commands: Sequence[str]) -> dict[str, Any]:
    """``results.json``: every case record, per-operation latency lists left out (they stay in
    the case files)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "latencies"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commands": list(commands),
        "passed": sum(r["status"] == "pass" for r in records),
        "failed": [r["name"] for r in records if r["status"] != "pass"],
        "default_preset_memory": default_preset_memory(records),
        "workloads": workload_rows(workload_results(records)),
        "cases": {r["name"]: strip(r) for r in records},
    }


def _commands(records: Sequence[dict], extra: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for c in [*(r.get("command") for r in records), *extra]:
        if c and c not in seen:
            seen.append(c)
    return seen


def render_report(
    records: Sequence[dict],
    out_dir: str | Path | None = None,
    *,
    commands: Sequence[str] = (),
    elapsed_s: float | None = None,
) -> RenderedReport:
    """Write ``report.md``, ``results.json`` and the PNG plots into ``out_dir`` (default
    ``build/report``) from case records; the terminal summary is in the returned value."""
    out = Path(out_dir) if out_dir is not None else build_root() / "report"
    out.mkdir(parents=True, exist_ok=True)
    commands = _commands(records, commands)
    failed = [r["name"] for r in records if r["status"] != "pass"]
    memory = default_preset_memory(records)
    seeds = sorted({r.get("base_seed") for r in records if r.get("base_seed") is not None})
    sims = sorted({r.get("sim") for r in records if r.get("sim")})
    hosts = sorted({r.get("host") for r in records if r.get("host")})

    md = ["# unifab regression report", ""]
    md += [
        f"{len(records)} case{'s' if len(records) != 1 else ''}: "
        f"{len(records) - len(failed)} passed, {len(failed)} failed. "
        f"Base seed {', '.join(map(str, seeds)) or '—'}; simulator {', '.join(sims) or '—'}; "
        f"host {', '.join(hosts) or '—'}"
        + (f"; {elapsed_s:.0f} s wall." if elapsed_s is not None else "."),
        "",
        "Produced by:",
        "",
        "```sh",
        *commands,
        "```",
        "",
        "## Cases",
        "",
        "Wall time of each case (its own simulator build included when it made one). Peak RSS "
        "is the `ru_maxrss` of the case's process tree, reaped with `os.wait4`: the largest "
        "single process among the Python bench driver, the simulator and (when this case built "
        "the model) the Verilator and C++ compilers. *Simulator RSS* is the simulator process "
        "alone (the compiled model with the Python testbench embedded), its own `ru_maxrss` "
        "when the bench wrote its result.",
        "",
    ]
    if memory.get("peak_rss_mb"):
        md += [
            f"Peak RSS on the `default` preset: {memory['peak_rss_mb']} MB "
            f"({memory['peak_rss_mb_case']})"
            + (
                f"; simulator alone {memory['sim_peak_rss_mb']} MB "
                f"({memory['sim_peak_rss_mb_case']})"
                if memory.get("sim_peak_rss_mb")
                else ""
            )
            + ".",
            "",
        ]
    md += [_cases_table(records), ""]
    if failed:
        md += ["Failures:", ""]
        for r in records:
            if r["status"] != "pass":
                broken = [d for d, ok in (r.get("checks") or {}).items() if not ok]
                reason = (r.get("error") or "").splitlines()[:1] or [
                    "failed checks: " + ", ".join(broken)
                ]
                md.append(f"- **{r['name']}**: {reason[0]}")
        md.append("")

    plots: list[Path] = []
    if _by_bench(records, "link"):
        md += [
            "## Link layer (two link layers over lossy channels, all VCs at once)",
            "",
            "Goodput is payload flits per cycle per direction; lost/duplicated/reordered come "
            "from the per-VC ordered scoreboard.",
            "",
            _link_table(records),
            "",
        ]
    if _by_bench(records, "switch"):
        md += [
            "## Switch (offered-load sweeps, Python traffic generators and scoreboards)",
            "",
            _switch_table(records),
            "",
        ]
        switch_paths, switch_text = _switch_plots(records, out)
        plots += switch_paths
        md += switch_text
    if _by_bench(records, "coherence"):
        md += [
            "## Coherent system (endpoints, homes, switches; AXI VIP on every port)",
            "",
            "Latencies in cycles at the endpoints' AXI ports; memory_read is the AXI RAM's own "
            "latency, remote_read_clean_fabric the rest. The stress runs every workload with "
            "every coherence checker on.",
            "",
            _coherence_table(records),
            "",
        ]
    workload_paths, workload_text, workload_terminal = _workload_section(records, out)
    plots += workload_paths
    md += workload_text

    markdown = out / "report.md"
    markdown.write_text("\n".join(md))
    durations = out / "test_durations.json"
    durations.write_text(json.dumps(case_durations(records), indent=1, sort_keys=True))
    results = out / "results.json"
    results.write_text(
        json.dumps(_results_payload(records, commands), indent=1, sort_keys=True, default=str)
    )

    summary_rows = [
        [
            r["name"],
            r["status"],
            _fmt(r.get("wall_s")),
            _fmt(r.get("peak_rss_mb")),
            _fmt(r.get("sim_peak_rss_mb")),
            _headline_figure(r),
        ]
        for r in records
    ]
    terminal = [
        _terminal_table(
            ["case", "status", "wall s", "RSS MB", "sim RSS MB", "figure"], summary_rows
        )
    ]
    if workload_terminal:
        terminal += ["", workload_terminal]
    terminal += [
        "",
        f"{len(records) - len(failed)} passed, {len(failed)} failed"
        + (f" ({elapsed_s:.0f} s)" if elapsed_s is not None else ""),
    ]
    if memory.get("peak_rss_mb"):
        sim_rss = memory.get("sim_peak_rss_mb")
        terminal.append(
            f"peak RSS, default preset: {memory['peak_rss_mb']} MB"
            + (f" (simulator alone {sim_rss} MB)" if sim_rss else "")
        )
    for r in records:
        if r["status"] != "pass":
            broken = [d for d, ok in (r.get("checks") or {}).items() if not ok]
            reason = (r.get("error") or "").splitlines()[:1] or [
                "failed checks: " + ", ".join(broken)
            ]
            terminal.append(f"FAILED: {r['name']}: {reason[0]}")
    terminal.append(f"report: {markdown}; results: {results}")
    return RenderedReport(markdown, results, plots, "\n".join(terminal), failed)


def case_durations(records: Sequence[dict]) -> dict[str, float]:
    """Measured wall seconds per pytest node id, in pytest-split's ``.test_durations`` format
    (copy to ``sim/.test_durations`` to balance later shards on them)."""
    return {
        f"{SIM_TEST_NODE}[{r['slug']}]": float(r["wall_s"])
        for r in records
        if r.get("slug") and r.get("wall_s") is not None
    }


def _headline_figure(record: dict) -> str:
    """The one figure the terminal summary shows for a case."""
    r = _result(record)
    bench = record.get("bench")
    if bench == "link" and "goodput" in r:
        return f"goodput {r['goodput']:.3f}"
    if bench == "switch" and "saturation_throughput" in r:
        return f"saturation {r['saturation_throughput']:.3f}"
    if bench == "switch" and r.get("points"):
        return f"throughput {r['points'][-1]['throughput']:.3f}"
    if bench == "coherence" and "violations" in r:
        return f"{r.get('ops', '?')} ops, {r['violations']} violations"
    entries = _workload_entries(record.get("result"))
    if entries:
        return ", ".join(f"{e['mode']} {_fmt(e.get('latency_mean'))} cyc" for e in entries[:2])
    return ""


def merge_report(
    *,
    commands: Sequence[str] = (),
    elapsed_s: float | None = None,
    cases_directory: str | Path | None = None,
    out_dir: str | Path | None = None,
) -> list[str]:
    """Load every case file, render the report, print the summary; the failed case names."""
    folder = Path(cases_directory) if cases_directory is not None else cases_dir()
    records = load_case_records(folder)
    if not records:
        raise ValueError(f"no case files in {folder} (run `unifab sim` first)")
    report = render_report(records, out_dir, commands=commands, elapsed_s=elapsed_s)
    print()
    print(report.terminal, flush=True)
    return report.failed


def report_command(argv: Sequence[str] | None = None) -> str:
    """How this process was started, as a shell command (for the report's command list)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["unifab", *args])
