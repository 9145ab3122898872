"""The home agent's set-associative directory (``docs/coherence.md`` §2, §2.2)."""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["Directory", "dir_entry_layout", "dir_row_layout"]


def dir_entry_layout(*, tag_bits: int, max_sharers: int) -> data.StructLayout:
    """One directory entry: a line in S (``em`` = 0, ``sharers``) or EM (``em`` = 1, ``owner``).

    An entry with ``valid`` = 0 is free (its line, if any, is in I). EM entries keep
    ``sharers`` at zero.
    """
    return data.StructLayout(
        {
            "valid": 1,
            "tag": tag_bits,
            "em": 1,
            "sharers": max_sharers,
            "owner": range(max_sharers),
        }
    )


def dir_row_layout(*, tag_bits: int, max_sharers: int, ways: int) -> data.StructLayout:
    """One set, read and written together: its ways and its round-robin victim pointer."""
    return data.StructLayout(
        {
            "ways": data.ArrayLayout(
                dir_entry_layout(tag_bits=tag_bits, max_sharers=max_sharers), ways
            ),
            "rr": range(max(2, ways)),
        }
    )


class Directory(wiring.Component):
    """``sets`` rows of ``ways`` entries in a memory, plus the lookup logic for one row.

    The engine reads a row (synchronous read), keeps it in a register while it works on the
    set, and writes the whole row back at the end of the transaction. Hit and free-way
    selection look at the row read (``row``), so the engine can register them with its copy
    of the row instead of deciding through the tag compares; the victim is chosen from the
    engine's copy (``probe_row``), whose ways may meanwhile have been freed, and the live
    ``way_busy``.

    Ports
    -----
    read_set : In(range(sets))
        Row to read; ``row`` shows it one cycle later.
    row : Out(row_layout)
        The row read.
    write_en, write_set, write_row : In(1), In(range(sets)), In(row_layout)
        Write a whole row.
    probe_row : In(row_layout)
        The row to choose a victim from (the engine's copy).
    probe_tag : In(tag_bits)
        The tag of the requested line.
    way_busy : In(ways)
        Bit ``w``: the line of way ``w`` is busy (in the transaction table); it may not be
        chosen as victim.
    hit, hit_way : Out(1), Out(range(ways))
        A valid way of ``row`` holds ``probe_tag``, and which.
    free, free_way : Out(1), Out(range(ways))
        ``row`` has an invalid way, and the lowest one.
    victim, victim_way : Out(1), Out(range(ways))
        A valid, not busy way exists, and the first at or after the row's round-robin
        pointer ``rr`` (the engine sets ``rr`` past the victim it takes: one pointer per set).
    """

    def __init__(self, *, sets: int, ways: int, tag_bits: int, max_sharers: int):
        if sets < 1 or sets & (sets - 1):
            raise ValueError(f"sets must be a power of two, not {sets!r}")
        if ways < 1 or tag_bits < 1 or max_sharers < 2:
            raise ValueError(f"bad directory geometry: {ways} ways, {tag_bits} tag bits")
        self.sets, self.ways = sets, ways
        self.tag_bits, self.max_sharers = tag_bits, max_sharers
        self.row_layout = dir_row_layout(tag_bits=tag_bits, max_sharers=max_sharers, ways=ways)
        set_shape = range(max(2, sets))
        way_shape = range(max(2, ways))
        super().__init__(
            {
                "read_set": In(set_shape),
                "row": Out(self.row_layout),
                "write_en": In(1),
                "write_set": In(set_shape),
                "write_row": In(self.row_layout),
                "probe_row": In(self.row_layout),
                "probe_tag": In(tag_bits),
                "way_busy": In(ways),
                "hit": Out(1),
                "hit_way": Out(way_shape),
                "free": Out(1),
                "free_way": Out(way_shape),
                "victim": Out(1),
                "victim_way": Out(way_shape),
            }
        )
        self.memory = Memory(shape=self.row_layout, depth=sets, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = memory = self.memory
        rd = memory.read_port()
        wr = memory.write_port()
        m.d.comb += [
            rd.addr.eq(self.read_set),
            rd.en.eq(1),
            self.row.eq(rd.data),
            wr.addr.eq(self.write_set),
            wr.data.eq(self.write_row),
            wr.en.eq(self.write_en),
        ]

        ways = self.ways
        row = self.row.ways
        hits = Cat(row[w].valid & (row[w].tag == self.probe_tag) for w in range(ways))
        frees = Cat(~row[w].valid for w in range(ways))
        m.d.comb += [self.hit.eq(hits.any()), self.free.eq(frees.any())]
        for w in reversed(range(ways)):
            with m.If(hits[w]):
                m.d.comb += self.hit_way.eq(w)
            with m.If(frees[w]):
                m.d.comb += self.free_way.eq(w)

        # Round-robin victim: the first valid, not busy way at or after the pointer.
        pointer = self.probe_row.rr
        row = self.probe_row.ways
        candidates = Cat(row[w].valid & ~self.way_busy[w] for w in range(ways))
        m.d.comb += self.victim.eq(candidates.any())
        for offset in reversed(range(ways)):
            way = Signal(range(max(2, ways)), name=f"rr_way{offset}")
            total = pointer + offset
            m.d.comb += way.eq(Mux(total >= ways, total - ways, total))
            with m.If(candidates.bit_select(way, 1)):
                m.d.comb += self.victim_way.eq(way)
        return m
