"""Waveform helpers: the GTKWave translate filter and the save-file generator."""

import io
import json
import os
import subprocess
import sys
from importlib import resources

import pytest

from unifab.codec import header, pack_header
from unifab.flit import Opcode
from unifab.waves import decode_value, format_header, run_filter, vcd_scope, write_gtkw


def golden_headers() -> dict[str, int]:
    text = resources.files("unifab").joinpath("data/golden_vectors.json").read_text()
    vectors = json.loads(text)["vectors"]
    return {
        v["name"]: int(v["packed"] if "packed" in v else v["bits"], 16)
        for v in vectors
        if v["type"] == "header"
    }


GOLDEN_TEXT = {
    "header/zero": "REQ READ_SHARED 0→0 @0x0 tag 0",
    "header/max": (
        "DAT ATOMIC_DATA 255→255 @0xffff_ffff_ffff tag 255 fwd 255 M err UNSUPPORTED poison"
    ),
    "header/pattern": "SNP SNP_SHARED 170→85 @0xaaaa_5555_aaaa tag 165 fwd 90 S err DENIED",
}


@pytest.mark.parametrize("name", sorted(GOLDEN_TEXT))
def test_golden_headers(name):
    bits = golden_headers()[name]
    assert format_header(bits) == GOLDEN_TEXT[name]
    assert decode_value(f"{bits:x}", layout="header") == GOLDEN_TEXT[name]
    # The same header as a head flit (head bit 0, tail bit 1, payload from bit 2).
    assert decode_value(f"{bits << 2 | 0b11:x}\n") == GOLDEN_TEXT[name]


def test_every_golden_header_decodes():
    for name, bits in golden_headers().items():
        text = decode_value(f"{bits << 2 | 1:x}")
        if name.startswith("bad/"):
            # Undecodable headers give "?"; decodable ones flag the broken rule.
            assert text.startswith("? bad header:") or "!" in text, (name, text)
        else:
            assert not text.startswith("?"), name


def test_request_text():
    h = header(Opcode.READ_SHARED, src=3, dst=16, tag=5, addr=0x1_0000_0040)
    flit = pack_header(h) << 2 | 1
    assert decode_value(f"{flit:x}") == "REQ READ_SHARED 3→16 @0x1_0000_0040 tag 5"


def test_data_beats():
    assert decode_value(f"{0xDEAD << 2:x}") == "data"
    assert decode_value(f"{0xDEAD << 2 | 0b10:x}") == "data tail"


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ("", ""),
        ("xxxx", "? undefined (x/z)"),
        ("12z4", "? undefined (x/z)"),
        ("hello", "? not a hex value: 'hello'"),
        ("1", "? bad header: Header.opcode = 0x0 is not a valid Opcode"),
        ("1" + "0" * 40, "? wider than a 146-bit flit"),
        (f"{1 << 140 | 1:x}", "? head flit with payload bits set above the header"),
    ],
)
def test_malformed_lines(line, text):
    assert decode_value(line) == text


def test_header_layout_too_wide():
    assert decode_value(f"{1 << 128:x}", layout="header") == "? wider than a 128-bit header"


def test_run_filter_one_line_per_value():
    bits = golden_headers()["header/zero"] << 2 | 1
    out = io.StringIO()
    run_filter(io.StringIO(f"{bits:x}\nnot hex\n\n0\n"), out)
    assert out.getvalue().splitlines() == [
        "REQ READ_SHARED 0→0 @0x0 tag 0",
        "? not a hex value: 'not hex'",
        "",
        "data",
    ]


def test_wave_decode_process_flushes_each_line():
    """GTKWave writes a value and waits for its line: the answer must come before EOF."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "unifab.cli", "wave-decode"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=env,
    )
    try:
        bits = golden_headers()["header/zero"] << 2 | 1
        proc.stdin.write(f"{bits:x}\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "REQ READ_SHARED 0→0 @0x0 tag 0\n"
        proc.stdin.write("zz\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "? undefined (x/z)\n"
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


# -- save files -------------------------------------------------------------------------------

VCD_HEAD = """$timescale 1ps $end
$scope module TOP $end
$scope module supernode $end
$var wire 1 ! clk $end
$var wire 1 " rst $end
$upscope $end
$upscope $end
$enddefinitions $end
#0
"""


def test_vcd_scope(tmp_path):
    path = tmp_path / "dump.vcd"
    path.write_text(VCD_HEAD)
    assert vcd_scope(path) == "TOP.supernode"
    assert vcd_scope(path, "nothing") is None


def test_gtkw_supernode_from_vcd(tmp_path):
    dump = tmp_path / "dump.vcd"
    dump.write_text(VCD_HEAD)
    out = write_gtkw(dump, "supernode:small", tmp_path / "waves.gtkw")
    lines = out.read_text().splitlines()
    assert f'[dumpfile] "{dump.resolve()}"' in lines
    assert "TOP.supernode.clk" in lines and "TOP.supernode.rst" in lines
    # One group per fabric port direction, flits through the filter.
    for port, peer in ((0, "node 0"), (1, "node 1"), (2, "node 16")):
        for direction, word in (("in", "from"), ("out", "to")):
            group = f"-s0.{port} {word} {peer}"
            assert lines.count(group) == 2  # begin and end markers
            flit = f"TOP.supernode.fab_s0_{port}_{direction}_flit[145:0]"
            i = lines.index(flit)
            assert lines[i - 1] == "@4022" and lines[i - 2].startswith("^>1 ")
            for sig in ("valid", "vc[2:0]", "credit[3:0]"):
                assert f"TOP.supernode.fab_s0_{port}_{direction}_{sig}" in lines
    # One closed group per AXI port, valid/ready first.
    for group, first in (("ep0_axi", "awvalid"), ("ep1_axi", "awvalid"), ("home0_mem", "awvalid")):
        i = lines.index(f"-{group}")
        assert lines[i - 1] == "@c00200"
        assert lines[i + 2] == f"TOP.supernode.{group}__{first}"
    assert "TOP.supernode.ep0_axi__araddr[47:0]" in lines
    assert "TOP.supernode.home0_mem__rdata[127:0]" in lines
    # The filter wrapper runs the decoder.
    script = lines[lines.index("TOP.supernode.fab_s0_0_in_flit[145:0]") - 2][4:]
    assert os.access(script, os.X_OK)
    bits = golden_headers()["header/zero"] << 2 | 1
    run = subprocess.run([script], input=f"{bits:x}\n", capture_output=True, text=True, timeout=30)
    assert run.stdout.strip() == "REQ READ_SHARED 0→0 @0x0 tag 0"


def test_gtkw_fst_scope_and_coherent_top(tmp_path):
    out = write_gtkw(tmp_path / "dump.fst", "coherent:small", tmp_path / "c.gtkw")
    lines = out.read_text().splitlines()
    assert "coherent_system.clk" in lines
    assert "coherent_system.switch.outputs__0__flit[145:0]" in lines
    assert "coherent_system.ep0.tx.port__flit[145:0]" in lines
    assert "-ep0_axi" in lines and "-home0_mem" in lines


def test_gtkw_two_level_lists_spine_ports(tmp_path):
    out = write_gtkw(tmp_path / "d.fst", "supernode:two-level", tmp_path / "t.gtkw", scope="x")
    text = out.read_text()
    assert "-spine.0 from leaf0.6" in text and "-leaf1.6 to spine.1" in text
    assert "x.links_up[1:0]" in text


def test_gtkw_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="top kind must be"):
        write_gtkw(tmp_path / "d.fst", "router", tmp_path / "t.gtkw")


# -- a bench run with waves on ------------------------------------------------------------------


def vcd_names(path) -> set[str]:
    """Dotted names of every variable declared in a VCD header (without bit ranges)."""
    names, stack = set(), []
    with open(path, errors="replace") as f:
        for line in f:
            words = line.split()
            if not words:
                continue
            if words[0] == "$scope":
                stack.append(words[2])
            elif words[0] == "$upscope":
                stack.pop()
            elif words[0] == "$var":
                names.add(".".join([*stack, words[4]]))
            elif words[0] == "$enddefinitions":
                break
    return names


def gtkw_traces(path) -> list[str]:
    """The trace names of a save file (lines that are not directives, flags or groups)."""
    lines = path.read_text().splitlines()
    return [ln.split("[")[0] for ln in lines if ln and ln[0] not in "[@-^*"]


@pytest.mark.heavy
def test_bench_with_waves_writes_dump_and_save_file(capfd):
    """A small coherence run with waves on: VCD (Verilator) or FST (Icarus) plus a .gtkw whose
    traces all exist in the dump; the run prints where both are."""
    from unifab.tb.benches import coherence_bench
    from unifab.tb.runner import selected_sim

    coherence_bench(preset="small", ops=20, workloads=("hot_lines",), waves=True, seed=1)
    line = next(ln for ln in capfd.readouterr().out.splitlines() if ln.startswith("waves: "))
    dump, rest = line.removeprefix("waves: ").split(" (gtkwave ", 1)
    gtkw = rest.rstrip(")").split()[-1]
    from pathlib import Path

    dump, gtkw = Path(dump), Path(gtkw)
    assert dump.is_file() and gtkw.is_file() and gtkw.suffix == ".gtkw"
    traces = gtkw_traces(gtkw)
    assert "coherent_system.switch.outputs__0__flit" in traces
    assert f'[dumpfile] "{dump.resolve()}"' in gtkw.read_text()
    if selected_sim() == "verilator":
        assert dump.suffix == ".vcd"
        missing = [t for t in traces if t not in vcd_names(dump)]
        assert not missing, f"traces not in the dump: {missing[:5]}"
