"""The switch bench's scoreboard on its own: an ideal switch passes, every fault is caught.

The bench (``unifab.tb.switch_bench``) generates traffic and checks what leaves the switch in
bulk, all streams at once. Here a Python "ideal switch" delivers the generated messages whole
and in order, split into capture periods at arbitrary points (so messages straddle periods),
and each kind of fault a broken switch could make is injected once: the matching check must
fire, with a message naming what went wrong. Seeds come from ``UNIFAB_SEED`` (default 1).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from unifab.tb.common import BenchSettings, ScoreboardError
from unifab.tb.switch_bench import SwitchTB
from unifab.traffic import TrafficGenerator

PORTS = 4
LATENCY = 2


def _seed() -> int:
    seed = int(os.environ.get("UNIFAB_SEED", "1"), 0)
    print(f"seed={seed} (repeat with UNIFAB_SEED={seed})")
    return seed


def _generated(mix: str, seed: int) -> tuple[SwitchTB, list[dict]]:
    """A scoreboard that generated two windows of traffic, and those messages in release
    order: each with its source, output port, VC and flit rows."""
    tb = SwitchTB(None, BenchSettings({"ports": PORTS, "seed": seed}))
    tb.reset_stats(0, 1 << 20)
    gen = TrafficGenerator(ports=PORTS, load=0.6, mix=mix, seed=seed)
    rng = np.random.default_rng(seed)
    for start in (0, 256):
        tb.generate(gen.window(start, 256), start, 256, 0.0, rng)
    messages = []
    for src in range(PORTS):
        rows = np.concatenate(list(tb.pending[src]))
        heads = np.flatnonzero(rows[:, 5] & 1)
        for a, b in zip(heads, [*heads[1:], rows.shape[0]], strict=True):
            flits = rows[a:b].copy()
            release = int(flits[0, 0:4].copy().view("<u4")[0])
            flits[:, 0:4] = np.array([release + LATENCY], "<u4").view(np.uint8)
            messages.append(
                {"src": src, "out": int(flits[0, 8]), "vc": int(flits[0, 4]), "rows": flits}
            )
    messages.sort(key=lambda m: int(m["rows"][0, 0:4].copy().view("<u4")[0]))
    return tb, messages


def _deliver(tb: SwitchTB, messages: list[dict], seed: int) -> None:
    """Hand the messages to the scoreboard as the capture banks would: per output port in
    order, cut into periods at random flit boundaries."""
    rng = np.random.default_rng(seed + 7)
    per_port = [[m["rows"] for m in messages if m["out"] == o] for o in range(PORTS)]
    flits = [np.concatenate(p) if p else np.zeros((0, tb.eb), np.uint8) for p in per_port]
    cuts = [np.sort(rng.integers(0, max(1, f.shape[0]), size=6)) for f in flits]
    for k in range(7):
        rows, ports = [], []
        for o, f in enumerate(flits):
            lo = cuts[o][k - 1] if k else 0
            hi = cuts[o][k] if k < 6 else f.shape[0]
            rows.append(f[lo:hi])
            ports.append(np.full(hi - lo, o, dtype=np.int64))
        rows_all = np.concatenate(rows)
        if rows_all.size:
            tb.check_arrivals(rows_all, np.concatenate(ports))


def _flow_pair(messages: list[dict]) -> tuple[int, int]:
    """Indices of two consecutive messages of one flow."""
    last: dict[tuple[int, int, int], int] = {}
    for i, m in enumerate(messages):
        key = (m["src"], m["out"], m["vc"])
        if key in last:
            return last[key], i
        last[key] = i
    raise AssertionError("no flow with two messages")


@pytest.mark.parametrize("mix", ["single", "data"])
def test_ideal_switch_passes(mix):
    seed = _seed()
    tb, messages = _generated(mix, seed)
    _deliver(tb, messages, seed)
    assert tb.outstanding() == 0
    assert tb.open_rows.shape[0] == 0
    lat = np.concatenate(tb.latencies)
    assert lat.size == len(messages) and (lat == LATENCY).all()
    assert tb.arrived_flits.sum() == sum(m["rows"].shape[0] for m in messages)


def _fault(kind: str, messages: list[dict], tb: SwitchTB) -> list[dict]:
    a, b = _flow_pair(messages)
    msgs = [dict(m) for m in messages]
    if kind == "lost":
        del msgs[a]
    elif kind == "duplicated":
        msgs.insert(b, dict(msgs[a]))
    elif kind == "reordered":
        msgs[a], msgs[b] = msgs[b], msgs[a]
    elif kind == "corrupted":
        rows = msgs[a]["rows"].copy()
        rows[-1, -1] ^= 0x10  # last payload byte of the message's last flit
        msgs[a] = {**msgs[a], "rows": rows}
    elif kind == "misrouted":
        msgs[a] = {**msgs[a], "out": (msgs[a]["out"] + 1) % PORTS}
    elif kind == "bad_vc":
        rows = msgs[a]["rows"].copy()
        rows[:, 4] = tb.vcs + 1
        msgs[a] = {**msgs[a], "rows": rows}
    elif kind == "headless":
        first = next(i for i, m in enumerate(msgs) if m["rows"].shape[0] > 1)
        msgs[first] = {**msgs[first], "rows": msgs[first]["rows"][1:]}
        # Its output VC's stream must start with it.
        msgs.insert(0, msgs.pop(first))
    elif kind == "interleaved":
        i = next(i for i, m in enumerate(msgs) if m["rows"].shape[0] > 1)
        j = next(
            j
            for j, m in enumerate(msgs)
            if j > i
            and m["rows"].shape[0] > 1
            and (m["out"], m["vc"]) == (msgs[i]["out"], msgs[i]["vc"])
        )
        x, y = msgs[i]["rows"], msgs[j]["rows"]
        msgs[i] = {**msgs[i], "rows": np.concatenate([x[:2], y[:2], x[2:]])}
        msgs[j] = {**msgs[j], "rows": y[2:]}
    else:
        raise ValueError(kind)
    return msgs


FAULTS = {
    "lost": "lost, duplicated or reordered",
    "duplicated": "lost, duplicated or reordered",
    "reordered": "lost, duplicated or reordered",
    "corrupted": "corrupted",
    "misrouted": "arrived here",
    "bad_vc": "does not exist",
    "headless": "no message open",
    "interleaved": "interleaved or cut",
}


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_fault_is_caught(kind):
    seed = _seed()
    tb, messages = _generated("data" if kind in ("headless", "interleaved") else "single", seed)
    with pytest.raises(ScoreboardError, match=FAULTS[kind]):
        _deliver(tb, _fault(kind, messages, tb), seed)
