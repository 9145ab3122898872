"""Snoop answers of a caching endpoint (docs/coherence.md §3.2), as a combinational table."""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from unifab.flit import CacheState, Opcode

__all__ = ["SnoopDecide"]


class SnoopDecide(wiring.Component):
    """What a snooped cache sends and becomes, from what it holds.

    Ports
    -----
    opcode : In(Opcode)
        ``SNP_INV``, ``SNP_SHARED`` or ``SNP_UNIQUE`` (anything else: ``SNP_RESP_I``, no change).
    cache_state : In(CacheState)
        State of the line in the cache arrays (``I`` if absent).
    in_evict, evict_dirty : In(1), In(1)
        The line sits in an eviction buffer slot (still answering snoops); its data is dirty.
    forward : Out(1)
        Send ``FWD_DATA`` with ``fwd_state`` to the snoop's ``fwd`` node (first).
    fwd_state : Out(CacheState)
    resp_opcode, resp_state : Out(Opcode), Out(CacheState)
        The answer to the home: ``SNP_RESP_I``/``SNP_RESP_S`` or ``SNP_RESP_DATA`` with the
        snooper's new state.
    resp_data : Out(1)
        ``resp_opcode`` is ``SNP_RESP_DATA`` (carries the line).
    new_state : Out(CacheState)
        The cache line's new state (when held in the cache).
    evict_drop : Out(1)
        The eviction buffer slot stops answering snoops (it still waits for its ``COMP``).
    """

    def __init__(self):
        super().__init__(
            {
                "opcode": In(Opcode, init=Opcode.SNP_INV),
                "cache_state": In(CacheState),
                "in_evict": In(1),
                "evict_dirty": In(1),
                "forward": Out(1),
                "fwd_state": Out(CacheState),
                "resp_opcode": Out(Opcode, init=Opcode.SNP_RESP_I),
                "resp_state": Out(CacheState),
                "resp_data": Out(1),
                "new_state": Out(CacheState),
                "evict_drop": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        st = self.cache_state
        in_cache = Signal()
        held = Signal()
        dirty = Signal()
        m.d.comb += [
            in_cache.eq(st != CacheState.I),
            held.eq(in_cache | self.in_evict),
            dirty.eq(Mux(in_cache, st == CacheState.M, self.in_evict & self.evict_dirty)),
            self.resp_opcode.eq(Opcode.SNP_RESP_I),
            self.resp_state.eq(CacheState.I),
            self.new_state.eq(st),
        ]
        with m.Switch(self.opcode):
            with m.Case(Opcode.SNP_INV):
                m.d.comb += [self.new_state.eq(CacheState.I), self.evict_drop.eq(self.in_evict)]
                with m.If(dirty):
                    m.d.comb += [self.resp_opcode.eq(Opcode.SNP_RESP_DATA), self.resp_data.eq(1)]
            with m.Case(Opcode.SNP_SHARED):
                m.d.comb += [self.forward.eq(held), self.fwd_state.eq(CacheState.S)]
                with m.If(in_cache):
                    m.d.comb += [
                        self.new_state.eq(CacheState.S),
                        self.resp_opcode.eq(Mux(dirty, Opcode.SNP_RESP_DATA, Opcode.SNP_RESP_S)),
                        self.resp_state.eq(CacheState.S),
                        self.resp_data.eq(dirty),
                    ]
                with m.Elif(self.in_evict):
                    m.d.comb += [
                        self.evict_drop.eq(1),
                        self.resp_opcode.eq(Mux(dirty, Opcode.SNP_RESP_DATA, Opcode.SNP_RESP_I)),
                        self.resp_data.eq(dirty),
                    ]
            with m.Case(Opcode.SNP_UNIQUE):
                m.d.comb += [
                    self.forward.eq(held),
                    self.fwd_state.eq(Mux(dirty, CacheState.M, CacheState.E)),
                    self.new_state.eq(CacheState.I),
                    self.evict_drop.eq(self.in_evict),
                ]
        return m
