"""``unifab run WORKLOAD``: one of the design brief's workloads on a super node, in memory or
message semantics; a summary, then one JSON object as the last line."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["RUN_FIELDS", "add_run_parser", "run_workload"]

# The JSON line's keys, in order (the list, then what helps reading it).
RUN_FIELDS = (
    "workload",
    "mode",
    "preset",
    "seed",
    "ops",
    "bytes",
    "cycles",
    "latency_mean",
    "latency_p50",
    "latency_p99",
    "bandwidth",
    "violations",
    "rtl_cycles_mean",
    "modelled_cycles_mean",
    "clock_ghz",
)


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def run_workload(args: argparse.Namespace) -> int:
    from unifab.message import MessageCosts
    from unifab.tb.benches import default_seed, workload_bench

    costs = MessageCosts.from_overrides(args.cost or "")  # validated here: one-line errors
    seed = args.seed if args.seed is not None else default_seed()
    print(f"unifab run {args.workload} --preset {args.preset} --mode {args.mode} --seed {seed}")
    r = workload_bench(
        workload=args.workload,
        mode=args.mode,
        preset=args.preset,
        scale=args.scale,
        costs=costs.as_dict(),
        seed=seed,
        sim=args.sim,
        waves=args.waves or None,
    )
    print(
        f"{r['ops']} transfers, {r['bytes']} bytes on {r['endpoints']} endpoints in "
        f"{r['cycles']} cycles: latency mean {r['latency_mean']:.1f} / p50 "
        f"{r['latency_p50']:.0f} / p99 {r['latency_p99']:.0f} cycles, "
        f"{r['bandwidth']:.3f} bytes/cycle, {r['violations']} violations"
    )
    if args.mode == "message":
        print(
            f"of the mean latency {r['rtl_cycles_mean']:.1f} cycles are RTL (fabric + pooled "
            f"memory) and {r['modelled_cycles_mean']:.1f} modelled (NIC, PCIe, completion; "
            f"costs at {r['clock_ghz']} GHz, see unifab.message.COST_SOURCES)"
        )
    summary: dict[str, Any] = {k: r.get(k) for k in RUN_FIELDS}
    print(json.dumps(summary))
    return 0 if r["violations"] == 0 else 1


def add_run_parser(sub) -> None:
    """Add ``run`` to the ``unifab`` command's subparsers."""
    from unifab.message import COST_SOURCES
    from unifab.workloads import WORKLOAD_NAMES

    run = sub.add_parser(
        "run",
        help="run a workload (kv_cache, embedding_gather, page_swap, remote_read_64)",
        description="Runs one workload of the design brief on the super node of a topology, "
        "every byte read checked. memory: loads/stores at the endpoints' AXI ports. message: "
        "an RDMA-style engine whose fabric crossings and pooled-memory accesses are RTL and "
        "whose NIC/PCIe steps are modelled costs (--cost). Prints a summary and, last, one "
        "JSON object: " + ", ".join(RUN_FIELDS) + ".",
        epilog="message costs (--cost name=value,...): "
        + "; ".join(f"{k}: {v}" for k, v in COST_SOURCES.items()),
    )
    run.add_argument("workload", choices=WORKLOAD_NAMES)
    run.add_argument(
        "--preset", default="default", help="topology preset (small, default, two-level) or .toml"
    )
    run.add_argument("--mode", choices=("memory", "message"), default="memory")
    run.add_argument("--seed", type=lambda t: int(t, 0), default=None, metavar="S")
    run.add_argument(
        "--scale",
        type=_scale,
        default=1.0,
        help="operations (and the largest block size) times this factor (default 1)",
    )
    run.add_argument("--cost", default=None, metavar="NAME=V,...", help="message-cost overrides")
    run.add_argument("--sim", choices=("verilator", "icarus"), default=None)
    run.add_argument("--waves", action="store_true", help="dump waveforms (+ GTKWave save file)")
    run.set_defaults(func=run_workload)
