"""Plots for benchmarks and reports (matplotlib, written as PNG files)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "plot_latency_histogram",
    "plot_load_sweep",
    "plot_memory_vs_message",
    "plot_port_utilisation",
]


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_load_sweep(
    curves: Mapping[str, Sequence[Mapping]], path: str | Path, *, title: str
) -> Path:
    """Accepted throughput and mean/p99 latency against offered load, one line per curve.

    ``curves`` maps a label to the points of one sweep, each with ``offered``, ``throughput``,
    ``latency_mean`` and ``latency_p99``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(10, 4))
    for label, points in curves.items():
        x = [p["offered"] for p in points]
        ax_t.plot(x, [p["throughput"] for p in points], marker="o", label=label)
        lat = [p for p in points if p.get("latency_mean") is not None]
        ax_l.plot(
            [p["offered"] for p in lat],
            [p["latency_mean"] for p in lat],
            marker="o",
            label=f"{label} mean",
        )
        ax_l.plot(
            [p["offered"] for p in lat],
            [p["latency_p99"] for p in lat],
            marker="x",
            linestyle="--",
            label=f"{label} p99",
        )
    ax_t.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    ax_t.set_xlabel("offered load (flits/cycle/port)")
    ax_t.set_ylabel("accepted throughput (flits/cycle/port)")
    ax_t.set_xlim(0, 1.02)
    ax_t.set_ylim(0, 1.02)
    ax_t.grid(True, alpha=0.3)
    ax_t.legend(fontsize=8)
    ax_l.set_xlabel("offered load (flits/cycle/port)")
    ax_l.set_ylabel("latency (cycles, port to port)")
    ax_l.set_yscale("log")
    ax_l.grid(True, alpha=0.3)
    ax_l.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_port_utilisation(
    utilisation: Mapping[str, Sequence[float]], path: str | Path, *, title: str
) -> Path:
    """Grouped bars: the share of cycles each switch output port sent a flit, one bar colour
    per labelled run (``utilisation`` maps a label to one value per port)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    count = max(len(utilisation), 1)
    width = 0.8 / count
    for n, (label, values) in enumerate(utilisation.items()):
        x = [port - 0.4 + width * (n + 0.5) for port in range(len(values))]
        ax.bar(x, values, width=width, label=label)
    ports = max((len(v) for v in utilisation.values()), default=0)
    ax.set_xticks(range(ports))
    ax.set_xlabel("output port")
    ax.set_ylabel("utilisation (flits / cycle)")
    ax.set_ylim(0, 1.05)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_latency_histogram(
    latencies: Mapping[str, Sequence[float]], path: str | Path, *, title: str
) -> Path:
    """Per-operation latency histograms, one per labelled mode, overlaid; a logarithmic x axis
    (and log-spaced bins) when the values span more than a factor of 20."""
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    values = [np.asarray(v, dtype=float) for v in latencies.values() if len(v)]
    low = min((float(v.min()) for v in values), default=1.0)
    high = max((float(v.max()) for v in values), default=1.0)
    log_x = low > 0 and high / low > 20
    if log_x:
        bins = np.geomspace(low, high * 1.001, 50)
    else:
        bins = np.linspace(low, high + 1, min(50, int(high - low) + 2))
    for label, v in latencies.items():
        if len(v):
            ax.hist(np.asarray(v, dtype=float), bins=bins, alpha=0.55, label=label)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("latency per operation (cycles)" + (", log scale" if log_x else ""))
    ax.set_ylabel("operations")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_memory_vs_message(rows: Sequence[Mapping], path: str | Path, *, title: str) -> Path:
    """Two panels per workload, memory beside message semantics: mean latency (log scale) and
    bandwidth. Each row has ``label`` and ``memory_latency_mean``, ``message_latency_mean``,
    ``memory_bandwidth``, ``message_bandwidth`` (``None`` when a mode is missing)."""
    plt = _pyplot()
    fig, (ax_l, ax_b) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [r["label"] for r in rows]
    x = range(len(rows))
    for ax, key, ylabel in (
        (ax_l, "latency_mean", "mean latency (cycles, log scale)"),
        (ax_b, "bandwidth", "bandwidth (bytes / cycle)"),
    ):
        for offset, mode in ((-0.2, "memory"), (0.2, "message")):
            heights = [r.get(f"{mode}_{key}") or math.nan for r in rows]
            ax.bar([i + offset for i in x], heights, width=0.4, label=f"{mode} semantics")
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    ax_l.set_yscale("log")
    means = [v for r in rows for m in ("memory", "message") if (v := r.get(f"{m}_latency_mean"))]
    if means:
        ax_l.set_ylim(bottom=min(means) / 2)
    fig.suptitle(title)
    return _save(fig, path)
