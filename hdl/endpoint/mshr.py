"""Miss status holding registers, eviction buffer slots, and the request sender.

An MSHR holds one outstanding request of the endpoint (a coherent miss or upgrade, a
non-coherent access or an atomic) together with the AXI operation waiting for it; its index
is the request's fabric ``tag``. An eviction slot holds a line leaving the cache (address,
dirtiness and, in a separate ``Memory``, its data) until the home's ``COMP``; its
``WRITE_BACK``/``CLEAN_EVICT`` carries tag ``0x80 | slot``. :class:`RequestSender` turns MSHRs
and eviction slots that still have to send their request into REQ messages, one at a time, so
the endpoint's controller never waits for request credits (snoops are always answered).
"""

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from unifab.flit import (
    ADDR_BITS,
    ATOMIC_OPCODES,
    LINE_BYTES,
    FabricParams,
    Header,
    MsgClass,
    Opcode,
    beat_layout,
    flit_layout,
)

__all__ = ["EVICT_TAG", "RequestSender", "evict_layout", "mshr_layout", "pick"]

EVICT_TAG = 0x80  # tag bit 7 set: an eviction slot's request


def pick(m: Module, array: Value, idx: Value, count: int, name: str) -> Value:
    """``array[idx]`` of an ``ArrayLayout`` view as a per-element mux (cheaper to elaborate
    and to check than a variable-offset part select of the whole array)."""
    elem = data.Layout.cast(array.shape()).elem_shape
    out = Signal(elem, name=name)
    with m.Switch(idx):
        for i in range(count):
            with m.Case(i):
                m.d.comb += out.eq(array[i])
    return out


def mshr_layout(fabric: FabricParams, *, way_bits: int) -> data.StructLayout:
    """One MSHR.

    ``busy`` from allocation until the AXI answer has left; ``active`` while the request is
    outstanding (the line is locked: later operations on it wait, its way is reserved);
    ``pending`` until the request has been sent; ``done`` once ``resp``/``rdata``/``buser``
    hold the answer.
    """
    w = fabric.data_width
    return data.StructLayout(
        {
            "busy": 1,
            "active": 1,
            "pending": 1,
            "done": 1,
            "opcode": Opcode,
            "cached": 1,  # READ_SHARED / READ_UNIQUE / UPGRADE: fills way `way`
            "store": 1,  # merge data/strb into the line when it arrives
            "addr": ADDR_BITS,  # the operation's address
            "way": way_bits,
            "size": 2,  # atomics: log2 bytes
            "data": w,  # AXI write data (store, NC write, atomic operand lanes)
            "strb": w // 8,
            "resp": 2,
            "rdata": w,
            "buser": 64,
        }
    )


def evict_layout() -> data.StructLayout:
    """One eviction buffer slot: ``busy`` until COMP; ``pending`` until the request is sent;
    ``snoop`` while the slot still holds the line for snoops."""
    return data.StructLayout({"busy": 1, "pending": 1, "snoop": 1, "dirty": 1, "addr": ADDR_BITS})


class RequestSender(wiring.Component):
    """Sends the REQ message of each MSHR / eviction slot whose request is pending.

    Ports
    -----
    mshrs : In(ArrayLayout(mshr_layout, n))
        The MSHR file (read only).
    evicts : In(ArrayLayout(evict_layout, n))
        The eviction slots (read only).
    edata_addr, edata : Out(range(n * beats)), In(data_width)
        Read port into the eviction data (word ``slot * beats + beat``), combinational.
    sent_mshrs, sent_evicts : Out(n), Out(n)
        Registered: bit ``i`` is set for one cycle, the cycle after the last flit of MSHR /
        eviction slot ``i``'s request was taken; its owner clears its ``pending`` then. The
        sender does not pick it in that cycle (its ``pending`` is still set), so it picks as
        if ``pending`` had been cleared with the last flit: the request sender's loop
        (its valid → the transmit arbiter → ``ready`` → ``pending``) ends at these flops
        instead of at the MSHR file.
    out : Out(stream(flit_layout))
        The REQ virtual channel.
    """

    def __init__(self, fabric: FabricParams, *, node_id: int, n: int, way_bits: int):
        self.fabric, self.node_id, self.n = fabric, node_id, n
        self._mshr = mshr_layout(fabric, way_bits=way_bits)
        super().__init__(
            {
                "mshrs": In(data.ArrayLayout(self._mshr, n)),
                "evicts": In(data.ArrayLayout(evict_layout(), n)),
                "edata_addr": Out(range(n * fabric.line_beats)),
                "edata": In(fabric.data_width),
                "sent_mshrs": Out(n),
                "sent_evicts": Out(n),
                "out": Out(stream.Signature(flit_layout(fabric))),
            }
        )

    def elaborate(self, platform):
        m = Module()
        f = self.fabric
        n = self.n
        w = f.data_width
        bb = w // 8
        beats = f.line_beats
        beat_shift = (bb - 1).bit_length()

        idx = Signal(range(n))
        hdr = Signal(Header)
        nbeats = Signal(range(beats + 1))
        kind = Signal(2)  # beats: 1 WRITE_BACK, 2 NC_WRITE line, 3 atomic
        op_data = Signal(w)
        op_strb = Signal(bb)
        op_beat = Signal(range(max(2, beats)))
        op_size = Signal(2)
        op_lane = Signal(range(bb))
        is_cas = Signal()
        b = Signal(range(beats + 1))
        # The flit on `out` is the request's last (HEAD: nbeats == 0; BEATS: b == nbeats - 1),
        # loaded a flit ahead: the last flit's handshake is `ready` and one flop, not compares.
        last = Signal()
        # One-hot of the MSHR (mine_m) or eviction slot (mine_e) being sent, zero for the
        # other kind: what sent_mshrs / sent_evicts load when the last flit is taken.
        mine_m = Signal(n)
        mine_e = Signal(n)
        sent = Signal()  # the request's last flit is taken this cycle
        m.d.comb += sent.eq(self.out.valid & self.out.ready & last)
        m.d.sync += [
            self.sent_mshrs.eq(Mux(sent, mine_m, 0)),
            self.sent_evicts.eq(Mux(sent, mine_e, 0)),
        ]

        # Pick: first MSHR with a pending request, else first eviction slot; not the one whose
        # request left last cycle (its owner clears its pending bit this cycle).
        req_any = Signal()
        req_idx = Signal(range(n))
        ev_any = Signal()
        ev_idx = Signal(range(n))
        for i in reversed(range(n)):
            with m.If(self.mshrs[i].busy & self.mshrs[i].pending & ~self.sent_mshrs[i]):
                m.d.comb += [req_any.eq(1), req_idx.eq(i)]
            with m.If(self.evicts[i].busy & self.evicts[i].pending & ~self.sent_evicts[i]):
                m.d.comb += [ev_any.eq(1), ev_idx.eq(i)]

        sel = pick(m, self.mshrs, req_idx, n, "sel")
        evs = pick(m, self.evicts, ev_idx, n, "evs")
        new = Signal(Header)
        m.d.comb += [new.cls.eq(MsgClass.REQ), new.src.eq(self.node_id)]
        line_mask = ~C(LINE_BYTES - 1, ADDR_BITS)
        req_beats = Signal.like(nbeats)  # the data beats of the picked MSHR's request

        with m.FSM():
            with m.State("IDLE"):
                with m.If(req_any):
                    m.d.comb += [
                        new.opcode.eq(sel.opcode),
                        new.tag.eq(req_idx),
                        new.addr.eq(sel.addr & line_mask),
                    ]
                    with m.Switch(sel.opcode):
                        with m.Case(Opcode.NC_READ):
                            m.d.comb += [
                                new.addr.eq(sel.addr & ~C(bb - 1, ADDR_BITS)),
                                new.size.eq(beat_shift),
                            ]
                            m.d.comb += req_beats.eq(0)
                        with m.Case(Opcode.NC_WRITE):
                            m.d.comb += req_beats.eq(beats)
                            m.d.sync += kind.eq(2)
                        with m.Case(*sorted(ATOMIC_OPCODES, key=lambda o: o.value)):
                            m.d.comb += [new.addr.eq(sel.addr), new.size.eq(sel.size)]
                            m.d.comb += req_beats.eq(1)
                            m.d.sync += kind.eq(3)
                        with m.Default():
                            m.d.comb += req_beats.eq(0)
                    m.d.sync += [
                        nbeats.eq(req_beats),
                        last.eq(req_beats == 0),
                        idx.eq(req_idx),
                        mine_m.eq(Cat(req_idx == i for i in range(n))),
                        mine_e.eq(0),
                        hdr.eq(new),
                        op_data.eq(sel.data),
                        op_strb.eq(sel.strb),
                        op_beat.eq(sel.addr[beat_shift:6] if beats > 1 else 0),
                        op_size.eq(sel.size),
                        op_lane.eq(sel.addr[:beat_shift]),
                        is_cas.eq(sel.opcode == Opcode.ATOMIC_CAS),
                        b.eq(0),
                    ]
                    m.next = "HEAD"
                with m.Elif(ev_any):
                    m.d.comb += [
                        new.opcode.eq(Mux(evs.dirty, Opcode.WRITE_BACK, Opcode.CLEAN_EVICT)),
                        new.tag.eq(EVICT_TAG | ev_idx),
                        new.addr.eq(evs.addr & line_mask),
                    ]
                    m.d.sync += [
                        idx.eq(ev_idx),
                        hdr.eq(new),
                        nbeats.eq(Mux(evs.dirty, beats, 0)),
                        last.eq(~evs.dirty),
                        mine_m.eq(0),
                        mine_e.eq(Cat(ev_idx == i for i in range(n))),
                        kind.eq(1),
                        b.eq(0),
                    ]
                    m.next = "HEAD"
            with m.State("HEAD"):
                m.d.comb += [
                    self.out.valid.eq(1),
                    self.out.payload.head.eq(1),
                    self.out.payload.tail.eq(last),
                    self.out.payload.payload.eq(hdr),
                ]
                with m.If(self.out.ready):
                    with m.If(last):
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += last.eq(nbeats == 1)  # b is 0 in BEATS' first beat
                        m.next = "BEATS"
            with m.State("BEATS"):
                beat = Signal(beat_layout(f))
                m.d.comb += self.edata_addr.eq(idx * beats + b)
                with m.Switch(kind):
                    with m.Case(1):
                        m.d.comb += [beat.data.eq(self.edata), beat.be.eq(-1)]
                    with m.Case(2), m.If(b == op_beat):
                        m.d.comb += [
                            beat.data.eq(op_data & Cat(s.replicate(8) for s in op_strb)),
                            beat.be.eq(op_strb),
                        ]
                    with m.Case(3):
                        # Operand (and CAS compare value) from the AXI lanes of the address.
                        nbytes = Signal(range(9))
                        m.d.comb += nbytes.eq(1 << op_size)
                        shifted = Signal(w)
                        m.d.comb += shifted.eq(op_data >> (op_lane * 8))
                        mask = Signal(64)
                        m.d.comb += mask.eq((C(1, 65) << (nbytes * 8)) - 1)
                        operand = Signal(64)
                        compare = Signal(64)
                        bmask = Signal(8)
                        m.d.comb += [
                            operand.eq(shifted[:64] & mask),
                            compare.eq((shifted >> (nbytes * 8))[:64] & mask),
                            bmask.eq((C(1, 9) << nbytes) - 1),
                            beat.data.eq(Cat(operand, Mux(is_cas, compare, 0))),
                            beat.be.eq(Cat(bmask, Mux(is_cas, bmask, 0))),
                        ]
                m.d.comb += [
                    self.out.valid.eq(1),
                    self.out.payload.head.eq(0),
                    self.out.payload.tail.eq(last),
                    self.out.payload.payload.eq(beat),
                ]
                with m.If(self.out.ready):
                    m.d.sync += [b.eq(b + 1), last.eq(b + 2 == nbeats)]
                    with m.If(last):
                        m.next = "IDLE"
        return m
