"""Generated Verilog runs the same on every simulator: constant ``always @*`` drivers.

Yosys writes a constant comb driver as ``always @*`` with a constant right-hand side, which
Icarus and Verilator never evaluate; :func:`unifab.tools.verilog_text` adds an ``initial`` twin.
This test builds a design with that pattern (a header whose ``src`` is a constant while other
fields are muxed) and runs it on Icarus.
"""

import subprocess

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from unifab.flit import Header, Opcode
from unifab.tools import fix_constant_always, verilog_text


class ConstantField(wiring.Component):
    """``out`` is a header: opcode chosen by ``sel``, ``src`` always node 0x2A."""

    def __init__(self) -> None:
        super().__init__({"sel": In(1), "out": Out(Header)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.out.src.eq(0x2A)
        with m.If(self.sel):
            m.d.comb += self.out.opcode.eq(Opcode.READ_SHARED)
        return m


def test_constant_always_gets_an_initial_twin() -> None:
    text = "  always @*\n    hdr[15:8] = 8'h2a;\n"
    assert fix_constant_always(text) == (
        "  initial hdr[15:8] = 8'h2a;\n  always @*\n    hdr[15:8] = 8'h2a;\n"
    )
    untouched = "  always @* begin\n    x = y;\n  end\n"
    assert fix_constant_always(untouched) == untouched


def test_constant_field_simulates(tmp_path) -> None:
    (tmp_path / "dut.v").write_text(verilog_text(ConstantField(), name="dut"))
    (tmp_path / "tb.v").write_text(
        "module tb; reg sel = 0; wire [127:0] out;\n"
        "  dut d(.sel(sel), .out(out));\n"
        '  initial begin #1 $display("%h %h", out[15:8], out[5:0]);\n'
        '    sel = 1; #1 $display("%h %h", out[15:8], out[5:0]); $finish; end\n'
        "endmodule\n"
    )
    subprocess.run(
        ["iverilog", "-g2005", "-o", str(tmp_path / "sim"), "tb.v", "dut.v"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        ["vvp", str(tmp_path / "sim")], check=True, capture_output=True, text=True
    ).stdout.split("\n")
    assert out[:2] == ["2a 00", "2a 01"]
