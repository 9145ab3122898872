"""Golden model of the switch's route compute (:class:`unifab.hdl.switch.route.RouteCompute`).

Written from :class:`unifab.switch_config.SwitchConfig` (``decode``, ``allowed``, ``routes``)
and the decision rules of ``docs/switch.md`` ("Route compute and tables"), not from the RTL.
Headers are handled as raw fields (:func:`unifab.codec.unpack_fields`) so that malformed ones
(unknown opcode or error code, reserved bits set) are modelled too.
"""

from typing import NamedTuple

from unifab.codec import pack_fields, unpack_fields
from unifab.flit import HEADER_BITS, ErrorCode, Header, MsgClass, Opcode, opcode_class
from unifab.switch_config import SwitchConfig, SwitchParams, access_kind

__all__ = ["RouteDecision", "route_reference"]

_OPCODES = {op.value: op for op in Opcode}


class RouteDecision(NamedTuple):
    """What route compute does with one head flit.

    ``out_port`` is ``params.ports`` for the responder; ``header_bits_out`` the header to
    forward; ``error`` the reason (OK when routed); ``drop`` whether the responder discards
    the message (it is not a request).
    """

    out_port: int
    header_bits_out: int
    error: ErrorCode
    drop: bool


def route_reference(
    params: SwitchParams, config: SwitchConfig, *, port: int, vc: int, header_bits: int
) -> RouteDecision:
    """Route one head flit arriving on input ``port``, virtual channel ``vc``."""
    if not 0 <= port < params.ports:
        raise ValueError(f"port must be 0..{params.ports - 1}, not {port!r}")
    if not 0 <= vc < 1 << params.fabric.vc_bits:
        raise ValueError(f"vc {vc!r} does not fit in {params.fabric.vc_bits} bits")
    f = unpack_fields(Header, header_bits, what="Header")
    responder = params.ports
    vc_cls = vc % 4
    is_req = vc_cls == MsgClass.REQ.value and f["cls"] == MsgClass.REQ.value
    op = _OPCODES.get(f["opcode"])
    malformed = (
        op is None or opcode_class(op).value != f["cls"] or f["cls"] != vc_cls or f["rsvd"] != 0
    )

    def refuse(error: ErrorCode, dst: int) -> RouteDecision:
        if not is_req:
            return RouteDecision(responder, header_bits, error, True)
        out = pack_fields(Header, {**f, "dst": dst, "err": error.value}, what="Header")
        return RouteDecision(responder, out, error, False)

    if malformed:
        return refuse(ErrorCode.MALFORMED, f["dst"])
    dst = f["dst"]
    if is_req and port in config.edge_ports:
        home = config.decode(f["addr"])
        if home is None:
            return refuse(ErrorCode.DECODE, dst)
        if not config.allowed(f["src"], f["addr"], access_kind(op)):
            return refuse(ErrorCode.DENIED, dst)
        dst = home
    out_port = config.routes.get(dst)
    if out_port is None or out_port >= params.ports:
        return refuse(ErrorCode.DECODE, dst)
    out = pack_fields(Header, {**f, "dst": dst}, what="Header")
    assert out >> HEADER_BITS == 0
    return RouteDecision(out_port, out, ErrorCode.OK, False)
