"""Plots for benchmarks and reports (matplotlib, written as PNG files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["plot_load_sweep"]


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
