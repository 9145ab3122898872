"""Entry points that build a bench top, run its cocotb test and return its figures.

Used by the pytest runners in ``tests/`` and by the ``unifab bench`` command, so a figure in a
report and a test in CI come from the same code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unifab.params import LinkParams
from unifab.tb.common import BenchSettings
from unifab.tb.runner import run_bench, selected_sim
from unifab.testing import seed_from_env
from unifab.tools import build_root

__all__ = [
    "coherence_bench",
    "default_seed",
    "link_bench",
    "switch_bench",
    "switch_bench_config",
    "workload_bench",
]


def default_seed(fallback: int = 1) -> int:
    """The seed a run uses: ``UNIFAB_SEED`` when set, else ``fallback``."""
    return seed_from_env(fallback)


def _run_with_result(
    *,
    top,
    toplevel: str,
    test_module: str,
    tag: str,
    settings: dict,
    sim: str,
    waves: bool | None,
    extra_sources=(),
    testcase: str | None = None,
) -> dict[str, Any]:
    """Run a bench whose cocotb test writes its figures to ``settings['result_file']``."""
    out = build_root() / "results"
    out.mkdir(parents=True, exist_ok=True)
    result_file = out / f"{tag}.json"
    result_file.unlink(missing_ok=True)
    run_bench(
        design=top,
        toplevel=toplevel,
        test_module=test_module,
        env=BenchSettings.to_env({**settings, "result_file": str(result_file)}),
        sim=sim,
        waves=waves,
        name=tag,
        extra_sources=tuple(extra_sources),
        testcase=testcase,
    )
    return json.loads(Path(result_file).read_text())


def link_bench(
    *,
    params: LinkParams | None = None,
    flits: int = 2000,
    p_err: float = 0.0,
    latency: int = 32,
    burst: bool = False,
    stall: bool = False,
    inject: float = 1.0,
    ready: float = 1.0,
    reset: bool = False,
    seed: int = 1,
    sim: str | None = None,
    waves: bool | None = None,
    max_latency: int = 64,
) -> dict[str, Any]:
    """Run the lossy link-pair bench and return its result dictionary."""
    from unifab.tb.tops import LinkPairBench

    if not 0.0 <= p_err <= 1.0:
        raise ValueError(f"flit error rate must be within [0, 1], not {p_err}")
    if not 1 <= latency <= max_latency:
        raise ValueError(f"latency must be 1..{max_latency} cycles, not {latency}")
    if flits < 1:
        raise ValueError(f"flits must be positive, not {flits}")
    params = params or LinkParams()
    sim = selected_sim(sim)
    top = LinkPairBench(params, max_latency=max_latency)
    tag = f"link-{sim}-s{seed}-p{p_err:g}-l{latency}-n{flits}" + (
        "-burst" * burst + "-stall" * stall + "-reset" * reset
    )
    settings = {
        "seed": seed,
        "flits": flits,
        "p_err": p_err,
        "latency": latency,
        "burst": burst,
        "stall": stall,
        "inject": inject,
        "ready": ready,
        "reset": reset,
        "reset_at": 40 * latency + 500,
        "vcs": params.fabric.vcs,
        "flit_bits": top.flit_bits,
        "watchdog": 8 * params.ack_timeout + 8 * latency + 200,
    }
    result = _run_with_result(
        top=top,
        toplevel="link_pair",
        test_module="unifab.tb.link_bench",
        tag=tag,
        settings=settings,
        sim=sim,
        waves=waves,
    )
    result.update({"sim": sim, "p_err": p_err, "latency": latency})
    return result


def switch_bench_config(ports: int):
    """The bench's switch tables: node ``i`` at port ``i``, every port an edge port, the
    bench address map, and a protected window nobody may touch."""
    from unifab.switch_config import AccessRule, SwitchConfig
    from unifab.tb.switch_bench import AddressMap

    amap = AddressMap(ports)
    base, size = amap.protected
    return SwitchConfig(
        node_id=0xF0,
        routes={i: i for i in range(ports)},
        edge_ports=frozenset(range(ports)),
        ranges=amap.ranges(),
        rules=(
            AccessRule(
                src_lo=0, src_hi=255, base=base, size=size, read=False, write=False, atomic=False
            ),
        ),
    )


def switch_bench(
    *,
    ports: int = 8,
    vcs: int = 4,
    allocator: str = "islip",
    pattern: str = "uniform",
    mix: str = "single",
    loads: tuple[float, ...] = (0.1, 0.5, 0.9, 1.0),
    warmup: int = 1024,
    measure: int = 4096,
    bp: float = 0.0,
    bad: float = 0.0,
    seed: int = 1,
    batch: int = 256,
    sim: str | None = None,
    waves: bool | None = None,
    params=None,
) -> dict[str, Any]:
    """Run the switch bench over offered loads; returns points and counters."""
    from unifab.flit import FabricParams
    from unifab.switch_config import SwitchParams
    from unifab.tb.switch_top import BULK_PORT_CPP, BULK_PORT_VERILOG, SwitchBench, entry_bytes

    params = params or SwitchParams(fabric=FabricParams(vcs=vcs), ports=ports, allocator=allocator)
    config = switch_bench_config(params.ports)
    sim = selected_sim(sim)
    top = SwitchBench(params, config, batch=batch)
    tag = (
        f"switch-{sim}-n{params.ports}-{params.allocator}-{pattern}-{mix}-s{seed}"
        f"-bp{bp:g}-bad{bad:g}-{len(loads)}pts"
    )
    settings = {
        "seed": seed,
        "ports": params.ports,
        "vcs": params.vcs,
        "batch": batch,
        "entry_bytes": entry_bytes(params),
        "pattern": pattern,
        "mix": mix,
        "loads": list(loads),
        "warmup": warmup,
        "measure": measure,
        "bp": bp,
        "bad": bad,
        "node_id": config.node_id,
    }
    result = _run_with_result(
        top=top,
        toplevel="switch_bench",
        test_module="unifab.tb.switch_bench",
        tag=tag,
        settings=settings,
        sim=sim,
        waves=waves,
        extra_sources=(BULK_PORT_VERILOG, BULK_PORT_CPP),
    )
    result.update(
        {
            "sim": sim,
            "ports": params.ports,
            "pattern": pattern,
            "allocator": params.allocator,
            "mix": mix,
        }
    )
    return result


def coherence_bench(
    *,
    preset: str = "default",
    topology: str | None = None,
    agents: int | None = None,
    test: str = "coherence_stress",
    workloads: tuple[str, ...] | None = None,
    ops: int = 200,
    outstanding: int = 4,
    p_idle: float = 0.2,
    p_stall: float = 0.2,
    seed: int = 1,
    sim: str | None = None,
    waves: bool | None = None,
) -> dict[str, Any]:
    """Run a coherent-system bench (``coherence_stress`` or ``coherence_latency``) on a
    :data:`~unifab.coherence.params.SYSTEM_PRESETS` system (with ``agents`` endpoints when
    given), or on the super node of a ``topology`` file or preset, and return its results."""
    from unifab.coherence.system import WORKLOADS
    from unifab.tb.coherence_bench import BENCH_WORKLOADS

    if topology is not None:
        if agents is not None:
            raise ValueError("agents applies to SYSTEM_PRESETS systems, not to a topology")
        return _supernode_bench(
            topology,
            test=test,
            seed=seed,
            sim=sim,
            waves=waves,
            settings={
                "workloads": list(workloads or BENCH_WORKLOADS),
                "ops": ops,
                "outstanding": outstanding,
                "p_idle": p_idle,
                "p_stall": p_stall,
            },
            tag=f"coherence-{test}-n{ops}",
        )
    from unifab.hdl.top.coherent import CoherentSystem
    from unifab.tb.coherence_bench import bench_system_params

    params = bench_system_params(preset, agents)
    workloads = tuple(workloads or BENCH_WORKLOADS)
    for w in workloads:
        if w not in WORKLOADS:
            raise ValueError(f"workload must be one of {', '.join(sorted(WORKLOADS))}, not {w!r}")
    if ops < 1:
        raise ValueError(f"ops must be positive, not {ops}")
    sim = selected_sim(sim)
    top = CoherentSystem(params)
    tag = f"coherence-{test}-{preset}-a{params.endpoints}-{sim}-s{seed}-n{ops}"
    settings = {
        "seed": seed,
        "preset": preset,
        "agents": params.endpoints,
        "workloads": list(workloads),
        "ops": ops,
        "outstanding": outstanding,
        "p_idle": p_idle,
        "p_stall": p_stall,
    }
    result = _run_with_result(
        top=top,
        toplevel="coherent_system",
        test_module="unifab.tb.coherence_bench",
        tag=tag,
        settings=settings,
        sim=sim,
        waves=waves,
        testcase=test,
    )
    result.update({"sim": sim, "preset": preset, "seed": seed})
    return result


def _supernode_bench(
    topology: str, *, test: str, seed: int, sim, waves, settings: dict, tag: str
) -> dict[str, Any]:
    """Run cocotb test ``test`` on ``SuperNode(load_topology(topology))``."""
    from unifab.hdl.top.supernode import SuperNode
    from unifab.topology import load_topology

    topo = load_topology(topology)
    sim = selected_sim(sim)
    module = "unifab.tb.supernode_bench" if test == "workload_run" else "unifab.tb.coherence_bench"
    result = _run_with_result(
        top=SuperNode(topo),
        toplevel="supernode",
        test_module=module,
        tag=f"{tag}-{topo.name}-{sim}-s{seed}",
        settings={**settings, "seed": seed, "topology": topology},
        sim=sim,
        waves=waves,
        testcase=test,
    )
    result.update({"sim": sim, "preset": topo.name, "seed": seed})
    return result


def workload_bench(
    *,
    workload: str,
    mode: str = "memory",
    preset: str = "default",
    scale: float = 1.0,
    spec: dict[str, Any] | None = None,
    costs: dict[str, float] | None = None,
    p_idle: float = 0.0,
    p_stall: float = 0.0,
    fault: str | None = None,
    seed: int = 1,
    sim: str | None = None,
    waves: bool | None = None,
) -> dict[str, Any]:
    """Run one of :data:`unifab.workloads.WORKLOAD_NAMES` in ``mode`` (``memory`` or
    ``message``) on the super node of topology ``preset`` and return its figures (see
    :mod:`unifab.tb.supernode_bench`). ``fault="memory_byte"`` corrupts one byte of pooled
    memory behind the bench's back (the run must then fail its data check)."""
    from unifab.message import MessageCosts
    from unifab.tb.supernode_bench import MODES
    from unifab.workloads import WorkloadSpec

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    WorkloadSpec(name=workload, **(spec or {})).scaled(scale)  # validates before building
    MessageCosts(**(costs or {}))
    return _supernode_bench(
        preset,
        test="workload_run",
        seed=seed,
        sim=sim,
        waves=waves,
        settings={
            "workload": workload,
            "mode": mode,
            "scale": scale,
            "spec": spec or {},
            "costs": costs or {},
            "p_idle": p_idle,
            "p_stall": p_stall,
            "fault": fault,
        },
        tag=f"workload-{workload}-{mode}-x{scale:g}-i{p_idle:g}-t{p_stall:g}"
        + (f"-fault-{fault}" if fault else ""),
    )
