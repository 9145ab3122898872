"""The transmitter's replay buffer: sequenced flits kept until the peer acknowledges them.

Three sequence pointers (modulo ``2**seq_bits``) walk around a ring of ``depth`` entries:

* ``head`` — oldest unacknowledged flit (cumulative ACK ``a`` moves it to ``a + 1``);
* ``send`` — next flit to put on the wire (go-back-N moves it back to ``head``);
* ``tail`` — sequence number the next new flit gets.

``head <= send <= tail`` and ``tail - head <= depth`` always hold.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["ReplayBuffer"]


class ReplayBuffer(wiring.Component):
    """Go-back-N replay buffer.

    Ports
    -----
    restart : In(1)
        Link (re)start: empty the buffer, all pointers to 0.
    wr_valid : In(1)
        Append ``wr_data`` as sequence number ``tail``. Only while ``wr_ready``.
    wr_data : In(width)
        Entry contents.
    wr_ready : Out(1)
        The ring has room (fewer than ``depth`` unacknowledged entries). A flop: computed a
        cycle ahead from this cycle's write and ACK, so that the ACK arithmetic does not lie
        in front of the writer's decisions.
    tail : Out(seq_bits)
        Sequence number of the next appended entry.
    ack_valid, ack_seq : In(1), In(seq_bits)
        Cumulative ACK: every entry up to and including ``ack_seq`` arrived. Stale or
        out-of-window values are ignored.
    rewind : In(1)
        Go back: the next entry sent is the oldest unacknowledged one (after this cycle's ACK).
    rd_valid : Out(1)
        ``rd_data``/``rd_seq`` hold an entry waiting to be sent. A flop, like ``wr_ready``:
        it gates every field of the outgoing link flit.
    rd_data, rd_seq : Out(width), Out(seq_bits)
        The entry at ``send`` and its sequence number.
    rd_next : In(1)
        The entry at ``send`` was sent this cycle.
    unacked : Out(range(depth + 1))
        Entries sent or waiting and not yet acknowledged.
    acked : Out(1)
        This cycle's ACK freed at least one entry.
    """

    def __init__(self, *, depth: int, width: int, seq_bits: int):
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two >= 2, not {depth!r}")
        if depth > (1 << seq_bits) // 2:
            raise ValueError(f"depth {depth} must be at most 2**seq_bits / 2")
        self.depth, self.width, self.seq_bits = depth, width, seq_bits
        super().__init__(
            {
                "restart": In(1),
                "wr_valid": In(1),
                "wr_data": In(width),
                "wr_ready": Out(1, init=1),
                "tail": Out(seq_bits),
                "ack_valid": In(1),
                "ack_seq": In(seq_bits),
                "rewind": In(1),
                "rd_valid": Out(1, init=0),
                "rd_data": Out(width),
                "rd_seq": Out(seq_bits),
                "rd_next": In(1),
                "unacked": Out(range(depth + 1)),
                "acked": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        s = self.seq_bits
        abits = (self.depth - 1).bit_length()

        m.submodules.mem = mem = Memory(shape=self.width, depth=self.depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port(transparent_for=(wr,))

        head = Signal(s)
        send = Signal(s)
        tail = self.tail

        # ACK window check, in offsets from head (mod 2**s).
        fill = Signal(s + 1)
        ack_n = Signal(s)  # entries the ACK frees
        sent_off = Signal(s)
        m.d.comb += [
            fill.eq((tail - head)[:s]),
            ack_n.eq((self.ack_seq + 1 - head)[:s]),
            sent_off.eq((send - head)[:s]),
            self.unacked.eq(fill),
            self.rd_seq.eq(send),
            self.rd_data.eq(rd.data),
        ]
        ack_ok = Signal()
        m.d.comb += [
            ack_ok.eq(self.ack_valid & (ack_n != 0) & (ack_n <= fill)),
            self.acked.eq(ack_ok),
        ]
        write = Signal()
        m.d.comb += write.eq(self.wr_valid & self.wr_ready)
        head_next = Signal(s)
        m.d.comb += head_next.eq(Mux(ack_ok, (self.ack_seq + 1)[:s], head))

        send_next = Signal(s)
        with m.If(self.rewind):
            m.d.comb += send_next.eq(head_next)
        with m.Elif(ack_ok & (ack_n > sent_off + (self.rd_next & self.rd_valid))):
            # The peer acknowledged flits sent before an earlier rewind: skip past them.
            m.d.comb += send_next.eq(head_next)
        with m.Else():
            m.d.comb += send_next.eq(send + (self.rd_next & self.rd_valid))

        m.d.comb += [
            wr.addr.eq(tail[:abits]),
            wr.data.eq(self.wr_data),
            wr.en.eq(write),
            rd.addr.eq(send_next[:abits]),
            rd.en.eq(1),
        ]

        # `wr_ready` is `fill < depth` one cycle ahead. `fill <= depth` always, so the ring is
        # full exactly when `wr_ready` is low; it is full next cycle when this cycle's ACK frees
        # nothing (an ACK that frees entries leaves at most `depth - 1`, a write included) and
        # it is full now or its last free entry is written now.
        full_next = Signal()
        m.d.comb += [
            full_next.eq(~ack_ok & (~self.wr_ready | (write & (fill == self.depth - 1)))),
        ]
        # `rd_valid` is `send != tail` one cycle ahead. A write makes it true (the new tail is
        # one past the window [head, tail] that holds the next send pointer).
        with m.If(self.restart):
            m.d.sync += [head.eq(0), send.eq(0), tail.eq(0), self.wr_ready.eq(1)]
            m.d.sync += self.rd_valid.eq(0)
        with m.Else():
            m.d.sync += [head.eq(head_next), send.eq(send_next), self.wr_ready.eq(~full_next)]
            m.d.sync += self.rd_valid.eq(write | (send_next != tail))
            with m.If(write):
                m.d.sync += tail.eq(tail + 1)
        return m
