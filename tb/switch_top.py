"""Bench top for the switch: bulk injection and capture so Python is not called per cycle.

Python wakes once every ``batch`` cycles; each flit it hands over carries a release cycle, and
the wrapper injects a port's flits in order under the switch's credits as soon as their
release cycle has come. Every flit leaving the switch is stamped with its arrival cycle.
How flits cross between Python and the simulator depends on the simulator:

* Verilator: through queues in C++ (``tb/verilog/unifab_bulk.cpp``): the Verilog takes and
  gives one entry per flit through DPI, Python appends and takes whole batches with ctypes in
  the simulator's own process. Nothing crosses VPI per flit or per port.
* Icarus (and any other simulator): through wide registers and VPI. Per port Python writes up
  to ``batch`` flits at once on the shared injection bus (one cycle per port); capture banks
  alternate every ``batch`` cycles, and Python reads the bank of the last period in chunks.

Entry format (bytes, little-endian), for injection and capture alike::

    [0:4)  cycle (release / arrival)    [4]  VC    [5]  bit0 head, bit1 tail
    [6:6+payload_bytes)  flit payload

Outputs return credits to the switch after a random delay: each cycle a port returns its
owed credits unless a 32-bit draw is below ``bp_thresh`` (random back-pressure).
"""

from pathlib import Path

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from unifab.hdl.switch.switch import Switch
from unifab.switch_config import SwitchConfig, SwitchParams

__all__ = ["BULK_PORT_CPP", "BULK_PORT_VERILOG", "SwitchBench", "entry_bytes"]

#: The Verilog of the bulk injector/capture (see that file for why it is Verilog).
BULK_PORT_VERILOG = Path(__file__).parent / "verilog" / "unifab_bulk_port.v"
#: Its injection and capture queues under Verilator (DPI, and ctypes from the bench).
BULK_PORT_CPP = Path(__file__).parent / "verilog" / "unifab_bulk.cpp"


def entry_bytes(params: SwitchParams) -> int:
    return 6 + (params.fabric.payload_bits + 7) // 8


class SwitchBench(wiring.Component):
    """A :class:`Switch` between bulk injectors and capture banks.

    Ports (``i`` is a port number)
    ------------------------------
    inj_data, inj_count, inj_port, inj_write : In(batch * entry_bits), In(range(batch + 1)),
            In(range(ports)), In(1)
        A batch of entries for port ``inj_port``, taken at each edge while ``inj_write``.
        (One shared bus: Amaranth limits a top's input bits to 65536 in all.)
    inj{i}_ready : Out(1)
        The wrapper can take a batch (one of its two halves is free).
    inj{i}_busy : Out(1)
        Entries handed over and not yet injected.
    cap{i}_count{b} : Out(16)
        How many entries capture bank ``b`` of port ``i`` holds. The banks themselves are read
        in place, as ``bulk{i}.cap_bank{b}`` (Amaranth caps a cell's ports at 65536 bits).
    cap_bank : Out(1)
        The bank being written this period (read the other one).
    now : Out(32)
        Cycles since reset.
    bp_thresh : In(32)
        Per-cycle probability (x 2^32) that an output withholds its credits.
    cfg_*, ctr_*, xbar_error
        The switch's configuration and counter ports (registered here: a counter's value comes
        two cycles after its address).
    clk, rst : In(1), In(1)
        Clock, and synchronous reset (registered here, like the control inputs).
    """

    def __init__(self, params: SwitchParams, config: SwitchConfig, *, batch: int = 256):
        if batch < 2 or batch & (batch - 1):
            raise ValueError(f"batch must be a power of two >= 2, not {batch!r}")
        self.params, self.config, self.batch = params, config, batch
        self.entry_bits = 8 * entry_bytes(params)
        members = {
            "clk": In(1),
            "rst": In(1),
            "now": Out(32),
            "cap_bank": Out(1),
            "bp_thresh": In(32),
            "cfg_we": In(1),
            "cfg_addr": In(16),
            "cfg_data": In(64),
            "ctr_addr": In(16),
            "ctr_data": Out(32),
            "xbar_error": Out(1),
            "inj_data": In(batch * self.entry_bits),
            "inj_count": In(16),
            "inj_port": In(range(max(params.ports, 2))),
            "inj_write": In(1),
        }
        for i in range(params.ports):
            members[f"inj{i}_ready"] = Out(1)
            members[f"inj{i}_busy"] = Out(1)
            for b in range(2):
                members[f"cap{i}_count{b}"] = Out(16)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        f = p.fabric
        k, e = self.batch, self.entry_bits
        # Reset and the control inputs pass through a register first. Verilator evaluates all
        # logic that depends combinationally on a top-level input on every evaluation (twice a
        # cycle and at every write from the bench), and every register's next-state logic
        # depends on the reset. Counter reads and table writes take one cycle more.
        m.domains.sync = ClockDomain()
        m.domains.bench_in = ClockDomain(reset_less=True, local=True)
        m.d.comb += [ClockSignal().eq(self.clk), ClockSignal("bench_in").eq(self.clk)]
        rst_q = Signal(init=1)
        m.d.bench_in += rst_q.eq(self.rst)
        m.d.comb += ResetSignal().eq(rst_q)
        registered = {}
        for name in ("cfg_we", "cfg_addr", "cfg_data", "ctr_addr", "bp_thresh"):
            port = getattr(self, name)
            registered[name] = Signal.like(port, name=f"{name}_q")
            m.d.bench_in += registered[name].eq(port)
        m.submodules.switch = switch = Switch(p, self.config)
        m.d.comb += [
            switch.cfg_we.eq(registered["cfg_we"]),
            switch.cfg_addr.eq(registered["cfg_addr"]),
            switch.cfg_data.eq(registered["cfg_data"]),
            switch.ctr_addr.eq(registered["ctr_addr"]),
            self.ctr_data.eq(switch.ctr_data),
            self.xbar_error.eq(switch.xbar_error),
        ]
        m.d.sync += self.now.eq(self.now + 1)
        phase = Signal(range(k))
        m.d.sync += phase.eq(phase + 1)
        period_end = Signal()
        m.d.comb += period_end.eq(phase == k - 1)
        with m.If(period_end):
            m.d.sync += self.cap_bank.eq(~self.cap_bank)

        for i in range(p.ports):
            inp, out = switch.inputs[i], switch.outputs[i]
            m.submodules[f"bulk{i}"] = Instance(
                "unifab_bulk_port",
                p_K=k,
                p_E=e,
                p_PB=f.payload_bits,
                p_VCB=f.vc_bits,
                p_VCS=f.vcs,
                p_DEPTH=p.buffer_depth,
                p_PORT=i,
                p_SEED=(0x1234567 + 0x9E3779B9 * (i + 1)) & 0xFFFFFFFF,
                i_clk=ClockSignal(),
                i_rst=ResetSignal(),
                i_now=self.now,
                i_inj_data=self.inj_data,
                i_inj_count=self.inj_count,
                i_inj_take=self.inj_write & (self.inj_port == i),
                o_inj_ready=getattr(self, f"inj{i}_ready"),
                o_inj_busy=getattr(self, f"inj{i}_busy"),
                o_in_valid=inp.valid,
                o_in_vc=inp.vc,
                o_in_head=inp.flit.head,
                o_in_tail=inp.flit.tail,
                o_in_payload=inp.flit.payload,
                i_in_credit=inp.credit,
                i_out_valid=out.valid,
                i_out_vc=out.vc,
                i_out_head=out.flit.head,
                i_out_tail=out.flit.tail,
                i_out_payload=out.flit.payload,
                o_out_credit=out.credit,
                i_cap_bank=self.cap_bank,
                i_clear_other=period_end,
                i_bp_thresh=registered["bp_thresh"],
                o_cap_count0=getattr(self, f"cap{i}_count0"),
                o_cap_count1=getattr(self, f"cap{i}_count1"),
            )
        return m
