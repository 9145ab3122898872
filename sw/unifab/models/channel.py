"""Cycle-exact golden model of the lossy physical channel (``unifab.hdl.link.channel``).

The model and the RTL share the constants below; both follow the definition here
bit-exactly, so a testbench can compare them cycle by cycle.

PRNG
----
Four independent *lanes*, each an xorshift64* generator with its own full-period shift
triple ``(a, b, c)`` (``LANE_TRIPLES``, full period 2**64 - 1 checked in the tests) and the
common multiplier ``XS_MULT``. Lane ``k`` has a 64-bit state ``s[k]`` that is never 0:

- seeding (reset uses ``seed = 0``)::

      s[k] = seed ^ LANE_SEED_XOR[k]        (or LANE_SEED_XOR[k] if that is 0)

- output of the current cycle::

      p[k]  = (s[k] * XS_MULT) mod 2**64
      hi[k] = p[k] >> 32,  lo[k] = p[k] & 0xFFFF_FFFF

- next state (every cycle, whether or not a flit is sent)::

      x = s[k];  x ^= x >> a;  x ^= (x << b) mod 2**64;  x ^= x >> c;  s[k] = x

The eight 32-bit draws of a cycle are::

      r_drop = hi[0]   r_stall     = lo[0]
      r_flip = hi[1]   r_flip_pos  = lo[1]
      r_ge   = hi[2]   r_burst     = lo[2]
      r_bpos = hi[3]   r_bpat      = lo[3] >> 24      (8 bits)

Channel (one call of :meth:`LossyChannelModel.step` = one clock cycle)
-------------------------------------------------------------------
A draw ``r`` "hits" threshold ``t`` when ``r < t``, i.e. with probability ``t / 2**32``.
A bit position is ``pos = (r * width) >> 32``, uniform over ``[0, width)``.

1. Input. A valid flit counts in ``flits_in``. It is dropped (``dropped``) if ``r_drop``
   hits ``drop_thresh``. Otherwise its flip mask is the XOR of ``1 << pos(r_flip_pos)`` if
   ``r_flip`` hits ``flip_thresh``, and, in the burst state, of
   ``((r_bpat | 1) << pos(r_bpos)) mod 2**width`` (a burst of up to ``BURST_SPAN`` bits)
   if ``r_burst`` hits ``burst_flip_thresh``. The flit is XORed with the mask and counts in
   ``corrupted`` if the mask is not 0.
2. Delay line. A ring buffer of ``max_latency`` entries, written every cycle at ``wptr``
   (``wptr`` advances every cycle) and read through a register at
   ``(wptr - (latency - 1)) mod max_latency`` (the entry being written is forwarded), so a
   flit entering at cycle ``t`` reaches the output stage at ``t + latency``.
3. Output stage. While stalled, nothing is delivered and the delay-line output is written
   into the elastic FIFO (a flit that finds it full is lost and counts in ``overflow``).
   Not stalled and FIFO empty (level 0): the delay-line output is delivered directly.
   Not stalled and FIFO not empty: the FIFO head is delivered if its output register holds
   it (otherwise the cycle is a bubble) and the delay-line output is written into the FIFO.
   The FIFO is ``amaranth.lib.fifo.SyncFIFOBuffered`` and is modelled register by register
   (an entry written at cycle ``t`` is readable at ``t + 2``). Delivered flits count in
   ``flits_out``.
4. Gilbert-Elliott state (per cycle): from good, enter burst if ``r_ge`` hits
   ``burst_enter_thresh``; from burst, return to good if ``r_ge`` hits ``burst_exit_thresh``.
   The state of the current cycle governs the flips of step 1.
5. Stall (per cycle): the cycle is stalled if the remaining-stall counter is non-zero (it
   then counts down and the cycle counts in ``stall_cycles``); if not stalled and
   ``r_stall`` hits ``stall_thresh``, the next ``stall_len`` cycles are stalled.

``seed_load`` makes its own cycle the first cycle of a fresh run: the lanes are seeded from
``seed`` *before* the draws of that cycle, the burst and stall states are taken as good /
not stalled, and the counters restart from 0 with that cycle's events counted. The delay
line and the FIFO keep their contents (in-flight flits are still delivered).
Counters are 32 bits and wrap around.
"""

from collections import deque
from typing import Any

__all__ = [
    "BURST_SPAN",
    "COUNTERS",
    "LANE_SEED_XOR",
    "LANE_TRIPLES",
    "MASK32",
    "MASK64",
    "STALL_LEN_BITS",
    "THRESHOLDS",
    "XS_MULT",
    "LossyChannelModel",
    "check_channel_params",
    "lane_next",
    "lane_output",
    "lane_seed",
    "probability_to_thresh",
]

MASK32 = (1 << 32) - 1
MASK64 = (1 << 64) - 1

#: xorshift64* output multiplier (Vigna; also Numerical Recipes' Ranq1).
XS_MULT = 0x2545F4914F6CDD1D
#: Per-lane xorshift triples for ``x ^= x >> a; x ^= x << b; x ^= x >> c``.
LANE_TRIPLES: tuple[tuple[int, int, int], ...] = (
    (12, 25, 27),
    (21, 35, 4),
    (17, 31, 8),
    (13, 7, 17),
)
#: Per-lane constants XORed into the seed (dense, so that small seeds start well mixed).
LANE_SEED_XOR: tuple[int, ...] = (
    0x9E3779B97F4A7C15,
    0xBF58476D1CE4E5B9,
    0x94D049BB133111EB,
    0xD1B54A32D192ED03,
)
#: Maximum number of bits flipped by one burst error (width of ``r_bpat``).
BURST_SPAN = 8
#: Width of the ``stall_len`` configuration input.
STALL_LEN_BITS = 16

COUNTERS = ("flits_in", "flits_out", "dropped", "corrupted", "overflow", "stall_cycles")
THRESHOLDS = (
    "drop_thresh",
    "flip_thresh",
    "burst_enter_thresh",
    "burst_exit_thresh",
    "burst_flip_thresh",
    "stall_thresh",
)

_MAX_WIDTH = 1 << 16
_MAX_LATENCY = 1 << 16
_MAX_FIFO_DEPTH = 1 << 16


def lane_seed(seed: int, k: int) -> int:
    """State of PRNG lane ``k`` after loading ``seed``."""
    s = (seed ^ LANE_SEED_XOR[k]) & MASK64
    return s if s else LANE_SEED_XOR[k]


def lane_output(s: int) -> int:
    """64-bit output ``(s * XS_MULT) mod 2**64`` of a lane in state ``s``."""
    return (s * XS_MULT) & MASK64


def lane_next(s: int, k: int) -> int:
    """Next state of lane ``k``."""
    a, b, c = LANE_TRIPLES[k]
    s ^= s >> a
    s ^= (s << b) & MASK64
    s ^= s >> c
    return s


def probability_to_thresh(p: float) -> int:
    """Threshold for probability ``p``: ``round(p * 2**32)``, clamped to ``2**32 - 1``.

    A draw hits when ``r < thresh``, so the realised probability is ``thresh / 2**32``;
    ``p = 1.0`` maps to ``2**32 - 1`` (probability ``1 - 2**-32``, not exactly 1).
    """
    if isinstance(p, bool) or not isinstance(p, int | float):
        raise ValueError(f"probability must be a float in [0, 1], not {p!r}")
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"probability must be in [0, 1], not {p!r}")
    return min(round(p * (1 << 32)), MASK32)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_channel_params(width: Any, max_latency: Any, fifo_depth: Any) -> None:
    """Validate the elaboration parameters shared by the RTL and the model."""
    if not _is_int(width) or not 1 <= width <= _MAX_WIDTH:
        raise ValueError(f"width must be an integer in [1, {_MAX_WIDTH}], not {width!r}")
    if (
        not _is_int(max_latency)
        or not 2 <= max_latency <= _MAX_LATENCY
        or max_latency & (max_latency - 1)
    ):
        raise ValueError(
            f"max_latency must be a power of two in [2, {_MAX_LATENCY}], not {max_latency!r}"
        )
    if not _is_int(fifo_depth) or not 2 <= fifo_depth <= _MAX_FIFO_DEPTH:
        raise ValueError(
            f"fifo_depth must be an integer in [2, {_MAX_FIFO_DEPTH}], not {fifo_depth!r}"
        )


class _SyncFIFOBufferedModel:
    """Register-level model of ``amaranth.lib.fifo.SyncFIFOBuffered`` (depth >= 2)."""

    def __init__(self, depth: int) -> None:
        self.inner_depth = depth - 1
        self.inner: deque[int] = deque()
        self.r_rdy = False
        self.r_data = 0

    @property
    def level(self) -> int:
        return len(self.inner) + self.r_rdy

    @property
    def w_rdy(self) -> bool:
        return len(self.inner) != self.inner_depth

    def tick(self, w_en: bool, w_data: int, r_en: bool) -> None:
        do_write = w_en and self.w_rdy
        if self.inner and (not self.r_rdy or r_en):
            self.r_data = self.inner.popleft()
            self.r_rdy = True
        elif r_en:
            self.r_rdy = False
        if do_write:
            self.inner.append(w_data)


class _Field:
    """A configuration input of ``bits`` bits, range-checked on assignment."""

    def __init__(self, bits: int, lo: int = 0) -> None:
        self.bits = bits
        self.lo = lo

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return obj.__dict__[self.name]

    def __set__(self, obj: Any, value: Any) -> None:
        hi = (1 << self.bits) - 1
        if not _is_int(value) or not self.lo <= value <= hi:
            raise ValueError(f"{self.name} must be an integer in [{self.lo}, {hi}], not {value!r}")
        obj.__dict__[self.name] = value


class LossyChannelModel:
    """Cycle-exact golden model of ``LossyChannel`` (see the module docstring).

    The configuration inputs of the RTL are attributes (range-checked when set; they may be
    changed between steps like the RTL inputs): ``latency`` (1..``max_latency``), the
    32-bit thresholds ``drop_thresh``, ``flip_thresh``, ``burst_enter_thresh``,
    ``burst_exit_thresh``, ``burst_flip_thresh``, ``stall_thresh``, the 16-bit
    ``stall_len`` and the 64-bit ``seed``. The counters are attributes of the same names as
    the RTL outputs; after :meth:`step` for cycle ``t`` they equal the RTL counters after
    the clock edge that ends cycle ``t``. ``in_burst``, ``stall_rem`` and :attr:`fifo_level`
    expose the state that the next :meth:`step` starts from (the RTL status outputs of the
    next cycle, unless that cycle pulses ``seed_load``).
    """

    drop_thresh = _Field(32)
    flip_thresh = _Field(32)
    burst_enter_thresh = _Field(32)
    burst_exit_thresh = _Field(32)
    burst_flip_thresh = _Field(32)
    stall_thresh = _Field(32)
    stall_len = _Field(STALL_LEN_BITS)
    seed = _Field(64)

    def __init__(
        self,
        *,
        width: int,
        max_latency: int = 64,
        fifo_depth: int = 64,
        latency: int = 1,
        drop_thresh: int = 0,
        flip_thresh: int = 0,
        burst_enter_thresh: int = 0,
        burst_exit_thresh: int = 0,
        burst_flip_thresh: int = 0,
        stall_thresh: int = 0,
        stall_len: int = 0,
        seed: int = 0,
    ) -> None:
        check_channel_params(width, max_latency, fifo_depth)
        self.width = width
        self.max_latency = max_latency
        self.fifo_depth = fifo_depth
        self.latency = latency
        self.drop_thresh = drop_thresh
        self.flip_thresh = flip_thresh
        self.burst_enter_thresh = burst_enter_thresh
        self.burst_exit_thresh = burst_exit_thresh
        self.burst_flip_thresh = burst_flip_thresh
        self.stall_thresh = stall_thresh
        self.stall_len = stall_len
        self.seed = seed
        # State after reset: equal to a seed load with seed 0.
        self._lanes = [lane_seed(0, k) for k in range(len(LANE_TRIPLES))]
        self.in_burst = False
        self.stall_rem = 0
        self._mem = [0] * max_latency
        self._vld = [False] * max_latency
        self._wptr = 0
        self._d_valid = False
        self._d_data = 0
        self._fifo = _SyncFIFOBufferedModel(fifo_depth)
        self.flits_in = self.flits_out = self.dropped = 0
        self.corrupted = self.overflow = self.stall_cycles = 0

    @property
    def latency(self) -> int:
        return self._latency

    @latency.setter
    def latency(self, value: int) -> None:
        if not _is_int(value) or not 1 <= value <= self.max_latency:
            raise ValueError(
                f"latency must be an integer in [1, {self.max_latency}], not {value!r}"
            )
        self._latency = value

    @property
    def fifo_level(self) -> int:
        """Entries held in the elastic FIFO (the RTL ``fifo_level`` output)."""
        return self._fifo.level

    def counters(self) -> dict[str, int]:
        """All six counters by name."""
        return {name: getattr(self, name) for name in COUNTERS}

    def step(self, valid_in: bool, data_in: int, *, seed_load: bool = False) -> tuple[bool, int]:
        """Advance one cycle; return ``(valid, data)`` delivered in this cycle.

        ``data`` is meaningful only when ``valid``; the output of a cycle does not depend
        on that cycle's input. ``seed_load`` mirrors the RTL pulse of the same name.
        """
        width = self.width
        if valid_in and (not _is_int(data_in) or not 0 <= data_in < (1 << width)):
            raise ValueError(f"data_in must be an integer in [0, 2**{width}), not {data_in!r}")
        if seed_load:
            lanes = [lane_seed(self.seed, k) for k in range(len(LANE_TRIPLES))]
            in_burst, stall_rem = False, 0
            self.flits_in = self.flits_out = self.dropped = 0
            self.corrupted = self.overflow = self.stall_cycles = 0
        else:
            lanes, in_burst, stall_rem = self._lanes, self.in_burst, self.stall_rem
        p = [lane_output(s) for s in lanes]
        r_drop, r_stall = p[0] >> 32, p[0] & MASK32
        r_flip, r_flip_pos = p[1] >> 32, p[1] & MASK32
        r_ge, r_burst = p[2] >> 32, p[2] & MASK32
        r_bpos, r_bpat = p[3] >> 32, (p[3] >> 24) & 0xFF

        # Output stage (combinational from registers).
        stalled = stall_rem != 0
        fifo = self._fifo
        out_valid, out_data = False, 0
        w_en = r_en = False
        if stalled:
            w_en = self._d_valid
        elif fifo.level == 0:
            out_valid, out_data = self._d_valid, self._d_data
        else:
            r_en = True
            out_valid, out_data = fifo.r_rdy, fifo.r_data
            w_en = self._d_valid
        ev_overflow = w_en and not fifo.w_rdy
        fifo.tick(w_en, self._d_data, r_en)

        # Input stage: drop and bit flips.
        keep = ev_drop = ev_corrupt = False
        data = data_in if valid_in else 0
        if valid_in:
            if r_drop < self.drop_thresh:
                ev_drop = True
            else:
                keep = True
                mask = 0
                if r_flip < self.flip_thresh:
                    mask ^= 1 << ((r_flip_pos * width) >> 32)
                if in_burst and r_burst < self.burst_flip_thresh:
                    mask ^= ((r_bpat | 1) << ((r_bpos * width) >> 32)) & ((1 << width) - 1)
                data ^= mask
                ev_corrupt = mask != 0

        # Delay line: ring buffer with a registered, write-forwarding read port.
        n = self.max_latency
        wptr = self._wptr
        raddr = (wptr - (self._latency - 1)) % n
        if raddr == wptr:
            self._d_valid, self._d_data = keep, data
        else:
            self._d_valid, self._d_data = self._vld[raddr], self._mem[raddr]
        self._mem[wptr] = data
        self._vld[wptr] = keep
        self._wptr = (wptr + 1) % n

        # Random processes.
        if stalled:
            self.stall_rem = stall_rem - 1
        elif r_stall < self.stall_thresh:
            self.stall_rem = self.stall_len
        else:
            self.stall_rem = 0
        if in_burst:
            self.in_burst = not r_ge < self.burst_exit_thresh
        else:
            self.in_burst = r_ge < self.burst_enter_thresh
        self._lanes = [lane_next(s, k) for k, s in enumerate(lanes)]

        self.flits_in = (self.flits_in + valid_in) & MASK32
        self.flits_out = (self.flits_out + out_valid) & MASK32
        self.dropped = (self.dropped + ev_drop) & MASK32
        self.corrupted = (self.corrupted + ev_corrupt) & MASK32
        self.overflow = (self.overflow + ev_overflow) & MASK32
        self.stall_cycles = (self.stall_cycles + stalled) & MASK32
        return out_valid, out_data
