"""A synchronous FIFO whose head entry comes from flops (the endpoint's answer queue uses it).

:class:`HeadRegFIFO` behaves cycle for cycle like Amaranth's ``SyncFIFO`` (first-word
fall-through, an entry readable the cycle after its write, ``w_rdy``/``r_rdy`` from the
level), but ``r_data`` comes from registers instead of an asynchronous RAM read, and the RAM
write is registered:

* an entry written goes into a stage register and into the RAM a cycle later, so the write
  enable (the endpoint's controller decision) drives a few flops, not every RAM cell;
* the head is in the stage the cycle after it was written (into an empty queue), else in a
  head register, loaded on a pop from the stage or from a second read of the RAM at the entry
  behind the head (its address is a flop), so what the reader decides from the head (the
  endpoint: which MSHR the answer waits for, whether it is done, the AXI handshake and the
  pop) starts at flops, not at a distributed RAM's read multiplexer.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["HeadRegFIFO"]


class HeadRegFIFO(wiring.Component):
    """A ``SyncFIFO`` of ``depth`` entries of ``width`` bits with a registered head.

    Every entry is written into the RAM as in ``SyncFIFO`` (``storage``, pointers ``produce``
    and ``consume``, ``level``), a cycle late: while ``stage_en``, the newest entry is in
    ``stage`` for the RAM's word ``stage_addr``. ``r_data`` (``stage`` while ``head_stage``,
    else ``head``) is the entry at ``consume`` while the FIFO is not empty (the formal
    harness asserts this).

    Ports
    -----
    w_data : In(width)
    w_en : In(1)
    w_rdy : Out(1)
        Room for an entry (``level != depth``; a write while full is ignored).
    r_data : Out(width)
        The head entry (valid while ``r_rdy``), from registers.
    r_en : In(1)
    r_rdy : Out(1)
        Not empty.
    level : Out(range(depth + 1))
    """

    def __init__(self, *, width: int, depth: int):
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"depth must be an integer >= 2, not {depth!r}")
        self.width, self.depth = width, depth
        super().__init__(
            {
                "w_data": In(width),
                "w_en": In(1),
                "w_rdy": Out(1),
                "r_data": Out(width),
                "r_en": In(1),
                "r_rdy": Out(1),
                "level": Out(range(depth + 1)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        d = self.depth

        def incr(value: Value) -> Value:
            return Mux(value == d - 1, 0, value + 1)

        m.d.comb += [self.w_rdy.eq(self.level != d), self.r_rdy.eq(self.level != 0)]
        do_read = self.r_rdy & self.r_en
        do_write = self.w_rdy & self.w_en

        # The RAM write is registered: an entry goes into the stage register (loaded every
        # cycle, no enable) and into the RAM at stage_addr the next cycle. The writer's
        # decision (the endpoint's longest path) then drives a few flops' enables, not the
        # write enable of every RAM cell of the 200-bit entry.
        storage = m.submodules.storage = Memory(shape=self.width, depth=d, init=[])
        w_port = storage.write_port()
        # The entry behind the head: the head's next value on a pop (while level >= 2).
        behind = storage.read_port(domain="comb")
        produce = Signal(range(d))
        consume = Signal(range(d))
        # consume + 1 (mod depth) in a flop of its own: the second read's address.
        consume_next = Signal(range(d), init=1)
        stage = Signal(self.width)
        stage_en = Signal()  # the stage holds the newest entry, for the RAM at stage_addr
        stage_addr = Signal(range(d))
        m.d.sync += [stage.eq(self.w_data), stage_en.eq(do_write), stage_addr.eq(produce)]
        m.d.comb += [
            w_port.addr.eq(stage_addr),
            w_port.data.eq(stage),
            w_port.en.eq(stage_en),
            behind.addr.eq(consume_next),
        ]
        with m.If(do_write):
            m.d.sync += produce.eq(incr(produce))
        with m.If(do_read):
            m.d.sync += [consume.eq(consume_next), consume_next.eq(incr(consume_next))]
        with m.If(do_write & ~do_read):
            m.d.sync += self.level.eq(self.level + 1)
        with m.If(do_read & ~do_write):
            m.d.sync += self.level.eq(self.level - 1)

        # The head: in the stage (head_stage) the cycle after it was written as the head (into
        # an empty queue, or as a pop emptied it), else in the head register. The register is
        # loaded from the stage when the head leaves it without a pop, and on a pop from the
        # entry behind the head: the stage's when that is the newest entry and still in the
        # stage (level 2), else the RAM's. Only flops choose the data; the pop enables the
        # load, and the write reaches only head_stage.
        head = Signal(self.width)
        head_stage = Signal()
        from_stage = Signal()
        m.d.comb += [
            from_stage.eq(head_stage | (stage_en & (self.level == 2))),
            self.r_data.eq(Mux(head_stage, stage, head)),
        ]
        m.d.sync += head_stage.eq(do_write & ((self.level == 0) | ((self.level == 1) & self.r_en)))
        with m.If((head_stage & ~self.r_en) | (do_read & (self.level >= 2))):
            m.d.sync += head.eq(Mux(from_stage, stage, behind.data))
        return m
