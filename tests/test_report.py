"""The regression report renderer, on hand-written case records (no simulation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unifab.report import load_case_records, merge_report, render_report, workload_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def workload(name: str, mode: str, mean: float, p50: float, p99: float, bw: float, **extra):
    """One workload result as the workload bench reports it."""
    return {
        "workload": name,
        "mode": mode,
        "preset": "default",
        "seed": 1,
        "ops": 4,
        "bytes": 256,
        "cycles": 1000,
        "latency_mean": mean,
        "latency_p50": p50,
        "latency_p99": p99,
        "bandwidth": bw,
        "violations": 0,
        "latencies": extra.pop("latencies", [int(mean)] * 4),
        "rtl_cycles_mean": 20.0,
        "modelled_cycles_mean": mean - 20.0,
        "clock_ghz": 1.0,
        **extra,
    }


def record(name: str, bench: str, result, *, status: str = "pass", **extra) -> dict:
    """A case file as ``run_case_measured`` writes it."""
    return {
        "name": name,
        "slug": name.replace(" ", "-"),
        "bench": bench,
        "settings": extra.pop("settings", {}),
        "base_seed": 7,
        "sim": "verilator",
        "status": status,
        "checks": extra.pop("checks", {}),
        "error": None,
        "wall_s": extra.pop("wall_s", 12.5),
        "peak_rss_mb": extra.pop("peak_rss_mb", 300.0),
        "sim_peak_rss_mb": extra.pop("sim_peak_rss_mb", 80.0),
        "command": "unifab sim --jobs 2 --seed 7",
        "host": "h1",
        "result": result,
        **extra,
    }


def sweep_point(load: float, throughput: float, latency: float) -> dict:
    return {
        "offered": load,
        "throughput": throughput,
        "latency_mean": latency,
        "latency_p50": latency,
        "latency_p99": latency * 2,
        "cycles": 1000,
        "sim_cycles_per_s": 5000.0,
    }


@pytest.fixture
def records() -> list[dict]:
    port = {"flits_out0": 100, "flits_out1": 50, "flits_out2": 0, "flits_out3": 50, "flits_in0": 9}
    switch_result = {
        "points": [sweep_point(0.01, 0.01, 2.0), sweep_point(1.0, 0.96, 30.0)],
        "counters": {"0": port, "1": {**port, "flits_out0": 400}, "responder": {"discarded": 0}},
        "saturation_throughput": 0.96,
        "zero_load_latency": 2.0,
        "latency_at_0_8": 5.5,
        "sim_cycles_per_s": 5000.0,
    }
    workloads = [
        workload("remote_read_64", "memory", 30.0, 28.0, 40.0, 2.0, latencies=[25, 28, 30, 37]),
        workload(
            "remote_read_64", "message", 132.0, 130.0, 150.0, 0.5, latencies=[120, 130, 140, 138]
        ),
        workload("kv_cache", "memory", 100.0, 90.0, 300.0, 8.0, latencies=[3, 50, 90, 4000]),
        workload("kv_cache", "message", 250.0, 200.0, 900.0, 4.0),
    ]
    return [
        record("link clean", "link", {"goodput": 0.999, "lost": 0, "flits": 1000}),
        record("switch sweep", "switch", switch_result, wall_s=61.0),
        record(
            "coherence default stress",
            "coherence",
            {"ops": 500, "violations": 0, "checked_loads": 100},
            settings={"preset": "default"},
            peak_rss_mb=812.3,
            sim_peak_rss_mb=211.7,
        ),
        record(
            "coherence small",
            "coherence",
            {"ops": 50, "violations": 1},
            status="FAIL",
            settings={"preset": "small"},
            checks={"no violations": False},
            peak_rss_mb=999.0,
        ),
        record("workloads default", "workload", {"results": workloads[:2]}),
        record("workloads kv", "workload", workloads[2:]),
    ]


def test_workload_rows_ratios(records):
    rows = {r["workload"]: r for r in workload_rows([w for r in records[4:] for w in _ws(r)])}
    rr = rows["remote_read_64"]
    assert rr["memory_latency_mean"] == 30.0 and rr["message_latency_mean"] == 132.0
    assert rr["latency_ratio"] == pytest.approx(4.4)
    assert rr["bandwidth_ratio"] == pytest.approx(4.0)
    assert rows["kv_cache"]["latency_ratio"] == pytest.approx(2.5)
    assert rows["kv_cache"]["bandwidth_ratio"] == pytest.approx(2.0)


def _ws(rec: dict) -> list[dict]:
    result = rec["result"]
    return result["results"] if isinstance(result, dict) else result


def test_render_report(tmp_path, records):
    report = render_report(records, tmp_path, commands=["unifab report"], elapsed_s=75.0)
    text = report.markdown.read_text()
    # The commands that produced it, per-case wall time and peak RSS.
    assert "unifab sim --jobs 2 --seed 7" in text and "unifab report" in text
    assert "| switch sweep | switch | pass | 61.0 | 300.0 | 80.0 | verilator | 7 | h1 |" in text
    # Peak RSS of the default preset: the largest among its cases, not the small one's 999.
    assert "Peak RSS on the `default` preset: 812.3 MB (coherence default stress)" in text
    assert "simulator alone 211.7 MB" in text
    # Link, switch, coherence sections keep their tables.
    assert "| link clean | pass | 1000 | 0.9990 | 0 |" in text
    assert "| switch sweep | pass | 0.9600 | 2.0000 | 5.5000 | 5000 |" in text
    assert "| coherence small | small | FAIL | 50 |" in text
    assert "- **coherence small**: failed checks: no violations" in text
    # Workloads: one row per workload, memory vs message and the ratios.
    assert (
        "**64-byte remote read: memory 30.0 cycles, message 132.0 cycles, ratio 4.40x"
        " (message/memory; published UB-load vs RoCE-read measurement: about 4.4x)"
    ) in text
    assert (
        "| remote_read_64 | 30.0 | 28.0 | 40.0 | 132.0 | 130.0 | 150.0 | 2.00 | 0.50 | 4.40 |"
        " 4.00 | 0 |"
    ) in text
    assert (
        "| kv_cache | 100.0 | 90.0 | 300.0 | 250.0 | 200.0 | 900.0 | 8.00 | 4.00 | 2.50 |"
        " 2.00 | 0 |"
    ) in text
    assert "| remote_read_64 memory | 4 | 256 | 1000 | 20.0 | 10.0 | 1.000 |" in text
    # Plots are PNG files next to the report, and the report links them.
    names = {p.name for p in report.plots}
    assert names == {
        "switch-load-sweep.png",
        "switch-port-utilisation.png",
        "workloads-memory-vs-message.png",
        "workload-remote_read_64-latency.png",
        "workload-kv_cache-latency.png",
    }
    for path in report.plots:
        assert path.parent == tmp_path
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert f"]({path.name})" in text
    assert "cumulative over the whole sweep" in text
    # Terminal summary and failures.
    assert "5 passed, 1 failed (75 s)" in report.terminal
    assert "FAILED: coherence small" in report.terminal
    assert "ratio 4.40x" in report.terminal
    assert report.failed == ["coherence small"]
    # results.json: every case, utilisation inputs kept, latency lists left out.
    results = json.loads(report.results.read_text())
    assert set(results["cases"]) == {r["name"] for r in records}
    assert results["failed"] == ["coherence small"]
    assert results["default_preset_memory"]["peak_rss_mb"] == 812.3
    rr = next(w for w in results["workloads"] if w["workload"] == "remote_read_64")
    assert rr["latency_ratio"] == pytest.approx(4.4)
    assert "latencies" not in json.dumps(results)


def test_port_utilisation_from_cumulative_counters(records):
    from unifab.report import port_utilisation

    # Port 0 sent 200 flits, port 1 500, over 2000 cycles of sweep.
    assert port_utilisation(records[1]["result"]) == [0.1, 0.25]
    assert port_utilisation({"points": []}) is None


def test_without_workloads_the_section_is_skipped(tmp_path, records):
    report = render_report(records[:3], tmp_path)
    text = report.markdown.read_text()
    assert "Workloads" not in text and "64-byte" not in text
    assert not list(tmp_path.glob("workload*.png"))


def test_merge_case_files(tmp_path, records, capsys):
    cases = tmp_path / "cases"
    cases.mkdir()
    for r in records:
        (cases / f"{r['slug']}.json").write_text(json.dumps(r))
    # Cases of the case lists first, in their order; the others by bench, then name.
    assert [r["name"] for r in load_case_records(cases)] == [
        "coherence default stress",
        "link clean",
        "switch sweep",
        "coherence small",
        "workloads default",
        "workloads kv",
    ]
    failed = merge_report(cases_directory=cases, out_dir=tmp_path / "out")
    assert failed == ["coherence small"]
    assert (tmp_path / "out" / "report.md").is_file()
    assert "report: " in capsys.readouterr().out


def test_merge_errors(tmp_path):
    with pytest.raises(ValueError, match="no case files"):
        merge_report(cases_directory=tmp_path, out_dir=tmp_path)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match=r"bad\.json is not readable JSON"):
        load_case_records(tmp_path)


def test_report_cli(tmp_path, records):
    from unifab.cli import main

    cases = tmp_path / "cases"
    cases.mkdir()
    for r in records[:3]:
        (cases / f"{r['slug']}.json").write_text(json.dumps(r))
    out = tmp_path / "out"
    assert main(["report", "--cases", str(cases), "--output", str(out)]) == 0
    text = Path(out / "report.md").read_text()
    assert f"unifab report --cases {cases} --output {out}" in text
    assert main(["report", "--cases", str(tmp_path / "none"), "--output", str(out)]) == 2
