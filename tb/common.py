"""Shared bench plumbing: settings from the environment, seeds, clock and reset, fast I/O."""

from __future__ import annotations

import json
import os
import random
import resource
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

__all__ = [
    "BenchSettings",
    "Pausable",
    "PauseDriver",
    "ScoreboardError",
    "read",
    "read_chars7",
    "read_words",
    "start_clock",
    "write_wide",
]


class ScoreboardError(AssertionError):
    """A bench saw traffic that must not happen (lost, duplicated, reordered, corrupted)."""


SETTINGS_ENV = "UNIFAB_BENCH"


class BenchSettings:
    """Settings a pytest runner or the CLI hands to a cocotb bench as JSON in the environment.

    Every random bench draws from ``rng``, seeded with ``seed``; the seed is logged so that a
    failing run can be repeated with ``UNIFAB_SEED=<seed>``.
    """

    def __init__(self, values: Mapping[str, Any]):
        self.values = dict(values)
        self.seed = int(self.values.get("seed", 1))
        self.rng = random.Random(self.seed)

    @classmethod
    def from_env(cls) -> BenchSettings:
        return cls(json.loads(os.environ.get(SETTINGS_ENV, "{}")))

    @staticmethod
    def to_env(values: Mapping[str, Any]) -> dict[str, str]:
        return {SETTINGS_ENV: json.dumps(dict(values))}

    def get(self, name: str, default: Any) -> Any:
        return self.values.get(name, default)

    def write_result(self, result: Mapping[str, Any]) -> None:
        """Write the bench's figures where the runner asked for them (``result_file``), with
        ``sim_peak_rss_kb``: the simulator process's own peak resident set so far (the
        testbench runs embedded in it, so this is the compiled model plus the bench)."""
        path = self.values.get("result_file")
        if path:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
            with open(path, "w") as f:
                json.dump({**result, "sim_peak_rss_kb": peak}, f, indent=1, sort_keys=True)


def read(handle) -> int:
    """The unsigned value of a signal; fails loudly on X/Z."""
    return int(handle.value)


CLOCK_PERIOD_NS = 10


async def start_clock(dut, *, cycles_in_reset: int = 4) -> None:
    """Start a ``CLOCK_PERIOD_NS`` clock and pulse the synchronous reset."""
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start(start_high=False)
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles_in_reset)
    dut.rst.value = 0


class Pausable(Protocol):
    """A stream end with a ``pause`` flag (cocotbext-axi sources, sinks and monitors)."""

    pause: bool


class PauseDriver:
    """Steps every stream's pause pattern in one task: each channel takes its pattern's first
    value now and the next one after every rising edge of ``clock``.

    The same values at the same edges as each channel's ``set_pause_generator``, in the order
    of ``patterns``; but cocotbext-axi starts a task per channel for that, and in the coherence
    stress those tasks were almost two-thirds of the bench's task wake-ups (one per channel per
    cycle). ``steps`` counts the values given to each channel, ``paused[i]`` those that paused
    channel ``i``, so a bench can show that every stream was held."""

    def __init__(self, clock, patterns: list[tuple[Pausable, Iterator[bool]]]) -> None:
        self.steps = 0
        self.paused = [0] * len(patterns)
        self._task = cocotb.start_soon(self._step(clock, patterns))

    async def _step(self, clock, patterns: list[tuple[Pausable, Iterator[bool]]]) -> None:
        edge = RisingEdge(clock)
        paused = self.paused
        while True:
            for i, (channel, pattern) in enumerate(patterns):
                value = next(pattern)
                channel.pause = value
                paused[i] += value
            self.steps += 1
            await edge


def log_seed(dut, settings: BenchSettings) -> None:
    cocotb.log.info("seed=%d (repeat with UNIFAB_SEED=%d)", settings.seed, settings.seed)


def read_chars7(handle, entries: int, entry_bits: int) -> np.ndarray:
    """The low ``entries`` entries of a vector that stores each ``entry_bits``-bit entry as
    characters of 7 bits with bit 7 set (LSB first), read in one simulator call as a string;
    rows of ``entry_bits // 8`` bytes.

    A string read moves 7 bits per character where a binary string moves one; bit 7 keeps NUL
    and space out of the characters, which simulators drop or substitute.
    """
    chars_per = (entry_bits + 6) // 7
    need = entries * chars_per
    text = handle._handle.get_signal_val_str()
    if len(text) < need:
        raise ValueError(f"read {len(text)} characters, need {need}")
    chars = np.frombuffer(text[len(text) - need :], dtype=np.uint8)[::-1]
    if ((chars & 0x80) == 0).any():
        raise ValueError("a character without bit 7 set (X/Z or a wrong encoding)")
    bits = np.unpackbits((chars & 0x7F)[:, None], axis=1, bitorder="little")[:, :7]
    bits = bits.reshape(entries, chars_per * 7)[:, :entry_bits]
    return np.packbits(bits, axis=1, bitorder="little")


def write_wide(handle, value: int, width: int) -> None:
    """Deposit a wide vector in one simulator call (binary string, MSB first)."""
    handle._handle.set_signal_val_binstr(0, format(value, f"0{width}b"))


def read_words(handle, width: int, mask: int) -> dict[int, int]:
    """The ``width``-bit words ``k`` of a packed vector for each set bit ``k`` of ``mask``.

    Words not asked for may hold X/Z (a simulator's uninitialized buffer behind a low
    ``valid``); the ones asked for must be fully defined.
    """
    text = handle._handle.get_signal_val_binstr()
    total = len(text)
    out = {}
    k = 0
    while mask:
        if mask & 1:
            out[k] = int(text[total - (k + 1) * width : total - k * width], 2)
        mask >>= 1
        k += 1
    return out
