"""The endpoint cache's arrays: tag/state per way and the line data, in ``Memory``.

The controller looks up a set and acts on it in the same cycle. The tag lookup is given the
set one cycle ahead (the value the controller's lookup address register is about to take) and
reads the RAM into a register, with the previous cycle's tag write forwarded: the same entries
a combinational read at the registered address would give, but the controller's decisions
start from a flop instead of from the distributed RAM's read. It is given the tag as well, and
the tag compares are made on the RAM's read before that register, so the controller's hit is a
flop (and the forwarding multiplexer) instead of a 39-bit compare after it. The data array is read
combinationally; its writes are registered and reach the RAM a cycle after the controller
gives them (the controller's decision ends at a register, not at the write address of a few
hundred distributed-RAM blocks), with a read of that word in between given the written bytes
(forwarded), so the array behaves as if written at once. There is one write port per array,
all driven by the controller. Line
``(set, way)`` occupies data words ``(way * sets + set) * beats ... + beats - 1`` (one word
per fabric data beat).

The way is the data address's most significant part on purpose: the RAM is built from
16-word distributed-RAM blocks, and the word's low bits (beat, set) address them while the
way selects among their outputs. A hit's data is then read in parallel with the tag
compare that finds its way, and only the final multiplexer waits for the compare.
"""

from amaranth import *
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from unifab.coherence.params import CacheParams
from unifab.flit import ADDR_BITS, LINE_BYTES, CacheState, FabricParams

__all__ = ["CacheArrays", "CacheGeometry", "tag_layout"]


class CacheGeometry:
    """Address split of a cache: ``addr = tag | set | line offset``."""

    def __init__(self, cache: CacheParams, fabric: FabricParams):
        self.cache, self.fabric = cache, fabric
        self.sets, self.ways = cache.sets, cache.ways
        self.beats = fabric.line_beats
        self.offset_bits = (LINE_BYTES - 1).bit_length()
        self.set_bits = (cache.sets - 1).bit_length()
        self.tag_bits = ADDR_BITS - self.offset_bits - self.set_bits
        self.way_bits = max(1, (cache.ways - 1).bit_length())
        self.beat_bits = max(1, (self.beats - 1).bit_length())
        self.words = cache.sets * cache.ways * self.beats

    def set_of(self, addr: Value) -> Value:
        if self.set_bits == 0:
            return C(0, 1)
        return addr[self.offset_bits : self.offset_bits + self.set_bits]

    def tag_of(self, addr: Value) -> Value:
        return addr[self.offset_bits + self.set_bits :]

    def line_addr(self, tag: Value, set_: Value) -> Value:
        """The line address of ``tag`` in ``set_``."""
        if self.set_bits == 0:
            return Cat(C(0, self.offset_bits), tag)
        return Cat(C(0, self.offset_bits), set_[: self.set_bits], tag)

    def word(self, set_: Value, way: Value, beat: Value) -> Value:
        """Data word of ``beat`` of line ``(set_, way)``: the way in the high bits (above).

        ``(way * sets + set_) * beats + beat``, as a concatenation (sets and beats are powers
        of two), so that no adder sits on an address path."""
        beat_bits = (self.beats - 1).bit_length()
        beat = Cat(beat, C(0, beat_bits))[:beat_bits]  # a narrower beat (a constant) widened
        set_ = Cat(set_, C(0, self.set_bits))[: self.set_bits]
        return Cat(beat, set_, way)


def tag_layout(geom: CacheGeometry) -> data.StructLayout:
    return data.StructLayout({"tag": geom.tag_bits, "state": CacheState})


class CacheArrays(wiring.Component):
    """Tag/state arrays (one ``Memory`` per way) and the data array (one ``Memory``).

    Ports
    -----
    lookup_set : In(set_bits)
        Set to look up in the next cycle.
    lookup_tag : In(tag_bits)
        Tag to compare with the entries of ``lookup_set`` (given in the same cycle).
    lookup : Out(ArrayLayout(tag_layout, ways))
        The entries of the set given in the previous cycle, one per way, as they are now
        (a tag write of the previous cycle included): from registers.
    lookup_hit : Out(ways)
        Per way, whether that entry (as in ``lookup``) is valid and holds the ``lookup_tag``
        given in the previous cycle: the compare is made before the registers, so a hit is a
        flop and a multiplexer, not a tag compare, away.
    tag_we, tag_set, tag_way, tag_data : In(1), In(set_bits), In(way_bits), In(tag_layout)
        Write one way's tag and state.
    data_raddr, data_rdata : In(range(words)), Out(data_width)
        Data read port (combinational).
    data_waddr, data_wdata, data_wstrb : In(range(words)), In(data_width), In(data_width/8)
        Data write port, byte-granular (a byte is written when its strobe is set); reads from
        the next cycle on return the written bytes.

    With ``forwarding=False`` the previous cycle's writes are not forwarded: ``lookup`` and
    ``lookup_hit`` show a set as it was before a tag write of the previous cycle, and a read of
    a word written in the previous cycle returns its old bytes (both are right from the cycle
    after). For a controller that never uses a lookup or a data read right after a write to
    it: the multiplexers and the address compare leave its paths.
    """

    def __init__(self, geom: CacheGeometry, *, forwarding: bool = True):
        self.geom = g = geom
        self.forwarding = forwarding
        w = g.fabric.data_width
        self._tag = tag_layout(g)
        super().__init__(
            {
                "lookup_set": In(max(1, g.set_bits)),
                "lookup_tag": In(g.tag_bits),
                "lookup": Out(data.ArrayLayout(self._tag, g.ways)),
                "lookup_hit": Out(g.ways),
                "tag_we": In(1),
                "tag_set": In(max(1, g.set_bits)),
                "tag_way": In(g.way_bits),
                "tag_data": In(self._tag),
                "data_raddr": In(range(g.words)),
                "data_rdata": Out(w),
                "data_waddr": In(range(g.words)),
                "data_wdata": In(w),
                "data_wstrb": In(w // 8),
            }
        )

    def elaborate(self, platform):
        m = Module()
        g = self.geom
        w = g.fabric.data_width
        # The last cycle's tag write, forwarded when it went to the set being looked up (the
        # RAM returns the entry as it was before that write). Whether to forward is decided a
        # cycle ahead, so the lookup is one multiplexer after its flops. The tag compares are
        # made a cycle ahead too, on the RAM's combinational read and on the written entry.
        forward = Signal(g.ways)
        last_data = Signal(self._tag)
        last_hit = Signal()
        m.d.sync += [
            last_data.eq(self.tag_data),
            last_hit.eq(
                (self.tag_data.state != CacheState.I) & (self.tag_data.tag == self.lookup_tag)
            ),
        ]
        same_set = self.tag_set == self.lookup_set
        for way in range(g.ways):
            mem = memory.Memory(shape=self._tag, depth=g.sets, init=[])
            m.submodules[f"tags{way}"] = mem
            rd = mem.read_port(domain="comb")
            wr = mem.write_port()
            entry = Signal(self._tag, name=f"entry{way}")
            entry_hit = Signal(name=f"entry_hit{way}")
            we = self.tag_we & (self.tag_way == way)
            m.d.sync += [
                forward[way].eq(we & same_set),
                entry.eq(rd.data),
                entry_hit.eq((rd.data.state != CacheState.I) & (rd.data.tag == self.lookup_tag)),
            ]
            if self.forwarding:
                m.d.comb += [
                    self.lookup[way].eq(Mux(forward[way], last_data, entry)),
                    self.lookup_hit[way].eq(Mux(forward[way], last_hit, entry_hit)),
                ]
            else:
                m.d.comb += [self.lookup[way].eq(entry), self.lookup_hit[way].eq(entry_hit)]
            m.d.comb += [
                rd.addr.eq(self.lookup_set),
                wr.addr.eq(self.tag_set),
                wr.data.eq(self.tag_data),
                wr.en.eq(we),
            ]
        m.submodules.data = mem = memory.Memory(shape=unsigned(w), depth=g.words, init=[])
        rd = mem.read_port(domain="comb")
        wr = mem.write_port(granularity=8)
        # The write register: no enable (a cycle without a write registers a zero strobe).
        pend_addr = Signal(range(g.words))
        pend_data = Signal(w)
        pend_strb = Signal(w // 8)
        m.d.sync += [
            pend_addr.eq(self.data_waddr),
            pend_data.eq(self.data_wdata),
            pend_strb.eq(self.data_wstrb),
        ]
        same_word = Signal()
        m.d.comb += [
            same_word.eq(self.data_raddr == pend_addr),
            rd.addr.eq(self.data_raddr),
            wr.addr.eq(pend_addr),
            wr.data.eq(pend_data),
            wr.en.eq(pend_strb),
        ]
        if not self.forwarding:
            m.d.comb += self.data_rdata.eq(rd.data)
            return m
        for byte in range(w // 8):
            bits = slice(8 * byte, 8 * byte + 8)
            m.d.comb += self.data_rdata[bits].eq(
                Mux(same_word & pend_strb[byte], pend_data[bits], rd.data[bits])
            )
        return m
