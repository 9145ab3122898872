"""The ``unifab`` command: benchmarks, regression, Verilog generation.

Every benchmark prints a short human summary and, as its last line, one JSON object with its
figures, so scripts can take ``tail -n 1``. Errors are one clear line on stderr (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


class UsageError(Exception):
    """A user mistake, reported as one line."""


def _seed(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], not {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    from unifab.regression import format_figure as fmt

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(x.rjust(w) for x, w in zip(row, widths, strict=True)))


LINK_COLUMNS = (
    "p_err",
    "latency",
    "flits",
    "goodput",
    "lost",
    "duplicated",
    "reordered",
    "replays",
    "crc_errors",
    "cycles",
    "sim_cycles_per_s",
)


def _bench_link(args: argparse.Namespace) -> int:
    from unifab.tb.benches import link_bench

    result = link_bench(
        flits=args.flits,
        p_err=args.flit_error_rate,
        latency=args.latency,
        burst=args.burst,
        stall=args.stall,
        seed=args.seed,
        sim=args.sim,
        waves=args.waves or None,
    )
    _print_table([result], LINK_COLUMNS)
    result.pop("counters", None)
    print(json.dumps(result, sort_keys=True))
    return 0


SWITCH_COLUMNS = (
    "offered",
    "throughput",
    "latency_mean",
    "latency_p50",
    "latency_p99",
    "latency_max",
    "messages",
    "sim_cycles_per_s",
)


def _loads(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of loads: {text!r}") from None
    if not values or any(not 0.0 < v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"loads must be in (0, 1], not {text!r}")
    return values


def switch_summary(result: dict) -> dict:
    """The headline figures of a switch sweep (the points must include 0.01, 0.8 and 1.0)."""
    by_load = {round(p["offered"], 4): p for p in result["points"]}
    measured = [p for p in result["points"] if p["offered"] > 0.011]
    wall_cycles = sum(p["cycles"] for p in measured)
    wall_s = sum(p["cycles"] / p["sim_cycles_per_s"] for p in measured if p["sim_cycles_per_s"])
    return {
        "ports": result["ports"],
        "pattern": result["pattern"],
        "allocator": result["allocator"],
        "mix": result["mix"],
        "saturation_throughput": by_load[1.0]["throughput"],
        # Contention-free port-to-port latency: the median at 1% load (the mean there also
        # counts the rare collisions; it is reported as latency_at_0_01).
        "zero_load_latency": by_load[0.01]["latency_p50"],
        "latency_at_0_01": by_load[0.01]["latency_mean"],
        "latency_at_0_8": by_load[0.8]["latency_mean"] if 0.8 in by_load else None,
        "points": result["points"],
        "sim_cycles_per_s": wall_cycles / wall_s if wall_s else 0.0,
        "seed": result["seed"],
        "sim": result["sim"],
    }


def _bench_switch(args: argparse.Namespace) -> int:
    from unifab.plots import plot_load_sweep
    from unifab.tb.benches import switch_bench
    from unifab.tools import build_root

    loads = tuple(sorted(set(args.loads) | {0.01, 1.0}))
    result = switch_bench(
        ports=args.ports,
        vcs=args.vcs,
        allocator=args.allocator,
        pattern=args.pattern,
        mix=args.mix,
        loads=loads,
        measure=args.measure,
        bp=args.bp,
        seed=args.seed,
        sim=args.sim,
        waves=args.waves or None,
    )
    summary = switch_summary(result)
    _print_table(result["points"], SWITCH_COLUMNS)
    plot = args.plot or str(
        build_root() / "plots" / f"switch-{args.ports}p-{args.allocator}-{args.pattern}.png"
    )
    plot_load_sweep(
        {f"{args.ports} ports {args.allocator}": result["points"]},
        plot,
        title=f"switch, {args.ports} ports, {args.pattern}, {args.mix} traffic",
    )
    print(f"plot: {plot}")
    print(json.dumps(summary, sort_keys=True))
    return 0


COHERENCE_COLUMNS = (
    "load_hit",
    "store_hit",
    "remote_read_clean",
    "memory_read",
    "remote_read_clean_fabric",
    "remote_read_forward",
    "upgrade",
    "atomic_contended",
)


def _bench_coherence(args: argparse.Namespace) -> int:
    from unifab.tb.benches import coherence_bench

    if not 2 <= args.agents <= 14:
        raise UsageError(f"--agents must be 2..14, not {args.agents}")
    latency = coherence_bench(
        preset=args.preset,
        agents=args.agents,
        test="coherence_latency",
        seed=args.seed,
        sim=args.sim,
        waves=args.waves or None,
    )
    stress = coherence_bench(
        preset=args.preset,
        agents=args.agents,
        ops=args.ops,
        seed=args.seed,
        sim=args.sim,
        waves=args.waves or None,
    )
    print(
        f"coherent system: {args.agents} endpoints, preset {args.preset}, cycles at the AXI ports"
    )
    _print_table([latency], COHERENCE_COLUMNS)
    for name, w in stress["workloads"].items():
        print(f"stress {name}: {w['ops']} operations in {w['cycles']} cycles")
    summary = {
        "agents": args.agents,
        "preset": args.preset,
        "seed": args.seed,
        **{k: latency[k] for k in COHERENCE_COLUMNS},
        "ops": latency["ops"] + stress["ops"],
        "checked_loads": latency["checked_loads"] + stress["checked_loads"],
        "violations": latency["violations"] + stress["violations"],
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


def _verilog(args: argparse.Namespace) -> int:
    from pathlib import Path

    from unifab.hdl.link.layer import LinkLayer
    from unifab.hdl.switch.switch import Switch
    from unifab.params import LINK_PRESETS
    from unifab.switch_config import SWITCH_PRESETS, SwitchConfig
    from unifab.tools import verilog_text

    tops = {f"link_{name}": (lambda p=p: LinkLayer(p)) for name, p in LINK_PRESETS.items()}
    # Switch tops come up with empty tables; program them through the cfg_* register port.
    tops |= {
        f"switch_{name.replace('-', '_')}": (lambda p=p: Switch(p, SwitchConfig()))
        for name, p in SWITCH_PRESETS.items()
    }
    if args.preset is not None:
        return _verilog_preset(args)
    names = sorted(tops) if args.all else [args.top]
    for name in names:
        if name not in tops:
            raise UsageError(f"unknown top {name!r}; choose from {', '.join(sorted(tops))}")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = out / f"{name}.v"
        path.write_text(verilog_text(tops[name](), name=name))
        print(f"wrote {path}")
    return 0


def _verilog_preset(args: argparse.Namespace) -> int:
    """``verilog --preset NAME -o FILE``: the system top of a topology (preset or .toml)."""
    from pathlib import Path

    from unifab.hdl.top.supernode import SuperNode
    from unifab.tools import verilog_text
    from unifab.topology import load_topology

    topology = load_topology(args.preset)
    out = Path(args.output)
    if out.suffix not in (".v", ".sv"):
        out = out / f"supernode_{topology.name.replace('-', '_')}.v"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(verilog_text(SuperNode(topology), name="supernode"))
    print(f"wrote {out} (top module supernode, topology {topology.name})")
    return 0


def _wave_decode(args: argparse.Namespace) -> int:
    from unifab.waves import run_filter

    return run_filter(layout=args.layout, data_width=args.data_width)


def _sim(args: argparse.Namespace) -> int:
    """``unifab sim``: the regression cases under pytest (xdist, pytest-split), then the report."""
    import shlex

    from unifab.regression import run_regression
    from unifab.testing import seed_from_env

    if (args.splits is None) != (args.group is None):
        raise UsageError("--splits and --group go together (e.g. --splits 4 --group 1)")
    if args.splits is not None and not 1 <= args.group <= args.splits:
        raise UsageError(f"--group must be 1..{args.splits} (one of the splits), not {args.group}")
    seed = args.seed if args.seed is not None else seed_from_env(1)
    command = ["unifab", "sim", "--jobs", str(args.jobs), "--seed", str(seed)]
    if args.sim:
        command += ["--sim", args.sim]
    if args.splits is not None:
        command += ["--splits", str(args.splits), "--group", str(args.group)]
    if args.keyword:
        command += ["-k", args.keyword]
    return run_regression(
        jobs=args.jobs,
        seed=seed,
        sim=args.sim,
        splits=args.splits,
        group=args.group,
        keyword=args.keyword,
        command=shlex.join(command),
    )


def _report(args: argparse.Namespace) -> int:
    """``unifab report``: merge the case files (e.g. copied from shards) into the report."""
    import shlex

    from unifab.report import merge_report

    command = ["unifab", "report"]
    if args.cases:
        command += ["--cases", args.cases]
    if args.output:
        command += ["--output", args.output]
    failed = merge_report(
        commands=[shlex.join(command)], cases_directory=args.cases, out_dir=args.output
    )
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unifab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="run a benchmark and print its figures")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    link = bench_sub.add_parser(
        "link",
        help="two link layers over lossy channels",
        description="Two link layers joined by lossy channels carrying all VCs at once; "
        "prints goodput (payload flits per cycle per direction) and the scoreboard's counts.",
    )
    link.add_argument(
        "--flit-error-rate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="probability a link flit is corrupted (P/2) or dropped (P/2) (default 0)",
    )
    link.add_argument(
        "--latency",
        type=_positive,
        default=32,
        metavar="L",
        help="channel latency each way, cycles (default 32, at most 64)",
    )
    link.add_argument(
        "--flits",
        type=_positive,
        default=100_000,
        metavar="N",
        help="flits sent in each direction (default 100000)",
    )
    link.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    link.add_argument("--burst", action="store_true", help="add Gilbert-Elliott error bursts")
    link.add_argument("--stall", action="store_true", help="add random channel stalls")
    link.add_argument(
        "--sim",
        choices=("verilator", "icarus"),
        default=None,
        help="simulator (default: $SIM or verilator)",
    )
    link.add_argument("--waves", action="store_true", help="dump waveforms")
    link.set_defaults(func=_bench_link)

    from unifab.switch_config import ALLOCATORS
    from unifab.traffic import CLASS_MIXES, PATTERNS

    switch = bench_sub.add_parser(
        "switch",
        help="offered-load sweep of one switch",
        description="Sweeps offered load on one switch with Python traffic generators and "
        "scoreboards; prints a table, writes a throughput/latency plot and, last, a JSON line.",
    )
    switch.add_argument("--ports", type=_positive, default=8, metavar="N", help="ports (4..16)")
    switch.add_argument("--vcs", type=_positive, default=4, metavar="V", help="VCs per port")
    switch.add_argument("--pattern", choices=PATTERNS, default="uniform")
    switch.add_argument(
        "--mix",
        choices=tuple(CLASS_MIXES),
        default="single",
        help="message classes and lengths (default: single-flit)",
    )
    switch.add_argument(
        "--allocator",
        choices=ALLOCATORS,
        default="islip",
        help="islip or wavefront (virtual output queues), or fifo (reference)",
    )
    switch.add_argument(
        "--loads",
        type=_loads,
        default=_loads("0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"),
        help="offered loads, flits/cycle/port (0.01 and 1.0 are always added)",
    )
    switch.add_argument(
        "--measure",
        type=_positive,
        default=8192,
        metavar="CYCLES",
        help="measured cycles per load point (default 8192)",
    )
    switch.add_argument(
        "--bp",
        type=_probability,
        default=0.0,
        help="probability an output withholds credits each cycle (default 0)",
    )
    switch.add_argument("--seed", type=int, default=1, metavar="S")
    switch.add_argument("--sim", choices=("verilator", "icarus"), default=None)
    switch.add_argument("--plot", default=None, help="PNG path (default build/plots/...)")
    switch.add_argument("--waves", action="store_true", help="dump waveforms")
    switch.set_defaults(func=_bench_switch)

    coherence = bench_sub.add_parser(
        "coherence",
        help="coherent system: access latencies and a checked stress run",
        description="Latency of each kind of coherent access at the endpoints' AXI ports (one"
        " switch hop, no link layer, memory latency reported separately), then the stress"
        " workloads with every checker on.",
    )
    coherence.add_argument("--agents", type=_positive, default=4, metavar="N", help="endpoints")
    coherence.add_argument("--preset", default="default", help="system preset (default)")
    coherence.add_argument("--ops", type=_positive, default=200, help="stress ops per agent")
    coherence.add_argument("--seed", type=int, default=1, metavar="S")
    coherence.add_argument("--sim", choices=("verilator", "icarus"), default=None)
    coherence.add_argument("--waves", action="store_true", help="dump waveforms")
    coherence.set_defaults(func=_bench_coherence)

    verilog = sub.add_parser("verilog", help="write generated Verilog")
    verilog.add_argument("--top", default="link_default", help="which top (default link_default)")
    verilog.add_argument("--all", action="store_true", help="every top")
    verilog.add_argument(
        "-o", "--output", default="build/verilog", help="output folder (or .v file with --preset)"
    )
    verilog.add_argument(
        "--preset",
        default=None,
        metavar="NAME",
        help="write the system top of a topology preset (small, default, two-level) or .toml file",
    )
    verilog.set_defaults(func=_verilog)

    wave = sub.add_parser(
        "wave-decode",
        help="GTKWave translate filter: hex flits on stdin, header text on stdout",
        description="Reads one hex value per line (a fabric flit: head, tail, payload; or a bare"
        " header with --layout header) and prints one line of text per value, flushed.",
    )
    wave.add_argument("--layout", choices=("flit", "header"), default="flit")
    wave.add_argument("--data-width", type=int, choices=(128, 256, 512), default=128)
    wave.set_defaults(func=_wave_decode)

    sim = sub.add_parser(
        "sim",
        help="the regression: every case as a pytest case, a summary and a report",
        description="Runs the regression cases (sim/test_sim.py) with pytest: JOBS at a time"
        " (pytest-xdist), optionally one shard of them (pytest-split). Each case leaves"
        " build/report/cases/<case>.json; then every case file there is merged into"
        " build/report/report.md and results.json. A whole run (no shard, no -k) first removes"
        " old case files.",
    )
    sim.add_argument("--jobs", type=_positive, default=2, help="parallel simulations")
    sim.add_argument(
        "--seed",
        type=_seed,
        default=None,
        help="base seed (default: $UNIFAB_SEED or 1)",
    )
    sim.add_argument("--sim", choices=("verilator", "icarus"), default=None)
    sim.add_argument(
        "--splits", type=_positive, default=None, metavar="K", help="split the cases into K shards"
    )
    sim.add_argument(
        "--group", type=_positive, default=None, metavar="G", help="run shard G (1..K)"
    )
    sim.add_argument(
        "-k", dest="keyword", default=None, metavar="EXPR", help="pytest -k: select cases by id"
    )
    sim.set_defaults(func=_sim)

    report = sub.add_parser(
        "report",
        help="merge regression case files into the report (shards run elsewhere)",
        description="Merges every build/report/cases/*.json (copied together from the machines"
        " that ran `unifab sim --splits K --group G`) into report.md, results.json and plots.",
    )
    report.add_argument("--cases", default=None, help="case-file folder (build/report/cases)")
    report.add_argument("--output", default=None, help="report folder (build/report)")
    report.set_defaults(func=_report)

    from unifab.run import add_run_parser

    add_run_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ValueError) as e:
        print(f"unifab: error: {e}", file=sys.stderr)
        return 2
    except AssertionError as e:
        print(f"unifab: FAILED: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
