"""The home agent's transaction table: coherent reads and upgrades awaiting ``COMP_ACK``."""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from unifab.flit import NODE_BITS, TAG_BITS

__all__ = ["TransactionTable", "table_entry_layout"]


def table_entry_layout(line_bits: int) -> data.StructLayout:
    """One transaction: the line it keeps busy and the requester's ``(node, tag)``."""
    return data.StructLayout({"valid": 1, "line": line_bits, "node": NODE_BITS, "tag": TAG_BITS})


class TransactionTable(wiring.Component):
    """``entries`` transactions in registers, with ``lookups`` parallel "line busy" compares.

    An entry is inserted by the home's engine when it grants a line that needs ``COMP_ACK``
    and removed when the ``COMP_ACK`` arrives (matched by line, requester node and tag), or by index
    when the transaction ends in an error. Insert and remove may happen in the same cycle (they
    never touch the same entry: insert takes a free one).

    Ports
    -----
    insert : In(1)
        Take entry ``insert_index`` for ``insert_line``/``insert_node``/``insert_tag``.
        Only while ``full`` is 0.
    insert_line, insert_node, insert_tag : In(line_bits), In(8), In(8)
        The transaction.
    insert_index : Out(range(entries))
        The free entry the next insert takes (the lowest free one).
    drop : In(1)
        Free entry ``drop_index`` (the transaction ended with an error).
    drop_index : In(range(entries))
        Entry to free.
    ack : In(1)
        A ``COMP_ACK`` arrived: free the entry it matches.
    ack_line, ack_node, ack_tag : In(line_bits), In(8), In(8)
        Its line, source and tag (a requester may reuse a tag for another line before the
        first line's ``COMP_ACK`` has arrived, so all three are matched).
    ack_hit : Out(1)
        A valid entry matches (combinational).
    lookup_line : In(ArrayLayout(line_bits, lookups))
        Lines to check.
    lookup_busy : Out(lookups)
        Bit ``i``: a valid entry holds ``lookup_line[i]`` (combinational).
    held_line : In(ArrayLayout(line_bits, held))
        Lines to compare when ``held_load`` is set.
    held_load : In(1)
        Register the compares of ``held_line`` with every entry's line.
    held_busy : Out(held)
        Bit ``i``: a valid entry holds the line ``held_line[i]`` had at the last
        ``held_load`` (the compares from registers, the valid bits live). Right until the next
        insert (which may change an entry's line); the home loads in LOOKUP and inserts at
        the end of DECIDE, so its victim choice does not start at the line compares.
    full : Out(1)
        Every entry is valid.
    used : Out(range(entries + 1))
        Number of valid entries.
    """

    def __init__(self, *, entries: int, line_bits: int, lookups: int = 1, held: int = 0):
        if entries < 1 or line_bits < 1 or lookups < 1 or held < 0:
            raise ValueError(
                f"entries, line_bits and lookups must be positive, not {entries}, {line_bits},"
                f" {lookups}"
            )
        self.entries, self.line_bits, self.lookups = entries, line_bits, lookups
        self.held = held
        index = range(max(2, entries))
        super().__init__(
            {
                "insert": In(1),
                "insert_line": In(line_bits),
                "insert_node": In(NODE_BITS),
                "insert_tag": In(TAG_BITS),
                "insert_index": Out(index),
                "drop": In(1),
                "drop_index": In(index),
                "ack": In(1),
                "ack_line": In(line_bits),
                "ack_node": In(NODE_BITS),
                "ack_tag": In(TAG_BITS),
                "ack_hit": Out(1),
                "lookup_line": In(data.ArrayLayout(line_bits, lookups)),
                "lookup_busy": Out(lookups),
                "held_line": In(data.ArrayLayout(line_bits, max(1, held))),
                "held_load": In(1),
                "held_busy": Out(max(1, held)),
                "full": Out(1),
                "used": Out(range(entries + 1)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        layout = table_entry_layout(self.line_bits)
        table = [Signal(layout, name=f"entry{i}") for i in range(self.entries)]
        valid = Cat(e.valid for e in table)

        # Lowest free entry.
        for i in reversed(range(self.entries)):
            with m.If(~table[i].valid):
                m.d.comb += self.insert_index.eq(i)
        m.d.comb += [
            self.full.eq(valid.all()),
            self.used.eq(sum(e.valid for e in table)),
        ]
        for k in range(self.lookups):
            m.d.comb += self.lookup_busy[k].eq(
                Cat(e.valid & (e.line == self.lookup_line[k]) for e in table).any()
            )
        for k in range(self.held):
            matches = Signal(self.entries, name=f"held_match{k}")
            with m.If(self.held_load):
                m.d.sync += matches.eq(Cat(e.line == self.held_line[k] for e in table))
            m.d.comb += self.held_busy[k].eq((matches & valid).any())
        acked = Cat(
            e.valid
            & (e.line == self.ack_line)
            & (e.node == self.ack_node)
            & (e.tag == self.ack_tag)
            for e in table
        )
        m.d.comb += self.ack_hit.eq(acked.any())

        for i, e in enumerate(table):
            with m.If(self.insert & (self.insert_index == i)):
                m.d.sync += [
                    e.valid.eq(1),
                    e.line.eq(self.insert_line),
                    e.node.eq(self.insert_node),
                    e.tag.eq(self.insert_tag),
                ]
            with m.If((self.ack & acked[i]) | (self.drop & (self.drop_index == i))):
                m.d.sync += e.valid.eq(0)
        return m
