"""A synchronous FIFO whose head entry comes from flops (the endpoint's answer queue).

:class:`HeadRegFIFO` behaves cycle for cycle like Amaranth's ``SyncFIFO`` (first-word
fall-through, an entry readable the cycle after its write, ``w_rdy``/``r_rdy`` from the
level), but ``r_data`` is a register holding the entry at the read pointer instead of an
asynchronous RAM read: whatever the reader decides from the head (the endpoint: which MSHR the
answer waits for, whether it is done, the AXI handshake and the pop) starts at flops, not at a
distributed RAM's read multiplexer. The register is loaded on a pop from a second read of the
RAM at the entry behind the head (its address is a flop's increment, independent of the pop),
or from ``w_data`` when the entry written becomes the head.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["HeadRegFIFO"]


class HeadRegFIFO(wiring.Component):
    """A ``SyncFIFO`` of ``depth`` entries of ``width`` bits with a registered head.

    Every entry is written into the RAM as in ``SyncFIFO`` (``storage``, pointers ``produce``
    and ``consume``, ``level``); ``head`` holds a copy of the RAM's entry at ``consume`` while
    the FIFO is not empty (the formal harness asserts this).

    Ports
    -----
    w_data : In(width)
    w_en : In(1)
    w_rdy : Out(1)
        Room for an entry (``level != depth``; a write while full is ignored).
    r_data : Out(width)
        The head entry (valid while ``r_rdy``), from a register.
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

        storage = m.submodules.storage = Memory(shape=self.width, depth=d, init=[])
        w_port = storage.write_port()
        # The entry behind the head: the head's next value on a pop (while level >= 2).
        behind = storage.read_port(domain="comb")
        produce = Signal(range(d))
        consume = Signal(range(d))
        # consume + 1 (mod depth) in a flop of its own: the second read's address.
        consume_next = Signal(range(d), init=1)
        m.d.comb += [
            w_port.addr.eq(produce),
            w_port.data.eq(self.w_data),
            w_port.en.eq(do_write),
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

        # The head: on a pop, the entry behind it if there is one, else the entry written in
        # the same cycle (if any); into an empty FIFO, the entry written. Both choices depend
        # on the level (a flop) only; the pop and the write only enable the load.
        head = Signal(self.width)
        more = Signal()  # level >= 2
        empty = Signal()  # level == 0
        m.d.comb += [
            more.eq(self.level >= 2),
            empty.eq(self.level == 0),
            self.r_data.eq(head),
        ]
        with m.If(do_read | (empty & self.w_en)):
            m.d.sync += head.eq(Mux(more, behind.data, self.w_data))
        return m
