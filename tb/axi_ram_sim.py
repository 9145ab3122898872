"""An AXI4 RAM for Amaranth's simulator: serves a manager port from a bytearray.

:class:`AxiRamSim` is a background testbench on a DUT's ``Out(Axi4Signature)`` port. It takes
INCR bursts of full-width beats, one read and one write burst at a time each, with random
``ready``/``valid`` stalls (``stall`` = probability of not handshaking in a cycle). Reads of
lines in ``poison_read`` answer SLVERR (data zero); writes to lines in ``poison_write`` answer
SLVERR and change nothing. Register it with ``sim.add_testbench(ram.run, background=True)``.
"""

from __future__ import annotations

import random
from collections import deque

from unifab.hdl.lib.axi import AxiBurst, AxiResp

__all__ = ["AxiRamSim"]

LINE = 64


class AxiRamSim:
    """A RAM of ``size`` bytes behind an AXI4 subordinate port (``bus`` is the manager's port).

    ``reads`` and ``writes`` list the bursts served as ``(addr, beats)``; ``write_log`` the
    bytes written as ``(addr, data, strobes)`` per burst.
    """

    def __init__(
        self,
        bus,
        *,
        size: int,
        data_width: int,
        rng: random.Random | None = None,
        stall: float = 0.0,
        poison_read: set[int] | None = None,
        poison_write: set[int] | None = None,
    ) -> None:
        self.bus = bus
        self.mem = bytearray(size)
        self.beat_bytes = data_width // 8
        self.rng = rng or random.Random(0)
        self.stall = stall
        self.poison_read = set(poison_read or ())
        self.poison_write = set(poison_write or ())
        self.reads: list[tuple[int, int]] = []
        self.writes: list[tuple[int, int]] = []
        self.write_log: list[tuple[int, bytes, int]] = []

    def _go(self) -> bool:
        return self.rng.random() >= self.stall

    def _poisoned(self, poison: set[int], addr: int, beats: int) -> bool:
        first = addr - addr % LINE
        return any(a in poison for a in range(first, addr + beats * self.beat_bytes, LINE))

    async def run(self, ctx) -> None:
        bus, bb = self.bus, self.beat_bytes
        read: deque[tuple[int, int, int]] = deque()  # (addr, beats left, resp) of the burst
        write: tuple[int, int, int, bytearray, int] | None = None  # addr, beats, done, data, strb
        bresp: deque[int] = deque()
        r_beat: tuple[bytes, int, bool] | None = None
        while True:
            ar_ready = not read and self._go()
            aw_ready = write is None and not bresp and self._go()
            w_ready = write is not None and self._go()
            ctx.set(bus.arready, ar_ready)
            ctx.set(bus.awready, aw_ready)
            ctx.set(bus.wready, w_ready)
            if r_beat is None and read and self._go():
                addr, left, resp = read[0]
                data = bytes(bb) if resp else bytes(self.mem[addr : addr + bb])
                r_beat = (data, resp, left == 1)
            if r_beat is not None:
                ctx.set(bus.rvalid, 1)
                ctx.set(bus.rdata, int.from_bytes(r_beat[0], "little"))
                ctx.set(bus.rresp, r_beat[1])
                ctx.set(bus.rlast, r_beat[2])
            else:
                ctx.set(bus.rvalid, 0)
            b_valid = bool(bresp) and self._go()
            ctx.set(bus.bvalid, b_valid)
            ctx.set(bus.bresp, bresp[0] if bresp else 0)
            sampled = await ctx.tick().sample(
                bus.arvalid,
                bus.araddr,
                bus.arlen,
                bus.arsize,
                bus.arburst,
                bus.rready,
                bus.awvalid,
                bus.awaddr,
                bus.awlen,
                bus.awsize,
                bus.awburst,
                bus.wvalid,
                bus.wdata,
                bus.wstrb,
                bus.wlast,
                bus.bready,
            )
            (
                ar_valid,
                ar_addr,
                ar_len,
                ar_size,
                ar_burst,
                r_ready,
                aw_valid,
                aw_addr,
                aw_len,
                aw_size,
                aw_burst,
                w_valid,
                w_data,
                w_strb,
                w_last,
                b_ready,
            ) = sampled[2:]
            if r_beat is not None and r_ready:
                addr, left, resp = read.popleft()
                if left > 1:
                    read.appendleft((addr + bb, left - 1, resp))
                r_beat = None
            if ar_ready and ar_valid:
                assert ar_burst == AxiBurst.INCR and 1 << ar_size == bb, "not a full INCR burst"
                assert ar_addr % bb == 0 and ar_addr + (ar_len + 1) * bb <= len(self.mem)
                self.reads.append((ar_addr, ar_len + 1))
                poisoned = self._poisoned(self.poison_read, ar_addr, ar_len + 1)
                read.append((ar_addr, ar_len + 1, AxiResp.SLVERR if poisoned else AxiResp.OKAY))
            if b_valid and b_ready:
                bresp.popleft()
            if w_ready and w_valid:
                assert write is not None
                addr, beats, done, data, strb = write
                data[done * bb : (done + 1) * bb] = w_data.to_bytes(bb, "little")
                strb |= w_strb << (done * bb)
                done += 1
                assert bool(w_last) == (done == beats), "wlast on the wrong beat"
                write = (addr, beats, done, data, strb)
                if done == beats:
                    poisoned = self._poisoned(self.poison_write, addr, beats)
                    if not poisoned:
                        for i in range(beats * bb):
                            if strb >> i & 1:
                                self.mem[addr + i] = data[i]
                    self.write_log.append((addr, bytes(data), strb))
                    bresp.append(AxiResp.SLVERR if poisoned else AxiResp.OKAY)
                    write = None
            if aw_ready and aw_valid:
                assert aw_burst == AxiBurst.INCR and 1 << aw_size == bb, "not a full INCR burst"
                assert aw_addr % bb == 0 and aw_addr + (aw_len + 1) * bb <= len(self.mem)
                self.writes.append((aw_addr, aw_len + 1))
                write = (aw_addr, aw_len + 1, 0, bytearray((aw_len + 1) * bb), 0)
