"""cocotb bench for the switch: Python traffic generators and scoreboards, driven in bulk.

Python wakes once per ``batch`` cycles (a single timer, no per-cycle callback): it hands each
port's injector its next flits and takes every flit captured since the last wake, in bulk
(``unifab.tb.switch_top`` says how, per simulator). Generation and checking are vectorized
with numpy, all ports and VCs at once.

Every flit's content is a function of its flow (source port, destination port, VC), the
message's sequence number in that flow and the beat, so the scoreboard recomputes what must
arrive. It checks, per output port: every head flit arrives at the port its destination maps
to; per (source, VC) flow, messages arrive whole, in order, without gaps or duplicates;
multi-flit messages are never interleaved with another on the same output VC; every payload
byte is intact. Refused requests come back as ERROR responses (checked in order per source);
at the end every generated message has arrived and every sink has stayed empty.

Settings (``UNIFAB_BENCH`` JSON): ports, vcs, batch, entry_bytes, pattern, mix, loads (list),
warmup, measure, seed, bp (output back-pressure probability), bad (fraction of refused or
malformed requests), node_id, result_file. Pattern ``flood`` is the starvation test: port 0
floods port 1 while the others send to port 1 lightly; their worst latency is reported.
"""

from __future__ import annotations

import ctypes
import time
from collections import deque

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge, Timer

from unifab.flit import ErrorCode, MsgClass, Opcode
from unifab.models.channel import probability_to_thresh
from unifab.tb.common import (
    BenchSettings,
    ScoreboardError,
    log_seed,
    read,
    read_chars7,
    start_clock,
    write_wide,
)
from unifab.traffic import TrafficGenerator

PERIOD_NS = 10
#: Cycles between a flit's release and its appearance on the switch input (injector register).
INJECT_DELAY = 1
RING = 4096  # release times kept per flow (outstanding messages per flow must stay below)

OPCODE_OF = {
    (MsgClass.REQ.value, 1): Opcode.NC_READ.value,
    (MsgClass.REQ.value, 5): Opcode.NC_WRITE.value,
    (MsgClass.SNP.value, 1): Opcode.SNP_INV.value,
    (MsgClass.RSP.value, 1): Opcode.COMP.value,
    (MsgClass.DAT.value, 5): Opcode.COMP_DATA.value,
}

_OPCODE_LUT = np.full((4, 8), 0x3F, dtype=np.int64)
for (_cls, _len), _op in OPCODE_OF.items():
    _OPCODE_LUT[_cls, _len] = _op


def _rank_within(keys: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements have the same key (0, 1, 2, ...)."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    first = np.r_[0, np.flatnonzero(np.diff(sk)) + 1] if sk.size else np.zeros(0, np.int64)
    rank = np.empty(keys.size, dtype=np.int64)
    rank[order] = np.arange(sk.size) - np.repeat(first, np.diff(np.r_[first, sk.size]))
    return rank


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on uint64 arrays."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


class AddressMap:
    """The bench's global address map: ports grouped into interleave sets of up to 8 nodes."""

    PAGE = 4096

    def __init__(self, ports: int):
        self.groups = []  # (first node, ways, base)
        first = 0
        r = 0
        while first < ports:
            ways = 1 << min(3, (ports - first).bit_length() - 1)
            self.groups.append((first, ways, r << 36))
            first += ways
            r += 1
        self.first = np.zeros(ports, dtype=np.int64)
        self.ways = np.zeros(ports, dtype=np.int64)
        self.base = np.zeros(ports, dtype=np.int64)
        for first, ways, base in self.groups:
            self.first[first : first + ways] = first
            self.ways[first : first + ways] = ways
            self.base[first : first + ways] = base
        #: a window served by node 0 that the access table forbids to everyone
        self.protected = (len(self.groups) << 36, 1 << 20)
        #: an address no range holds
        self.hole = 0xF << 44

    def ranges(self):
        from unifab.switch_config import AddressRange

        out = [
            AddressRange(
                base=base,
                size=ways * self.PAGE << 20,
                targets=tuple(range(first, first + ways)),
                granularity=self.PAGE,
            )
            for first, ways, base in self.groups
        ]
        out.append(AddressRange(base=self.protected[0], size=self.protected[1], targets=(0,)))
        return tuple(out)

    def address(self, dst: np.ndarray, q: np.ndarray) -> np.ndarray:
        """An address owned by node ``dst``, varied by ``q`` (20 bits)."""
        page = (q & 0xFFFFF) * self.ways[dst] + (dst - self.first[dst])
        return self.base[dst] + page * self.PAGE + ((q >> 20) & 63) * 64


class _DpiQueues:
    """The bulk ports' injection and capture queues in the Verilator model
    (``tb/verilog/unifab_bulk.cpp``), reached with ctypes: the simulator runs this bench in its
    own process and exports the symbols."""

    def __init__(self, entry_bytes: int):
        lib = ctypes.CDLL(None)
        try:
            self._push, self._pull = lib.unifab_bulk_push, lib.unifab_bulk_pull
            self._count = lib.unifab_bulk_captured_count
            reset = lib.unifab_bulk_reset
        except AttributeError as e:
            raise RuntimeError(
                "the Verilator model has no bulk-port queues: build it with "
                "tb/verilog/unifab_bulk.cpp and -LDFLAGS -rdynamic (see tb/benches.py)"
            ) from e
        buf = ctypes.c_void_p
        self._push.argtypes = [ctypes.c_int, buf, ctypes.c_int, ctypes.c_int]
        self._pull.argtypes = [ctypes.c_int, buf, ctypes.c_int, ctypes.c_int]
        self._count.argtypes = [ctypes.c_int]
        self.eb = entry_bytes
        reset()

    def push(self, port: int, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.uint8)
        if self._push(port, rows.ctypes.data, rows.shape[0], self.eb) != 0:
            raise ValueError(f"entries of {self.eb} bytes do not fit the bulk-port queues")

    def pull(self, port: int) -> np.ndarray:
        n = self._count(port)
        out = np.empty((n, self.eb), dtype=np.uint8)
        if n and self._pull(port, out.ctypes.data, n, self.eb) != n:
            raise RuntimeError(f"port {port}: the capture queue lost entries while read")
        return out


class SwitchTB:
    """Generators and scoreboard of the switch bench, and the handles of its bulk ports.

    ``dut=None`` gives the generators and scoreboard alone (``tests/test_switch_scoreboard.py``
    feeds them traffic with faults to show every check fires).
    """

    def __init__(self, dut, s: BenchSettings):
        self.dut, self.s = dut, s
        self.ports = int(s.get("ports", 8))
        self.vcs = int(s.get("vcs", 4))
        self.batch = int(s.get("batch", 256))
        self.eb = int(s.get("entry_bytes", 24))
        self.pb = self.eb - 6  # payload bytes
        self.node_id = int(s.get("node_id", 0xF0))
        self.map = AddressMap(self.ports)
        n, v = self.ports, self.vcs
        self.flows = n * n * v
        self.produced = np.zeros(self.flows, dtype=np.int64)
        self.consumed = np.zeros(self.flows, dtype=np.int64)
        self.ring = np.zeros((self.flows, RING), dtype=np.int64)
        self.pending = [deque() for _ in range(n)]  # per port: byte arrays of entries
        self.pending_rows = [0] * n
        # Flits of messages whose tail has not arrived yet, and their stream (port * vcs + VC).
        self.open_rows = np.zeros((0, self.eb), dtype=np.uint8)
        self.open_stream = np.zeros(0, dtype=np.int64)
        self.errors_expected = [deque() for _ in range(n)]  # (tag, addr, err) per source port
        self.bad_sent = {"decode": 0, "denied": 0, "malformed": 0, "class": 0, "dst": 0}
        self.bad_tag = [0] * n
        self.errors_seen = 0
        self.reset_stats(0, 0)
        if dut is None:
            return
        # Verilator: the bulk ports' C++ queues; other simulators: wide registers through VPI.
        self.queues = _DpiQueues(self.eb) if "verilator" in cocotb.SIM_NAME.lower() else None
        if self.queues is not None:
            return
        self.h_ready = [getattr(dut, f"inj{i}_ready") for i in range(n)]
        # Capture banks: chunks of `chunk` entries (the bulk port's CH), read as needed.
        self.chunk = min(64, self.batch)
        self.h_cap = [
            [
                (
                    [
                        getattr(getattr(dut, f"bulk{i}"), f"cap_bank{b}")[c]
                        for c in range(self.batch // self.chunk)
                    ],
                    getattr(dut, f"cap{i}_count{b}"),
                )
                for b in range(2)
            ]
            for i in range(n)
        ]

    # ---- statistics --------------------------------------------------------------------
    def reset_stats(self, t0: int, t1: int) -> None:
        self.meas = (t0, t1)
        self.arrived_flits = np.zeros(self.ports, dtype=np.int64)
        self.latencies: list[np.ndarray] = []
        self.flood_latencies: list[np.ndarray] = []

    # ---- payloads ----------------------------------------------------------------------
    def payloads(self, src, dst, vc, seq, beat, nflits) -> np.ndarray:
        """Expected payload bytes (rows) for flits described by the arrays."""
        m = src.size
        out = np.zeros((m, self.pb), dtype=np.uint8)
        key = (
            src.astype(np.uint64)
            | (dst.astype(np.uint64) << np.uint64(8))
            | (vc.astype(np.uint64) << np.uint64(16))
            | (seq.astype(np.uint64) << np.uint64(24))
        )
        # Data beats: pseudo-random bytes of (flow, seq, beat).
        words = (self.pb + 7) // 8
        data = np.zeros((m, words * 8), dtype=np.uint8)
        for w in range(words):
            x = _mix64(key ^ (beat.astype(np.uint64) << np.uint64(56)) ^ np.uint64(w * 0x9E37))
            data[:, w * 8 : (w + 1) * 8] = x.view(np.uint8).reshape(m, 8)
        out[:] = data[:, : self.pb]
        # Header flits.
        head = beat == 0
        if head.any():
            hs, hd, hv, hq, hn = src[head], dst[head], vc[head], seq[head], nflits[head]
            hkey = key[head]
            # A length no generator makes (a corrupted tail flag) gets an opcode that cannot
            # match, so the payload check names the message.
            opcode = _OPCODE_LUT[hv % 4, np.minimum(hn, _OPCODE_LUT.shape[1] - 1)]
            hdr = np.zeros((hs.size, self.pb), dtype=np.uint8)
            hdr[:, 0] = opcode | ((hv % 4) << 6)
            hdr[:, 1] = hs
            hdr[:, 2] = hd
            hdr[:, 3] = hq & 0xFF
            hdr[:, 4] = (hq >> 8) & 0xFF
            q = _mix64(hkey).astype(np.int64) & 0x3FFFFFF
            addr = np.where(
                hv % 4 == MsgClass.REQ.value,
                self.map.address(hd, q),
                (_mix64(hkey ^ np.uint64(1)) >> np.uint64(16)).astype(np.int64),
            )
            for b in range(6):
                hdr[:, 5 + b] = (addr >> (8 * b)) & 0xFF
            out[head] = hdr
        return out

    # ---- generation --------------------------------------------------------------------
    def generate(self, w, start: int, length: int, bad: float, rng) -> None:
        """Queue a window's messages (and, with ``bad`` > 0, refused ones) per source port."""
        n, v = self.ports, self.vcs
        vc = w.cls.astype(np.int64)  # VC v carries class v (the first four VCs)
        flow = (w.src * n + w.dst) * v + vc
        # Sequence numbers per flow, in generation order.
        seq = self.produced[flow] + _rank_within(flow)
        np.add.at(self.produced, flow, 1)
        if ((self.produced - self.consumed) >= RING).any():
            raise ScoreboardError(f"more than {RING} messages outstanding in one flow")
        self.ring[flow, seq % RING] = w.release
        # Expand messages into flits.
        nf = w.flits
        msg = np.repeat(np.arange(w.src.size), nf)
        beat = np.arange(msg.size) - np.repeat(np.cumsum(nf) - nf, nf)
        rows = np.zeros((msg.size, self.eb), dtype=np.uint8)
        rows[:, 0:4] = w.release[msg].astype("<u4").view(np.uint8).reshape(-1, 4)
        rows[:, 4] = vc[msg]
        rows[:, 5] = (beat == 0) | ((beat == nf[msg] - 1) << 1)
        rows[:, 6:] = self.payloads(w.src[msg], w.dst[msg], vc[msg], seq[msg], beat, nf[msg])
        port, release = w.src[msg], w.release[msg]
        if bad > 0:
            brows, bport, brel = self.bad_rows(start, length, bad, rng)
            msg = np.r_[msg, msg.size + np.arange(bport.size)]
            beat = np.r_[beat, np.zeros(bport.size, dtype=np.int64)]
            rows = np.concatenate([rows, brows])
            port, release = np.r_[port, bport], np.r_[release, brel]
        # Per port in release order; a message's flits stay together and in order.
        order = np.lexsort((beat, msg, release, port))
        rows, port = rows[order], port[order]
        bounds = np.searchsorted(port, np.arange(n + 1))
        for i in range(n):
            sel = rows[bounds[i] : bounds[i + 1]]
            if sel.size:
                self.pending[i].append(sel)
                self.pending_rows[i] += sel.shape[0]

    def bad_rows(self, start: int, length: int, bad: float, rng):
        """Refused or malformed single-flit messages, each with the response it must produce."""
        rows, ports, rels = [], [], []
        for i in range(self.ports):
            # In release order: that is the order the switch sees them, and so the order of
            # their ERROR responses.
            for rel in sorted(
                start + int(x) for x in rng.integers(length, size=rng.binomial(length, bad))
            ):
                kind = str(rng.choice(["decode", "denied", "malformed", "class", "dst"]))
                tag = self.bad_tag[i]
                self.bad_tag[i] = (tag + 1) & 0xFF
                vc, opcode, cls = MsgClass.REQ.value, Opcode.NC_READ.value, MsgClass.REQ.value
                addr = int(rng.integers(1 << 20)) & ~63
                err = ErrorCode.MALFORMED
                if kind == "decode":
                    addr |= self.map.hole
                    err = ErrorCode.DECODE
                elif kind == "denied":
                    addr = self.map.protected[0] + (addr % self.map.protected[1])
                    err = ErrorCode.DENIED
                elif kind == "malformed":
                    opcode = 0x3F  # no such opcode
                elif kind == "class":
                    opcode, cls = Opcode.COMP.value, MsgClass.RSP.value  # RSP on the REQ VC
                else:  # a response to a node nobody can reach: discarded and counted
                    vc, opcode, cls = MsgClass.RSP.value, Opcode.COMP.value, MsgClass.RSP.value
                    err = None
                row = np.zeros(self.eb, dtype=np.uint8)
                row[0:4] = np.array([rel], dtype="<u4").view(np.uint8)
                row[4] = vc
                row[5] = 3  # head and tail
                row[6] = opcode | (cls << 6)
                row[7] = i
                row[8] = 0xEE if kind == "dst" else 0
                row[9] = tag
                for b in range(6):
                    row[11 + b] = (addr >> (8 * b)) & 0xFF
                self.bad_sent[kind] += 1
                if err is not None:
                    self.errors_expected[i].append((tag, addr, err.value))
                rows.append(row)
                ports.append(i)
                rels.append(rel)
        if not rows:
            return np.zeros((0, self.eb), np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.stack(rows), np.array(ports, np.int64), np.array(rels, np.int64)

    # ---- hand-over and capture ------------------------------------------------------------
    async def hand_over(self) -> int:
        """Give each port its next entries; returns the cycles that took.

        Verilator: every pending entry goes into the port's queue at once (no cycles). Other
        simulators: each port with room gets one batch, one port per cycle.
        """
        k, eb, dut = self.batch, self.eb, self.dut
        if self.queues is not None:
            for i in range(self.ports):
                if self.pending_rows[i]:
                    self.queues.push(i, np.concatenate(self.pending[i]))
                    self.pending[i].clear()
                    self.pending_rows[i] = 0
            return 0
        used = 0
        for i, h_ready in enumerate(self.h_ready):
            if not self.pending_rows[i] or not read(h_ready):
                continue
            q = self.pending[i]
            take = []
            need = k
            while q and need:
                chunk = q[0]
                if chunk.shape[0] <= need:
                    take.append(q.popleft())
                    need -= chunk.shape[0]
                else:
                    take.append(chunk[:need])
                    q[0] = chunk[need:]
                    need = 0
            rows = np.concatenate(take)
            self.pending_rows[i] -= rows.shape[0]
            write_wide(dut.inj_data, int.from_bytes(rows.tobytes(), "little"), k * eb * 8)
            dut.inj_count.value = rows.shape[0]
            dut.inj_port.value = i
            dut.inj_write.value = 1
            await Timer(PERIOD_NS, unit="ns")
            used += 1
        dut.inj_write.value = 0
        return used

    def capture(self, bank: int) -> int:
        """Take every port's captured flits (Verilator: all so far; others: the last period's
        bank) and check them together; returns flits."""
        rows, ports = [], []
        for o in range(self.ports):
            if self.queues is not None:
                got = self.queues.pull(o)
                if got.shape[0]:
                    rows.append(got)
                    ports.append(np.full(got.shape[0], o, dtype=np.int64))
                continue
            h_chunks, h_count = self.h_cap[o][bank]
            count = read(h_count)
            for c in range((count + self.chunk - 1) // self.chunk):
                n = min(self.chunk, count - c * self.chunk)
                rows.append(read_chars7(h_chunks[c], n, 8 * self.eb))
            if count:
                ports.append(np.full(count, o, dtype=np.int64))
        if rows:
            self.check_arrivals(np.concatenate(rows), np.concatenate(ports))
        return sum(r.shape[0] for r in rows)

    def check_arrivals(self, rows: np.ndarray, port: np.ndarray) -> None:
        """Check flits that left the switch (``rows``, in arrival order per output ``port``).

        Every output VC is one stream of whole messages; all streams are checked at once, a
        message whose tail has not arrived yet waits in ``open_rows`` for the next period.
        """
        n, v = self.ports, self.vcs
        t = rows[:, 0:4].copy().view("<u4")[:, 0].astype(np.int64)
        t0, t1 = self.meas
        self.arrived_flits += np.bincount(port[(t >= t0) & (t < t1)], minlength=n)
        vc = rows[:, 4].astype(np.int64)
        if (vc >= v).any():
            r = np.flatnonzero(vc >= v)[0]
            raise ScoreboardError(f"port {port[r]}: a flit left on VC{vc[r]}, which does not exist")
        # Streams (output, VC), each continuing the rows left open last period.
        rows = np.concatenate([self.open_rows, rows])
        stream = np.concatenate([self.open_stream, port * v + vc])
        order = np.argsort(stream, kind="stable")
        rows, stream = rows[order], stream[order]
        head = (rows[:, 5] & 1).astype(np.int64)
        tail = ((rows[:, 5] >> 1) & 1).astype(np.int64)
        seg = np.r_[0, np.flatnonzero(np.diff(stream)) + 1]
        if not head[seg].all():
            bad = stream[seg[np.flatnonzero(head[seg] == 0)[0]]]
            raise ScoreboardError(
                f"port {bad // v} VC{bad % v}: a body flit arrived with no message open"
            )
        # Rows after a stream's last tail stay open.
        at = np.arange(rows.shape[0])
        last_tail = np.maximum.reduceat(np.where(tail == 1, at, -1), seg)
        done = at <= np.repeat(last_tail, np.diff(np.r_[seg, rows.shape[0]]))
        self.open_rows, self.open_stream = rows[~done], stream[~done]
        rows, stream, head, tail = rows[done], stream[done], head[done], tail[done]
        if not rows.size:
            return
        # Whole messages: head ... tail, no other head in between (no interleaving or cut).
        step = head - tail
        before = np.cumsum(step) - step
        if (before != 1 - head).any():
            bad = stream[np.flatnonzero(before != 1 - head)[0]]
            raise ScoreboardError(
                f"port {bad // v} VC{bad % v}: messages interleaved or cut on one output VC"
            )
        starts, ends = np.flatnonzero(head), np.flatnonzero(tail)
        out, out_vc = stream[starts] // v, stream[starts] % v
        hdr = rows[starts, 6:]
        # Error responses from the switch's responder (in order per port).
        is_err = (hdr[:, 0] & 0x3F) == Opcode.ERROR.value
        for r in np.flatnonzero(is_err):
            self.check_error(int(out[r]), hdr[r])
        keep = ~is_err
        if not keep.any():
            return
        nflits = ends - starts + 1
        msg_of_row = np.repeat(np.arange(starts.size), nflits)
        row_keep = keep[msg_of_row]
        starts, ends, hdr, out, out_vc, nflits = (
            x[keep] for x in (starts, ends, hdr, out, out_vc, nflits)
        )
        src, dst = hdr[:, 1].astype(np.int64), hdr[:, 2].astype(np.int64)
        if (dst != out).any() or (src >= n).any():
            r = np.flatnonzero((dst != out) | (src >= n))[0]
            raise ScoreboardError(
                f"port {out[r]} VC{out_vc[r]}: message from {src[r]} for node {dst[r]} arrived here"
            )
        seq16 = hdr[:, 3].astype(np.int64) | (hdr[:, 4].astype(np.int64) << 8)
        flow = (src * n + out) * v + out_vc
        # Sequence: per flow consecutive from the last consumed (vectorized over flows).
        expect = self.consumed[flow] + _rank_within(flow)
        wrong = (expect & 0xFFFF) != seq16
        if wrong.any():
            r = np.flatnonzero(wrong)[0]
            raise ScoreboardError(
                f"port {out[r]} VC{out_vc[r]} flow from {src[r]}: message {seq16[r]} arrived, "
                f"expected {expect[r] & 0xFFFF} (lost, duplicated or reordered)"
            )
        np.add.at(self.consumed, flow, 1)
        if (self.consumed[flow] > self.produced[flow]).any():
            r = np.flatnonzero(self.consumed[flow] > self.produced[flow])[0]
            raise ScoreboardError(
                f"port {out[r]} VC{out_vc[r]}: more messages arrived than were sent"
            )
        seq = expect
        # Payload: every flit of every message.
        m = np.repeat(np.arange(starts.size), nflits)
        beat = np.arange(m.size) - np.repeat(np.cumsum(nflits) - nflits, nflits)
        want = self.payloads(src[m], out[m], out_vc[m], seq[m], beat, nflits[m])
        got = rows[row_keep, 6:]
        if not np.array_equal(want, got):
            r = np.flatnonzero((want != got).any(axis=1))[0]
            raise ScoreboardError(
                f"port {out[m[r]]} VC{out_vc[m[r]]}: payload of message {seq[m[r]]} from "
                f"{src[m[r]]} beat {beat[r]} corrupted: got {got[r].tobytes().hex()} "
                f"want {want[r].tobytes().hex()}"
            )
        # Latency: tail arrival minus release of the message.
        arrival = rows[ends, 0:4].copy().view("<u4")[:, 0].astype(np.int64)
        release = self.ring[flow, seq % RING]
        window = (release >= t0) & (release < t1)
        self.latencies.append((arrival - release)[window])
        if self.s.get("pattern", "") == "flood":
            self.flood_latencies.append((arrival - release)[window & (src != 0)])

    def check_error(self, o: int, hdr: np.ndarray) -> None:
        src = int(hdr[1])
        dst = int(hdr[2])
        tag = int(hdr[3])
        addr = int.from_bytes(hdr[5:11].tobytes(), "little")
        err = (int(hdr[11]) >> 5) & 7  # header bits 93..95
        if src != self.node_id or dst != o:
            raise ScoreboardError(f"port {o}: ERROR response {src}->{dst} not from the switch")
        if not self.errors_expected[o]:
            raise ScoreboardError(f"port {o}: unexpected ERROR response tag {tag} err {err}")
        want = self.errors_expected[o].popleft()
        if want != (tag, addr, err):
            raise ScoreboardError(
                f"port {o}: ERROR response (tag, addr, err) = {(tag, hex(addr), err)}, "
                f"expected {(want[0], hex(want[1]), want[2])}"
            )
        self.errors_seen += 1

    def outstanding(self) -> int:
        return int((self.produced - self.consumed).sum()) + sum(
            len(q) for q in self.errors_expected
        )


async def run_point(tb: SwitchTB, load: float, settings: BenchSettings, seed: int) -> dict:
    """One offered-load point: warm up, measure, drain until every message has arrived."""
    dut = tb.dut
    k = tb.batch
    warmup = int(settings.get("warmup", 1024))
    measure = int(settings.get("measure", 4096))
    gen = TrafficGenerator(
        ports=tb.ports,
        pattern=settings.get("pattern", "uniform"),
        load=load,
        mix=settings.get("mix", "single"),
        seed=seed,
    )
    bad = float(settings.get("bad", 0.0))
    rng = np.random.default_rng(seed + 99)
    now = read(dut.now)
    # Leave room for what earlier points still have in flight.
    start = ((now + 2 * k) // k + 1) * k
    t0, t1 = start + warmup, start + warmup + measure
    tb.reset_stats(t0, t1)
    gen_until = start
    stop_gen = t1
    drained_windows = 0
    wall = time.perf_counter()
    sim_wall = 0.0  # wall time inside the simulator (the rest is Python)
    cycles0 = now
    while True:
        now = read(dut.now)
        while gen_until < min(now + 2 * k, stop_gen):
            length = min(k, stop_gen - gen_until)
            tb.generate(gen.window(gen_until, length), gen_until, length, bad, rng)
            gen_until += length
        used = await tb.hand_over()
        t_sim = time.perf_counter()
        await Timer((k - used) * PERIOD_NS, unit="ns")
        sim_wall += time.perf_counter() - t_sim
        bank = 1 - read(dut.cap_bank)
        tb.capture(bank)
        if read(dut.xbar_error):
            raise ScoreboardError("crossbar select was not one-hot")
        if gen_until >= stop_gen and not any(tb.pending_rows) and tb.outstanding() == 0:
            # Every sink must stay empty from here on.
            drained_windows += 1
            if drained_windows > 2:
                break
        elif read(dut.now) - t1 > 400 * k:
            raise ScoreboardError(
                f"load {load}: {tb.outstanding()} messages still outstanding "
                f"{read(dut.now) - t1} cycles after generation stopped"
            )
    wall = time.perf_counter() - wall
    cycles = read(dut.now) - cycles0
    lat = np.concatenate(tb.latencies) if tb.latencies else np.zeros(0)
    lat_ports = lat - INJECT_DELAY
    point = {
        "offered": load,
        "throughput": float(tb.arrived_flits.sum() / tb.ports / measure),
        "latency_mean": float(lat_ports.mean()) if lat.size else None,
        "latency_p50": float(np.percentile(lat_ports, 50)) if lat.size else None,
        "latency_p99": float(np.percentile(lat_ports, 99)) if lat.size else None,
        "latency_max": int(lat_ports.max()) if lat.size else None,
        "messages": int(lat.size),
        "cycles": int(cycles),
        "sim_cycles_per_s": cycles / wall if wall else 0.0,
        "python_share": 1 - sim_wall / wall if wall else 0.0,
    }
    if tb.flood_latencies:
        fl = np.concatenate(tb.flood_latencies) - INJECT_DELAY
        point["victim_latency_max"] = int(fl.max()) if fl.size else None
    return point


@cocotb.test()
async def switch_sweep(dut):
    """Offered-load sweep with scoreboards; figures go to the result file."""
    settings = BenchSettings.from_env()
    log_seed(dut, settings)
    dut.bp_thresh.value = probability_to_thresh(float(settings.get("bp", 0.0)))
    dut.cfg_we.value = 0
    dut.ctr_addr.value = 0
    dut.inj_write.value = 0
    dut.inj_count.value = 0
    dut.inj_port.value = 0
    await start_clock(dut)
    await RisingEdge(dut.clk)
    await Timer(PERIOD_NS // 2, unit="ns")  # wake mid-cycle from here on
    tb = SwitchTB(dut, settings)
    points = []
    for n, load in enumerate(settings.get("loads", [0.5])):
        point = await run_point(tb, float(load), settings, settings.seed * 1000 + n)
        cocotb.log.info("load %.2f: %s", load, point)
        points.append(point)
    counters = await read_counters(dut, tb)
    errors_expected = sum(tb.bad_sent[k] for k in ("decode", "denied", "malformed", "class"))
    if tb.errors_seen != errors_expected:
        raise ScoreboardError(f"{tb.errors_seen} ERROR responses, expected {errors_expected}")
    if counters["responder"]["discarded"] != tb.bad_sent["dst"]:
        raise ScoreboardError(
            f"responder discarded {counters['responder']['discarded']} messages, "
            f"{tb.bad_sent['dst']} unroutable ones were sent"
        )
    settings.write_result(
        {
            "points": points,
            "counters": {str(k): v for k, v in counters.items()},
            "bad_sent": tb.bad_sent,
            "errors_seen": tb.errors_seen,
            "seed": settings.seed,
        }
    )


async def read_counters(dut, tb: SwitchTB) -> dict:
    from unifab.hdl.switch.switch import COUNTER_STRIDE, PORT_COUNTERS, RESPONDER_COUNTERS

    out: dict = {}

    async def get(addr: int) -> int:
        dut.ctr_addr.value = addr
        await RisingEdge(dut.clk)  # the bench top registers the address
        await RisingEdge(dut.clk)
        await Timer(1, unit="ns")
        return read(dut.ctr_data)

    for p in range(tb.ports):
        out[p] = {name: await get(p * COUNTER_STRIDE + k) for k, name in enumerate(PORT_COUNTERS)}
    out["responder"] = {
        name: await get(tb.ports * COUNTER_STRIDE + k) for k, name in enumerate(RESPONDER_COUNTERS)
    }
    return out
