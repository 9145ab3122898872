"""Route compute: which output a message's head flit goes to, and with which header.

Requests entering at an edge port are routed by global address (range/interleave decoder,
then the access table); everything else by destination node ID through the node → port table.
Anything that cannot be routed goes to the switch's internal responder (output ``ports``),
which answers requests with ERROR responses and discards everything else. The rules are in
``docs/switch.md`` ("Route compute and tables"); :mod:`unifab.models.switch_route` is the
golden model.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from unifab.flit import NODE_BITS, ErrorCode, Header, MsgClass, Opcode, opcode_class
from unifab.hdl.switch.tables import route_entry_layout, tables_layout
from unifab.switch_config import AccessKind, SwitchParams, access_kind

__all__ = ["RouteCompute"]


class RouteCompute(wiring.Component):
    """Combinational route compute for the head flits of input port ``port``.

    Ports
    -----
    tables : In(tables_layout(params))
        The switch tables (from :class:`~unifab.hdl.switch.tables.SwitchTables`).
    route_node : Out(8)
        The destination node to look up in the node table (a lookup port of the tables).
    route : In(route_entry_layout)
        Its ``{valid, port}`` entry, combinationally.
    vc : In(params.fabric.vc_bits)
        Virtual channel the head flit arrived on; VC ``v`` carries message class ``v % 4``.
    header : In(Header)
        The head flit's header (the low 128 bits of its payload).
    out_port : Out(range(params.ports + 1))
        Output port; ``params.ports`` is the internal responder.
    header_out : Out(Header)
        The header to forward: ``dst`` replaced by the home node for a request decoded at an
        edge port; ``err`` set to the reason for a request sent to the responder; otherwise
        ``header`` unchanged.
    error : Out(ErrorCode)
        Why the message goes to the responder (DECODE, DENIED, MALFORMED); OK when routed.
    drop : Out(1)
        The message goes to the responder and is not a request: it is discarded (and counted).
    """

    def __init__(self, params: SwitchParams, *, port: int) -> None:
        if not isinstance(params, SwitchParams):
            self._MustUse__silence = True  # never built: no "created but never used" warning
            raise TypeError(f"params must be a SwitchParams, not {type(params).__name__}")
        if not isinstance(port, int) or not 0 <= port < params.ports:
            self._MustUse__silence = True
            raise ValueError(f"port must be 0..{params.ports - 1}, not {port!r}")
        self.params = params
        self.port = port
        super().__init__(
            {
                "tables": In(tables_layout(params)),
                "route_node": Out(NODE_BITS),
                "route": In(route_entry_layout),
                "vc": In(params.fabric.vc_bits),
                "header": In(Header),
                "out_port": Out(range(params.ports + 1)),
                "header_out": Out(Header),
                "error": Out(ErrorCode),
                "drop": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        t = self.tables
        h = self.header
        ports = self.params.ports
        opcode = h.opcode.as_value()
        cls = h.cls.as_value()

        # Well-formedness and the opcode's class and access kind, straight from unifab.flit.
        defined = Signal()
        expected_cls = Signal(2)
        kind = Signal(2)
        with m.Switch(opcode):
            for op in Opcode:
                with m.Case(op.value):
                    m.d.comb += [defined.eq(1), expected_cls.eq(opcode_class(op).value)]
                    if opcode_class(op) is MsgClass.REQ:
                        m.d.comb += kind.eq(access_kind(op))
        vc_cls = self.vc[:2]
        malformed = Signal()
        m.d.comb += malformed.eq(~defined | (cls != expected_cls) | (cls != vc_cls) | (h.rsvd != 0))
        # A request only if both the VC and the header say so: only REQ VCs cause responses.
        is_req = Signal()
        m.d.comb += is_req.eq((vc_cls == MsgClass.REQ.value) & (cls == MsgClass.REQ.value))
        edge = Signal()
        m.d.comb += edge.eq(t.edge_mask[self.port])

        # Address decoder: first valid range holding addr; way from the address bits above
        # the granularity, masked to the interleave ways.
        addr = h.addr
        hit = Signal()
        home = Signal(NODE_BITS)
        for i, r in reversed(list(enumerate(t.ranges))):
            inside = Signal(name=f"range{i}_hit")
            way = Signal(3, name=f"range{i}_way")
            ways = r.ways_log2
            mask = Cat(ways != 0, ways >= 2, ways == 3)
            m.d.comb += [
                inside.eq(r.valid & (addr >= r.base) & (addr < r.limit)),
                way.eq(addr.bit_select(r.gran_log2, 3) & mask),
            ]
            with m.If(inside):  # later statements win: the lowest index has priority
                m.d.comb += [hit.eq(1), home.eq(r.targets[way])]

        # Access table: first valid rule matching (src, addr) decides, else default_allow.
        allowed_by_rules = Signal()
        m.d.comb += allowed_by_rules.eq(t.default_allow)
        for j, rule in reversed(list(enumerate(t.rules))):
            match = Signal(name=f"rule{j}_match")
            m.d.comb += match.eq(
                rule.valid
                & (h.src >= rule.src_lo)
                & (h.src <= rule.src_hi)
                & (addr >= rule.base)
                & (addr < rule.limit)
            )
            with m.If(match), m.Switch(kind):
                for k, bit in (
                    (AccessKind.READ, rule.read),
                    (AccessKind.WRITE, rule.write),
                    (AccessKind.ATOMIC, rule.atomic),
                ):
                    with m.Case(k):
                        m.d.comb += allowed_by_rules.eq(bit)
        allowed = Signal()
        m.d.comb += allowed.eq((kind == AccessKind.NONE) | allowed_by_rules)

        # Destination node and its output port.
        by_address = Signal()
        m.d.comb += by_address.eq(is_req & ~malformed & edge & hit & allowed)
        dst = Signal(NODE_BITS)
        m.d.comb += dst.eq(Mux(by_address, home, h.dst))
        m.d.comb += self.route_node.eq(dst)
        route = self.route
        reachable = Signal()
        m.d.comb += reachable.eq(route.valid & (route.port < ports))

        error = Signal(ErrorCode)
        with m.If(malformed):
            m.d.comb += error.eq(ErrorCode.MALFORMED)
        with m.Elif(is_req & edge & ~hit):
            m.d.comb += error.eq(ErrorCode.DECODE)
        with m.Elif(is_req & edge & ~allowed):
            m.d.comb += error.eq(ErrorCode.DENIED)
        with m.Elif(~reachable):
            m.d.comb += error.eq(ErrorCode.DECODE)
        failed = error != ErrorCode.OK

        m.d.comb += [
            self.error.eq(error),
            self.drop.eq(failed & ~is_req),
            self.out_port.eq(Mux(failed, ports, route.port)),
            self.header_out.eq(h),
            self.header_out.dst.eq(dst),
        ]
        with m.If(failed & is_req):
            m.d.comb += self.header_out.err.eq(error)
        return m
