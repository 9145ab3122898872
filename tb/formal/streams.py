"""The valid/ready contract on every stream-like port of a block, found from its signature.

:func:`channels` walks a component's signature and returns one :class:`Channel` per
``amaranth.lib.stream.Signature`` member (arrays included) and per AXI4 channel (AW, W, B,
AR, R) of an :class:`~unifab.hdl.lib.axi.Axi4Signature` member, with the direction the
component sees. :func:`free_environment` then drives every input of the block from ``AnySeq``:

* a channel the block **receives**: ``valid`` and payload free, under the assumption that the
  environment keeps the contract (once ``valid`` is up it stays up, with the same payload,
  until ``ready``); its ``ready`` is the block's;
* a channel the block **sends**: ``ready`` free (any back-pressure), and the contract is
  *asserted*, with a ``Cover`` of a transfer and of back-pressure (``valid & ~ready``);
* every other input port: free.

``always_ready`` streams have no back-pressure: for those only the transfer is covered.
:func:`observe` asserts the contract on the channels between two submodules without driving
anything (for the streams from a block's core into a fabric adapter, say).

Fabric ports (``FabricLink``) have no ``ready``: they are credit-based. :func:`credit_sink`
checks that a block never sends on a VC without a credit (the receiver returns credits at
will, never more than it was sent).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth import Const, Module, Signal, Value
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cover
from amaranth.lib import stream, wiring

from unifab.hdl.lib.axi import Axi4Signature

from .props import past, past_valid

__all__ = [
    "Channel",
    "channels",
    "credit_sink",
    "free_environment",
    "observe",
    "observe_stream",
]

#: AXI4 channels: (prefix, the manager sends it).
AXI_CHANNELS = (("aw", True), ("w", True), ("b", False), ("ar", True), ("r", False))


@dataclass
class Channel:
    """One valid/ready channel of a block.

    ``sent`` is true when the block drives ``valid`` and the payload (an output channel).
    ``ready`` is ``None`` for an ``always_ready`` stream.
    """

    name: str
    valid: Value
    ready: Value | None
    payload: list[Value] = field(default_factory=list)
    sent: bool = True

    def payload_value(self) -> Value:
        from amaranth import Cat

        return Cat(*self.payload)


def _unflip(sig: wiring.Signature) -> wiring.Signature:
    return sig.flip() if isinstance(sig, wiring.FlippedSignature) else sig


def _as_value(obj) -> Value:
    return Value.cast(obj)


def _indexed(obj, dims: tuple[int, ...], path: tuple):
    """(path, element) for every element of a (possibly nested) interface array."""
    if not dims:
        yield path, obj
        return
    for i in range(dims[0]):
        yield from _indexed(obj[i], dims[1:], (*path, i))


def _flows(component: wiring.Component) -> dict[tuple, tuple[wiring.Flow, object]]:
    """Every port leaf of ``component``: its path, effective flow and value."""
    return {
        tuple(path): (member.flow, value)
        for path, member, value in component.signature.flatten(component)
    }


def _walk(members, obj, path: tuple, flows: dict, out: list[Channel]) -> None:
    for name, member in members.items():
        if not member.is_signature:
            continue
        for sub_path, sub in _indexed(getattr(obj, name), member.dimensions, (*path, name)):
            sig = _unflip(member.signature)
            label = ".".join(str(part) for part in sub_path)
            if isinstance(sig, stream.Signature):
                flow, _ = flows[(*sub_path, "valid")]
                ready = None if sig.always_ready else _as_value(sub.ready)
                out.append(
                    Channel(
                        label,
                        _as_value(sub.valid),
                        ready,
                        [_as_value(sub.payload)],
                        sent=flow == wiring.Out,
                    )
                )
            elif isinstance(sig, Axi4Signature):
                for prefix, _ in AXI_CHANNELS:
                    flow, _ = flows[(*sub_path, f"{prefix}valid")]
                    payload = [
                        _as_value(getattr(sub, n))
                        for n in sig.members
                        if n.startswith(prefix) and n not in (f"{prefix}valid", f"{prefix}ready")
                    ]
                    out.append(
                        Channel(
                            f"{label}.{prefix}",
                            _as_value(getattr(sub, f"{prefix}valid")),
                            _as_value(getattr(sub, f"{prefix}ready")),
                            payload,
                            sent=flow == wiring.Out,
                        )
                    )
            else:
                _walk(sig.members, sub, sub_path, flows, out)


def channels(component: wiring.Component) -> list[Channel]:
    """Every stream and AXI4 channel of ``component``, as the component sees it."""
    out: list[Channel] = []
    _walk(component.signature.members, component, (), _flows(component), out)
    return out


def _contract(m: Module, ch: Channel, name: str) -> tuple[Value, Value]:
    """(holds, waiting): the contract, and whether it applies this cycle."""
    payload = ch.payload_value()
    valid0 = past(m, ch.valid, f"{name}_past_valid")
    ready0 = past(m, ch.ready, f"{name}_past_ready")
    payload0 = past(m, payload, f"{name}_past_payload")
    waiting = past_valid(m) & valid0 & ~ready0
    return ch.valid & (payload == payload0), waiting


def _check(m: Module, ch: Channel, name: str, covers: bool) -> None:
    if ch.ready is not None:
        holds, waiting = _contract(m, ch, name)
        with m.If(waiting):
            m.d.comb += Assert(holds, f"{name}: valid/payload held until ready")
    if covers:
        ready = Const(1) if ch.ready is None else ch.ready
        m.d.comb += Cover(ch.valid & ready, f"{name}: transfer")
        if ch.ready is not None:
            # Back-pressure that the block then rides out: waited, then transferred.
            stalled = Signal(name=f"{name}_stalled")
            with m.If(ch.valid & ~ch.ready):
                m.d.sync += stalled.eq(1)
            m.d.comb += Cover(
                stalled & ch.valid & ch.ready, f"{name}: transfer after back-pressure"
            )


def free_environment(
    m: Module,
    component: wiring.Component,
    name: str,
    *,
    env: bool = False,
    covers: bool = True,
    skip: tuple[str, ...] = (),
) -> list[Channel]:
    """Drive every input of ``component`` freely, assume the contract on the channels it
    receives, assert it (with covers) on the channels it sends. Returns its channels.

    ``env=True`` is for a stand-in of the *environment* (e.g. a free fabric adapter swapped
    into a block): its outputs are the harness's inputs to the block, so the roles flip; the
    channels it receives are the block's outputs and are asserted.

    Port leaves whose dotted path starts with an entry of ``skip`` are left undriven (the
    harness drives them itself).
    """
    chans = channels(component)
    driven: set[int] = set()
    for ch in chans:
        sent = ch.sent != env  # the block under test sends it
        label = f"{name}.{ch.name}"
        if any(ch.name.startswith(s) for s in skip):
            continue
        if sent:
            if ch.ready is not None:
                m.d.comb += ch.ready.eq(AnySeq(len(ch.ready)))
                driven.add(id(ch.ready))
            _check(m, ch, label, covers)
        else:
            for sig in [ch.valid, *ch.payload]:
                m.d.comb += sig.eq(AnySeq(len(sig)))
                driven.add(id(sig))
            if ch.ready is not None:
                holds, waiting = _contract(m, ch, label)
                with m.If(waiting):
                    m.d.comb += Assume(holds)
    inputs = wiring.Out if env else wiring.In
    for path, (flow, value) in _flows(component).items():
        label = ".".join(str(part) for part in path)
        if flow != inputs or any(label.startswith(s) for s in skip):
            continue
        sig = _as_value(value)
        if isinstance(sig, Const) or id(sig) in driven:
            continue
        if any(id(sig) == id(c.valid) or id(sig) in map(id, c.payload) for c in chans):
            continue  # a channel member driven above (or skipped)
        if any(c.ready is not None and id(sig) == id(c.ready) for c in chans):
            continue
        m.d.comb += sig.eq(AnySeq(len(sig)))
    return chans


def observe(
    m: Module, component: wiring.Component, name: str, *, covers: bool = True
) -> list[Channel]:
    """Assert the contract on every channel of ``component`` whose both ends are inside the
    design (nothing is driven): the sender is the component or the logic around it."""
    chans = channels(component)
    for ch in chans:
        _check(m, ch, f"{name}.{ch.name}", covers)
    return chans


def observe_stream(m: Module, port, name: str, *, covers: bool = True) -> Channel:
    """:func:`observe` for one ``stream.Interface`` between two parts of the design."""
    ch = Channel(name, _as_value(port.valid), _as_value(port.ready), [_as_value(port.payload)])
    _check(m, ch, name, covers)
    return ch


def credit_sink(
    m: Module, link, credits: int, name: str, *, covers: bool = True, idle: tuple[int, ...] = ()
) -> list[Signal]:
    """Check ``link`` (a ``FabricLink`` the block sends): a receiver with ``credits`` flits of
    buffer per VC, which returns a credit at any time for any flit it holds. Asserted: the
    block sends only on real VCs, and never on a VC whose ``credits`` flits are all held
    (never without a credit). Returns the per-VC counts of flits held. ``idle``: VCs the
    block never uses (no cover)."""
    vcs = len(link.credit)
    held = []
    with m.If(link.valid):
        m.d.comb += Assert(link.vc < vcs, f"{name}: only real VCs")
    for v in range(vcs):
        count = Signal(range(credits + 2), name=f"{name}_held{v}")
        give = Signal(name=f"{name}_give{v}")
        sent = link.valid & (link.vc == v)
        m.d.comb += [
            give.eq(AnySeq(1)),
            Assume(~give | (count != 0)),
            link.credit[v].eq(give),
        ]
        with m.If(sent):
            m.d.comb += Assert(count < credits, f"{name}: VC {v}: never sends without a credit")
        m.d.sync += count.eq(count + sent - give)
        held.append(count)
        if covers and v not in idle:
            m.d.comb += Cover(sent & (count == credits - 1), f"{name}: VC {v}: last credit")
    return held
