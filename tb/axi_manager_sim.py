"""An AXI4 manager for Amaranth's simulator: queued read/write bursts, random gaps.

:class:`AxiManager` drives a DUT's subordinate port (an ``In(Axi4Signature)`` member) from a
background testbench process. Queue bursts with :meth:`AxiManager.write` /
:meth:`AxiManager.read`; each returns an :class:`AxiTxn` that completes when its B response
or last R beat arrives. ``valid_gap`` is the probability of holding a valid low in a cycle,
``ready_stall`` that of holding ``rready``/``bready`` low. Responses are matched in order per
channel (R to reads in AR order, B to writes in AW order), which is what an in-order
subordinate (or one ID) gives. Register with ``sim.add_testbench(mgr.run, background=True)``.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from unifab.hdl.lib.axi import AxiBurst

__all__ = ["AxiManager", "AxiTxn"]


@dataclass
class AxiTxn:
    """One burst and, once ``done``, its answer.

    Reads: ``data`` (one int per beat) and ``resps`` (``rresp`` per beat). Writes: ``resp``
    (``bresp``) and ``buser``.
    """

    write: bool
    addr: int
    length: int
    id: int = 0
    size: int = 4
    burst: int = AxiBurst.INCR
    user: int = 0
    wdata: list[int] = field(default_factory=list)
    wstrb: list[int] = field(default_factory=list)
    done: bool = False
    data: list[int] = field(default_factory=list)
    resps: list[int] = field(default_factory=list)
    resp: int | None = None
    buser: int | None = None
    rid: list[int] = field(default_factory=list)
    bid: int | None = None
    done_cycle: int | None = None


class AxiManager:
    """Drives AW/W/AR, takes R/B; see the module docstring."""

    def __init__(
        self,
        axi,
        *,
        data_width: int = 128,
        rng: random.Random | None = None,
        valid_gap: float = 0.0,
        ready_stall: float = 0.0,
    ) -> None:
        self.axi = axi
        self.data_width = data_width
        self.size_full = (data_width // 8).bit_length() - 1
        self.rng = rng or random.Random(0)
        self.valid_gap, self.ready_stall = valid_gap, ready_stall
        self._aw: deque[AxiTxn] = deque()
        self._w: deque[tuple[int, int, bool]] = deque()
        self._ar: deque[AxiTxn] = deque()
        self._reads: deque[AxiTxn] = deque()  # AR sent, awaiting R
        self._writes: deque[AxiTxn] = deque()  # AW sent, awaiting B
        self.cycle = 0
        self.completed: list[AxiTxn] = []

    # -- queueing -------------------------------------------------------------------------

    def write(
        self,
        addr: int,
        data: list[int],
        strb: list[int] | None = None,
        *,
        id: int = 0,
        user: int = 0,
        size: int | None = None,
        burst: int = AxiBurst.INCR,
    ) -> AxiTxn:
        """Queue a write burst of ``len(data)`` beats (``strb`` default: all bytes)."""
        full = (1 << (self.data_width // 8)) - 1
        strb = list(strb) if strb is not None else [full] * len(data)
        t = AxiTxn(
            write=True,
            addr=addr,
            length=len(data),
            id=id,
            size=self.size_full if size is None else size,
            burst=burst,
            user=user,
            wdata=list(data),
            wstrb=strb,
        )
        self._aw.append(t)
        for i, (d, s) in enumerate(zip(data, strb, strict=True)):
            self._w.append((d, s, i == len(data) - 1))
        return t

    def read(
        self,
        addr: int,
        length: int = 1,
        *,
        id: int = 0,
        size: int | None = None,
        burst: int = AxiBurst.INCR,
    ) -> AxiTxn:
        """Queue a read burst of ``length`` beats."""
        t = AxiTxn(
            write=False,
            addr=addr,
            length=length,
            id=id,
            size=self.size_full if size is None else size,
            burst=burst,
        )
        self._ar.append(t)
        return t

    @property
    def idle(self) -> bool:
        return not (self._aw or self._w or self._ar or self._reads or self._writes)

    async def wait(self, ctx, *txns: AxiTxn, timeout: int = 5000) -> None:
        """Tick until every ``txn`` is done (``AssertionError`` after ``timeout`` cycles)."""
        for _ in range(timeout):
            if all(t.done for t in txns):
                return
            await ctx.tick()
        raise AssertionError(f"AXI transactions not done after {timeout} cycles: {txns}")

    # -- the process ----------------------------------------------------------------------

    async def run(self, ctx) -> None:
        a = self.axi
        rng = self.rng
        aw_on = w_on = ar_on = False
        while True:
            # Keep a valid up once raised (AXI rule); raise new ones with random gaps.
            if not aw_on and self._aw and rng.random() >= self.valid_gap:
                t = self._aw[0]
                ctx.set(a.awvalid, 1)
                ctx.set(a.awid, t.id)
                ctx.set(a.awaddr, t.addr)
                ctx.set(a.awlen, t.length - 1)
                ctx.set(a.awsize, t.size)
                ctx.set(a.awburst, t.burst)
                ctx.set(a.awuser, t.user)
                aw_on = True
            if not w_on and self._w and rng.random() >= self.valid_gap:
                d, s, last = self._w[0]
                ctx.set(a.wvalid, 1)
                ctx.set(a.wdata, d)
                ctx.set(a.wstrb, s)
                ctx.set(a.wlast, last)
                w_on = True
            if not ar_on and self._ar and rng.random() >= self.valid_gap:
                t = self._ar[0]
                ctx.set(a.arvalid, 1)
                ctx.set(a.arid, t.id)
                ctx.set(a.araddr, t.addr)
                ctx.set(a.arlen, t.length - 1)
                ctx.set(a.arsize, t.size)
                ctx.set(a.arburst, t.burst)
                ar_on = True
            rready = rng.random() >= self.ready_stall
            bready = rng.random() >= self.ready_stall
            ctx.set(a.rready, rready)
            ctx.set(a.bready, bready)
            sampled = await ctx.tick().sample(
                a.awready,
                a.wready,
                a.arready,
                a.rvalid,
                a.rid,
                a.rdata,
                a.rresp,
                a.rlast,
                a.bvalid,
                a.bid,
                a.bresp,
                a.buser,
            )
            (awready, wready, arready, rvalid, rid, rdata, rresp, rlast) = sampled[2:10]
            bvalid, bid, bresp, buser = sampled[10:]
            self.cycle += 1
            if aw_on and awready:
                self._writes.append(self._aw.popleft())
                ctx.set(a.awvalid, 0)
                aw_on = False
            if w_on and wready:
                self._w.popleft()
                ctx.set(a.wvalid, 0)
                w_on = False
            if ar_on and arready:
                self._reads.append(self._ar.popleft())
                ctx.set(a.arvalid, 0)
                ar_on = False
            if rvalid and rready:
                if not self._reads:
                    raise AssertionError(f"R beat with no read outstanding (rid={rid})")
                t = self._reads[0]
                t.data.append(rdata)
                t.resps.append(rresp)
                t.rid.append(rid)
                if len(t.data) == t.length:
                    if not rlast:
                        raise AssertionError(f"rlast missing on the last beat of {t}")
                    self._finish(self._reads.popleft())
                elif rlast:
                    raise AssertionError(f"rlast early on beat {len(t.data)} of {t}")
            if bvalid and bready:
                if not self._writes:
                    raise AssertionError(f"B response with no write outstanding (bid={bid})")
                t = self._writes.popleft()
                t.resp, t.buser, t.bid = bresp, buser, bid
                self._finish(t)

    def _finish(self, t: AxiTxn) -> None:
        t.done = True
        t.done_cycle = self.cycle
        self.completed.append(t)
