"""cocotb bench of a whole super node (:class:`unifab.hdl.top.supernode.SuperNode`) running the
design brief's workloads (:mod:`unifab.workloads`) in memory or message semantics.

A cocotbext-axi ``AxiMaster`` drives each endpoint's AXI4 port and an ``AxiRam`` serves each
home's memory port (the coherence bench's :class:`~unifab.tb.coherence_bench.TB`, with its
line-state SWMR monitor and crossbar check running all along).

* ``memory`` mode: a get is an AXI read of the bytes at the endpoint, a put an AXI write; the
  pool is non-cacheable, so they become ``NC_READ``/``NC_WRITE`` at the homes.
* ``message`` mode: the RDMA-style engine of :mod:`unifab.message`. The same AXI accesses,
  split into MTU-sized packets, carry the payload through the RTL fabric to or from the pooled
  memory; doorbell, work-queue fetch, DMA copies across PCIe, NIC pipelines, header wire time,
  ACK and completion are waited out as the modelled cycles :class:`MessageCosts` gives them.

Every byte a get returns is compared with the bytes last put there (or preloaded); a mismatch,
an AXI error or a watchdog expiry is a violation. Per transfer the bench records its latency
(issue to completion, cycles) and how much of it was RTL.
"""

from __future__ import annotations

import random
import statistics
from typing import Any

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, with_timeout

from unifab.message import MessageCosts, completion_steps, read_steps, write_steps
from unifab.tb.coherence_bench import TB
from unifab.tb.common import CLOCK_PERIOD_NS, BenchSettings, ScoreboardError, log_seed
from unifab.workloads import LINE, Transfer, WorkloadSpec, plan_workload

MODES = ("memory", "message")
# Workloads whose memory-semantics run reads read-only data through the caches.
CACHED_WORKLOADS = ("embedding_gather", "remote_read_64")


class WorkloadTB:
    """One workload run on a super node: the data shadow, the engines and the figures."""

    def __init__(self, tb: TB, settings: BenchSettings, costs: MessageCosts) -> None:
        self.tb = tb
        self.mode = settings.get("mode", "memory")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        self.seed = settings.seed
        self.costs = costs
        self.watchdog = settings.get("watchdog", 200_000)
        self.shadow: dict[int, bytes] = {}  # line address -> bytes of the last completed put
        self.latencies: list[int] = []
        self.rtl_cycles: list[int] = []
        self.violations: list[str] = []

    # -- data --------------------------------------------------------------------------------

    def preload(self, lines: dict[int, bytes]) -> None:
        """Write ``lines`` straight into the homes' memories (before traffic starts)."""
        view = self.tb.params
        for addr, data in lines.items():
            j, offset = view.ram_address(addr)
            self.tb.rams[j].write(offset, data)
            self.shadow[addr] = data

    def expected(self, t: Transfer) -> bytes:
        zero = bytes(LINE)
        return b"".join(self.shadow.get(a, zero) for a in range(t.addr, t.addr + t.nbytes, LINE))

    def put_data(self, t: Transfer) -> bytes:
        return random.Random(f"{self.seed}:{t.ident}").randbytes(t.nbytes)

    def violation(self, text: str) -> None:
        self.violations.append(text)
        self.tb.dut._log.error("violation: %s", text)

    # -- one access through an endpoint's AXI port -----------------------------------------

    async def axi_get(self, node: int, addr: int, nbytes: int) -> bytes | None:
        resp = await self.tb.masters[node].read(addr, nbytes)
        if int(resp.resp) != 0:
            self.violation(f"endpoint {node}: read {addr:#x}+{nbytes} answered {resp.resp}")
            return None
        return bytes(resp.data)

    async def axi_put(self, node: int, addr: int, data: bytes) -> None:
        resp = await self.tb.masters[node].write(addr, data)
        if int(resp.resp) != 0:
            self.violation(f"endpoint {node}: write {addr:#x}+{len(data)} answered {resp.resp}")

    async def wait_until(self, cycle: int) -> None:
        if cycle > self.tb.cycle:
            await ClockCycles(self.tb.dut.clk, cycle - self.tb.cycle)

    # -- the two modes -----------------------------------------------------------------------

    async def memory(self, node: int, t: Transfer, data: bytes | None) -> tuple[bytes | None, int]:
        if t.kind == "get":
            return await self.axi_get(node, t.addr, t.nbytes), 0
        await self.axi_put(node, t.addr, data)
        return None, 0

    async def message(self, node: int, t: Transfer, data: bytes | None) -> tuple[bytes | None, int]:
        """An RDMA READ (get) or WRITE (put); returns the data read and the modelled cycles."""
        c, tb = self.costs, self.tb
        start = tb.cycle
        sizes = c.packets(t.nbytes)
        offsets = [sum(sizes[:k]) for k in range(len(sizes))]
        done: list[int] = [0] * len(sizes)
        parts: list[bytes | None] = [None] * len(sizes)
        if t.kind == "get":
            before, after = read_steps(c, t.nbytes)
            await self.wait_until(start + sum(s.cycles for s in before))
            rtl_start = tb.cycle

            async def packet(k: int) -> None:
                parts[k] = await self.axi_get(node, t.addr + offsets[k], sizes[k])
                done[k] = tb.cycle

            tasks = [cocotb.start_soon(packet(k)) for k in range(len(sizes))]
            for task in tasks:
                await task
            rtl = max(done) - rtl_start
            # Each packet is decapsulated and DMA-written into device memory as it arrives;
            # the PCIe writes are serial at pcie_gbytes_per_s.
            nic_rx, dma_write = after[0].cycles, after[1].cycles
            pcie = 0
            for k, n in enumerate(sizes):
                pcie = max(pcie, done[k] + nic_rx) + c.pcie_cycles(n)
            end = pcie + dma_write
            got = None if any(p is None for p in parts) else b"".join(parts)
        else:
            before, after = write_steps(c, t.nbytes)
            head = sum(s.cycles for s in before[:3])  # doorbell, WQE fetch, DMA read latency
            tail = sum(s.cycles for s in before[3:])  # tx, headers, target rx (per packet)
            rtl_busy: list[tuple[int, int]] = []

            async def packet(k: int, ready: int) -> None:
                await self.wait_until(ready)
                begin = tb.cycle
                await self.axi_put(
                    node, t.addr + offsets[k], data[offsets[k] : offsets[k] + sizes[k]]
                )
                done[k] = tb.cycle
                rtl_busy.append((begin, done[k]))

            copied = start + head
            tasks = []
            for k, n in enumerate(sizes):
                copied += c.pcie_cycles(n)  # packet k is out of device memory
                tasks.append(cocotb.start_soon(packet(k, copied + tail)))
            for task in tasks:
                await task
            rtl = _union_length(rtl_busy)
            end = max(done) + sum(s.cycles for s in after)
            got = None
        end += sum(s.cycles for s in completion_steps(c))
        await self.wait_until(end)
        return got, (tb.cycle - start) - rtl

    # -- running a plan ---------------------------------------------------------------------

    async def transfer(self, node: int, t: Transfer) -> None:
        start = self.tb.cycle
        want = self.expected(t) if t.kind == "get" else None
        data = self.put_data(t) if t.kind == "put" else None
        run = self.memory if self.mode == "memory" else self.message
        got, modelled = await with_timeout(
            run(node, t, data), self.watchdog * CLOCK_PERIOD_NS, "ns"
        )
        latency = self.tb.cycle - start
        self.latencies.append(latency)
        self.rtl_cycles.append(latency - modelled)
        if t.kind == "put":
            for k in range(0, t.nbytes, LINE):
                self.shadow[t.addr + k] = data[k : k + LINE]
        elif got is not None and got != want:
            bad = next(k for k in range(t.nbytes) if got[k] != want[k])
            self.violation(
                f"endpoint {node}: get {t.addr:#x}+{t.nbytes}: byte {bad} "
                f"(address {t.addr + bad:#x}) is {got[bad]:#04x}, expected {want[bad]:#04x}"
            )

    async def run_endpoint(self, node: int, phases: list[list[Transfer]], outstanding: int) -> None:
        for phase in phases:
            pending = list(phase)
            running: list = []
            while pending or running:
                while pending and len(running) < outstanding:
                    running.append(cocotb.start_soon(self.transfer(node, pending.pop(0))))
                await running.pop(0)


def _union_length(spans: list[tuple[int, int]]) -> int:
    """Cycles covered by at least one of the ``(begin, end)`` spans."""
    total, reach = 0, None
    for b, e in sorted(spans):
        if reach is None or b > reach:
            total += e - b
            reach = e
        elif e > reach:
            total += e - reach
            reach = e
    return total


def workload_spec(settings: BenchSettings) -> WorkloadSpec:
    spec = WorkloadSpec(name=settings.get("workload", "remote_read_64"), **settings.get("spec", {}))
    return spec.scaled(settings.get("scale", 1.0))


@cocotb.test()
async def workload_run(dut) -> None:
    """One workload in one mode on the whole super node, every byte checked."""
    settings = BenchSettings.from_env()
    log_seed(dut, settings)
    tb = TB(dut, settings)
    tb.set_pauses(settings.get("p_idle", 0.0), settings.get("p_stall", 0.0))
    costs = MessageCosts(**settings.get("costs", {}))
    w = WorkloadTB(tb, settings, costs)
    spec = workload_spec(settings)
    view = tb.params
    # Memory semantics reads shared tables with coherent loads (cacheable memory); everything
    # else, and every transfer of message semantics (DMA never caches), uses the
    # non-cacheable pool.
    cached = w.mode == "memory" and spec.name in CACHED_WORKLOADS
    pool = view.cached_pool if cached else view.pool
    plan = plan_workload(spec, endpoints=len(view.endpoints), pool=pool, seed=settings.seed)
    w.preload(plan.preload)
    if settings.get("fault", None) == "memory_byte":
        # Fault injection (shows the data check can fail): flip one byte of the first line
        # endpoint 0 gets, behind the shadow's back.
        first = next(t for phase in plan.phases[0] for t in phase if t.kind == "get")
        j, offset = view.ram_address(first.addr)
        tb.rams[j].write(offset, bytes([tb.rams[j].read(offset, 1)[0] ^ 0x5A]))
    elif settings.get("fault", None) is not None:
        raise ValueError(f"fault must be 'memory_byte', not {settings.get('fault', None)!r}")
    await tb.start()
    dut._log.info(
        "%s in %s mode: %d transfers, %d bytes, %d KiB of pool on %d endpoints",
        spec.name,
        w.mode,
        plan.transfers,
        plan.bytes,
        plan.pool_bytes_used // 1024,
        len(view.endpoints),
    )
    start = tb.cycle
    tasks = [
        cocotb.start_soon(w.run_endpoint(i, phases, spec.outstanding))
        for i, phases in enumerate(plan.phases)
    ]
    for task in tasks:
        await task
    cycles = tb.cycle - start
    await tb.wait_quiet()
    if len(w.latencies) != plan.transfers:
        raise ScoreboardError(f"{len(w.latencies)} of {plan.transfers} transfers completed")
    lat = w.latencies
    result: dict[str, Any] = {
        "workload": spec.name,
        "mode": w.mode,
        "ops": len(lat),
        "bytes": plan.bytes,
        "cycles": cycles,
        "latency_mean": statistics.fmean(lat),
        "latency_p50": float(np.percentile(lat, 50)),
        "latency_p99": float(np.percentile(lat, 99)),
        "bandwidth": plan.bytes / cycles,
        "violations": len(w.violations) + len(tb.checkers.violations),
        "violation_examples": w.violations[:5],
        "latencies": lat,
        "rtl_cycles_mean": statistics.fmean(w.rtl_cycles),
        "modelled_cycles_mean": statistics.fmean(lat) - statistics.fmean(w.rtl_cycles),
        "clock_ghz": costs.clock_ghz,
        "endpoints": len(view.endpoints),
        "pool_bytes_used": plan.pool_bytes_used,
        "cacheable": cached,
        "spec": {k: v for k, v in vars(spec).items() if k != "name"},
    }
    if w.mode == "message":
        sizes = sorted({t.nbytes for ph in plan.phases for p in ph for t in p})
        steps = read_steps if spec.name in ("remote_read_64", "embedding_gather") else write_steps
        before, after = steps(costs, sizes[0])
        result["message_steps"] = [
            {"name": s.name, "cycles": s.cycles}
            for s in [*before, *after, *completion_steps(costs)]
        ]
        result["message_steps_bytes"] = sizes[0]
        result["costs"] = costs.as_dict()
    settings.write_result(result)
    tb.checkers.finish([])
    if w.violations:
        raise ScoreboardError(f"{len(w.violations)} violations, first: {w.violations[0]}")
