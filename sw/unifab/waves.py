"""Waveform helpers: a GTKWave translate filter for flits, and GTKWave save files.

* :func:`decode_value` / :func:`run_filter` — the *translate filter process* GTKWave runs
  (``unifab wave-decode``): one hex value per line on stdin, one line of text per value on
  stdout, flushed. By default a value is a whole fabric flit (``head`` bit 0, ``tail`` bit 1,
  then the payload, :func:`unifab.flit.flit_layout`): a head flit shows its header
  (``REQ READ_SHARED 3→16 @0x1_0000_0040 tag 5``), any other flit ``data`` (``data tail``
  for the last beat). ``--layout header`` takes bare 128-bit headers instead. Input that is
  not a value gives a line starting with ``?``, never a crash.
* :func:`write_gtkw` — a ``.gtkw`` save file for a dump of a system top: one group per fabric
  port (``valid``, ``vc``, ``flit`` through the filter, ``credit``), one per AXI port, one for
  clock, reset and status.
"""

import itertools
import shlex
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from amaranth.hdl import Shape
from amaranth.lib import wiring

from unifab.codec import MAX_SIZE, CodecError, unpack_fields, unpack_header
from unifab.flit import (
    ATOMIC_OPCODES,
    HEADER_BITS,
    CacheState,
    ErrorCode,
    FabricParams,
    Header,
    MsgClass,
    Opcode,
    flit_layout,
    opcode_class,
)
from unifab.hdl.lib.port import FabricLink

__all__ = [
    "GtkwGroup",
    "decode_value",
    "format_header",
    "gtkw_text",
    "run_filter",
    "silence_unused",
    "top_groups",
    "vcd_instance_scope",
    "vcd_scope",
    "write_gtkw",
]

LAYOUTS = ("flit", "header")


def _hexa(value: int) -> str:
    digits = f"{value:x}"
    groups = []
    while digits:
        groups.insert(0, digits[-4:])
        digits = digits[:-4]
    return "0x" + "_".join(groups or ["0"])


def format_header(bits: int) -> str:
    """One line for a 128-bit header: ``CLASS OPCODE src→dst @addr tag N`` and extras
    (``fwd N``, ``size NB`` of reads/atomics, the state, ``err NAME``, ``poison``; ``!class``,
    ``!size``, ``!rsvd`` for broken rules)."""
    try:
        rsvd = unpack_fields(Header, bits, what="Header")["rsvd"]
        h = unpack_header(bits, strict=False)
    except CodecError as e:
        return f"? bad header: {e}"
    text = f"{h.cls.name} {h.opcode.name} {h.src}→{h.dst} @{_hexa(h.addr)} tag {h.tag}"
    extras = []
    if h.opcode in (Opcode.SNP_SHARED, Opcode.SNP_UNIQUE) or h.fwd:
        extras.append(f"fwd {h.fwd}")
    if h.opcode is Opcode.NC_READ or h.opcode in ATOMIC_OPCODES:
        extras.append(f"size {1 << h.size}B" if h.size <= MAX_SIZE else f"size {h.size}")
    if h.size > MAX_SIZE:
        extras.append("!size")
    if h.state is not CacheState.I or h.cls is MsgClass.DAT:
        extras.append(h.state.name)
    if h.err is not ErrorCode.OK:
        extras.append(f"err {h.err.name}")
    if h.poison:
        extras.append("poison")
    if h.cls is not opcode_class(h.opcode):
        extras.append("!class")
    if rsvd:
        extras.append("!rsvd")
    return " ".join([text, *extras])


def decode_value(text: str, *, layout: str = "flit", data_width: int = 128) -> str:
    """The filter's answer for one input line (never raises)."""
    try:
        return _decode(text, layout, data_width)
    except Exception as e:  # a filter must keep running, whatever it is sent
        return f"? {type(e).__name__}: {e}"


def _decode(text: str, layout: str, data_width: int) -> str:
    raw = text.strip()
    if not raw:
        return ""
    digits = raw.lower().removeprefix("0x").replace("_", "")
    if not digits or not set(digits) <= set("0123456789abcdefxz"):
        shown = raw if len(raw) <= 24 else raw[:21] + "..."
        return f"? not a hex value: {shown!r}"
    if set(digits) & set("xz"):
        return "? undefined (x/z)"
    value = int(digits, 16)
    if layout == "header":
        if value >> HEADER_BITS:
            return f"? wider than a {HEADER_BITS}-bit header"
        return format_header(value)
    if layout != "flit":
        return f"? unknown layout {layout!r}"
    payload_bits = FabricParams(data_width=data_width).payload_bits
    if value >> (2 + payload_bits):
        return f"? wider than a {2 + payload_bits}-bit flit"
    head, tail, payload = value & 1, value >> 1 & 1, value >> 2
    if not head:
        return "data tail" if tail else "data"
    if payload >> HEADER_BITS:
        return "? head flit with payload bits set above the header"
    return format_header(payload)


def run_filter(
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    *,
    layout: str = "flit",
    data_width: int = 128,
) -> int:
    """Translate lines from ``stdin`` to ``stdout`` until end of input, flushing each line."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    for line in stdin:
        stdout.write(decode_value(line, layout=layout, data_width=data_width) + "\n")
        stdout.flush()
    return 0


# --------------------------------------------------------------------------------------------
# Save files


class GtkwGroup:
    """A named group of traces: ``(name, width, filtered)`` each, names relative to the top."""

    def __init__(self, name: str, signals: Iterable[tuple[str, int, bool]], *, closed: bool):
        self.name = name
        self.signals = list(signals)
        self.closed = closed


def _flatten(signature: Any, prefix: str) -> list[tuple[str, int]]:
    """Verilog port names and widths of a signature's members (Amaranth joins with ``__``)."""
    out = []
    for path, member in signature.members.flatten():
        if not member.is_port:
            continue
        name = "__".join([prefix, *(str(p) for p in path)])
        width = Shape.cast(member.shape).width
        for idx in itertools.product(*(range(d) for d in member.dimensions)):
            out.append(("__".join([name, *(str(i) for i in idx)]), width))
    return out


_AXI_CHANNELS = ("aw", "ar", "w", "b", "r")  # longest prefixes first
_AXI_ORDER = {"aw": 0, "w": 1, "b": 2, "ar": 3, "r": 4}


def _axi_key(name: str) -> tuple:
    """AXI signals by channel (AW, W, B, AR, R), valid and ready first."""
    field = name.rsplit("__", 1)[-1]
    chan = next((c for c in _AXI_CHANNELS if field.startswith(c)), "")
    rest = field[len(chan) :]
    return (_AXI_ORDER.get(chan, 9), {"valid": 0, "ready": 1}.get(rest, 2), field)


def top_groups(top: Any) -> list[GtkwGroup]:
    """Trace groups of a system top: clock/reset/status, fabric ports, AXI ports.

    ``top`` is a :class:`~unifab.hdl.top.supernode.SuperNode` (fabric ports from its
    probe wires), a :class:`~unifab.hdl.top.coherent.CoherentSystem` (fabric ports from the
    switch's outputs and the agents' transmitters), a ``Switch`` (its own ports), or any
    ``wiring.Component`` (AXI and status groups only).
    """
    if not isinstance(top, wiring.Component):
        raise TypeError(f"top must be a wiring.Component, not {type(top).__name__}")
    groups: list[GtkwGroup] = []
    status: list[tuple[str, int, bool]] = [("clk", 1, False), ("rst", 1, False)]
    fabric_groups: list[GtkwGroup] = []
    axi_groups: list[GtkwGroup] = []

    def fabric(label: str, names: dict[str, str], f: FabricParams) -> GtkwGroup:
        widths = {"valid": 1, "vc": f.vc_bits, "flit": flit_layout(f).size, "credit": f.vcs}
        sigs = [(names[k], widths[k], k == "flit") for k in ("valid", "vc", "flit", "credit")]
        return GtkwGroup(label, sigs, closed=False)

    for name, member in top.signature.members.items():
        if member.is_port:
            status.append((name, _flatten_width(member), False))
            continue
        sig = member.signature
        if isinstance(sig, FabricLink):  # a switch top's own fabric ports
            for idx in itertools.product(*(range(d) for d in member.dimensions)):
                base = "__".join([name, *(str(i) for i in idx)])
                names = {k: f"{base}__{k}" for k in ("valid", "vc", "flit", "credit")}
                fabric_groups.append(fabric(base, names, sig.fabric))
            continue
        signals = _flatten(sig, name)
        if all(n.rsplit("__", 1)[-1][:1] in "awbr" for n, _ in signals):
            signals.sort(key=lambda s: _axi_key(s[0]))
        axi_groups.append(GtkwGroup(name, [(n, w, False) for n, w in signals], closed=True))

    probes = getattr(top, "fabric_probes", None)
    if probes is not None:
        f = top.topology.fabric
        for label, prefix, _sw, _port in probes():
            names = {k: f"{prefix}_{k}" for k in ("valid", "vc", "flit", "credit")}
            fabric_groups.append(fabric(label, names, f))
    elif hasattr(top, "switch") and hasattr(top, "params") and hasattr(top, "endpoints"):
        p = top.params  # CoherentSystem: node i on port i, home j on port endpoints + j
        f = p.fabric
        agents = [f"ep{i}" for i in range(p.endpoints)] + [f"home{j}" for j in range(p.homes)]
        for port, agent in enumerate(agents):
            names = {k: f"{agent}.tx.port__{k}" for k in ("valid", "vc", "flit", "credit")}
            fabric_groups.append(fabric(f"switch.{port} from {agent}", names, f))
            names = {k: f"switch.outputs__{port}__{k}" for k in ("valid", "vc", "flit", "credit")}
            fabric_groups.append(fabric(f"switch.{port} to {agent}", names, f))
    groups.append(GtkwGroup("clock, reset, status", status, closed=False))
    return groups + fabric_groups + axi_groups


def _flatten_width(member: Any) -> int:
    return Shape.cast(member.shape).width


def _trace_name(scope: str, name: str, width: int) -> str:
    full = f"{scope}.{name}" if scope else name
    return f"{full}[{width - 1}:0]" if width > 1 else full


def gtkw_text(
    groups: list[GtkwGroup],
    *,
    dumpfile: str | Path,
    scope: str,
    filter_path: str | Path | None,
    savefile: str | Path | None = None,
) -> str:
    """The text of a GTKWave save file showing ``groups`` under ``scope``."""
    lines = [
        "[*] unifab: generated by unifab.waves.write_gtkw",
        f'[dumpfile] "{Path(dumpfile).resolve()}"',
    ]
    if savefile is not None:
        lines.append(f'[savefile] "{Path(savefile).resolve()}"')
    lines += ["[timestart] 0", "[size] 1600 900", "[signals_width] 320", "@28"]
    for g in groups:
        lines += ["@c00200" if g.closed else "@800200", f"-{g.name}"]
        for name, width, filtered in g.signals:
            if filtered and filter_path is not None:
                lines += [f"^>1 {filter_path}", "@4022"]
            else:
                lines.append("@28" if width == 1 else "@22")
            lines.append(_trace_name(scope, name, width))
        lines += ["@1401200" if g.closed else "@1000200", f"-{g.name}"]
    return "\n".join(lines) + "\n"


def _vcd_header(path: str | Path) -> Iterator[tuple[str, list[str], str]]:
    """``("scope", stack, name)`` for each scope opened and ``("var", stack, name)`` for each
    variable of a VCD header, ``stack`` being the enclosing scope names."""
    stack: list[str] = []
    with open(path, errors="replace") as f:
        for line in f:
            words = line.split()
            if not words:
                continue
            if words[0] == "$scope" and len(words) >= 3:
                stack.append(words[2])
                yield "scope", stack, words[2]
            elif words[0] == "$upscope":
                if stack:
                    stack.pop()
            elif words[0] == "$var" and len(words) >= 5:
                yield "var", stack, words[4]
            elif words[0] == "$enddefinitions":
                return


def vcd_scope(path: str | Path, port: str = "clk") -> str | None:
    """The dotted scope of the first VCD scope that holds a variable ``port``."""
    for kind, stack, name in _vcd_header(path):
        if kind == "var" and name == port:
            return ".".join(stack)
    return None


def vcd_instance_scope(path: str | Path, instance: str) -> str | None:
    """The dotted path of the first VCD scope named ``instance`` (Verilator nests the top's
    instance under ``TOP``, which repeats the top's ports)."""
    for kind, stack, name in _vcd_header(path):
        if kind == "scope" and name == instance:
            return ".".join(stack)
    return None


def _filter_script(out_dir: Path, data_width: int) -> Path:
    """GTKWave runs a filter program without arguments: write a wrapper next to the save file."""
    path = out_dir / f"unifab-wave-decode-w{data_width}.sh"
    command = [sys.executable, "-m", "unifab.cli", "wave-decode", "--data-width", str(data_width)]
    path.write_text(f"#!/bin/sh\nexec {shlex.join(command)}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def silence_unused(obj: Any, _seen: set[int] | None = None) -> None:
    """Mark ``obj`` and every elaboratable it holds as used: a design built only to read its
    signature is never elaborated, and Amaranth would warn about each part when it is freed."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if hasattr(obj, "_MustUse__used"):
        obj._MustUse__silence = True
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, list | tuple):
        children = list(obj)
    elif hasattr(obj, "__dict__") and hasattr(obj, "_MustUse__used"):
        children = list(vars(obj).values())
    else:
        return
    for child in children:
        silence_unused(child, seen)


def _resolve_top(top: Any) -> tuple[Any, str]:
    """A top component and its default toplevel name, from a component or a kind string."""
    if not isinstance(top, str):
        from unifab.hdl.top.supernode import SuperNode

        return top, "supernode" if isinstance(top, SuperNode) else type(top).__name__.lower()
    kind, _, preset = top.partition(":")
    if kind == "supernode":
        from unifab.hdl.top.supernode import SuperNode
        from unifab.topology import load_topology

        design = SuperNode(load_topology(preset or "small"))
        silence_unused(design)
        return design, "supernode"
    if kind == "coherent":
        from unifab.coherence.params import SYSTEM_PRESETS
        from unifab.hdl.top.coherent import CoherentSystem

        name = preset or "default"
        if name not in SYSTEM_PRESETS:
            raise ValueError(f"unknown system preset {name!r}; choose from {list(SYSTEM_PRESETS)}")
        design = CoherentSystem(SYSTEM_PRESETS[name])
        silence_unused(design)
        return design, "coherent_system"
    raise ValueError(
        f"top kind must be 'supernode[:TOPOLOGY]', 'coherent[:PRESET]' or a component, not {top!r}"
    )


def write_gtkw(
    vcd_or_fst_path: str | Path,
    top_kind: Any,
    out_path: str | Path,
    *,
    toplevel: str | None = None,
    scope: str | None = None,
) -> Path:
    """Write a GTKWave save file for a dump of ``top_kind`` and return its path.

    ``top_kind`` is the design (a ``wiring.Component``) or ``"supernode:NAME"`` (a topology
    preset or file) or ``"coherent:NAME"`` (a ``SYSTEM_PRESETS`` entry). ``scope`` is where
    the top's signals live in the dump; by default it is read from a VCD's header (the scope
    holding ``clk``), and for FST (Icarus, ``$dumpvars(0, toplevel)``) it is ``toplevel``.
    The flit traces use a filter wrapper script written next to ``out_path``.
    """
    top, default_name = _resolve_top(top_kind)
    toplevel = toplevel or default_name
    dump = Path(vcd_or_fst_path)
    if scope is None:
        found = vcd_scope(dump) if dump.suffix == ".vcd" and dump.is_file() else None
        scope = found if found is not None else toplevel
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fabric = getattr(getattr(top, "topology", None), "fabric", None) or getattr(
        getattr(top, "params", None), "fabric", FabricParams()
    )
    script = _filter_script(out.parent, fabric.data_width)
    text = gtkw_text(top_groups(top), dumpfile=dump, scope=scope, filter_path=script, savefile=out)
    out.write_text(text)
    return out


def main_decode(argv: list[str] | None = None) -> int:  # pragma: no cover - thin wrapper
    """``python -m unifab.waves``: the filter, same as ``unifab wave-decode``."""
    import argparse

    parser = argparse.ArgumentParser(prog="unifab wave-decode")
    parser.add_argument("--layout", choices=LAYOUTS, default="flit")
    parser.add_argument("--data-width", type=int, default=128, choices=(128, 256, 512))
    args = parser.parse_args(argv)
    return run_filter(layout=args.layout, data_width=args.data_width)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_decode())
