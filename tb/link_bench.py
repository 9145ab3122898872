"""cocotb bench: two link layers joined by lossy channels, every virtual channel at once.

Settings (JSON in ``UNIFAB_BENCH``, see :class:`unifab.tb.common.BenchSettings`): ``seed``,
``flits`` (per direction), ``p_err`` (probability a link flit is corrupted or dropped, split
evenly), ``latency`` (cycles each way), ``burst`` (Gilbert–Elliott error bursts), ``stall``
(channel stalls), ``inject`` / ``ready`` (probability a VC source offers a flit / a VC sink
accepts one each cycle: random idle and back-pressure), ``reset`` (reset side a mid-run),
``vcs``, ``flit_bits``, ``watchdog`` (cycles without progress that fail the run).

The scoreboard keeps, per direction and VC, the flits accepted by the sending link layer in
order; every received flit must equal the oldest outstanding one, so a lost, duplicated,
reordered or corrupted flit fails the run at once. The run ends with every sink empty.
"""

from __future__ import annotations

import time
from collections import deque

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from unifab.hdl.link.layer import LINK_COUNTERS
from unifab.models.channel import probability_to_thresh
from unifab.tb.common import (
    BenchSettings,
    ScoreboardError,
    log_seed,
    read,
    read_words,
    start_clock,
)
from unifab.tb.tops import CHANNEL_COUNTERS

SIDES = ("a", "b")
PEER = {"a": "b", "b": "a"}


class Direction:
    """Traffic from one side to the other: source offers, outstanding flits, statistics."""

    def __init__(self, src: str, vcs: int, flits: int, flit_bits: int, rng):
        self.src, self.dst = src, PEER[src]
        self.vcs, self.flit_bits = vcs, flit_bits
        # Spread the flits over the VCs; each VC's stream is independent.
        counts = [flits // vcs + (1 if v < flits % vcs else 0) for v in range(vcs)]
        self.to_send = [deque(rng.getrandbits(flit_bits) for _ in range(n)) for n in counts]
        self.offer: list[int | None] = [None] * vcs
        self.outstanding: list[deque] = [deque() for _ in range(vcs)]
        # Flits outstanding when a reset hit may be lost; they are marked, by count, here.
        self.may_lose = [0] * vcs
        self.sent = self.received = self.reset_lost = 0
        # What the bench drives on this side's ports (written only when it changes).
        self.valid = self.data = self.ready = 0
        self.first_rx = self.last_rx = None

    def done(self) -> bool:
        return (
            not any(self.to_send)
            and all(o is None for o in self.offer)
            and not any(self.outstanding)
        )

    def check(self, v: int, flit: int, cycle: int) -> None:
        queue = self.outstanding[v]
        while queue and queue[0] != flit and self.may_lose[v]:
            queue.popleft()
            self.may_lose[v] -= 1
            self.reset_lost += 1
        if not queue:
            raise ScoreboardError(
                f"{self.src}->{self.dst} VC{v}: flit {flit:#x} received at cycle {cycle} "
                "with nothing outstanding (duplicated or invented)"
            )
        if queue[0] != flit:
            where = next((i for i, x in enumerate(queue) if x == flit), None)
            what = "corrupted or invented" if where is None else f"reordered ({where} early)"
            raise ScoreboardError(
                f"{self.src}->{self.dst} VC{v}: received {flit:#x} at cycle {cycle}, expected "
                f"{queue[0]:#x}: {what}"
            )
        queue.popleft()
        if self.may_lose[v]:
            self.may_lose[v] -= 1
        self.received += 1
        if self.first_rx is None:
            self.first_rx = cycle
        self.last_rx = cycle


class LinkPairTB:
    """Drives and checks a ``LinkPairBench`` top."""

    def __init__(self, dut, settings: BenchSettings):
        self.dut = dut
        self.s = settings
        self.vcs = int(settings.get("vcs", 4))
        self.flit_bits = int(settings.get("flit_bits", 148))
        flits = int(settings.get("flits", 2000))
        self.inject = float(settings.get("inject", 1.0))
        self.ready = float(settings.get("ready", 1.0))
        self.dirs = {s: Direction(s, self.vcs, flits, self.flit_bits, settings.rng) for s in SIDES}
        self.cycle = 0
        # From a reset until both sides are up again, flits in flight may be lost.
        self.lossy = False
        self.peer_went_down = False
        self.h = {
            s: {
                n: getattr(dut, f"{s}_{n}")
                for n in ("tx_valid", "tx_data", "tx_ready", "rx_valid", "rx_data", "rx_ready")
            }
            for s in SIDES
        }

    def configure_channels(self) -> None:
        p = float(self.s.get("p_err", 0.0))
        latency = int(self.s.get("latency", 32))
        half = probability_to_thresh(p / 2)
        for i, d in enumerate(("ab", "ba")):
            cfg = {
                "latency": latency,
                "drop_thresh": half,
                "flip_thresh": half,
                "burst_enter_thresh": 0,
                "burst_exit_thresh": 0,
                "burst_flip_thresh": 0,
                "stall_thresh": 0,
                "stall_len": 0,
            }
            if self.s.get("burst", False):
                cfg |= {
                    "burst_enter_thresh": probability_to_thresh(max(p, 1e-3) / 20),
                    "burst_exit_thresh": probability_to_thresh(0.2),
                    "burst_flip_thresh": probability_to_thresh(0.5),
                }
            if self.s.get("stall", False):
                cfg |= {"stall_thresh": probability_to_thresh(0.002), "stall_len": 12}
            for name, value in cfg.items():
                getattr(self.dut, f"{d}_{name}").value = value
            getattr(self.dut, f"{d}_seed").value = (self.s.seed * 2 + i + 1) & (2**64 - 1)
            getattr(self.dut, f"{d}_seed_load").value = 1

    async def run(self) -> dict:
        dut, rng = self.dut, self.s.rng
        for s in SIDES:
            getattr(dut, f"{s}_rst").value = 0
            self.h[s]["tx_valid"].value = 0
            self.h[s]["rx_ready"].value = 0
        self.configure_channels()
        await start_clock(dut)
        for d in ("ab", "ba"):
            getattr(dut, f"{d}_seed_load").value = 0

        watchdog = int(self.s.get("watchdog", 20000))
        reset_at = int(self.s.get("reset_at", 0)) if self.s.get("reset", False) else 0
        idle = 0
        drain = 0
        wall = time.perf_counter()
        while True:
            await FallingEdge(dut.clk)
            self.cycle += 1
            if reset_at and self.cycle == reset_at:
                self._reset_side("a", True)
            if reset_at and self.cycle == reset_at + 8:
                self._reset_side("a", False)
            for s in SIDES:
                self._drive(s, rng)
            await ReadOnly()
            progress = False
            for s in SIDES:
                progress |= self._sample(s)
            if self.lossy:
                up_b = read(dut.b_up)
                self.peer_went_down |= not up_b
                if self.peer_went_down and up_b and read(dut.a_up):
                    self.lossy = False
            if all(d.done() for d in self.dirs.values()):
                # End with every sink empty: nothing more may arrive for a while.
                drain += 1
                if drain > 4 * int(self.s.get("latency", 32)) + 64:
                    break
            idle = 0 if progress else idle + 1
            if idle > watchdog:
                raise ScoreboardError(
                    f"watchdog: no progress for {watchdog} cycles at cycle {self.cycle}; "
                    + self._status()
                )
        wall = time.perf_counter() - wall
        return self._result(wall)

    def _reset_side(self, s: str, assert_: bool) -> None:
        getattr(self.dut, f"{s}_rst").value = int(assert_)
        if assert_:
            # Whatever is in flight in either direction may be lost with the reset side's state.
            for d in self.dirs.values():
                d.may_lose = [len(q) for q in d.outstanding]
            self.lossy, self.peer_went_down = True, False

    def _drive(self, s: str, rng) -> None:
        d = self.dirs[s]
        valid = data = 0
        fb = self.flit_bits
        for v in range(self.vcs):
            if d.offer[v] is None and d.to_send[v] and rng.random() < self.inject:
                d.offer[v] = d.to_send[v].popleft()
            if d.offer[v] is not None:
                valid |= 1 << v
                data |= d.offer[v] << (v * fb)
        if self.ready >= 1.0:
            ready = (1 << self.vcs) - 1
        else:
            ready = sum(1 << v for v in range(self.vcs) if rng.random() < self.ready)
        # Simulator writes cost more than the Python around them: write only what changed.
        h = self.h[s]
        if valid != d.valid:
            h["tx_valid"].value = valid
        if data != d.data:
            h["tx_data"].value = data
        if ready != d.ready:
            h["rx_ready"].value = ready
        d.valid, d.data, d.ready = valid, data, ready

    def _sample(self, s: str) -> bool:
        """Record this cycle's handshakes (they complete at the next rising edge)."""
        h = self.h[s]
        d = self.dirs[s]
        progress = False
        taken = d.valid & read(h["tx_ready"])
        for v in range(self.vcs):
            if taken >> v & 1:
                d.outstanding[v].append(d.offer[v])
                if self.lossy:
                    d.may_lose[v] += 1
                d.offer[v] = None
                d.sent += 1
        arriving = read(h["rx_valid"]) & d.ready
        if arriving:
            into = self.dirs[PEER[s]]
            for v, flit in read_words(h["rx_data"], self.flit_bits, arriving).items():
                into.check(v, flit, self.cycle)
                progress = True
        return progress

    def _counters(self) -> dict:
        out = {}
        for s in SIDES:
            out[s] = {n: read(getattr(self.dut, f"{s}_{n}")) for n in LINK_COUNTERS}
            out[s]["up"] = read(getattr(self.dut, f"{s}_up"))
            out[s]["credit_overflow"] = read(getattr(self.dut, f"{s}_credit_overflow"))
        for d in ("ab", "ba"):
            out[d] = {n: read(getattr(self.dut, f"{d}_{n}")) for n in CHANNEL_COUNTERS}
        return out

    def _status(self) -> str:
        parts = []
        for s, d in self.dirs.items():
            parts.append(
                f"{s}->{d.dst}: sent {d.sent} received {d.received} outstanding "
                f"{[len(q) for q in d.outstanding]} to send {[len(q) for q in d.to_send]}"
            )
        return "; ".join(parts) + f"; counters {self._counters()}"

    def _result(self, wall: float) -> dict:
        c = self._counters()
        goodputs = {}
        for s, d in self.dirs.items():
            span = (d.last_rx - d.first_rx + 1) if d.received else 0
            goodputs[f"goodput_{s}{d.dst}"] = d.received / span if span else 0.0
        for s in SIDES:
            if c[s]["credit_overflow"]:
                raise ScoreboardError(f"side {s}: the peer returned more credits than it has")
        return {
            "seed": self.s.seed,
            "flits": sum(d.sent for d in self.dirs.values()),
            "received": sum(d.received for d in self.dirs.values()),
            # The scoreboard raises at the first lost, duplicated or reordered flit, so a
            # result only exists when these are zero.
            "lost": 0,
            "duplicated": 0,
            "reordered": 0,
            "reset_lost": sum(d.reset_lost for d in self.dirs.values()),
            "goodput": sum(goodputs.values()) / len(goodputs),
            **goodputs,
            "replays": c["a"]["replays"] + c["b"]["replays"],
            "crc_errors": c["a"]["crc_errors"] + c["b"]["crc_errors"],
            "dropped": c["ab"]["dropped"] + c["ba"]["dropped"],
            "corrupted": c["ab"]["corrupted"] + c["ba"]["corrupted"],
            "downs": c["a"]["downs"] + c["b"]["downs"],
            "cycles": self.cycle,
            "wall_s": wall,
            "sim_cycles_per_s": self.cycle / wall if wall else 0.0,
            "counters": c,
        }


@cocotb.test()
async def link_pair(dut):
    """Lossy link pair: nothing lost, duplicated or reordered, payloads intact."""
    settings = BenchSettings.from_env()
    log_seed(dut, settings)
    tb = LinkPairTB(dut, settings)
    result = await tb.run()
    await ClockCycles(dut.clk, 2)
    if settings.get("reset", False):
        assert result["downs"] >= 1, "the reset side's peer never saw the link go down"
    assert result["received"] == result["flits"] - result["reset_lost"]
    if not settings.get("reset", False):
        assert result["reset_lost"] == 0
    cocotb.log.info(
        "link pair: %d flits, goodput %.4f, replays %d, crc errors %d, %.0f cycles/s",
        result["flits"],
        result["goodput"],
        result["replays"],
        result["crc_errors"],
        result["sim_cycles_per_s"],
    )
    settings.write_result(result)
