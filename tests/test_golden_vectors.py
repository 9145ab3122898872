"""The golden vectors file agrees with the codec, with Amaranth's packing (constants and the
simulator), and with its generator; the tables of docs/protocol.md agree with the layouts."""

import re
from pathlib import Path
from typing import Any

import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import data
from amaranth.sim import Simulator

from unifab.codec import (
    FieldSpan,
    Flit,
    flits_to_message,
    layout_fields,
    message_to_flits,
    pack_flit,
    pack_header,
    pack_link_flit,
    unpack_flit,
    unpack_header,
    unpack_link_flit,
)
from unifab.crc import crc32c_bits
from unifab.flit import (
    CacheState,
    ErrorCode,
    FabricParams,
    Header,
    LinkKind,
    MsgClass,
    Opcode,
    beat_layout,
    data_beats,
    flit_layout,
    link_flit_layout,
)
from unifab.golden import (
    DATA_PATH,
    ERROR_CLASSES,
    doc_blocks,
    doc_tables,
    header_from_json,
    header_to_json,
    link_flit_from_json,
    load_vectors,
    make_vectors,
    message_from_json,
    params_from_json,
    render_vectors,
)

PROTOCOL_DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"

FILE = load_vectors()
VECTORS = FILE["vectors"]


def of_type(kind: str) -> list[dict[str, Any]]:
    return [v for v in VECTORS if v["type"] == kind and "error" not in v]


def malformed(kind: str) -> list[dict[str, Any]]:
    return [v for v in VECTORS if v["type"] == kind and "error" in v]


def ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


def h2i(text: str) -> int:
    return int(text, 16)


def rtl_header(fields: dict[str, Any]) -> int:
    """Amaranth's packing of header fields (``Header.const``)."""
    values = {
        "opcode": Opcode[fields["opcode"]],
        "cls": MsgClass[fields["cls"]],
        "state": CacheState[fields["state"]],
        "err": ErrorCode[fields["err"]],
    }
    for name in ("src", "dst", "tag", "fwd", "addr", "size", "poison", "qos"):
        value = fields[name]
        values[name] = int(value, 16) if isinstance(value, str) else value
    return Header.const(values).as_value().value


def rtl_link_flit(fields: dict[str, Any], crc: int, params: FabricParams) -> int:
    """Amaranth's packing of a link flit (``link_flit_layout(p).const``)."""
    flit = fields["flit"]
    value = {
        "kind": LinkKind[fields["kind"]],
        "seq": fields["seq"],
        "ack": fields["ack"],
        "nak": fields["nak"],
        "has_flit": fields["has_flit"],
        "vc": fields["vc"],
        "flit": {"head": flit["head"], "tail": flit["tail"], "payload": h2i(flit["payload"])},
        "credits": fields["credits"],
        "crc": crc,
    }
    return link_flit_layout(params).const(value).as_value().value


# --------------------------------------------------------------------------------------------
# The file itself


def test_file_is_reproduced_by_the_generator():
    """``make_vectors`` rebuilds the committed file exactly, so it cannot drift silently."""
    assert FILE["format"] == "unifab-golden-vectors"
    regenerated = make_vectors(FILE["seed"])
    assert regenerated == FILE, "run: python -m unifab.golden --write (and review the diff)"
    assert render_vectors(regenerated) == DATA_PATH.read_text(encoding="utf-8")


def test_vectors_cover_the_format():
    names = ids(VECTORS)
    assert len(names) == len(set(names)), "vector names are unique"
    messages = of_type("message")
    assert {Opcode[v["header"]["opcode"]] for v in messages} == set(Opcode)
    assert {v["params"]["data_width"] for v in messages} == {128, 256, 512}
    with_data = {v["params"]["data_width"] for v in messages if len(v["flits"]) > 1}
    assert with_data == {128, 256, 512}
    links = of_type("link_flit")
    assert {v["fields"]["kind"] for v in links} == {k.name for k in LinkKind}
    assert {v["params"]["data_width"] for v in links} == {128, 256, 512}
    assert {v["error"] for v in VECTORS if "error" in v} == set(ERROR_CLASSES)
    assert len(of_type("header")) >= 3


# --------------------------------------------------------------------------------------------
# Codec side


@pytest.mark.parametrize("vector", of_type("header"), ids=ids(of_type("header")))
def test_header_vector_codec(vector):
    h = header_from_json(vector["fields"])
    assert header_to_json(h) == vector["fields"]
    assert pack_header(h) == h2i(vector["packed"])
    assert unpack_header(h2i(vector["packed"])) == h


@pytest.mark.parametrize("vector", of_type("message"), ids=ids(of_type("message")))
def test_message_vector_codec(vector):
    params = params_from_json(vector["params"])
    msg = message_from_json(vector)
    assert pack_header(msg.header) == h2i(vector["header_packed"])
    flits = message_to_flits(msg, params)
    assert (
        len(flits) == len(vector["flits"]) == 1 + data_beats(msg.header.opcode, params.data_width)
    )
    for flit, expected in zip(flits, vector["flits"], strict=True):
        assert int(flit.head) == expected["head"]
        assert int(flit.tail) == expected["tail"]
        assert flit.payload == h2i(expected["payload"])
        assert pack_flit(flit, params) == h2i(expected["packed"])
        assert unpack_flit(h2i(expected["packed"]), params) == flit
    assert flits_to_message(flits, params) == msg


@pytest.mark.parametrize("vector", of_type("link_flit"), ids=ids(of_type("link_flit")))
def test_link_vector_codec(vector):
    params = params_from_json(vector["params"])
    lf = link_flit_from_json(vector["fields"])
    packed = h2i(vector["packed"])
    assert pack_link_flit(lf, params) == packed
    back = unpack_link_flit(packed, params)
    assert back.crc == h2i(vector["crc"])
    assert link_flit_from_json(vector["fields"]) == type(lf)(**{**back.__dict__, "crc": None})


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS if "error" in v],
    ids=ids([v for v in VECTORS if "error" in v]),
)
def test_malformed_vector_raises(vector):
    error = ERROR_CLASSES[vector["error"]]
    with pytest.raises(error) as info:
        if vector["type"] == "header":
            unpack_header(h2i(vector["bits"]))
        elif vector["type"] == "link_flit":
            unpack_link_flit(h2i(vector["bits"]), params_from_json(vector["params"]))
        else:
            flits = [_flit(f) for f in vector["flits"]]
            flits_to_message(flits, params_from_json(vector["params"]))
    assert info.value.field == vector["field"]


def _flit(obj: dict[str, Any]) -> Flit:
    return Flit(head=bool(obj["head"]), tail=bool(obj["tail"]), payload=h2i(obj["payload"]))


# --------------------------------------------------------------------------------------------
# RTL side: Amaranth constants


@pytest.mark.parametrize("vector", of_type("header"), ids=ids(of_type("header")))
def test_header_vector_rtl_const(vector):
    assert rtl_header(vector["fields"]) == h2i(vector["packed"])


@pytest.mark.parametrize("vector", of_type("message"), ids=ids(of_type("message")))
def test_message_vector_rtl_const(vector):
    params = params_from_json(vector["params"])
    assert rtl_header(vector["header"]) == h2i(vector["header_packed"])
    data_bytes = bytes.fromhex(vector["data"])
    enables = h2i(vector["byte_enable"])
    beat_bytes = params.data_width // 8
    for i, f in enumerate(vector["flits"]):
        if i == 0:
            payload = rtl_header(vector["header"])
        else:
            chunk = data_bytes[(i - 1) * beat_bytes : i * beat_bytes]
            be = (enables >> (i - 1) * beat_bytes) & ((1 << beat_bytes) - 1)
            beat = {"data": int.from_bytes(chunk, "little"), "be": be}
            payload = beat_layout(params).const(beat).as_value().value
        assert payload == h2i(f["payload"])
        value = {"head": f["head"], "tail": f["tail"], "payload": payload}
        assert flit_layout(params).const(value).as_value().value == h2i(f["packed"])


@pytest.mark.parametrize("vector", of_type("link_flit"), ids=ids(of_type("link_flit")))
def test_link_vector_rtl_const(vector):
    params = params_from_json(vector["params"])
    packed = h2i(vector["packed"])
    crc = h2i(vector["crc"])
    assert rtl_link_flit(vector["fields"], crc, params) == packed
    body_width = link_flit_layout(params, with_crc=False).size
    assert crc32c_bits(packed & ((1 << body_width) - 1), body_width) == crc
    assert packed >> body_width == crc


# --------------------------------------------------------------------------------------------
# RTL side: Amaranth's simulator


def _view_field(view: Any, name: str) -> Any:
    """The part of a ``data.View`` a flattened name (``"flit.payload"``, ``"credits[2]"``) names."""
    for attr, index in re.findall(r"(\w+)|\[(\d+)\]", name):
        view = view[int(index)] if index else getattr(view, attr)
    return view


def _signal_for(span: FieldSpan, prefix: str) -> Signal:
    name = prefix + re.sub(r"\W+", "_", span.name)
    if span.enum is not None:
        return Signal(span.enum, init=next(iter(span.enum)), name=name)
    return Signal(span.width, name=name)


class StructPackUnpack(Elaboratable):
    """Packs separate field Signals into a struct view, and splits raw bits into fields."""

    def __init__(self, layout: Any) -> None:
        self.spans = layout_fields(layout)
        self.fields_in = {s.name: _signal_for(s, "in_") for s in self.spans}
        self.packed = Signal(layout)
        self.raw = Signal(data.Layout.cast(layout).size)
        self.unpacked = Signal(layout)
        self.fields_out = {s.name: _signal_for(s, "out_") for s in self.spans}

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        for name, signal in self.fields_in.items():
            m.d.comb += _view_field(self.packed, name).eq(signal)
        m.d.comb += self.unpacked.eq(self.raw)
        for name, signal in self.fields_out.items():
            m.d.comb += signal.eq(_view_field(self.unpacked, name))
        return m


def _run_pack_unpack(layout: Any, cases: list[tuple[dict[str, Any], int]]) -> None:
    """For each (field values, packed): the simulated packer gives ``packed`` and the
    simulated unpacker gives the field values back."""
    dut = StructPackUnpack(layout)
    checked = []

    async def testbench(ctx):
        for values, packed in cases:
            for name, signal in dut.fields_in.items():
                ctx.set(signal, values[name])
            ctx.set(dut.raw, packed)
            assert ctx.get(dut.packed.as_value()) == packed
            for name, signal in dut.fields_out.items():
                assert ctx.get(signal) == values[name], name
            checked.append(packed)

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    assert len(checked) == len(cases)


def _header_values(fields: dict[str, Any]) -> dict[str, Any]:
    h = header_from_json(fields)
    return {**{name: getattr(h, name) for name in fields}, "rsvd": 0}


def test_headers_through_amaranth_simulator():
    cases = [(_header_values(v["fields"]), h2i(v["packed"])) for v in of_type("header")]
    cases += [(_header_values(v["header"]), h2i(v["header_packed"])) for v in of_type("message")]
    _run_pack_unpack(Header, cases)


def test_link_flits_through_amaranth_simulator():
    groups: dict[FabricParams, list[tuple[dict[str, Any], int]]] = {}
    for v in of_type("link_flit"):
        params = params_from_json(v["params"])
        f = v["fields"]
        values = {
            "kind": LinkKind[f["kind"]],
            "seq": f["seq"],
            "ack": f["ack"],
            "nak": f["nak"],
            "has_flit": f["has_flit"],
            "vc": f["vc"],
            "flit.head": f["flit"]["head"],
            "flit.tail": f["flit"]["tail"],
            "flit.payload": h2i(f["flit"]["payload"]),
            "crc": h2i(v["crc"]),
        }
        values.update({f"credits[{i}]": c for i, c in enumerate(f["credits"])})
        groups.setdefault(params, []).append((values, h2i(v["packed"])))
    assert len(groups) >= 3
    for params, cases in groups.items():
        _run_pack_unpack(link_flit_layout(params), cases)


# --------------------------------------------------------------------------------------------
# docs/protocol.md


def test_protocol_doc_tables_match_the_code():
    """The generated tables in docs/protocol.md equal ``python -m unifab.golden --doc-tables``."""
    blocks = doc_blocks(PROTOCOL_DOC.read_text(encoding="utf-8"))
    tables = doc_tables()
    assert set(blocks) == set(tables), "run: python -m unifab.golden --update-doc docs/protocol.md"
    for name, table in tables.items():
        assert blocks[name] == table, (
            f"table {name!r} is stale: run python -m unifab.golden --update-doc docs/protocol.md"
        )
