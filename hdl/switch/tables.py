"""The switch's programmable tables: node → port routes, address decoder, access table.

:func:`tables_layout` is the shape of the tables as every :class:`RouteCompute` sees them;
:class:`SwitchTables` holds them in registers, reset to a :class:`SwitchConfig` and rewritten
through a 64-bit register port whose map lives in :mod:`unifab.switch_regs`.
"""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from unifab.flit import ADDR_BITS, NODE_BITS
from unifab.switch_config import SwitchConfig, SwitchParams
from unifab.switch_regs import (
    CFG_ADDR_BITS,
    CFG_DATA_BITS,
    CONTROL,
    CONTROL_FIELDS,
    LIMIT_BITS,
    NODE_BASE,
    NODE_ENTRIES,
    NODE_FIELDS,
    RANGE_BASE,
    RANGE_CTRL_FIELDS,
    REG_BASE,
    REG_CTRL,
    REG_LIMIT,
    REG_SRC,
    REG_TARGETS,
    RULE_BASE,
    RULE_FLAGS_FIELDS,
    RULE_SRC_FIELDS,
    tables_init,
)

__all__ = ["SwitchTables", "route_entry_layout", "split_routes", "tables_layout"]

route_entry_layout = data.StructLayout({"valid": 1, "port": 4})

_range_layout = data.StructLayout(
    {
        "valid": 1,
        "base": ADDR_BITS,
        "limit": LIMIT_BITS,  # exclusive end (base + size), up to 2**48
        "ways_log2": 2,
        "gran_log2": 4,  # 8..12 from a config; the decoder handles any value
        "targets": data.ArrayLayout(NODE_BITS, 8),
    }
)

_rule_layout = data.StructLayout(
    {
        "valid": 1,
        "base": ADDR_BITS,
        "limit": LIMIT_BITS,  # exclusive end (base + size)
        "src_lo": NODE_BITS,
        "src_hi": NODE_BITS,
        "read": 1,
        "write": 1,
        "atomic": 1,
    }
)


def tables_layout(params: SwitchParams) -> data.StructLayout:
    """The tables of a switch of ``params``.

    ``node_id`` the switch's own node ID; ``default_allow`` the access when no rule matches;
    ``edge_mask`` bit ``p`` set for edge ports (requests routed by address); ``ranges[i]``
    the address decoder
    ``{valid, base, limit, ways_log2, gran_log2, targets[8]}``; ``rules[j]`` the access table
    ``{valid, base, limit, src_lo, src_hi, read, write, atomic}``. Windows are
    ``base <= addr < limit``. The node table (``{valid, port}`` per destination node) is not
    here: it lives in a memory read through :class:`SwitchTables`' lookup ports.
    """
    return data.StructLayout(
        {
            "node_id": NODE_BITS,
            "default_allow": 1,
            "edge_mask": params.ports,
            "ranges": data.ArrayLayout(_range_layout, params.ranges),
            "rules": data.ArrayLayout(_rule_layout, params.rules),
        }
    )


def split_routes(init: dict) -> tuple[dict, list[dict]]:
    """Split a :func:`tables_init` value into the register part and the node table."""
    regs = {k: v for k, v in init.items() if k != "routes"}
    return regs, list(init["routes"])


def _assign_fields(view, fields: dict[str, tuple[int, int]], value: Value) -> list:
    return [
        view[name].eq(value[offset : offset + width]) for name, (offset, width) in fields.items()
    ]


class SwitchTables(wiring.Component):
    """Registers holding the switch's tables, reset to ``config``, rewritable at run time.

    Ports
    -----
    tables : Out(tables_layout(params))
        The current table contents (registers; reset value :func:`tables_init`).
    route_node : In(8).array(lookups)
        Destination nodes to look up in the node table (one port per reader).
    route : Out(route_entry_layout).array(lookups)
        ``{valid, port}`` of each looked-up node, combinationally. The node table is a memory
        (256 entries) so that every reader does not carry a copy of it.
    cfg_we : In(1)
        Write ``cfg_data`` to the register at ``cfg_addr`` at the next clock edge.
    cfg_addr : In(16)
        Register address (map in :mod:`unifab.switch_regs` and ``docs/switch.md``); writes to
        unmapped addresses are ignored.
    cfg_data : In(64)
        Register value; bits outside the register's fields are ignored.
    """

    def __init__(self, params: SwitchParams, config: SwitchConfig, *, lookups: int = 1) -> None:
        try:
            init = tables_init(params, config)  # validates types and config.check_fits(params)
        except (TypeError, ValueError):
            self._MustUse__silence = True  # never built: no "created but never used" warning
            raise
        if not isinstance(lookups, int) or lookups < 1:
            self._MustUse__silence = True
            raise ValueError(f"lookups must be a positive integer, not {lookups!r}")
        self.params = params
        self.config = config
        self.lookups = lookups
        regs, self._routes_init = split_routes(init)
        super().__init__(
            {
                "tables": Out(tables_layout(params), init=regs),
                "route_node": In(NODE_BITS).array(lookups),
                "route": Out(route_entry_layout).array(lookups),
                "cfg_we": In(1),
                "cfg_addr": In(CFG_ADDR_BITS),
                "cfg_data": In(CFG_DATA_BITS),
            }
        )

    def elaborate(self, platform):
        m = Module()
        t = self.tables
        d = self.cfg_data
        m.submodules.node_table = node_table = Memory(
            shape=route_entry_layout, depth=NODE_ENTRIES, init=self._routes_init
        )
        write = node_table.write_port()
        entry = Signal(route_entry_layout)
        m.d.comb += [
            _assign_fields(entry, NODE_FIELDS, d),
            write.addr.eq(self.cfg_addr[:NODE_BITS]),
            write.data.eq(entry),
            write.en.eq(self.cfg_we & (self.cfg_addr[NODE_BITS:] == NODE_BASE >> NODE_BITS)),
        ]
        for k in range(self.lookups):
            read = node_table.read_port(domain="comb")
            m.d.comb += [read.addr.eq(self.route_node[k]), self.route[k].eq(read.data)]
        with m.If(self.cfg_we), m.Switch(self.cfg_addr):
            for i in range(self.params.ranges):
                r = t.ranges[i]
                a = RANGE_BASE + 4 * i
                with m.Case(a + REG_BASE):
                    m.d.sync += r.base.eq(d[:ADDR_BITS])
                with m.Case(a + REG_LIMIT):
                    m.d.sync += r.limit.eq(d[:LIMIT_BITS])
                with m.Case(a + REG_TARGETS):
                    m.d.sync += [r.targets[w].eq(d.word_select(w, NODE_BITS)) for w in range(8)]
                with m.Case(a + REG_CTRL):
                    m.d.sync += _assign_fields(r, RANGE_CTRL_FIELDS, d)
            for j in range(self.params.rules):
                r = t.rules[j]
                a = RULE_BASE + 4 * j
                with m.Case(a + REG_BASE):
                    m.d.sync += r.base.eq(d[:ADDR_BITS])
                with m.Case(a + REG_LIMIT):
                    m.d.sync += r.limit.eq(d[:LIMIT_BITS])
                with m.Case(a + REG_SRC):
                    m.d.sync += _assign_fields(r, RULE_SRC_FIELDS, d)
                with m.Case(a + REG_CTRL):
                    m.d.sync += _assign_fields(r, RULE_FLAGS_FIELDS, d)
            with m.Case(CONTROL):
                m.d.sync += _assign_fields(t, CONTROL_FIELDS, d)
        return m
