"""The fabric around a DUT, for Amaranth's simulator: send and receive whole messages.

:class:`FabricPeer` stands on the far side of a DUT's two fabric ports (its
``In(FabricLink)`` input and ``Out(FabricLink)`` output). It sends queued messages under the
DUT's credits, one flit per cycle, interleaving VCs flit by flit; it receives the DUT's flits,
reassembles them per VC into :class:`~unifab.codec.Message` objects and returns credits, with
optional random idle cycles on the send side and random credit hold-back (back-pressure) on
the receive side. Register it with ``sim.add_testbench(peer.run, background=True)``.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

from unifab.codec import Flit, Message, MessageAssembler, message_to_flits
from unifab.flit import FabricParams, opcode_class

__all__ = ["FabricPeer"]


class FabricPeer:
    """A model of the fabric attached to a DUT.

    ``to_dut`` is the DUT's ``In(FabricLink)`` port, ``from_dut`` its ``Out(FabricLink)``
    port. ``dut_rx_depth`` is the DUT's buffer per VC (the credits this peer starts with);
    ``rx_depth`` is this peer's buffer per VC (the credits the DUT must start with: its
    ``tx_credits``). ``send_idle`` is the probability of not sending in a cycle,
    ``accept_stall`` the probability that a buffered flit is not consumed in a cycle.
    ``on_message(msg, vc)``, when given, is called for every message received (it may call
    :meth:`send`); received messages are also appended to ``received``.
    """

    def __init__(
        self,
        *,
        params: FabricParams,
        to_dut,
        from_dut,
        dut_rx_depth: int,
        rx_depth: int,
        rng: random.Random | None = None,
        send_idle: float = 0.0,
        accept_stall: float = 0.0,
        on_message: Callable[[Message, int], None] | None = None,
    ) -> None:
        self.params = params
        self.to_dut, self.from_dut = to_dut, from_dut
        self.rng = rng or random.Random(0)
        self.send_idle, self.accept_stall = send_idle, accept_stall
        self.rx_depth = rx_depth
        self.on_message = on_message
        self.credits = [dut_rx_depth] * params.vcs
        self._tx: list[deque[Flit]] = [deque() for _ in range(params.vcs)]
        self._rx_buf: list[deque[Flit]] = [deque() for _ in range(params.vcs)]
        self._asm = [MessageAssembler(params, strict=False) for _ in range(params.vcs)]
        self._rr = 0
        self.received: list[tuple[Message, int]] = []
        self.cycle = 0
        self.overflow = False

    # -- sending --------------------------------------------------------------------------

    def send(self, msg: Message, vc: int | None = None, *, strict: bool = True) -> None:
        """Queue a message on ``vc`` (default: its class's VC). ``strict=False`` allows
        malformed headers for error-path tests."""
        if vc is None:
            vc = self.params.vc_of(opcode_class(msg.header.opcode))
        self._tx[vc].extend(message_to_flits(msg, self.params, strict=strict))

    def send_flits(self, flits: list[Flit], vc: int) -> None:
        """Queue raw flits (for malformed-sequence tests)."""
        self._tx[vc].extend(flits)

    @property
    def idle(self) -> bool:
        """Nothing left to send and nothing half-received."""
        return not any(self._tx) and not any(self._rx_buf) and not any(a.busy for a in self._asm)

    def _pick_vc(self) -> int | None:
        vcs = self.params.vcs
        for i in range(vcs):
            vc = (self._rr + i) % vcs
            if self._tx[vc] and self.credits[vc] > 0:
                self._rr = (vc + 1) % vcs
                return vc
        return None

    # -- the process ----------------------------------------------------------------------

    async def run(self, ctx) -> None:
        p = self.params
        while True:
            # Drive this cycle's flit into the DUT.
            vc = None if self.rng.random() < self.send_idle else self._pick_vc()
            if vc is None:
                ctx.set(self.to_dut.valid, 0)
            else:
                flit = self._tx[vc].popleft()
                self.credits[vc] -= 1
                ctx.set(self.to_dut.valid, 1)
                ctx.set(self.to_dut.vc, vc)
                ctx.set(
                    self.to_dut.flit,
                    {"head": int(flit.head), "tail": int(flit.tail), "payload": flit.payload},
                )
            # Consume buffered flits (returning their credits) unless stalled.
            returned = 0
            for v in range(p.vcs):
                if self._rx_buf[v] and self.rng.random() >= self.accept_stall:
                    flit = self._rx_buf[v].popleft()
                    returned |= 1 << v
                    msg = self._asm[v].push(flit)
                    if msg is not None:
                        self.received.append((msg, v))
                        if self.on_message is not None:
                            self.on_message(msg, v)
            ctx.set(self.from_dut.credit, returned)
            # Sample the DUT's output flit and the credits it returns at the same edge.
            _, _, out_valid, out_vc, out_flit, credit = await ctx.tick().sample(
                self.from_dut.valid, self.from_dut.vc, self.from_dut.flit, self.to_dut.credit
            )
            self.cycle += 1
            if out_valid:
                buf = self._rx_buf[out_vc]
                if len(buf) >= self.rx_depth:
                    self.overflow = True
                buf.append(_flit(out_flit))
            for v in range(p.vcs):
                if credit >> v & 1:
                    self.credits[v] += 1


def _flit(view) -> Flit:
    """A Flit from a sampled ``flit_layout`` value."""
    return Flit(head=bool(view.head), tail=bool(view.tail), payload=int(view.payload))
