"""Run a cocotb bench against an Amaranth design on Verilator or Icarus.

The design is converted to Verilog once; simulator builds are cached by a hash of the Verilog
text, the simulator and the waveform setting, so benches that share a design share a build.
``SIM`` (``verilator`` default, or ``icarus``) and ``WAVES=1`` come from the environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from unifab.tools import build_root, prepend_verilator_path, verilog_text

__all__ = [
    "BenchResult",
    "dump_scope",
    "run_bench",
    "selected_sim",
    "waves_enabled",
    "write_wave_view",
]

SIMULATORS = ("verilator", "icarus")
_CPP_SUFFIXES = (".cpp", ".cc")


def selected_sim(sim: str | None = None) -> str:
    sim = (sim or os.environ.get("SIM") or "verilator").lower()
    if sim not in SIMULATORS:
        raise ValueError(f"SIM must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    return sim


def waves_enabled(waves: bool | None = None) -> bool:
    if waves is not None:
        return waves
    return os.environ.get("WAVES", "0") not in ("", "0", "false", "no")


@dataclass(frozen=True)
class BenchResult:
    """Outcome of one cocotb run."""

    tests: int
    failures: int
    results_xml: Path
    waves: Path | None

    @property
    def ok(self) -> bool:
        return self.tests > 0 and self.failures == 0


def _count_results(xml: Path) -> tuple[int, int]:
    tests = failures = 0
    for case in ET.parse(xml).getroot().iter("testcase"):
        tests += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failures += 1
    return tests, failures


def run_bench(
    *,
    design,
    toplevel: str,
    test_module: str,
    testcase: str | None = None,
    env: Mapping[str, str] | None = None,
    sim: str | None = None,
    waves: bool | None = None,
    name: str | None = None,
    extra_sources: tuple[Path, ...] = (),
) -> BenchResult:
    """Elaborate ``design`` to Verilog, build it (cached) and run ``test_module``'s tests.

    ``env`` is passed to the cocotb test (bench settings, seeds). On Verilator the bench sees
    the top's ports (see :func:`verilator_access_control`). ``extra_sources`` are Verilog
    files, or C++ files that Verilator compiles into the model (DPI code) with their symbols
    exported, so that the bench can call them with ``ctypes``; other simulators skip C++ files.
    Raises ``AssertionError``
    when a cocotb test fails or none ran, so a pytest runner needs nothing else.
    """
    from cocotb_tools.runner import get_runner

    sim = selected_sim(sim)
    waves = waves_enabled(waves)
    # UNIFAB_QUIET=1 (the regression sets it): simulator output goes to log files, not stdout.
    quiet = os.environ.get("UNIFAB_QUIET", "") not in ("", "0")
    prepend_verilator_path()

    hdl_sources = [Path(x) for x in extra_sources if Path(x).suffix not in _CPP_SUFFIXES]
    cpp_sources = [Path(x) for x in extra_sources if Path(x).suffix in _CPP_SUFFIXES]
    text = verilog_text(design, name=toplevel)
    extra_text = "".join(Path(x).read_text() for x in extra_sources)
    access = verilator_access_control(text, toplevel) if sim == "verilator" else ""
    digest = hashlib.sha1(f"{sim}:{waves}:{access}{text}{extra_text}".encode()).hexdigest()[:12]
    build_dir = build_root() / "sim" / f"{toplevel}-{sim}-{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{toplevel}.v"
    runner = _verilator_runner() if sim == "verilator" else get_runner(sim)
    build_args: list[str] = []
    if sim == "icarus":
        # Under -g2012 Amaranth's `always @*` blocks stay X at time 0.
        build_args = ["-g2005"]
    else:
        build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3"]
        build_args += ["--x-assign", "fast", "--x-initial", "fast"]
        control = build_dir / "access.vlt"
        if not control.exists() or control.read_text() != access:
            control.write_text(access)
        build_args.append(str(control))
        if cpp_sources:
            build_args += [str(x) for x in cpp_sources] + ["-LDFLAGS", "-rdynamic"]
        # The PyPI wheel's verilated.mk leaves the precompiled-header include flag empty, which
        # breaks split (parallel) C++ builds of larger designs under g++.
        pch = "CFG_CXXFLAGS_PCH_I=-include"
        flags = os.environ.get("MAKEFLAGS", "")
        if pch not in flags:
            os.environ["MAKEFLAGS"] = f"{flags} {pch}".strip()
    # cocotb's runner lets $WAVES override its `waves` argument (`make test` exports WAVES=0):
    # the environment says what this call decided while it builds and runs.
    with _waves_environment(waves):
        # Parallel pytest workers and regression jobs may want the same build: one builds, the
        # others wait for the lock and then reuse it.
        with open(build_dir / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not source.exists() or source.read_text() != text:
                source.write_text(text)
            runner.build(
                sources=[source, *hdl_sources],
                hdl_toplevel=toplevel,
                build_dir=build_dir,
                build_args=build_args,
                timescale=("1ns", "1ps"),
                waves=waves,
                always=False,
                log_file=(build_dir / "build.log") if quiet else None,
            )
        run_name = name or (testcase or test_module.rsplit(".", 1)[-1])
        test_dir = build_dir / "runs" / run_name
        test_dir.mkdir(parents=True, exist_ok=True)
        try:
            results_xml = runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                testcase=testcase,
                test_dir=test_dir,
                extra_env=dict(env or {}),
                waves=waves,
                timescale=("1ns", "1ps"),
                results_xml=str(test_dir / "results.xml"),
                log_file=(test_dir / "sim.log") if quiet else None,
            )
        except SystemExit:
            # cocotb's runner exits on a failed test; the results file says which.
            results_xml = test_dir / "results.xml"
        tests, failures = _count_results(Path(results_xml))
        wave_file = None
        if waves:
            wave_file = _find_dump(test_dir, build_dir)
            _announce_waves(design, toplevel, wave_file)
        result = BenchResult(tests, failures, Path(results_xml), wave_file)
        if not result.ok:
            raise AssertionError(
                f"cocotb bench {test_module}"
                + (f"::{testcase}" if testcase else "")
                + f" on {sim}: {failures} of {tests} tests failed (see {results_xml}"
                + (f" and {test_dir / 'sim.log'})" if quiet else ")")
            )
        return result


_INPUT_DECL = re.compile(
    r"^\s*input\s+(?:(?:wire|reg|signed)\s+)*(?:\[[^\]]*\]\s*)?(\S+?)\s*;", re.M
)


def verilog_inputs(text: str, toplevel: str) -> list[str]:
    """The input port names of module ``toplevel`` in Verilog ``text`` (as Amaranth writes it)."""
    start = re.search(rf"^module {re.escape(toplevel)}\b", text, re.M)
    if start is None:
        raise ValueError(f"no module {toplevel!r} in the Verilog")
    end = text.index("endmodule", start.end())
    return _INPUT_DECL.findall(text, start.end(), end)


def verilator_access_control(text: str, toplevel: str) -> str:
    """A Verilator control file: what cocotb may see of the design.

    The top's ports and own signals are readable and its inputs writable; below the top only
    signals marked ``/* verilator public_flat_rd */`` in hand-written Verilog are
    (``UNIFAB_SIM_PUBLIC=1``: every signal, for a bench that peeks inside while debugged).

    cocotb's runner builds with ``--public-flat-rw``, which tells Verilator that any signal may
    be read, and written at any time, from outside. Verilator must then keep every named
    intermediate signal (every per-port copy of a bus) and evaluate all combinational logic in
    its input-combinational region on every ``eval`` call. For the 8-port switch bench that
    made the model about 7 times slower than needed. Waveform dumps do not depend on this.
    """
    lines = ["`verilator_config"]
    if os.environ.get("UNIFAB_SIM_PUBLIC", "") not in ("", "0"):
        lines.append('public_flat_rd -module "*" -var "*"')
    else:
        lines.append(f'public_flat_rd -module "{toplevel}" -var "*"')
    lines += [
        f'public_flat_rw -module "{toplevel}" -var "{name}"'
        for name in verilog_inputs(text, toplevel)
    ]
    return "\n".join(lines) + "\n"


def _verilator_runner():
    """cocotb's Verilator runner without ``--public-flat-rw``: the access control file of
    :func:`verilator_access_control` comes as a build argument instead."""
    from cocotb_tools.runner import Verilator

    class ReadOnlyInternalsVerilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
            return cmds

    return ReadOnlyInternalsVerilator()


@contextlib.contextmanager
def _waves_environment(waves: bool) -> Iterator[None]:
    saved = os.environ.get("WAVES")
    os.environ["WAVES"] = "1" if waves else "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("WAVES", None)
        else:
            os.environ["WAVES"] = saved


def _find_dump(test_dir: Path, build_dir: Path) -> Path | None:
    """The waveform dump of a run: Verilator writes a VCD into the run folder, Icarus an FST
    (the newest one wins when several runs share a build)."""
    found = [
        *test_dir.glob("*.vcd"),
        *test_dir.glob("*.fst"),
        *build_dir.glob("*.fst"),
        *build_dir.glob("*.vcd"),
    ]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def dump_scope(dump: Path, toplevel: str) -> str | None:
    """The dotted scope of ``toplevel``'s instance in a VCD dump, or ``None`` when it cannot
    be read (FST)."""
    from unifab.waves import vcd_instance_scope

    if dump.suffix != ".vcd" or not dump.is_file():
        return None
    return vcd_instance_scope(dump, toplevel)


def write_wave_view(design, toplevel: str, dump: Path) -> Path | None:
    """A GTKWave save file next to ``dump`` grouping the top's ports (fabric ports per
    direction through the ``unifab wave-decode`` filter, AXI ports, clock/reset/status);
    ``None`` for designs that are not a ``wiring.Component``."""
    from amaranth.lib import wiring

    from unifab.waves import write_gtkw

    if not isinstance(design, wiring.Component):
        return None
    return write_gtkw(
        dump,
        design,
        dump.with_suffix(".gtkw"),
        toplevel=toplevel,
        scope=dump_scope(dump, toplevel),
    )


def _announce_waves(design, toplevel: str, dump: Path | None) -> None:
    """Write the save file and print one line: where the dump is and how to open it."""
    if dump is None:
        print("waves: no dump file was written", flush=True)
        return
    try:
        gtkw = write_wave_view(design, toplevel, dump)
    except (TypeError, ValueError, AttributeError) as e:  # a top write_gtkw cannot group
        print(f"waves: {dump} (no GTKWave save file: {e})", flush=True)
        return
    if gtkw is None:
        print(f"waves: {dump} (gtkwave {dump})", flush=True)
    else:
        print(f"waves: {dump} (gtkwave {dump} {gtkw})", flush=True)
