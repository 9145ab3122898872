"""Lossy channel: RTL (Amaranth simulator) against the cycle-exact Python model.

Random tests take their seed from ``UNIFAB_SEED`` (printed; rerun with the same value to
reproduce a failure).
"""

import inspect
import random
from collections.abc import Callable

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from unifab.hdl.link.channel import LossyChannel
from unifab.models.channel import (
    COUNTERS,
    LANE_SEED_XOR,
    LANE_TRIPLES,
    MASK64,
    LossyChannelModel,
    lane_next,
    lane_seed,
    probability_to_thresh,
)
from unifab.testing import seed_from_env

SEED = seed_from_env(20250601)
CONFIG_PORTS = (
    "latency",
    "drop_thresh",
    "flip_thresh",
    "burst_enter_thresh",
    "burst_exit_thresh",
    "burst_flip_thresh",
    "stall_thresh",
    "stall_len",
    "seed",
)


def make_rng(name: str) -> random.Random:
    print(f"UNIFAB_SEED={SEED} ({name})")
    return random.Random(f"{SEED}:{name}")


def run(dut: LossyChannel, bench: Callable) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def differential(
    rng: random.Random,
    *,
    width: int,
    max_latency: int,
    fifo_depth: int,
    config: dict[str, int],
    cycles: int,
    p_valid: float = 0.7,
    reconfigure: Callable[[int, random.Random], dict[str, int] | None] | None = None,
    reseed_at: tuple[int, ...] = (),
    drain: int = 0,
) -> LossyChannelModel:
    """Drive random traffic into RTL and model, comparing everything every cycle.

    ``config`` is applied with a ``seed_load`` pulse in cycle 0; ``reconfigure(cycle, rng)``
    may return new config values for that cycle; ``reseed_at`` pulses ``seed_load`` with a
    fresh seed. ``drain`` idle cycles end the run. Returns the model for extra checks.
    """
    dut = LossyChannel(width=width, max_latency=max_latency, fifo_depth=fifo_depth)
    model = LossyChannelModel(width=width, max_latency=max_latency, fifo_depth=fifo_depth)
    label = f"seed={SEED} width={width} max_latency={max_latency} fifo_depth={fifo_depth}"

    def apply(ctx, values: dict[str, int]) -> None:
        for name, value in values.items():
            setattr(model, name, value)
            ctx.set(getattr(dut, name), value)

    async def bench(ctx):
        apply(ctx, config)
        for cyc in range(cycles + drain):
            if reconfigure is not None and (new := reconfigure(cyc, rng)):
                apply(ctx, new)
            load = cyc == 0 or cyc in reseed_at
            if load and cyc:
                apply(ctx, {"seed": rng.getrandbits(64)})
            valid = cyc < cycles and rng.random() < p_valid
            data = rng.getrandbits(width)
            ctx.set(dut.tx_in.valid, valid)
            ctx.set(dut.tx_in.payload, data)
            ctx.set(dut.seed_load, load)
            where = f"cycle {cyc} ({label}, config {config})"
            if not load:
                assert ctx.get(dut.in_burst) == model.in_burst, f"in_burst at {where}"
                assert ctx.get(dut.stalled) == (model.stall_rem != 0), f"stalled at {where}"
            assert ctx.get(dut.fifo_level) == model.fifo_level, f"fifo_level at {where}"
            got_valid, got_data = ctx.get(dut.rx_out.valid), ctx.get(dut.rx_out.payload)
            exp_valid, exp_data = model.step(valid, data, seed_load=load)
            assert bool(got_valid) == exp_valid, f"rx_out.valid at {where}"
            if exp_valid:
                assert got_data == exp_data, f"rx_out.payload at {where}"
            await ctx.tick()
            got = {name: ctx.get(getattr(dut, name)) for name in COUNTERS}
            assert got == model.counters(), f"counters after {where}"

    run(dut, bench)
    return model


def thresholds(**probs: float) -> dict[str, int]:
    return {f"{name}_thresh": probability_to_thresh(p) for name, p in probs.items()}


# --- differential tests -------------------------------------------------------------------


@pytest.mark.parametrize("latency", [1, 5, 16])
def test_no_errors_matches_model(latency: int) -> None:
    rng = make_rng(f"no_errors_{latency}")
    m = differential(
        rng,
        width=217,
        max_latency=16,
        fifo_depth=8,
        config={"latency": latency, "seed": rng.getrandbits(64)},
        cycles=1500,
        drain=latency + 2,
    )
    assert m.flits_in == m.flits_out > 0
    assert m.dropped == m.corrupted == m.overflow == m.stall_cycles == 0


def test_drops_only() -> None:
    rng = make_rng("drops")
    m = differential(
        rng,
        width=217,
        max_latency=8,
        fifo_depth=8,
        config={"latency": 3, "seed": rng.getrandbits(64), **thresholds(drop=0.1)},
        cycles=2000,
        drain=5,
    )
    assert m.dropped > 0 and m.corrupted == 0
    assert m.flits_in == m.flits_out + m.dropped


def test_flips_only() -> None:
    rng = make_rng("flips")
    m = differential(
        rng,
        width=217,
        max_latency=8,
        fifo_depth=8,
        config={"latency": 2, "seed": rng.getrandbits(64), **thresholds(flip=0.2)},
        cycles=2000,
        drain=4,
    )
    assert m.corrupted > 0 and m.dropped == 0
    assert m.flits_in == m.flits_out


def test_bursts_narrow_flit() -> None:
    # A narrow flit makes bursts run off the top end (truncated mask) and collide with the
    # single-bit flip (which may cancel: corrupted counts non-zero masks only).
    rng = make_rng("bursts")
    config = {
        "latency": 4,
        "seed": rng.getrandbits(64),
        **thresholds(flip=0.3, burst_enter=0.02, burst_exit=0.1, burst_flip=0.6),
    }
    m = differential(rng, width=9, max_latency=4, fifo_depth=4, config=config, cycles=3000, drain=6)
    assert m.corrupted > 0 and m.flits_in == m.flits_out


def test_all_errors_217() -> None:
    rng = make_rng("all_errors")
    config = {
        "latency": 7,
        "seed": rng.getrandbits(64),
        "stall_len": 5,
        **thresholds(
            drop=0.05, flip=0.05, burst_enter=0.01, burst_exit=0.2, burst_flip=0.5, stall=0.01
        ),
    }
    m = differential(
        rng, width=217, max_latency=8, fifo_depth=16, config=config, cycles=2500, drain=60
    )
    assert m.dropped > 0 and m.corrupted > 0 and m.stall_cycles > 0
    assert m.flits_in == m.flits_out + m.dropped + m.overflow


def test_stalls_overflow_small_fifo() -> None:
    rng = make_rng("stalls")
    config = {
        "latency": 1,
        "seed": rng.getrandbits(64),
        "stall_len": 12,
        **thresholds(stall=0.02),
    }
    m = differential(
        rng,
        width=32,
        max_latency=2,
        fifo_depth=3,
        config=config,
        cycles=3000,
        p_valid=0.8,
        drain=40,
    )
    assert m.stall_cycles > 0 and m.overflow > 0
    assert m.flits_in == m.flits_out + m.overflow
    assert m.fifo_level == 0


def test_stalls_max_latency_fifo_2() -> None:
    rng = make_rng("stalls_max")
    config = {
        "latency": 32,
        "seed": rng.getrandbits(64),
        "stall_len": 3,
        **thresholds(stall=0.05, drop=0.02),
    }
    m = differential(
        rng,
        width=16,
        max_latency=32,
        fifo_depth=2,
        config=config,
        cycles=2500,
        p_valid=0.5,
        drain=60,
    )
    assert m.stall_cycles > 0 and m.overflow > 0
    assert m.flits_in == m.flits_out + m.dropped + m.overflow


def test_runtime_reconfigure_and_reseed() -> None:
    """Config inputs (latency included) change mid-run; seed_load pulses mid-run."""
    rng = make_rng("reconfigure")

    def reconfigure(cyc: int, r: random.Random) -> dict[str, int] | None:
        if cyc and cyc % 300 == 0:
            return {
                "latency": r.randint(1, 8),
                "stall_len": r.randint(0, 6),
                **thresholds(
                    drop=r.choice([0.0, 0.1]),
                    flip=r.choice([0.0, 0.2, 1.0]),
                    burst_enter=r.choice([0.0, 0.05]),
                    burst_exit=r.choice([0.1, 1.0]),
                    burst_flip=r.choice([0.0, 0.5]),
                    stall=r.choice([0.0, 0.03]),
                ),
            }
        return None

    m = differential(
        rng,
        width=40,
        max_latency=8,
        fifo_depth=5,
        config={"latency": 8, "seed": rng.getrandbits(64)},
        cycles=2400,
        reconfigure=reconfigure,
        reseed_at=(500, 1234, 1235, 2000),
        drain=30,
    )
    assert m.flits_in > 0


def test_reseed_during_burst_and_stall() -> None:
    """seed_load pulses land in burst states and stalls (both must restart cleared)."""
    rng = make_rng("reseed_burst_stall")
    config = {
        "latency": 3,
        "seed": rng.getrandbits(64),
        "stall_len": 25,
        **thresholds(burst_enter=0.3, burst_exit=0.02, burst_flip=0.5, stall=0.05),
    }
    m = differential(
        rng,
        width=24,
        max_latency=4,
        fifo_depth=4,
        config=config,
        cycles=1500,
        reseed_at=tuple(range(37, 1200, 37)),
        drain=40,
    )
    assert m.corrupted > 0 and m.stall_cycles > 0


# --- direct RTL checks -------------------------------------------------------------------


@pytest.mark.parametrize(("latency", "max_latency"), [(1, 4), (5, 8), (32, 32), (2, 2)])
def test_zero_thresholds_is_exact_delay(latency: int, max_latency: int) -> None:
    """With every threshold 0, rx_out is tx_in delayed by exactly ``latency`` cycles."""
    rng = make_rng(f"exact_delay_{latency}_{max_latency}")
    width = 64
    dut = LossyChannel(width=width, max_latency=max_latency, fifo_depth=4)
    cycles = 600
    sent = [(rng.random() < 0.6, rng.getrandbits(width)) for _ in range(cycles)] + [(False, 0)] * (
        latency + 1
    )

    async def bench(ctx):
        ctx.set(dut.latency, latency)
        ctx.set(dut.seed, rng.getrandbits(64))
        for cyc, (valid, data) in enumerate(sent):
            ctx.set(dut.tx_in.valid, valid)
            ctx.set(dut.tx_in.payload, data)
            ctx.set(dut.seed_load, cyc == 0)
            exp_valid, exp_data = sent[cyc - latency] if cyc >= latency else (False, 0)
            assert ctx.get(dut.rx_out.valid) == exp_valid, f"cycle {cyc}, seed {SEED}"
            if exp_valid:
                assert ctx.get(dut.rx_out.payload) == exp_data, f"cycle {cyc}, seed {SEED}"
            await ctx.tick()
        n = sum(v for v, _ in sent)
        assert ctx.get(dut.flits_in) == ctx.get(dut.flits_out) == n
        for name in ("dropped", "corrupted", "overflow", "stall_cycles"):
            assert ctx.get(getattr(dut, name)) == 0, name

    run(dut, bench)


def test_verilog_convert() -> None:
    text = verilog.convert(LossyChannel(width=217))
    for port in ("tx_in__payload", "tx_in__valid", "rx_out__payload", "rx_out__valid"):
        assert port in text
    for port in (*CONFIG_PORTS, "seed_load", *COUNTERS):
        assert f" {port};" in text, port
    assert "input [216:0] tx_in__payload;" in text
    assert "tx_in__ready" not in text and "rx_out__ready" not in text


# --- constructor validation --------------------------------------------------------------


@pytest.mark.parametrize("cls", [LossyChannel, LossyChannelModel])
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 0}, r"^width must be an integer in \[1, 65536\], not 0$"),
        ({"width": -3}, r"^width must be an integer in \[1, 65536\], not -3$"),
        ({"width": True}, r"^width must be an integer in \[1, 65536\], not True$"),
        ({"width": 8.0}, r"^width must be an integer in \[1, 65536\], not 8\.0$"),
        ({"width": "8"}, r"^width must be an integer in \[1, 65536\], not '8'$"),
        (
            {"width": 8, "max_latency": 3},
            r"^max_latency must be a power of two in \[2, 65536\], not 3$",
        ),
        (
            {"width": 8, "max_latency": 1},
            r"^max_latency must be a power of two in \[2, 65536\], not 1$",
        ),
        (
            {"width": 8, "max_latency": 0},
            r"^max_latency must be a power of two in \[2, 65536\], not 0$",
        ),
        ({"width": 8, "max_latency": 1 << 17}, r"^max_latency must be a power of two"),
        ({"width": 8, "fifo_depth": 1}, r"^fifo_depth must be an integer in \[2, 65536\], not 1$"),
        ({"width": 8, "fifo_depth": 0}, r"^fifo_depth must be an integer in \[2, 65536\], not 0$"),
        (
            {"width": 8, "fifo_depth": None},
            r"^fifo_depth must be an integer in \[2, 65536\], not None$",
        ),
    ],
)
def test_constructor_validation(cls: type, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("cls", [LossyChannel, LossyChannelModel])
def test_constructor_keyword_only(cls: type) -> None:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert params and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)


def test_model_config_validation() -> None:
    m = LossyChannelModel(width=8, max_latency=8)
    with pytest.raises(ValueError, match=r"^latency must be an integer in \[1, 8\], not 0$"):
        m.latency = 0
    with pytest.raises(ValueError, match=r"^latency must be an integer in \[1, 8\], not 9$"):
        m.latency = 9
    with pytest.raises(ValueError, match=r"^drop_thresh must be an integer in \[0, 4294967295\]"):
        m.drop_thresh = 1 << 32
    with pytest.raises(ValueError, match=r"^stall_len must be an integer in \[0, 65535\]"):
        m.stall_len = -1
    with pytest.raises(ValueError, match=r"^seed must be an integer"):
        m.seed = 1 << 64
    with pytest.raises(ValueError, match=r"^data_in must be an integer in \[0, 2\*\*8\)"):
        m.step(True, 256)


# --- PRNG and helpers --------------------------------------------------------------------


def test_probability_to_thresh() -> None:
    assert probability_to_thresh(0) == 0
    assert probability_to_thresh(0.5) == 1 << 31
    assert probability_to_thresh(1.0) == (1 << 32) - 1
    assert probability_to_thresh(1e-12) == 0
    for bad in (-0.1, 1.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^probability must be in \[0, 1\]"):
            probability_to_thresh(bad)
    for bad in ("0.5", None, True):
        with pytest.raises(ValueError, match=r"^probability must be a float in \[0, 1\]"):
            probability_to_thresh(bad)  # type: ignore[arg-type]


def _gf2_pow(cols: list[int], e: int) -> list[int]:
    """``T**e`` for a 64x64 GF(2) matrix given by the images of the unit vectors."""

    def apply(a: list[int], x: int) -> int:
        r, j = 0, 0
        while x:
            if x & 1:
                r ^= a[j]
            x >>= 1
            j += 1
        return r

    result = [1 << j for j in range(64)]
    while e:
        if e & 1:
            result = [apply(cols, v) for v in result]
        cols = [apply(cols, v) for v in cols]
        e >>= 1
    return result


@pytest.mark.parametrize("k", range(len(LANE_TRIPLES)))
def test_prng_lane_full_period(k: int) -> None:
    """Each lane's xorshift map has order exactly 2**64 - 1 (every non-zero state)."""
    cols = [lane_next(1 << j, k) for j in range(64)]
    identity = [1 << j for j in range(64)]
    order = MASK64
    assert _gf2_pow(cols, order) == identity
    for p in (3, 5, 17, 257, 641, 65537, 6700417):  # prime factors of 2**64 - 1
        assert _gf2_pow(cols, order // p) != identity


def test_lane_seed_never_zero() -> None:
    for k, const in enumerate(LANE_SEED_XOR):
        assert lane_seed(const, k) == const
        assert lane_seed(0, k) == const


def test_model_rates() -> None:
    """Long model-only run: realised rates match the configured probabilities."""
    rng = make_rng("rates")
    m = LossyChannelModel(width=217, latency=3, seed=rng.getrandbits(64))
    m.drop_thresh = probability_to_thresh(0.1)
    m.flip_thresh = probability_to_thresh(0.05)
    n = 40_000
    m.step(False, 0, seed_load=True)
    for _ in range(n):
        m.step(True, 0)
    assert abs(m.dropped / n - 0.1) < 0.01
    assert abs(m.corrupted / (n - m.dropped) - 0.05) < 0.006
    # Gilbert-Elliott: stationary burst fraction = enter / (enter + exit).
    m = LossyChannelModel(width=64, seed=rng.getrandbits(64))
    m.burst_enter_thresh = probability_to_thresh(0.01)
    m.burst_exit_thresh = probability_to_thresh(0.09)
    bursts = 0
    for _ in range(n):
        bursts += m.in_burst
        m.step(False, 0)
    assert abs(bursts / n - 0.1) < 0.03
