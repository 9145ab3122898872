"""The supported boards: platform, device, clocks, the preset they run and the ECP5 PLL.

Boards come from ``amaranth-boards`` (pinned in requirements.lock). Each :class:`Board` says
which system preset the board's self-test runs by default and at what clock.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from amaranth import *
from amaranth.build import Platform

__all__ = ["BOARDS", "Board", "EcpPll", "board", "ecp5_pll_params"]


def _ulx3s() -> Platform:
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    return ULX3S_85F_Platform()


def _orangecrab() -> Platform:
    from amaranth_boards.orangecrab_r0_2 import OrangeCrabR0_2_25FPlatform

    return OrangeCrabR0_2_25FPlatform()


@dataclass(frozen=True, kw_only=True)
class Board:
    """One board: how to make its platform and what the self-test needs from it.

    ``clock_hz`` is the board oscillator, ``target_hz`` the system clock the PLL makes (the
    timing target); ``leds`` the LED resources in the order the top drives them (``"rgb_led"``
    for one RGB LED); ``uart`` the UART resource whose ``tx`` carries the report line, or
    ``None`` with ``uart_pin`` a connector pin (``("io", 0, "0")``) for a bare TX pin;
    ``button`` the resource that restarts the self-test; ``link`` whether the self-test puts
    the link-layer pair on the last endpoint's path.
    """

    name: str
    title: str
    platform: Callable[[], Platform]
    device: str
    package: str
    clock_hz: float
    target_hz: float
    preset: str = "small"
    leds: str = "led"
    uart: str | None = "uart"
    uart_pin: tuple[str, int, str] | None = None
    button: str | None = None
    link: bool = True
    iterations: int = 1 << 16
    nextpnr_opts: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"board name {self.name!r} is not an identifier")
        if not 1e6 <= self.clock_hz <= 500e6 or not 1e6 <= self.target_hz <= 500e6:
            raise ValueError("clock_hz and target_hz must be 1..500 MHz")
        if (self.uart is None) == (self.uart_pin is None):
            raise ValueError("give exactly one of uart and uart_pin")


#: Timing-driven placement weighted harder than nextpnr's default (weight 10, exponent 2): on
#: the same ULX3S netlist, 41.9 MHz against 38.3 MHz (docs/fpga.md). Not used on the
#: OrangeCrab, whose 25F is over 90 % full and meets its target anyway.
TIMING_PLACEMENT = ("--placer-heap-timingweight", "40", "--placer-heap-critexp", "4")

BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board(
            name="ulx3s",
            title="Radiona ULX3S (ECP5 LFE5U-85F-6BG381C)",
            platform=_ulx3s,
            device="LFE5U-85F",
            package="CABGA381",
            clock_hz=25e6,
            target_hz=100e6,
            button="button_fire",
            nextpnr_opts=("--router", "router2", *TIMING_PLACEMENT),
        ),
        Board(
            name="orangecrab",
            title="OrangeCrab r0.2 (ECP5 LFE5U-25F-8MG285C)",
            platform=_orangecrab,
            device="LFE5U-25F",
            package="CSFBGA285",
            clock_hz=48e6,
            target_hz=24e6,
            preset="tiny",
            link=False,
            leds="rgb_led",
            uart=None,
            uart_pin=("io", 0, "0"),
            button="button",
            nextpnr_opts=("--router", "router2"),
        ),
    )
}


def board(name: str) -> Board:
    """The board called ``name`` (a key of :data:`BOARDS`)."""
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; known: {', '.join(BOARDS)}") from None


def ecp5_pll_params(clock_hz: float, target_hz: float) -> dict[str, int]:
    """EHXPLLL dividers making ``target_hz`` from ``clock_hz`` exactly (CLKOP feedback).

    ``f_out = f_in * CLKFB_DIV / CLKI_DIV``, VCO ``f_out * CLKOP_DIV`` in 400..800 MHz, phase
    detector ``f_in / CLKI_DIV`` in 3.125..400 MHz (the ranges ``ecppll`` uses); the VCO
    nearest 600 MHz wins.
    """
    best = None
    for clki in range(1, 129):
        pfd = clock_hz / clki
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for clkfb in range(1, 81):
            out = pfd * clkfb
            err = abs(out - target_hz)
            if err > 1:
                continue
            for clkop in range(1, 129):
                vco = out * clkop
                if 400e6 <= vco <= 800e6:
                    cand = (err, abs(vco - 600e6), clki, clkfb, clkop)
                    if best is None or cand < best:
                        best = cand
    if best is None:
        raise ValueError(f"no EHXPLLL setting makes {target_hz / 1e6} MHz from {clock_hz / 1e6}")
    _, _, clki, clkfb, clkop = best
    return {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop}


class EcpPll(Elaboratable):
    """An ECP5 EHXPLLL: ``clk_out`` at ``target_hz`` from ``clk_in``; ``locked``."""

    def __init__(self, *, clock_hz: float, target_hz: float):
        self.clock_hz, self.target_hz = clock_hz, target_hz
        self.div = ecp5_pll_params(clock_hz, target_hz)
        self.clk_in = Signal()
        self.clk_out = Signal()
        self.locked = Signal()

    def elaborate(self, platform):
        m = Module()
        d = self.div
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=str(round(self.clock_hz / 1e6, 3)),
            a_FREQUENCY_PIN_CLKOP=str(round(self.target_hz / 1e6, 3)),
            a_ICP_CURRENT="12",
            a_LPF_RESISTOR="8",
            a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED",
            p_INTFB_WAKE="DISABLED",
            p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA",
            p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC",
            p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=d["CLKI_DIV"],
            p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_DIV=d["CLKOP_DIV"],
            p_CLKOP_CPHASE=(d["CLKOP_DIV"] - 1) // 2,
            p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=d["CLKFB_DIV"],
            i_RST=0,
            i_STDBY=0,
            i_CLKI=self.clk_in,
            o_CLKOP=self.clk_out,
            i_CLKFB=self.clk_out,
            i_PHASESEL0=0,
            i_PHASESEL1=0,
            i_PHASEDIR=1,
            i_PHASESTEP=1,
            i_PHASELOADREG=1,
            i_PLLWAKESYNC=0,
            i_ENCLKOP=0,
            o_LOCK=self.locked,
        )
        return m
