"""Runs the cocotb switch bench: Python traffic generators and scoreboards on the switch RTL.

Every case shares one 4-port build per simulator (the sizes CI can afford); ``make sim`` runs
the 8- and 16-port sweeps. Seeds come from ``UNIFAB_SEED`` (default per case) and are printed.
"""

import pytest

from unifab.tb.benches import default_seed, switch_bench

PORTS = 4


def _run(case_seed: int, sim: str = "verilator", **kw) -> dict:
    seed = default_seed(fallback=case_seed)
    print(f"seed={seed} (repeat with UNIFAB_SEED={seed})")
    result = switch_bench(ports=PORTS, seed=seed, sim=sim, **kw)
    for p in result["points"]:
        print(p)
    return result


def _delivered(result: dict) -> int:
    return sum(p["messages"] for p in result["points"])


@pytest.mark.heavy
def test_uniform_sweep_delivers_everything() -> None:
    """Single-flit uniform traffic from light load to overload: the scoreboard sees every
    message once, in order per flow, intact; throughput follows the offered load until
    saturation."""
    r = _run(21, loads=(0.2, 0.6, 1.0), warmup=512, measure=2048)
    light = r["points"][0]
    assert abs(light["throughput"] - 0.2) < 0.05
    assert light["latency_p50"] == 2  # port to port, zero-load pipeline
    assert _delivered(r) > 0


@pytest.mark.heavy
def test_mixed_classes_backpressure_and_bad_input() -> None:
    """Every class, multi-flit data messages, random output back-pressure, and refused or
    malformed requests: each bad request gets its ERROR response (checked in order per source),
    unroutable responses are discarded and counted, and all other traffic still arrives."""
    r = _run(22, mix="mixed", loads=(0.5,), warmup=256, measure=3072, bp=0.3, bad=0.01)
    sent = r["bad_sent"]
    assert sum(sent.values()) > 20, sent
    assert all(v > 0 for v in sent.values()), sent
    assert r["errors_seen"] == sent["decode"] + sent["denied"] + sent["malformed"] + sent["class"]
    assert r["counters"]["responder"]["discarded"] == sent["dst"]
    total_denied = sum(r["counters"][str(p)]["denied"] for p in range(PORTS))
    assert total_denied == sent["denied"]


def test_flood_does_not_starve_other_inputs() -> None:
    """Port 0 floods port 1 at full rate; the other ports' messages to port 1 still get
    through with a bounded wait (round-robin allocation)."""
    r = _run(23, pattern="flood", loads=(0.1,), warmup=256, measure=4096)
    p = r["points"][0]
    assert p["victim_latency_max"] is not None
    # Each of the 4 inputs (+ responder) gets port 1 at least once per 5 grants.
    assert p["victim_latency_max"] < 60, p


@pytest.mark.heavy
def test_icarus_runs_the_same_bench() -> None:
    r = _run(24, sim="icarus", mix="mixed", loads=(0.4,), warmup=128, measure=512, bad=0.01)
    assert _delivered(r) > 0


@pytest.mark.parametrize("pattern", ["transpose", "bitcomp", "hotspot", "bursty"])
def test_patterns(pattern: str) -> None:
    r = _run(30, pattern=pattern, loads=(0.5,), warmup=256, measure=1024)
    assert _delivered(r) > 0
