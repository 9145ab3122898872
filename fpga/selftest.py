"""The board self-test: traffic engines and checkers around a coherent super node.

:class:`SelfTestSystem` is the one-switch coherent system of a :class:`SystemParams` preset
(the same blocks and tables as ``CoherentSystem``) with, optionally, a pair of link layers
joined by a loopback channel on one endpoint's path to the switch, and each home's memory port
on an :class:`~fpga.axi_ram.AxiRam` in block RAM.

:class:`TrafficEngine` is an AXI4 manager FSM at an endpoint's port. Iteration ``i`` of engine
``e`` (one transaction at a time):

1. writes a private line (4 beats of ``pattern(e, i, beat)``);
2. writes its own beat ``e`` of a line shared by all engines (false sharing: the line moves
   between caches by snoops and ``FWD_DATA``);
3. fetch-adds 1 to a shared 8-byte counter (far atomic) and checks the old value is larger than
   the last one it saw and below the total number of adds;
4. reads the private line back, then the private line written ``lag`` iterations earlier (by
   then evicted from the cache and the directory) and checks every beat;
5. reads the shared line and checks its own beat.

After every engine has finished, engine 0 reads the counter and checks it equals the number
of adds. Any data mismatch, error response, atomic-order violation or watchdog expiry counts an
error. :class:`SelfTestCore` adds the checkers' summary: ``done``, ``passed`` and counters.
"""

from dataclasses import dataclass, replace

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from unifab.coherence.params import SYSTEM_PRESETS, CacheParams, SystemParams
from unifab.flit import LINE_BYTES
from unifab.hdl.coherence.home import HomeAgent
from unifab.hdl.endpoint import Endpoint
from unifab.hdl.lib.axi import Axi4Signature, AxiBurst, AxiParams, AxiResp
from unifab.hdl.lib.port import FabricLink, FabricToStreams, StreamsToFabric
from unifab.hdl.link.layer import LinkLayer
from unifab.hdl.switch.switch import Switch
from unifab.hdl.top.coherent import switch_config
from unifab.params import LINK_PRESETS, LinkParams

from .axi_ram import AxiRam

__all__ = [
    "FPGA_PRESETS",
    "STEPS",
    "SelfTestCore",
    "SelfTestParams",
    "SelfTestSystem",
    "TrafficEngine",
    "pattern",
    "system_preset",
]

#: The steps of one iteration, in order (the error log's ``step`` field).
STEPS = ("wr_priv", "wr_shared", "atomic", "rd_priv", "rd_old", "rd_shared", "final")
_WR_PRIV, _WR_SHARED, _ATOMIC, _RD_PRIV, _RD_OLD, _RD_SHARED, _FINAL = range(len(STEPS))
#: ``awuser`` of a fetch-add of 8 bytes (docs/coherence.md section 4).
ATOMIC_ADD64 = 1 | 3 << 4


#: Board-only reduced systems (for devices too small for the ``small`` preset): the same
#: agents and switch with the fewest buffers, MSHRs, cache and directory entries.
FPGA_PRESETS: dict[str, SystemParams] = {
    "tiny": SystemParams(
        endpoints=2,
        homes=1,
        cache=CacheParams(sets=2, ways=1),
        mshrs=1,
        dir_sets=2,
        dir_ways=2,
        table_entries=2,
        switch_buffer_depth=2,
        agent_rx_depth=2,
    ),
}


#: iSLIP rounds of the switch on a board. Three rounds (the simulation presets) are the longest
#: path of the whole design on an ECP5; with 3 to 5 ports one round loses little throughput.
BOARD_ISLIP_ITERATIONS = 1
#: The board switch registers its matching (``SwitchParams.registered_grant``): allocation and
#: the crossbar become separate paths, for one more cycle of latency per switch.
BOARD_REGISTERED_GRANT = True
#: The board switch queues an arriving flit the cycle after its route compute
#: (``SwitchParams.registered_route``): one more cycle per switch.
BOARD_REGISTERED_ROUTE = True
#: The board's endpoints and homes read their fabric input through a register
#: (``SystemParams.agent_registered_rx``): the receive RAM's read no longer starts their
#: longest paths; one more cycle per agent.
BOARD_REGISTERED_AGENT_RX = True
#: The board's link layers: the ``small`` preset, the receiver checking the CRC a cycle
#: before acting on the flit (``LinkParams.registered_crc``), the transmitter registering its
#: choice of VC before writing the flit (``LinkParams.registered_select``).
BOARD_LINK = replace(LINK_PRESETS["small"], registered_crc=True, registered_select=True)


def system_preset(name: str) -> SystemParams:
    """A preset of ``SYSTEM_PRESETS`` or :data:`FPGA_PRESETS`, as the board tops build it
    (:data:`BOARD_ISLIP_ITERATIONS`, :data:`BOARD_REGISTERED_GRANT`,
    :data:`BOARD_REGISTERED_ROUTE`, :data:`BOARD_REGISTERED_AGENT_RX`)."""
    presets = SYSTEM_PRESETS | FPGA_PRESETS
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(presets)}")
    return replace(
        presets[name],
        switch_islip_iterations=BOARD_ISLIP_ITERATIONS,
        switch_registered_grant=BOARD_REGISTERED_GRANT,
        switch_registered_route=BOARD_REGISTERED_ROUTE,
        agent_registered_rx=BOARD_REGISTERED_AGENT_RX,
    )


def pattern(engine: int, tag: int, beat: int) -> int:
    """The 128-bit data engine ``engine`` writes at ``beat`` in iteration ``tag`` (Python)."""
    w = (tag & 0xFFFF) | (engine & 0xF) << 16 | (beat & 0xF) << 20 | 0xA5 << 24
    rot = (w >> 16 | w << 16) & 0xFFFF_FFFF
    return w | (w ^ 0x3C3C_3C3C) << 32 | (~w & 0xFFFF_FFFF) << 64 | rot << 96


def _pattern_hw(engine: int, tag: Value, beat: Value) -> Value:
    w = Cat(tag[:16], C(engine, 4), beat[:4], C(0xA5, 8))
    return Cat(w, w ^ 0x3C3C_3C3C, ~w, Cat(w[16:], w[:16]))


@dataclass(frozen=True, kw_only=True)
class SelfTestParams:
    """What the self-test runs on: a system preset and the traffic.

    ``iterations`` per engine; ``ram_bytes`` of block RAM per home (addresses wrap);
    ``private_lines`` lines per engine, reused round-robin; ``shared_lines`` lines all engines
    write; ``lag`` how many iterations back the old private line is re-read; ``link`` puts a
    link-layer pair with a loopback channel on the last endpoint's path (``None``: direct);
    ``watchdog`` cycles without an AXI handshake that count as a hang.
    """

    system: SystemParams
    iterations: int = 64
    ram_bytes: int = 8192
    private_lines: int = 32
    shared_lines: int = 4
    lag: int = 20
    link: LinkParams | None = BOARD_LINK
    watchdog: int = 1 << 14

    def __post_init__(self) -> None:
        if not isinstance(self.system, SystemParams):
            raise TypeError(f"system must be SystemParams, not {type(self.system).__name__}")
        if not 1 <= self.system.endpoints <= 4:
            raise ValueError(f"the self-test drives 1..4 endpoints, not {self.system.endpoints}")
        for name, low, high in (
            ("iterations", 1, 1 << 16),
            ("private_lines", 1, 1 << 12),
            ("shared_lines", 1, 1 << 12),
            ("watchdog", 16, 1 << 24),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be {low}..{high}, not {value!r}")
        for name in ("private_lines", "shared_lines", "ram_bytes"):
            value = getattr(self, name)
            if value & (value - 1):
                raise ValueError(f"{name} must be a power of two, not {value!r}")
        if not isinstance(self.lag, int) or not 0 < self.lag < self.private_lines:
            raise ValueError(f"lag must be 1..private_lines-1, not {self.lag!r}")
        if self.link is not None and not isinstance(self.link, LinkParams):
            raise TypeError(f"link must be LinkParams or None, not {type(self.link).__name__}")
        if self.link is not None and self.link.fabric != self.system.fabric:
            raise ValueError("the link's fabric parameters differ from the system's")
        if self.footprint > min(self.ram_bytes, self.system.size):
            raise ValueError(
                f"the traffic needs {self.footprint:#x} bytes, more than the RAM/window"
            )

    @property
    def footprint(self) -> int:
        """Bytes of the window the traffic touches (from ``system.base``)."""
        return LINE_BYTES * (self.system.endpoints * self.private_lines + self.shared_lines + 1)

    @property
    def total_adds(self) -> int:
        return self.system.endpoints * self.iterations

    def private_base(self, engine: int) -> int:
        return self.system.base + LINE_BYTES * engine * self.private_lines

    @property
    def shared_base(self) -> int:
        return self.system.base + LINE_BYTES * self.system.endpoints * self.private_lines

    @property
    def counter_addr(self) -> int:
        return self.shared_base + LINE_BYTES * self.shared_lines


class TrafficEngine(wiring.Component):
    """An AXI4 manager that runs engine ``engine``'s traffic and checks it.

    Ports
    -----
    axi : Out(Axi4Signature)
        To the endpoint's subordinate port.
    final_go : In(1)
        Every engine has finished its iterations (engine 0 then reads the counter).
    finished : Out(1)
        This engine has finished its iterations.
    done : Out(1)
        Finished (after the final check for engine 0, or after a watchdog expiry).
    errors : Out(16)
        Errors counted (saturating).
    ops : Out(32)
        AXI transactions completed.
    timeout : Out(1)
        The watchdog expired (the engine stopped).
    first_step, first_iter : Out(3), Out(16)
        Where the first error happened (:data:`STEPS` index, iteration).
    """

    def __init__(self, *, engine: int, params: SelfTestParams, axi: AxiParams):
        if not isinstance(params, SelfTestParams):
            raise TypeError(f"params must be SelfTestParams, not {type(params).__name__}")
        if not isinstance(engine, int) or not 0 <= engine < params.system.endpoints:
            raise ValueError(f"engine must be 0..{params.system.endpoints - 1}, not {engine!r}")
        if axi.data_width != 128 or axi.buser_width < 64 or axi.awuser_width < 6:
            raise ValueError("the engine needs 128-bit data, awuser >= 6 and buser >= 64 bits")
        self.engine, self.params, self.axi_params = engine, params, axi
        super().__init__(
            {
                "axi": Out(Axi4Signature(axi)),
                "final_go": In(1),
                "finished": Out(1),
                "done": Out(1),
                "errors": Out(16),
                "ops": Out(32),
                "timeout": Out(1),
                "first_step": Out(3),
                "first_iter": Out(16),
            }
        )

    def elaborate(self, platform):
        m = Module()
        p, e, axi = self.params, self.engine, self.axi
        ap = self.axi_params
        size = ap.size_full

        it = Signal(16)  # iteration
        step = Signal(range(len(STEPS)))
        beat = Signal(2)  # beat within the burst
        last_old = Signal(64)
        seen_old = Signal()
        watchdog = Signal(range(p.watchdog + 1))

        # What the current step does
        priv_line = Signal(max(1, (p.private_lines - 1).bit_length()))
        old_line = Signal.like(priv_line)
        shared_line = Signal(max(1, (p.shared_lines - 1).bit_length()))
        addr = Signal(ap.addr_width)
        beats = Signal(2)  # burst length - 1
        is_read = Signal()
        tag = Signal(16)  # iteration whose pattern the step writes or expects
        m.d.comb += [
            priv_line.eq(it),  # truncated: modulo private_lines (a power of two)
            old_line.eq(it - p.lag),
            shared_line.eq(it),
            tag.eq(it),
        ]
        priv_addr = p.private_base(e) + priv_line * LINE_BYTES
        with m.Switch(step):
            with m.Case(_WR_PRIV):
                m.d.comb += [addr.eq(priv_addr), beats.eq(3)]
            with m.Case(_WR_SHARED):
                m.d.comb += addr.eq(p.shared_base + shared_line * LINE_BYTES + 16 * e)
            with m.Case(_ATOMIC):
                m.d.comb += addr.eq(p.counter_addr)
            with m.Case(_RD_PRIV):
                m.d.comb += [addr.eq(priv_addr), beats.eq(3), is_read.eq(1)]
            with m.Case(_RD_OLD):
                m.d.comb += [
                    addr.eq(p.private_base(e) + old_line * LINE_BYTES),
                    beats.eq(3),
                    is_read.eq(1),
                    tag.eq(it - p.lag),
                ]
            with m.Case(_RD_SHARED):
                m.d.comb += [
                    addr.eq(p.shared_base + shared_line * LINE_BYTES),
                    beats.eq(3),
                    is_read.eq(1),
                ]
            with m.Case(_FINAL):
                m.d.comb += [addr.eq(p.counter_addr), is_read.eq(1)]

        # Write data and the read checker
        data_beat = Mux(step == _WR_SHARED, e, beat)
        wdata = Signal(128)
        m.d.comb += wdata.eq(Mux(step == _ATOMIC, 1, _pattern_hw(e, tag, data_beat)))
        # The read checker compares a registered copy of each R beat, a cycle later: the
        # endpoint's answer path then ends at a flop instead of at a 128-bit compare (the
        # board's longest path).
        chk_valid = Signal()
        chk_data = Signal(128)
        chk_expect = Signal(128)
        chk_step = Signal.like(step)
        chk_beat = Signal.like(beat)
        chk_iter = Signal.like(it)
        mismatch = Signal()
        with m.Switch(chk_step):
            with m.Case(_RD_SHARED):
                m.d.comb += mismatch.eq((chk_beat == e % 4) & (chk_data != chk_expect))
            with m.Case(_FINAL):
                m.d.comb += mismatch.eq(chk_data[:64] != p.total_adds)
            with m.Default():
                m.d.comb += mismatch.eq(chk_data != chk_expect)
        chk_error = Signal()
        m.d.comb += chk_error.eq(chk_valid & mismatch)

        # The B response is checked the same way, a cycle later from registers: its resp and
        # an atomic's old value (two 64-bit compares) no longer sit between the endpoint's
        # answer and the error counter. A B never arrives in the cycle after an R beat (one
        # transaction at a time), so at most one of the two check stages fires in a cycle.
        bchk_valid = Signal()
        bchk_bad = Signal()  # resp not OKAY
        bchk_atomic = Signal()
        bchk_old = Signal(64)
        bchk_step = Signal.like(step)
        bchk_iter = Signal.like(it)
        bchk_error = Signal()
        m.d.comb += bchk_error.eq(
            bchk_valid
            & (
                bchk_bad
                | (bchk_atomic & ((bchk_old >= p.total_adds) | (seen_old & (bchk_old <= last_old))))
            )
        )
        with m.If(bchk_valid & ~bchk_bad & bchk_atomic):
            m.d.sync += [last_old.eq(bchk_old), seen_old.eq(1)]

        # The two check stages' verdict is registered once more before it is counted: their
        # compares (128-bit data, 64-bit old values against a constant and the last one) then
        # end at a flop, not at the error counter and the first-error record across the chip
        # (the board's longest path before this stage).
        verdict_valid = Signal()  # a check stage compared last cycle
        verdict_error = Signal()  # and found an error
        verdict_step = Signal.like(step)
        verdict_iter = Signal.like(it)
        m.d.sync += [
            verdict_valid.eq(chk_valid | bchk_valid),
            verdict_error.eq(chk_error | bchk_error),
            verdict_step.eq(Mux(chk_valid, chk_step, bchk_step)),
            verdict_iter.eq(Mux(chk_valid, chk_iter, bchk_iter)),
        ]

        error = Signal()  # found this cycle, in the current step
        found = Signal(2)
        m.d.comb += found.eq(error + verdict_error)
        with m.If(found != 0):
            m.d.sync += self.errors.eq(
                Mux(self.errors >= 0xFFFF - found, 0xFFFF, self.errors + found)
            )
            with m.If(self.errors == 0):
                # The check stages' verdict is about an earlier cycle: it came first.
                with m.If(verdict_error):
                    m.d.sync += [
                        self.first_step.eq(verdict_step),
                        self.first_iter.eq(verdict_iter),
                    ]
                with m.Else():
                    m.d.sync += [self.first_step.eq(step), self.first_iter.eq(it)]

        # AXI constants
        m.d.comb += [
            axi.awid.eq(e),
            axi.arid.eq(e),
            axi.awaddr.eq(addr),
            axi.araddr.eq(addr),
            axi.awlen.eq(beats),
            axi.arlen.eq(beats),
            axi.awsize.eq(size),
            axi.arsize.eq(size),
            axi.awburst.eq(AxiBurst.INCR),
            axi.arburst.eq(AxiBurst.INCR),
            axi.wdata.eq(wdata),
            axi.wstrb.eq(Mux(step == _ATOMIC, 0xFF, (1 << ap.strb_width) - 1)),
            axi.wlast.eq(beat == beats),
        ]
        if ap.awuser_width:
            m.d.comb += axi.awuser.eq(Mux(step == _ATOMIC, ATOMIC_ADD64, 0))

        handshake = (
            (axi.awvalid & axi.awready)
            | (axi.wvalid & axi.wready)
            | (axi.bvalid & axi.bready)
            | (axi.arvalid & axi.arready)
            | (axi.rvalid & axi.rready)
        )
        with m.If(handshake):
            m.d.sync += watchdog.eq(0)
        with m.Elif(~self.done):
            m.d.sync += watchdog.eq(watchdog + 1)

        def next_step() -> None:
            """After a completed transaction: the next step, iteration or the end."""
            m.d.sync += [self.ops.eq(self.ops + 1), beat.eq(0)]
            with m.If(step == _RD_PRIV):
                m.d.sync += step.eq(Mux(it >= p.lag, _RD_OLD, _RD_SHARED))
                m.next = "ISSUE"
            with m.Elif(step == _RD_SHARED):
                with m.If(it == p.iterations - 1):
                    m.next = "WAIT_ALL"
                with m.Else():
                    m.d.sync += [it.eq(it + 1), step.eq(_WR_PRIV)]
                    m.next = "ISSUE"
            with m.Elif(step == _FINAL):
                m.next = "DONE"
            with m.Else():
                m.d.sync += step.eq(step + 1)
                m.next = "ISSUE"

        m.d.sync += [chk_valid.eq(0), bchk_valid.eq(0)]  # unless a beat or a B arrives (below)
        with m.FSM():
            with m.State("ISSUE"):
                with m.If(is_read):
                    m.d.comb += axi.arvalid.eq(1)
                    with m.If(axi.arready):
                        m.next = "R"
                with m.Else():
                    m.d.comb += axi.awvalid.eq(1)
                    with m.If(axi.awready):
                        m.next = "W"
            with m.State("W"):
                m.d.comb += axi.wvalid.eq(1)
                with m.If(axi.wready):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(beat == beats):
                        m.next = "B"
            with m.State("B"):
                m.d.comb += axi.bready.eq(1)
                with m.If(axi.bvalid):
                    m.d.sync += [
                        bchk_valid.eq(1),
                        bchk_bad.eq(axi.bresp != AxiResp.OKAY),
                        bchk_atomic.eq(step == _ATOMIC),
                        bchk_old.eq(axi.buser[:64]),
                        bchk_step.eq(step),
                        bchk_iter.eq(it),
                    ]
                    next_step()
            with m.State("R"):
                m.d.comb += axi.rready.eq(1)
                with m.If(axi.rvalid):
                    m.d.sync += [
                        beat.eq(beat + 1),
                        chk_valid.eq(1),
                        chk_data.eq(axi.rdata),
                        chk_expect.eq(_pattern_hw(e, tag, beat)),
                        chk_step.eq(step),
                        chk_beat.eq(beat),
                        chk_iter.eq(it),
                    ]
                    with m.If(axi.rresp != AxiResp.OKAY):
                        m.d.comb += error.eq(1)
                    with m.If(axi.rlast | (beat == beats)):
                        with m.If(~axi.rlast | (beat != beats)):
                            m.d.comb += error.eq(1)  # burst length wrong
                        next_step()
            with m.State("WAIT_ALL"):
                m.d.comb += self.finished.eq(1)
                if e == 0:
                    with m.If(self.final_go):
                        m.d.sync += step.eq(_FINAL)
                        m.next = "ISSUE"
                else:
                    m.next = "DONE"
            with m.State("DONE"):
                # Done once the last beat has been checked and its verdict counted.
                m.d.comb += [
                    self.finished.eq(1),
                    self.done.eq(~chk_valid & ~bchk_valid & ~verdict_valid),
                ]
        with m.If((watchdog == p.watchdog) & ~self.timeout):
            m.d.sync += self.timeout.eq(1)
            m.d.comb += error.eq(1)
        with m.If(self.timeout):
            m.d.comb += self.done.eq(1)
        return m


class LoopbackLink(wiring.Component):
    """Two link layers joined by a registered loopback channel, between fabric ports.

    ``near`` faces an agent (it receives the agent's flits and sends it the switch's), ``far``
    faces the switch. Each side's fabric port is adapted to the link layer's streams with the
    buffer depths and credits of the direct connection it replaces; ``registered_rx`` as
    the agents' (:class:`~unifab.hdl.lib.port.FabricToStreams`).

    Ports
    -----
    agent_in : In(FabricLink)      flits from the agent (``agent_depth`` credits)
    agent_out : Out(FabricLink)    flits to the agent (``agent_credits`` credits)
    switch_out : Out(FabricLink)   flits to the switch input (``switch_credits`` credits)
    switch_in : In(FabricLink)     flits from the switch output (``switch_depth`` credits)
    up : Out(1)                    both link layers are up
    crc_errors, replays : Out(32)  summed over both sides
    """

    def __init__(
        self,
        *,
        link: LinkParams,
        agent_depth: int,
        agent_credits: int,
        switch_depth: int,
        switch_credits: int,
        registered_rx: bool = False,
    ):
        self.link = link
        self.registered_rx = registered_rx
        self.depths = dict(
            agent_depth=agent_depth,
            agent_credits=agent_credits,
            switch_depth=switch_depth,
            switch_credits=switch_credits,
        )
        f = link.fabric
        super().__init__(
            {
                "agent_in": In(FabricLink(f)),
                "agent_out": Out(FabricLink(f)),
                "switch_out": Out(FabricLink(f)),
                "switch_in": In(FabricLink(f)),
                "up": Out(1),
                "crc_errors": Out(32),
                "replays": Out(32),
            }
        )

    def elaborate(self, platform):
        m = Module()
        f, d = self.link.fabric, self.depths
        m.submodules.link_near = near = LinkLayer(self.link)
        m.submodules.link_far = far = LinkLayer(self.link)
        reg = self.registered_rx
        m.submodules.from_agent = from_agent = FabricToStreams(
            f, depth=d["agent_depth"], registered=reg
        )
        m.submodules.to_agent = to_agent = StreamsToFabric(f, credits=d["agent_credits"])
        m.submodules.from_switch = from_switch = FabricToStreams(
            f, depth=d["switch_depth"], registered=reg
        )
        m.submodules.to_switch = to_switch = StreamsToFabric(f, credits=d["switch_credits"])
        wiring.connect(m, wiring.flipped(self.agent_in), from_agent.port)
        wiring.connect(m, to_agent.port, wiring.flipped(self.agent_out))
        wiring.connect(m, wiring.flipped(self.switch_in), from_switch.port)
        wiring.connect(m, to_switch.port, wiring.flipped(self.switch_out))
        for v in range(f.vcs):
            wiring.connect(m, from_agent.streams[v], near.tx[v])
            wiring.connect(m, near.rx[v], to_agent.streams[v])
            wiring.connect(m, from_switch.streams[v], far.tx[v])
            wiring.connect(m, far.rx[v], to_switch.streams[v])
        # The loopback channel: one register stage each way.
        m.d.sync += [
            far.phy_rx.valid.eq(near.phy_tx.valid),
            far.phy_rx.data.eq(near.phy_tx.data),
            near.phy_rx.valid.eq(far.phy_tx.valid),
            near.phy_rx.data.eq(far.phy_tx.data),
        ]
        m.d.comb += [
            self.up.eq(near.up & far.up),
            self.crc_errors.eq(near.crc_errors + far.crc_errors),
            self.replays.eq(near.replays + far.replays),
        ]
        return m


class SelfTestSystem(wiring.Component):
    """The coherent system of ``params.system`` with block-RAM memories and an optional link.

    Ports
    -----
    ep{i}_axi : In(Axi4Signature)
        Endpoint ``i``'s subordinate port.
    busy : Out(1)
        Some agent has a transaction outstanding.
    xbar_error : Out(1)
        The switch crossbar's one-hot check failed.
    link_up : Out(1)
        The link pair is up (1 without a link).
    crc_errors, replays : Out(32)
        The link pair's counters (0 without a link).
    """

    def __init__(self, params: SelfTestParams):
        if not isinstance(params, SelfTestParams):
            raise TypeError(f"params must be SelfTestParams, not {type(params).__name__}")
        self.params = params
        sp = params.system
        self.switch = Switch(sp.switch_params(), switch_config(sp))
        self.endpoints = [Endpoint(sp.endpoint_params(i)) for i in range(sp.endpoints)]
        self.homes = [HomeAgent(sp.home_params(j)) for j in range(sp.homes)]
        self.rams = [
            AxiRam(params=home.axi_params, size=min(params.ram_bytes, sp.size))
            for home in self.homes
        ]
        self.link = None
        if params.link is not None:
            self.link = LoopbackLink(
                link=params.link,
                agent_depth=sp.switch_buffer_depth,  # the endpoint's tx_credits
                agent_credits=sp.agent_rx_depth,  # the endpoint's rx_depth
                switch_depth=sp.agent_rx_depth,  # the switch's downstream_depth
                switch_credits=sp.switch_buffer_depth,  # the switch's input buffer
                registered_rx=sp.agent_registered_rx,
            )
        members: dict = {
            f"ep{i}_axi": ep.signature.members["axi"] for i, ep in enumerate(self.endpoints)
        }
        members |= {
            "busy": Out(1),
            "xbar_error": Out(1),
            "link_up": Out(1),
            "crc_errors": Out(32),
            "replays": Out(32),
        }
        super().__init__(members)

    @property
    def axi_params(self) -> AxiParams:
        return self.endpoints[0].axi_params

    def elaborate(self, platform):
        m = Module()
        sp = self.params.system
        m.submodules.switch = sw = self.switch
        busy = []
        linked = sp.endpoints - 1 if self.link is not None else None
        for i, ep in enumerate(self.endpoints):
            m.submodules[f"ep{i}"] = ep
            if i == linked:
                m.submodules.link = link = self.link
                wiring.connect(m, ep.fabric_out, link.agent_in)
                wiring.connect(m, link.agent_out, ep.fabric_in)
                wiring.connect(m, link.switch_out, sw.inputs[i])
                wiring.connect(m, sw.outputs[i], link.switch_in)
            else:
                wiring.connect(m, ep.fabric_out, sw.inputs[i])
                wiring.connect(m, sw.outputs[i], ep.fabric_in)
            wiring.connect(m, wiring.flipped(getattr(self, f"ep{i}_axi")), ep.axi)
            busy += [ep.mshr_busy.any(), ep.evict_busy.any()]
        for j, (home, ram) in enumerate(zip(self.homes, self.rams, strict=True)):
            port = sp.endpoints + j
            m.submodules[f"home{j}"] = home
            m.submodules[f"ram{j}"] = ram
            wiring.connect(m, home.fabric_out, sw.inputs[port])
            wiring.connect(m, sw.outputs[port], home.fabric_in)
            wiring.connect(m, home.mem, ram.axi)
            busy.append(home.busy)
        m.d.comb += [self.busy.eq(Cat(*busy).any()), self.xbar_error.eq(sw.xbar_error)]
        if self.link is not None:
            m.d.comb += [
                self.link_up.eq(self.link.up),
                self.crc_errors.eq(self.link.crc_errors),
                self.replays.eq(self.link.replays),
            ]
        else:
            m.d.comb += self.link_up.eq(1)
        return m


class SelfTestCore(wiring.Component):
    """The self-test without a platform: system, traffic engines and the checkers' summary.

    Ports
    -----
    done : Out(1)
        Every engine has finished (or the test stopped on a hang).
    passed : Out(1)
        ``done`` with no error anywhere (valid when ``done``).
    errors : Out(16)
        Errors summed over engines, plus one for a crossbar error (saturating).
    ops : Out(32)
        AXI transactions completed by all engines.
    cycles : Out(32)
        Cycles from reset to ``done``.
    timeout, xbar_error, link_up : Out(1)
        A watchdog expired; the switch's crossbar check failed (sticky); the link pair is up.
    crc_errors, replays : Out(32)
        The link pair's counters.
    first_engine, first_step, first_iter : Out(2), Out(3), Out(16)
        The first error seen (lowest-numbered engine with an error).
    """

    def __init__(self, params: SelfTestParams):
        if not isinstance(params, SelfTestParams):
            raise TypeError(f"params must be SelfTestParams, not {type(params).__name__}")
        self.params = params
        self.system = SelfTestSystem(params)
        self.engines = [
            TrafficEngine(engine=i, params=params, axi=self.system.axi_params)
            for i in range(params.system.endpoints)
        ]
        super().__init__(
            {
                "done": Out(1),
                "passed": Out(1),
                "errors": Out(16),
                "ops": Out(32),
                "cycles": Out(32),
                "timeout": Out(1),
                "xbar_error": Out(1),
                "link_up": Out(1),
                "crc_errors": Out(32),
                "replays": Out(32),
                "first_engine": Out(2),
                "first_step": Out(3),
                "first_iter": Out(16),
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.system = system = self.system
        engines = self.engines
        for i, eng in enumerate(engines):
            m.submodules[f"engine{i}"] = eng
            wiring.connect(m, eng.axi, getattr(system, f"ep{i}_axi"))
            m.d.comb += eng.final_go.eq(Cat(x.finished for x in engines).all())

        with m.If(system.xbar_error):
            m.d.sync += self.xbar_error.eq(1)
        total = Signal(20)
        m.d.comb += [
            total.eq(sum(eng.errors for eng in engines) + self.xbar_error),
            self.errors.eq(Mux(total > 0xFFFF, 0xFFFF, total)),
            self.ops.eq(sum(eng.ops for eng in engines)),
            self.timeout.eq(Cat(eng.timeout for eng in engines).any()),
            self.done.eq(Cat(eng.done for eng in engines).all()),
            self.passed.eq(self.done & (self.errors == 0) & ~self.timeout),
            self.link_up.eq(system.link_up),
            self.crc_errors.eq(system.crc_errors),
            self.replays.eq(system.replays),
        ]
        with m.If(~self.done):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        for i in reversed(range(len(engines))):
            with m.If(engines[i].errors != 0):
                m.d.comb += [
                    self.first_engine.eq(i),
                    self.first_step.eq(engines[i].first_step),
                    self.first_iter.eq(engines[i].first_iter),
                ]
        return m
