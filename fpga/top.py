"""Board tops: the self-test core behind a PLL, with LEDs and a UART report line.

The report line (115200 8N1, every ``report_ms`` milliseconds, and once when the test ends)::

    unifab ulx3s small PASS it=10000 ops=0009FFFA err=0000 cyc=01234567 crc=00000000 \
rpl=00000000 up=1 to=0 xb=0 first=0/0/0000

Fields (hexadecimal): status ``RUN``/``PASS``/``FAIL``; iterations per engine; AXI
transactions completed; errors; cycles to the end; link CRC errors and replays; link up;
watchdog timeout; crossbar error; the first error as engine/step/iteration (step numbers as in
:data:`fpga.selftest.STEPS`). docs/fpga.md lists the LEDs.
"""

from amaranth import *
from amaranth.build import Attrs, Pins, Resource
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer

from .boards import Board, EcpPll
from .selftest import SelfTestCore, SelfTestParams

__all__ = ["BoardTop", "ReportLine", "UartTx"]


class UartTx(Elaboratable):
    """8N1 transmitter: ``data`` is taken when ``valid & ready``; ``tx`` idles high."""

    def __init__(self, *, divisor: int):
        if not isinstance(divisor, int) or divisor < 2:
            raise ValueError(f"divisor must be an integer >= 2, not {divisor!r}")
        self.divisor = divisor
        self.valid = Signal()
        self.ready = Signal()
        self.data = Signal(8)
        self.tx = Signal(init=1)

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        shreg = Signal(10, init=0x3FF)
        left = Signal(range(11))
        m.d.comb += [self.ready.eq(left == 0), self.tx.eq(shreg[0])]
        with m.If(left != 0):
            with m.If(timer == 0):
                m.d.sync += [
                    shreg.eq(Cat(shreg[1:], C(1, 1))),
                    left.eq(left - 1),
                    timer.eq(self.divisor - 1),
                ]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        with m.Elif(self.valid):
            m.d.sync += [
                shreg.eq(Cat(C(0, 1), self.data, C(1, 1))),
                left.eq(10),
                timer.eq(self.divisor - 1),
            ]
        return m


def _hex(value: Value, digits: int) -> list:
    return [("hex", value, digits - 1 - k) for k in range(digits)]


def _text(s: str) -> list:
    return [("chr", ord(c)) for c in s]


class ReportLine(Elaboratable):
    """Sends the self-test's report line through a :class:`UartTx` when ``send`` pulses."""

    def __init__(self, *, core: SelfTestCore, board: str, preset: str, divisor: int):
        self.core, self.board, self.preset = core, board, preset
        self.uart = UartTx(divisor=divisor)
        self.send = Signal()
        self.busy = Signal()

    def items(self, snap: dict[str, Value], status: Value) -> list:
        it = self.core.params.iterations
        return [
            *_text(f"unifab {self.board} {self.preset} "),
            *[("status", k) for k in range(4)],
            *_text(f" it={it:X} ops="),
            *_hex(snap["ops"], 8),
            *_text(" err="),
            *_hex(snap["errors"], 4),
            *_text(" cyc="),
            *_hex(snap["cycles"], 8),
            *_text(" crc="),
            *_hex(snap["crc_errors"], 8),
            *_text(" rpl="),
            *_hex(snap["replays"], 8),
            *_text(" up="),
            *_hex(snap["link_up"], 1),
            *_text(" to="),
            *_hex(snap["timeout"], 1),
            *_text(" xb="),
            *_hex(snap["xbar_error"], 1),
            *_text(" first="),
            *_hex(snap["first_engine"], 1),
            *_text("/"),
            *_hex(snap["first_step"], 1),
            *_text("/"),
            *_hex(snap["first_iter"], 4),
            *_text("\r\n"),
        ]

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart = uart = self.uart
        core = self.core
        names = (
            "ops", "errors", "cycles", "crc_errors", "replays", "link_up", "timeout",
            "xbar_error", "first_engine", "first_step", "first_iter", "done", "passed",
        )  # fmt: skip
        snap = {n: Signal.like(getattr(core, n), name=f"snap_{n}") for n in names}
        status_words = [
            [ord(c) for c in w] for w in ("RUN ", "PASS", "FAIL")
        ]  # indexed by status code
        status = Signal(2)
        m.d.comb += status.eq(Mux(snap["done"], Mux(snap["passed"], 1, 2), 0))
        items = self.items(snap, status)
        index = Signal(range(len(items) + 1))
        char = Signal(8)
        with m.Switch(index):
            for k, item in enumerate(items):
                with m.Case(k):
                    if item[0] == "chr":
                        m.d.comb += char.eq(item[1])
                    elif item[0] == "status":
                        pos = item[1]
                        m.d.comb += char.eq(Array(C(w[pos], 8) for w in status_words)[status])
                    else:
                        _, value, nib = item
                        n = Signal(4, name=f"nib{k}")
                        m.d.comb += [
                            n.eq(value.as_unsigned()[4 * nib : 4 * nib + 4]),
                            char.eq(Mux(n < 10, ord("0") + n, ord("A") - 10 + n)),
                        ]
        m.d.comb += [
            uart.data.eq(char),
            uart.valid.eq(self.busy),
        ]
        with m.If(self.busy & uart.ready):
            m.d.sync += index.eq(index + 1)
            with m.If(index == len(items) - 1):
                m.d.sync += self.busy.eq(0)
        with m.Elif(~self.busy & self.send):
            m.d.sync += [self.busy.eq(1), index.eq(0)]
            m.d.sync += [snap[n].eq(getattr(core, n)) for n in names]
        return m


class BoardTop(Elaboratable):
    """A board's self-test: PLL, reset, :class:`SelfTestCore`, LEDs and the report line.

    ``report_ms`` is the report line's period. Without a platform (simulation) the top runs
    the core in the ``sync`` domain and drives ``leds`` and ``uart_tx`` signals only.
    """

    def __init__(self, *, board: Board, params: SelfTestParams, report_ms: int = 1000):
        if not isinstance(board, Board):
            raise TypeError(f"board must be a Board, not {type(board).__name__}")
        if not isinstance(params, SelfTestParams):
            raise TypeError(f"params must be SelfTestParams, not {type(params).__name__}")
        if not isinstance(report_ms, int) or not 1 <= report_ms <= 10_000:
            raise ValueError(f"report_ms must be 1..10000, not {report_ms!r}")
        self.board, self.params, self.report_ms = board, params, report_ms
        self.core = SelfTestCore(params)
        self.leds = Signal(8)  # see docs/fpga.md
        self.uart_tx = Signal(init=1)

    def elaborate(self, platform):
        m = Module()
        b = self.board
        if platform is not None:
            clk_io = platform.request(platform.default_clk, dir="-")
            m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
            m.submodules.pll = pll = EcpPll(clock_hz=b.clock_hz, target_hz=b.target_hz)
            m.domains.sync = ClockDomain("sync")
            m.d.comb += [pll.clk_in.eq(clk_buf.i), ClockSignal("sync").eq(pll.clk_out)]
            # nextpnr derives the PLL output's constraint (target_hz) from the board clock's.
            button = Signal()
            if b.button is not None:
                m.submodules.button_buf = btn = io.Buffer(
                    "i", platform.request(b.button, 0, dir="-")
                )
                m.submodules.button_sync = FFSynchronizer(btn.i, button, o_domain="sync")
            m.submodules.reset_sync = ResetSynchronizer(~pll.locked | button, domain="sync")
        m.submodules.core = core = self.core
        m.submodules.report = report = ReportLine(
            core=core,
            board=b.name,
            preset=b.preset,
            divisor=round(b.target_hz / 115200),
        )
        period = int(b.target_hz * self.report_ms / 1000)
        timer = Signal(range(period + 1))
        was_done = Signal()
        m.d.sync += [timer.eq(Mux(timer == 0, period, timer - 1)), was_done.eq(core.done)]
        pending = Signal()  # a line is due (kept while the previous one is being sent)
        with m.If((timer == 0) | (core.done & ~was_done)):
            m.d.sync += pending.eq(1)
        with m.Elif(~report.busy):
            m.d.sync += pending.eq(0)
        m.d.comb += [report.send.eq(pending), self.uart_tx.eq(report.uart.tx)]
        beat = Signal(range(int(b.target_hz) + 1))
        blink = Signal()
        with m.If(beat == 0):
            m.d.sync += [beat.eq(int(b.target_hz) // 3), blink.eq(~blink)]
        with m.Else():
            m.d.sync += beat.eq(beat - 1)
        fail = core.done & ~core.passed
        m.d.comb += self.leds.eq(
            Cat(
                blink,
                ~core.done,
                core.done,
                core.passed,
                fail,
                core.link_up,
                core.timeout,
                core.xbar_error,
            )
        )
        if platform is None:
            return m
        outputs: list[tuple[str, object, Value]] = []
        if b.leds == "rgb_led":
            rgb = platform.request("rgb_led", 0, dir="-")
            outputs += [
                ("led_r", rgb.r, fail),
                ("led_g", rgb.g, core.passed),
                ("led_b", rgb.b, ~core.done & blink),
            ]
        else:
            outputs += [
                (f"led{k}", platform.request(b.leds, k, dir="-"), self.leds[k]) for k in range(8)
            ]
        if b.uart is not None:
            outputs.append(("uart_tx", platform.request(b.uart, 0, dir="-").tx, self.uart_tx))
        else:
            conn, num, pin = b.uart_pin
            platform.add_resources(
                [
                    Resource(
                        "report_tx",
                        0,
                        Pins(pin, dir="o", conn=(conn, num)),
                        Attrs(IO_TYPE="LVCMOS33"),
                    )
                ]
            )
            outputs.append(("uart_tx", platform.request("report_tx", 0, dir="-"), self.uart_tx))
        # Registered in the I/O cells: otherwise a path from deep in the core (a checker's
        # flop through ``done`` and the report) runs combinationally to the pads, and the
        # timing report shows it next to the core's fmax. One cycle late on a LED is nothing.
        for name, port, value in outputs:
            m.submodules[f"{name}_buf"] = buf = io.FFBuffer("o", port)
            m.d.comb += buf.o.eq(value)
        return m
