"""Register map of the switch tables: reset values and reprogramming writes.

A switch's tables (:class:`unifab.hdl.switch.tables.SwitchTables`) are 64-bit registers
written through a ``cfg_we`` / ``cfg_addr`` (16 bits) / ``cfg_data`` (64 bits) port. This
module is the single definition of that map, used by the RTL (bit positions, reset values)
and by software and testbenches (the writes that program a :class:`SwitchConfig`):

* :func:`tables_init` — the value of ``tables_layout(params)`` for a config (the RTL's reset
  value, a nested dict for ``Layout.const``);
* :func:`config_writes` — the ``(address, data)`` writes that load a config into a running
  switch, covering every entry (unused entries are cleared);
* :func:`apply_write` — what one write does to a tables value (the register file's model).

Address map (``docs/switch.md`` has the table)::

    0x000 + n          node table entry n (0..255)      {valid [0], port [7:4]}
    0x100 + 4*i + 0    decoder range i: base            [47:0]
    0x100 + 4*i + 1    decoder range i: limit           [48:0]  exclusive end, base + size
    0x100 + 4*i + 2    decoder range i: targets         way w in [8w+7:8w]
    0x100 + 4*i + 3    decoder range i: control         {valid [0], ways_log2 [5:4],
                                                         gran_log2 [11:8]}
    0x200 + 4*j + 0    access rule j: base              [47:0]
    0x200 + 4*j + 1    access rule j: limit             [48:0]  exclusive end, base + size
    0x200 + 4*j + 2    access rule j: sources           {src_lo [7:0], src_hi [15:8]}
    0x200 + 4*j + 3    access rule j: flags             {valid [0], read [1], write [2],
                                                         atomic [3]}
    0x300              control                          {node_id [7:0], default_allow [8],
                                                         edge_mask [31:16]}

Ranges ``i >= params.ranges``, rules ``j >= params.rules`` and every other address are
unmapped: writes to them are ignored. Data bits outside the fields are ignored.
"""

from typing import Any

from unifab.flit import ADDR_BITS, NODE_BITS
from unifab.switch_config import SwitchConfig, SwitchParams

__all__ = [
    "CFG_ADDR_BITS",
    "CFG_DATA_BITS",
    "CONTROL",
    "CONTROL_FIELDS",
    "LIMIT_BITS",
    "NODE_BASE",
    "NODE_ENTRIES",
    "NODE_FIELDS",
    "RANGE_BASE",
    "RANGE_CTRL_FIELDS",
    "REG_BASE",
    "REG_CTRL",
    "REG_LIMIT",
    "REG_SRC",
    "REG_TARGETS",
    "RULE_BASE",
    "RULE_FLAGS_FIELDS",
    "RULE_SRC_FIELDS",
    "apply_write",
    "config_writes",
    "tables_init",
]

CFG_ADDR_BITS = 16
CFG_DATA_BITS = 64
NODE_ENTRIES = 1 << NODE_BITS
LIMIT_BITS = ADDR_BITS + 1  # an exclusive end up to and including 2**48

NODE_BASE = 0x000
RANGE_BASE = 0x100
RULE_BASE = 0x200
CONTROL = 0x300

# Register k of a range or rule block (address = block base + 4 * index + k).
REG_BASE = 0
REG_LIMIT = 1
REG_TARGETS = 2  # ranges
REG_SRC = 2  # rules
REG_CTRL = 3  # ranges: control; rules: flags

# Bit fields of the packed registers: name -> (offset, width).
NODE_FIELDS = {"valid": (0, 1), "port": (4, 4)}
RANGE_CTRL_FIELDS = {"valid": (0, 1), "ways_log2": (4, 2), "gran_log2": (8, 4)}
RULE_SRC_FIELDS = {"src_lo": (0, 8), "src_hi": (8, 8)}
RULE_FLAGS_FIELDS = {"valid": (0, 1), "read": (1, 1), "write": (2, 1), "atomic": (3, 1)}
CONTROL_FIELDS = {"node_id": (0, 8), "default_allow": (8, 1), "edge_mask": (16, 16)}
TARGET_BITS = NODE_BITS
TARGET_WAYS = 8

_WAYS_LOG2 = {1: 0, 2: 1, 4: 2, 8: 3}
_GRAN_LOG2 = {256: 8, 512: 9, 1024: 10, 2048: 11, 4096: 12}


def _check(what: str, value: object, width: int) -> int:
    """``value`` as an int of ``width`` unsigned bits (bools allowed), else ValueError."""
    if not isinstance(value, int):
        raise ValueError(f"{what} = {value!r} is not an integer")
    if not 0 <= value < 1 << width:
        raise ValueError(f"{what} = {value:#x} does not fit in {width} bits")
    return int(value)


def _window(what: str, base: object, size: object) -> tuple[int, int]:
    """``(base, limit)`` of a window, checked to lie in the global address space."""
    base = _check(f"{what}: base", base, ADDR_BITS)
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"{what}: size must be a positive integer, not {size!r}")
    limit = base + size
    if limit > 1 << ADDR_BITS:
        raise ValueError(
            f"{what}: {base:#x} + {size:#x} runs past the {ADDR_BITS}-bit global address space"
        )
    return base, limit


def _check_types(params: object, config: object) -> None:
    if not isinstance(params, SwitchParams):
        raise TypeError(f"params must be a SwitchParams, not {type(params).__name__}")
    if not isinstance(config, SwitchConfig):
        raise TypeError(f"config must be a SwitchConfig, not {type(config).__name__}")


def _empty_range() -> dict[str, Any]:
    return {
        "valid": 0,
        "base": 0,
        "limit": 0,
        "ways_log2": 0,
        "gran_log2": 0,
        "targets": [0] * TARGET_WAYS,
    }


def _empty_rule() -> dict[str, Any]:
    return {
        "valid": 0,
        "base": 0,
        "limit": 0,
        "src_lo": 0,
        "src_hi": 0,
        "read": 0,
        "write": 0,
        "atomic": 0,
    }


def tables_init(params: SwitchParams, config: SwitchConfig) -> dict[str, Any]:
    """The ``tables_layout(params)`` value holding ``config`` (the tables' reset value).

    Unused node entries, ranges and rules are all-zero (invalid). Raises ValueError when the
    config does not fit ``params`` or a field is out of range (``Layout.const`` would truncate).
    """
    _check_types(params, config)
    config.check_fits(params)
    node_id = _check("node_id", config.node_id, NODE_BITS)
    routes = [{"valid": 0, "port": 0} for _ in range(NODE_ENTRIES)]
    for node, port in config.routes.items():
        node = _check("routes: node", node, NODE_BITS)
        if not isinstance(port, int) or not 0 <= port < params.ports:
            raise ValueError(f"routes: node {node} -> port {port!r}, the switch has {params.ports}")
        routes[node] = {"valid": 1, "port": port}
    edge_mask = 0
    for p in config.edge_ports:
        if not isinstance(p, int) or not 0 <= p < params.ports:
            raise ValueError(f"edge port {p!r} does not exist ({params.ports} ports)")
        edge_mask |= 1 << p
    ranges = [_empty_range() for _ in range(params.ranges)]
    for i, r in enumerate(config.ranges):
        what = f"range {i}"
        base, limit = _window(what, r.base, r.size)
        ways = len(r.targets)
        if ways not in _WAYS_LOG2:
            raise ValueError(f"{what}: interleave over 1, 2, 4 or 8 nodes, not {ways}")
        if r.granularity not in _GRAN_LOG2:
            raise ValueError(
                f"{what}: granularity must be one of {tuple(_GRAN_LOG2)} bytes, "
                f"not {r.granularity!r}"
            )
        unit = r.granularity * ways
        if base % unit or (limit - base) % unit:
            raise ValueError(
                f"{what}: base and size must be multiples of granularity x ways = {unit:#x}"
            )
        targets = [_check(f"{what}: target {w}", t, NODE_BITS) for w, t in enumerate(r.targets)]
        ranges[i] = {
            "valid": 1,
            "base": base,
            "limit": limit,
            "ways_log2": _WAYS_LOG2[ways],
            "gran_log2": _GRAN_LOG2[r.granularity],
            "targets": targets + [0] * (TARGET_WAYS - ways),
        }
    rules = [_empty_rule() for _ in range(params.rules)]
    for j, rule in enumerate(config.rules):
        what = f"access rule {j}"
        base, limit = _window(what, rule.base, rule.size)
        src_lo = _check(f"{what}: src_lo", rule.src_lo, NODE_BITS)
        src_hi = _check(f"{what}: src_hi", rule.src_hi, NODE_BITS)
        if src_lo > src_hi:
            raise ValueError(f"{what}: src_lo {src_lo} exceeds src_hi {src_hi}")
        rules[j] = {
            "valid": 1,
            "base": base,
            "limit": limit,
            "src_lo": src_lo,
            "src_hi": src_hi,
            "read": int(bool(rule.read)),
            "write": int(bool(rule.write)),
            "atomic": int(bool(rule.atomic)),
        }
    return {
        "node_id": node_id,
        "default_allow": int(bool(config.default_allow)),
        "edge_mask": edge_mask,
        "routes": routes,
        "ranges": ranges,
        "rules": rules,
    }


def _pack(fields: dict[str, tuple[int, int]], values: dict[str, int]) -> int:
    return sum(values[name] << offset for name, (offset, _) in fields.items())


def _unpack(fields: dict[str, tuple[int, int]], data: int) -> dict[str, int]:
    return {name: (data >> offset) & ((1 << width) - 1) for name, (offset, width) in fields.items()}


def _pack_targets(targets: list[int]) -> int:
    return sum(t << (TARGET_BITS * w) for w, t in enumerate(targets))


def config_writes(params: SwitchParams, config: SwitchConfig) -> list[tuple[int, int]]:
    """The register writes ``(address, data)`` that load ``config`` into a running switch.

    Every node entry, range, rule and the control register is written, so the result equals
    :func:`tables_init` whatever the tables held before. Each range and rule is first
    invalidated, then filled, then validated, so no half-written entry is ever valid.
    """
    t = tables_init(params, config)
    writes = [(NODE_BASE + n, _pack(NODE_FIELDS, entry)) for n, entry in enumerate(t["routes"])]
    for i, r in enumerate(t["ranges"]):
        a = RANGE_BASE + 4 * i
        writes += [
            (a + REG_CTRL, 0),
            (a + REG_BASE, r["base"]),
            (a + REG_LIMIT, r["limit"]),
            (a + REG_TARGETS, _pack_targets(r["targets"])),
            (a + REG_CTRL, _pack(RANGE_CTRL_FIELDS, r)),
        ]
    for j, rule in enumerate(t["rules"]):
        a = RULE_BASE + 4 * j
        writes += [
            (a + REG_CTRL, 0),
            (a + REG_BASE, rule["base"]),
            (a + REG_LIMIT, rule["limit"]),
            (a + REG_SRC, _pack(RULE_SRC_FIELDS, rule)),
            (a + REG_CTRL, _pack(RULE_FLAGS_FIELDS, rule)),
        ]
    writes.append((CONTROL, _pack(CONTROL_FIELDS, t)))
    return writes


def apply_write(params: SwitchParams, tables: dict[str, Any], addr: int, data: int) -> bool:
    """Apply one register write to a :func:`tables_init`-shaped value, in place.

    Returns False (and changes nothing) for an unmapped address. Data bits outside the
    register's fields are ignored, as in the RTL.
    """
    addr = _check("cfg_addr", addr, CFG_ADDR_BITS)
    data = _check("cfg_data", data, CFG_DATA_BITS)
    if NODE_BASE <= addr < NODE_BASE + NODE_ENTRIES:
        tables["routes"][addr - NODE_BASE] = _unpack(NODE_FIELDS, data)
        return True
    for block, entries, name in (
        (RANGE_BASE, params.ranges, "ranges"),
        (RULE_BASE, params.rules, "rules"),
    ):
        if block <= addr < block + 4 * entries:
            entry = tables[name][(addr - block) // 4]
            k = (addr - block) % 4
            if k == REG_BASE:
                entry["base"] = data & ((1 << ADDR_BITS) - 1)
            elif k == REG_LIMIT:
                entry["limit"] = data & ((1 << LIMIT_BITS) - 1)
            elif name == "ranges" and k == REG_TARGETS:
                mask = (1 << TARGET_BITS) - 1
                entry["targets"] = [(data >> (TARGET_BITS * w)) & mask for w in range(8)]
            elif name == "ranges":
                entry.update(_unpack(RANGE_CTRL_FIELDS, data))
            elif k == REG_SRC:
                entry.update(_unpack(RULE_SRC_FIELDS, data))
            else:
                entry.update(_unpack(RULE_FLAGS_FIELDS, data))
            return True
    if addr == CONTROL:
        values = _unpack(CONTROL_FIELDS, data)
        values["edge_mask"] &= (1 << params.ports) - 1
        tables.update(values)
        return True
    return False
