"""Virtual output queues for one VC of an input port, in one shared buffer.

``depth`` flit slots (the credits the upstream sender holds for this VC) are shared by
``outputs`` queues kept as linked lists: a slot is taken from a free bitmap on arrival and
linked behind its queue's tail; a departure unlinks the queue's head and frees its slot. Any
mix of destinations fits, so the buffer never refuses a credited flit, and no queue needs to be
``depth`` deep on its own.

:class:`VoqLinks` keeps the queues (slots, links, framing bits) and leaves the flits to the
caller's memory at the slots it names, so that an input unit holds every VC's flits in one
RAM.
"""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from unifab.hdl.lib.arbiter import onehot_mux

__all__ = ["VoqLinks"]


class VoqLinks(wiring.Component):
    """The bookkeeping of ``outputs`` FIFO queues sharing ``depth`` slots; the flits live in
    the caller's memory, at the slots this component names.

    Ports
    -----
    w_en, w_queue, w_head, w_tail : In(1), In(range(outputs)), In(1), In(1)
        Append a flit (a message's head flit when ``w_head``, its last when ``w_tail``) to
        queue ``w_queue``.
    w_store, w_slot : Out(1), Out(range(depth))
        Write the arriving flit to slot ``w_slot`` this cycle (``w_en`` with a slot free).
    nonempty : Out(outputs)
        Queue ``o`` holds a flit.
    head_is_head, head_is_tail : Out(outputs), Out(outputs)
        The flit at the front of queue ``o`` starts / ends a message.
    r_queue : In(outputs)
        One-hot: remove the front flit of this queue (which must be non-empty); zero: none.
        One-hot because it comes from the switch allocator's grant, late in the cycle: each
        queue's dequeue is then one bit, and the front slot an AND-OR of the head registers.
    r_slot : Out(range(depth))
        The slot of queue ``r_queue``'s front flit (combinational; zero with no ``r_queue``).
        A freed slot is written again at the earliest at the end of the next cycle, so a read
        of it in that next cycle still sees the departed flit.
    overflow : Out(1)
        Sticky: a flit arrived with every slot taken (the sender broke the credit rule).
    """

    def __init__(self, *, outputs: int, depth: int):
        if outputs < 1 or depth < 1:
            raise ValueError(f"outputs and depth must be positive, not {outputs}, {depth}")
        self.outputs, self.depth = outputs, depth
        super().__init__(
            {
                "w_en": In(1),
                "w_queue": In(range(outputs)),
                "w_head": In(1),
                "w_tail": In(1),
                "w_store": Out(1),
                "w_slot": Out(range(depth)),
                "nonempty": Out(outputs),
                "head_is_head": Out(outputs),
                "head_is_tail": Out(outputs),
                "r_queue": In(outputs),
                "r_slot": Out(range(depth)),
                "overflow": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        n, d = self.outputs, self.depth
        slot = range(d)

        # A link names the slot behind another in its queue and carries that slot's framing
        # bits, so a departure learns the new front's framing from the same read.
        link = data.StructLayout({"slot": slot, "head": 1, "tail": 1})
        m.submodules.links = links = Memory(shape=link, depth=d, init=[])
        link_w = links.write_port()
        link_r = links.read_port(domain="comb")

        free = Signal(d, init=(1 << d) - 1)
        head = [Signal(slot, name=f"head{o}") for o in range(n)]
        tail = [Signal(slot, name=f"tail{o}") for o in range(n)]
        # A queue holds a flit, else its head and tail are stale; a queue of one flit has
        # head == tail (the slots of a longer one differ), so no count is needed.
        has = [Signal(name=f"has{o}") for o in range(n)]

        # Lowest free slot.
        new = Signal(slot)
        for s in reversed(range(d)):
            with m.If(free[s]):
                m.d.comb += new.eq(s)
        has_free = free.any()

        front = Signal(slot)
        m.d.comb += [
            front.eq(onehot_mux(self.r_queue, head)),
            self.r_slot.eq(front),
            link_r.addr.eq(front),
        ]
        # Each queue's front framing bits are kept in registers: a departure loads those of
        # the slot behind the front (from the link it follows), an arrival into an emptied
        # queue its own.
        front_head = [Signal(name=f"front_head{o}") for o in range(n)]
        front_tail = [Signal(name=f"front_tail{o}") for o in range(n)]
        for o in range(n):
            m.d.comb += [
                self.nonempty[o].eq(has[o]),
                self.head_is_head[o].eq(front_head[o]),
                self.head_is_tail[o].eq(front_tail[o]),
            ]

        enq = Signal()
        m.d.comb += [enq.eq(self.w_en & has_free), self.w_store.eq(enq), self.w_slot.eq(new)]
        with m.If(self.w_en & ~has_free):
            m.d.sync += self.overflow.eq(1)

        # Slot bookkeeping: take one on arrival, give one back on departure.
        take = Mux(enq, 1 << new, 0)
        # The departing queue's head slot, one-hot (each queue's head compared from its flop).
        give = Cat(Cat(self.r_queue[o] & (head[o] == s) for o in range(n)).any() for s in range(d))
        m.d.sync += free.eq((free & ~take) | give)

        for o in range(n):
            deq = Signal(name=f"deq{o}")
            arr = Signal(name=f"arr{o}")
            m.d.comb += [deq.eq(self.r_queue[o]), arr.eq(enq & (self.w_queue == o))]
            emptied = Signal(name=f"emptied{o}")  # empty after this cycle's departure
            m.d.comb += emptied.eq(~has[o] | (deq & (head[o] == tail[o])))
            m.d.sync += has[o].eq(~emptied | arr)
            with m.If(deq):
                m.d.sync += [
                    head[o].eq(link_r.data.slot),
                    front_head[o].eq(link_r.data.head),
                    front_tail[o].eq(link_r.data.tail),
                ]
            with m.If(arr):
                m.d.sync += tail[o].eq(new)
                with m.If(emptied):
                    m.d.sync += [
                        head[o].eq(new),
                        front_head[o].eq(self.w_head),
                        front_tail[o].eq(self.w_tail),
                    ]
                with m.Else():
                    # Link the new slot behind the current tail.
                    m.d.comb += [
                        link_w.addr.eq(tail[o]),
                        link_w.data.eq(Cat(new, self.w_head, self.w_tail)),
                        link_w.en.eq(1),
                    ]
        return m
