"""Property helpers shared by the harnesses.

Amaranth has no ``$past``: :func:`past` keeps a registered copy, and :func:`past_valid` is a
flag that is 0 in the first cycle. :func:`peek` elaborates a block and finds its internal
signals by name, so a harness can state invariants on registers that are not ports (needed to
close induction proofs) without editing the RTL.
"""

from __future__ import annotations

from amaranth import Module, Signal, Value
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Elaboratable

__all__ = [
    "any_seq",
    "assert_stream_out",
    "assume_stream_in",
    "deep_peek",
    "drive_stream_in",
    "past",
    "past_valid",
    "peek",
]


def past_valid(m: Module) -> Signal:
    """1 from the second cycle on (``$past`` of anything is meaningful)."""
    if not hasattr(m, "_formal_past_valid"):
        flag = Signal(name="past_valid")
        m.d.sync += flag.eq(1)
        m._formal_past_valid = flag
    return m._formal_past_valid


def past(m: Module, value: Value, name: str | None = None) -> Signal:
    """A copy of ``value`` one cycle late."""
    reg = Signal.like(value, name=name or "past")
    m.d.sync += reg.eq(value)
    return reg


def any_seq(m: Module, width: int, name: str) -> Signal:
    """A free input: an arbitrary value each cycle."""
    sig = Signal(width, name=name)
    m.d.comb += sig.eq(AnySeq(width))
    return sig


def _contract(m: Module, port, name: str) -> tuple[Value, Value]:
    """(holds, was_waiting): the stream contract, and whether it applies this cycle."""
    pv = past_valid(m)
    valid0 = past(m, port.valid, f"{name}_past_valid")
    ready0 = past(m, port.ready, f"{name}_past_ready")
    payload0 = past(m, port.payload, f"{name}_past_payload")
    waiting = pv & valid0 & ~ready0
    holds = port.valid & (port.payload.as_value() == payload0.as_value())
    return holds, waiting


def drive_stream_in(m: Module, port, name: str) -> None:
    """Drive an input stream (``port`` as seen by the DUT: ``In(stream.Signature)``) freely,
    under the valid/ready contract."""
    m.d.comb += [
        port.valid.eq(AnySeq(1)),
        port.payload.eq(AnySeq(len(port.payload.as_value()))),
    ]
    assume_stream_in(m, port, name)


def assume_stream_in(m: Module, port, name: str) -> None:
    """Assume the valid/ready contract on a stream the DUT receives."""
    holds, waiting = _contract(m, port, name)
    with m.If(waiting):
        m.d.comb += Assume(holds)


def assert_stream_out(m: Module, port, name: str) -> None:
    """Assert the valid/ready contract on a stream the DUT sends: once ``valid`` is up it
    stays up, with the same payload, until ``ready``."""
    holds, waiting = _contract(m, port, name)
    with m.If(waiting):
        m.d.comb += Assert(holds, f"{name}: valid/payload held until ready")


def _silence(obj: object) -> None:
    # Elaborating by hand leaves Amaranth's "created but never used" bookkeeping behind.
    if hasattr(obj, "_MustUse__silence"):
        obj._MustUse__silence = True


def peek(dut: Elaboratable, platform=None) -> tuple[Module, dict[str, Signal]]:
    """Elaborate ``dut`` and return its module and the signals it drives, by name.

    The returned module replaces ``dut`` as the harness's submodule (the ports are the same
    objects). Raises ``TypeError`` for a primitive (memory, instance).
    """
    _silence(dut)
    mod = dut.elaborate(platform)
    while not isinstance(mod, Module):
        if not isinstance(mod, Elaboratable):
            raise TypeError(f"{dut!r} elaborates to a primitive")
        _silence(mod)
        mod = mod.elaborate(platform)
    found: dict[str, Signal] = {}
    for sig in mod._driving:
        found.setdefault(sig.name, sig)
    return mod, found


def deep_peek(dut: Elaboratable, platform=None) -> tuple[Module, dict[str, Signal]]:
    """:func:`peek` through the whole hierarchy; names are ``sub.sub.signal`` paths.

    Every named submodule is replaced by its elaborated module, so the signals found are the
    ones the design uses.
    """
    mod, own = peek(dut, platform)
    found = dict(own)
    for sub_name, (sub, src_loc) in list(mod._named_submodules.items()):
        if not hasattr(sub, "elaborate"):
            continue
        try:
            sub_mod, sub_sigs = deep_peek(sub, platform)
        except TypeError:
            continue  # a primitive (memory, instance): nothing inside to name
        mod._named_submodules[sub_name] = (sub_mod, src_loc)
        for key, sig in sub_sigs.items():
            found.setdefault(f"{sub_name}.{key}", sig)
    return mod, found


def assert_arbiter_pointers(m: Module, mod: Module, path: tuple[str, ...]) -> None:
    """Asserts that the :class:`~unifab.hdl.lib.arbiter.RoundRobin` at ``path`` below the
    elaborated ``mod`` (submodule names, elaborated in place on the way) keeps a one-hot
    pointer. It does in every reachable state (``RoundRobinHarness`` proves it); a harness
    whose block holds an arbiter states it too, else induction may start from a pointer of
    zero, which grants nobody while a flit goes out."""
    for name in path:
        sub, src_loc = mod._named_submodules[name]
        if not isinstance(sub, Module):
            sub, _ = peek(sub)
            mod._named_submodules[name] = (sub, src_loc)
        mod = sub
    last = next(sig for sig in mod._driving if sig.name == "last")
    m.d.comb += Assert(last.any() & ((last & (last - 1)) == 0), "arbiter pointer one-hot")


def small_fabric(*, data_width: int = 8, vcs: int = 2, seq_bits: int = 4, credit_bits: int = 2):
    """A :class:`~unifab.flit.FabricParams` below the product's minimum sizes.

    ``FabricParams`` insists on ``data_width >= 128`` and ``vcs >= 4`` (one VC per message
    class). The link layer never looks inside a payload and treats every VC alike, so its
    proofs use a narrow payload and two VCs to keep the CRC trees and the state small; the
    validation is bypassed on purpose, only here.
    """
    from unifab.flit import FabricParams

    params = object.__new__(FabricParams)
    for name, value in dict(
        data_width=data_width, vcs=vcs, seq_bits=seq_bits, credit_bits=credit_bits
    ).items():
        object.__setattr__(params, name, value)
    return params
