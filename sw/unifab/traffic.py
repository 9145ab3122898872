"""Seeded synthetic traffic generators for the switch benches (vectorized with numpy).

A generator produces, per window of cycles and per source port, the messages that start in
that window: release cycle, destination port and message class. Patterns (``PATTERNS``):

* ``uniform``     — every destination equally likely (the source itself included);
* ``hotspot``     — a fraction ``hotspot`` of messages go to port 0, the rest uniform;
* ``transpose``   — port index bits rotated by half their width (a permutation);
* ``bitcomp``     — destination = bitwise complement of the source (N - 1 - src);
* ``bursty``      — uniform destinations, sources alternate on/off periods (mean 8 cycles
  each), injecting at twice the mean rate while on.

``load`` is the offered load in flits per cycle per port; a message of ``n`` flits starts
with probability ``load / mean_flits`` per cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unifab.flit import MsgClass

__all__ = ["CLASS_MIXES", "PATTERNS", "TrafficGenerator", "Window"]

PATTERNS = ("uniform", "hotspot", "transpose", "bitcomp", "bursty", "flood")

#: Message class mixes: class -> (probability, flits per message at 128-bit flits).
CLASS_MIXES: dict[str, dict[MsgClass, tuple[float, int]]] = {
    # single-flit messages on one class: what the saturation targets are stated for
    "single": {MsgClass.RSP: (1.0, 1)},
    # every class, with multi-flit data messages (a line is 4 data flits + a header)
    "mixed": {
        MsgClass.REQ: (0.3, 1),
        MsgClass.SNP: (0.1, 1),
        MsgClass.RSP: (0.3, 1),
        MsgClass.DAT: (0.3, 5),
    },
    # requests carrying data (non-coherent writes) and data responses only
    "data": {MsgClass.REQ: (0.5, 5), MsgClass.DAT: (0.5, 5)},
}


@dataclass
class Window:
    """Messages starting in one window, sorted by (source port, release cycle)."""

    src: np.ndarray  # source port
    dst: np.ndarray  # destination port
    cls: np.ndarray  # MsgClass value
    flits: np.ndarray  # flits in the message
    release: np.ndarray  # cycle the message may be injected


class TrafficGenerator:
    """Draws messages window by window; the same seed gives the same traffic."""

    def __init__(
        self,
        *,
        ports: int,
        pattern: str = "uniform",
        load: float = 0.5,
        mix: str = "single",
        seed: int = 1,
        hotspot: float = 0.3,
    ):
        if pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, not {pattern!r}")
        if mix not in CLASS_MIXES:
            raise ValueError(f"mix must be one of {', '.join(CLASS_MIXES)}, not {mix!r}")
        if not 0.0 <= load <= 1.0:
            raise ValueError(f"load must be in [0, 1] flits/cycle/port, not {load!r}")
        if ports < 2:
            raise ValueError(f"ports must be at least 2, not {ports!r}")
        self.ports, self.pattern, self.load, self.seed = ports, pattern, load, seed
        self.hotspot = hotspot
        self.rng = np.random.default_rng(seed)
        classes = CLASS_MIXES[mix]
        self.classes = np.array([c.value for c in classes], dtype=np.int64)
        self.class_p = np.array([p for p, _ in classes.values()], dtype=float)
        self.class_p /= self.class_p.sum()
        self.class_flits = np.array([n for _, n in classes.values()], dtype=np.int64)
        self.mean_flits = float((self.class_p * self.class_flits).sum())
        self.on = np.ones(ports, dtype=bool)

    def _dest(self, src: np.ndarray) -> np.ndarray:
        n = self.ports
        if self.pattern in ("uniform", "bursty"):
            return self.rng.integers(0, n, size=src.size)
        if self.pattern == "hotspot":
            hot = self.rng.random(src.size) < self.hotspot
            return np.where(hot, 0, self.rng.integers(0, n, size=src.size))
        if self.pattern == "flood":
            return np.ones(src.size, dtype=np.int64)
        if self.pattern == "bitcomp":
            return n - 1 - src
        # transpose: rotate the index bits by half the width
        bits = max(1, (n - 1).bit_length())
        half = bits // 2 or 1
        rot = ((src >> half) | (src << (bits - half))) & ((1 << bits) - 1)
        return rot % n

    def window(self, start: int, length: int) -> Window:
        """The messages starting in cycles ``[start, start + length)``."""
        n = self.ports
        p_start = min(1.0, self.load / self.mean_flits)
        if self.pattern == "bursty":
            starts = np.zeros((n, length), dtype=bool)
            p_on = min(1.0, 2 * p_start)
            for t in range(length):
                flip = self.rng.random(n) < 1 / 8
                self.on ^= flip
                starts[:, t] = self.on & (self.rng.random(n) < p_on)
        elif self.pattern == "flood":
            p_port = np.full((n, 1), p_start)
            p_port[0] = 1.0 / self.mean_flits
            starts = self.rng.random((n, length)) < p_port
        else:
            starts = self.rng.random((n, length)) < p_start
        src, offset = np.nonzero(starts)
        kind = self.rng.choice(self.classes.size, size=src.size, p=self.class_p)
        return Window(
            src=src.astype(np.int64),
            dst=self._dest(src.astype(np.int64)).astype(np.int64),
            cls=self.classes[kind],
            flits=self.class_flits[kind],
            release=(start + offset).astype(np.int64),
        )
