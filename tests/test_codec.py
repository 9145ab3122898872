"""Codec round trips, every range and malformed-input check, and CRC error detection."""

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from unifab.codec import (
    MAX_SIZE,
    NO_FLIT,
    BeatCountError,
    CodecError,
    CrcError,
    DataLengthError,
    EnumValueError,
    FieldRangeError,
    FieldTypeError,
    Flit,
    FlitSequenceError,
    LinkFlit,
    LinkRuleError,
    Message,
    MessageAssembler,
    MsgHeader,
    OpcodeClassError,
    ReservedBitsError,
    SizeError,
    add_link_crc,
    describe,
    describe_link_flit,
    flits_to_message,
    header,
    layout_fields,
    link_flit,
    message_data_bytes,
    message_to_flits,
    messages_from_flits,
    pack_fields,
    pack_flit,
    pack_header,
    pack_link_flit,
    random_header,
    random_message,
    unpack_fields,
    unpack_flit,
    unpack_header,
    unpack_link_flit,
)
from unifab.crc import crc32c_bits
from unifab.flit import (
    ATOMIC_OPCODES,
    HEADER_BITS,
    LINE_BYTES,
    CacheState,
    ErrorCode,
    FabricParams,
    Header,
    LinkKind,
    MsgClass,
    Opcode,
    data_beats,
    flit_layout,
    link_flit_layout,
    opcode_class,
)

DEFAULT_SEED = 20240601
WIDTHS = (128, 256, 512)
PARAMS = {w: FabricParams(data_width=w) for w in WIDTHS}
DEFAULT = FabricParams()
LINK_PARAMS = [
    DEFAULT,
    FabricParams(data_width=128, vcs=4, seq_bits=4, credit_bits=1),
    FabricParams(data_width=256, vcs=6, seq_bits=10, credit_bits=3),
    FabricParams(data_width=512, vcs=8, seq_bits=12, credit_bits=8),
]
HEADER_SPANS = {span.name: span for span in layout_fields(Header)}


@pytest.fixture(scope="module")
def seed() -> int:
    """The random seed: ``UNIFAB_SEED`` if set, else a fixed default (printed either way)."""
    value = int(os.environ.get("UNIFAB_SEED") or str(DEFAULT_SEED), 0)
    print(f"UNIFAB_SEED={value}")
    return value


@contextmanager
def expect(error: type[CodecError], field: str, *match: str) -> Iterator[Any]:
    """``error`` is raised, its ``field`` is ``field`` and its message contains ``match``."""
    with pytest.raises(error) as info:
        yield info
    assert info.value.field == field, str(info.value)
    for text in match:
        assert text in str(info.value), str(info.value)


def random_link_flit(rng: random.Random, params: FabricParams) -> LinkFlit:
    kind = rng.choice(list(LinkKind))
    seq_top = 1 << params.seq_bits
    if kind is LinkKind.SEQ:
        flit = None
        if rng.random() < 0.8:
            flit = Flit(
                head=rng.random() < 0.5,
                tail=rng.random() < 0.5,
                payload=rng.getrandbits(params.payload_bits),
            )
        credits = [rng.getrandbits(params.credit_bits) for _ in range(params.vcs)]
        return link_flit(
            params,
            kind,
            flit=flit,
            vc=rng.randrange(params.vcs),
            seq=rng.randrange(seq_top),
            ack=rng.randrange(seq_top),
            nak=rng.random() < 0.2,
            credits=credits,
        )
    seq = rng.randrange(2) if kind is LinkKind.INIT else 0
    return link_flit(params, kind, seq=seq, ack=rng.randrange(seq_top), nak=rng.random() < 0.2)


# --------------------------------------------------------------------------------------------
# Layout walking


@pytest.mark.parametrize(
    "layout",
    [Header]
    + [flit_layout(p) for p in LINK_PARAMS]
    + [link_flit_layout(p) for p in LINK_PARAMS]
    + [link_flit_layout(p, with_crc=False) for p in LINK_PARAMS],
    ids=lambda layout: getattr(layout, "__name__", None) or f"{layout.size}b",
)
def test_layout_fields_tile_the_layout(layout):
    """Flattened leaf fields are contiguous, do not overlap and cover every bit."""
    spans = layout_fields(layout)
    end = 0
    for span in spans:
        assert span.offset == end, span
        end += span.width
    from amaranth.lib import data

    assert end == data.Layout.cast(layout).size


def test_header_field_names_match_layout():
    names = [s.name for s in layout_fields(Header)]
    assert names[-1] == "rsvd"
    assert [f for f in MsgHeader.__dataclass_fields__] == names[:-1]


def test_pack_fields_rejects_unknown_names_and_accepts_raw_enums():
    with pytest.raises(KeyError, match="nosuch"):
        pack_fields(Header, {"nosuch": 1})
    bits = pack_fields(Header, {"opcode": 0x3F, "rsvd": 1})
    raw = unpack_fields(Header, bits)
    assert raw["opcode"] == 0x3F
    assert raw["rsvd"] == 1
    assert bits == 0x3F | 1 << HEADER_SPANS["rsvd"].offset


# --------------------------------------------------------------------------------------------
# Round trips


def test_header_round_trip_random(seed):
    rng = random.Random(seed)
    for _ in range(500):
        h = random_header(rng)
        bits = pack_header(h)
        assert 0 <= bits < 1 << HEADER_BITS
        assert unpack_header(bits) == h


@pytest.mark.parametrize("width", WIDTHS)
def test_message_round_trip_random(seed, width):
    rng = random.Random(seed ^ width)
    params = PARAMS[width]
    for _ in range(200):
        msg = random_message(rng, params)
        flits = message_to_flits(msg, params)
        assert len(flits) == 1 + data_beats(msg.header.opcode, width)
        assert flits_to_message(flits, params) == msg
        assert [unpack_flit(pack_flit(f, params), params) for f in flits] == flits


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("opcode", list(Opcode), ids=lambda o: o.name)
def test_every_opcode_round_trips(seed, opcode, width):
    rng = random.Random(seed ^ opcode.value ^ width << 8)
    params = PARAMS[width]
    msg = random_message(rng, params, opcode)
    assert len(msg.data) == message_data_bytes(opcode, params)
    flits = message_to_flits(msg, params)
    assert [f.head for f in flits] == [True] + [False] * (len(flits) - 1)
    assert [f.tail for f in flits] == [False] * (len(flits) - 1) + [True]
    assert flits[0].payload == pack_header(msg.header)
    assert flits_to_message(flits, params) == msg


@pytest.mark.parametrize("params", LINK_PARAMS, ids=lambda p: f"w{p.data_width}v{p.vcs}")
def test_link_flit_round_trip_random(seed, params):
    rng = random.Random(seed ^ params.vcs)
    for _ in range(300):
        lf = random_link_flit(rng, params)
        bits = pack_link_flit(lf, params)
        assert 0 <= bits < 1 << link_flit_layout(params).size
        back = unpack_link_flit(bits, params)
        assert back.crc == bits >> link_flit_layout(params, with_crc=False).size
        assert back == LinkFlit(**{**lf.__dict__, "crc": back.crc})
        assert pack_link_flit(back, params) == bits


def test_messages_through_link_flits_and_assembler(seed):
    """Messages → flits → SEQ link flits → bits → link flits → per-VC assemblers → messages."""
    rng = random.Random(seed)
    params = PARAMS[128]
    sent = {v: [] for v in range(params.vcs)}
    wire = []
    for i in range(60):
        msg = random_message(rng, params)
        vc = params.vc_of(msg.header.cls)
        sent[vc].append(msg)
        for f in message_to_flits(msg, params):
            lf = link_flit(params, LinkKind.SEQ, flit=f, vc=vc, seq=i % 256, ack=3)
            wire.append(pack_link_flit(lf, params))
    assemblers = {v: MessageAssembler(params) for v in range(params.vcs)}
    got = {v: [] for v in range(params.vcs)}
    for bits in wire:
        lf = unpack_link_flit(bits, params)
        m = assemblers[lf.vc].push(lf.flit)
        if m is not None:
            got[lf.vc].append(m)
    assert got == sent
    assert not any(a.busy for a in assemblers.values())


def test_messages_from_flits_splits_a_stream(seed):
    rng = random.Random(seed)
    params = PARAMS[256]
    msgs = [random_message(rng, params) for _ in range(20)]
    stream = [f for m in msgs for f in message_to_flits(m, params)]
    assert messages_from_flits(stream, params) == msgs
    with expect(BeatCountError, "Message.flits", "ends inside a message"):
        messages_from_flits(stream + _line_flits(params)[:-1], params)


# --------------------------------------------------------------------------------------------
# Data layout details


def test_data_beats_are_little_endian_with_byte_enables():
    params = PARAMS[128]
    line = bytes(range(LINE_BYTES))
    enables = 0x8000_0000_0000_0001 | 0xF0 << 16
    flits = message_to_flits(
        Message(header=header(Opcode.NC_WRITE), data=line, byte_enable=enables), params
    )
    beat0, beat1 = flits[1].payload, flits[2].payload
    assert beat0 & 0xFF == 0x00
    assert (beat0 >> 8) & 0xFF == 0x01
    assert (beat0 >> 120) & 0xFF == 0x0F
    assert beat1 & 0xFF == 0x10
    assert beat0 >> 128 == 0x0001  # byte 0 enabled
    assert beat1 >> 128 == 0x00F0  # bytes 20..23 of the line
    assert flits[4].payload >> 128 == 0x8000  # byte 63


def test_atomic_operand_layout():
    params = PARAMS[256]
    operand = (0x1122_3344_5566_7788).to_bytes(8, "little")
    compare = (0x99AA_BBCC_DDEE_FF00).to_bytes(8, "little")
    data = operand + compare + bytes(16)
    flits = message_to_flits(
        Message(header=header(Opcode.ATOMIC_CAS), data=data, byte_enable=0xFFFF), params
    )
    assert len(flits) == 2
    assert flits[1].payload & (1 << 64) - 1 == 0x1122_3344_5566_7788
    assert (flits[1].payload >> 64) & (1 << 64) - 1 == 0x99AA_BBCC_DDEE_FF00
    assert flits[1].payload >> 256 == 0xFFFF


def test_header_flit_payload_is_zero_extended():
    params = PARAMS[512]
    h = header(Opcode.COMP, src=1, dst=2, tag=3)
    (f,) = message_to_flits(Message(header=h), params)
    assert f == Flit(head=True, tail=True, payload=pack_header(h))


def test_message_defaults():
    assert Message(header=header(Opcode.COMP)).byte_enable == 0
    m = Message(header=header(Opcode.COMP_DATA), data=bytearray(64))
    assert m.data == bytes(64)
    assert m.byte_enable == (1 << 64) - 1


# --------------------------------------------------------------------------------------------
# Helpers


def test_header_helper_defaults():
    for opcode in Opcode:
        h = header(opcode)
        assert h.cls is opcode_class(opcode)
        expected_size = 6 if opcode is Opcode.NC_READ else 3 if opcode in ATOMIC_OPCODES else 0
        assert h.size == expected_size
    assert header(Opcode.COMP, cls=MsgClass.DAT).cls is MsgClass.DAT


def test_describe():
    h = header(Opcode.READ_SHARED, src=3, dst=5, tag=0x12, addr=0x1234_5640)
    assert describe(h) == "REQ READ_SHARED 3->5 tag=0x12 addr=0x0000_1234_5640"
    assert describe(pack_header(h)) == describe(h)
    d = header(Opcode.COMP_DATA, src=5, dst=3, tag=0x12, addr=0x40, state=CacheState.E)
    assert describe(d) == "DAT COMP_DATA 5->3 tag=0x12 addr=0x0000_0000_0040 state=E"
    e = header(Opcode.ERROR, src=1, dst=2, err=ErrorCode.DENIED, poison=1, qos=2)
    assert describe(e).endswith("err=DENIED poison qos=2")
    assert describe(pack_header(h) | 1 << 127) == f"{describe(h)} !rsvd=0x10000000"
    wrong = pack_header(header(Opcode.NC_READ, cls=MsgClass.SNP, size=7), strict=False)
    assert describe(wrong) == "SNP NC_READ 0->0 tag=0x00 addr=0x0000_0000_0000 size=7 !class !size"
    assert describe(0x3F).startswith("?? Header.opcode = 0x3f")


def test_describe_link_flit():
    f = message_to_flits(Message(header=header(Opcode.COMP, src=1, dst=2)), DEFAULT)[0]
    lf = link_flit(DEFAULT, LinkKind.SEQ, flit=f, vc=2, seq=5, ack=4, credits=(1, 0, 0, 2))
    assert (
        describe_link_flit(lf)
        == "SEQ seq=5 ack=4 vc=2 HT[RSP COMP 1->2 tag=0x00 addr=0x0000_0000_0000] cr=1,0,0,2"
    )
    init = link_flit(DEFAULT, LinkKind.INIT, seq=1, ack=255)
    assert describe_link_flit(init) == "INIT seen=1 ack=255"
    assert describe_link_flit(link_flit(DEFAULT, LinkKind.IDLE, nak=True)) == "IDLE ack=0 NAK"


# --------------------------------------------------------------------------------------------
# Pack-side checks


def test_range_error_message_names_field_value_and_range():
    with expect(FieldRangeError, "Header.addr") as info:
        pack_header(header(Opcode.COMP, addr=1 << 48))
    assert str(info.value) == (
        "Header.addr = 0x1000000000000 does not fit in 48 bits (0..0xffffffffffff)"
    )
    assert info.value.value == 1 << 48
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ["src", "dst", "tag", "fwd", "addr", "poison", "qos"])
@pytest.mark.parametrize("bad", ["too_big", "negative"])
def test_pack_header_range_checks(name, bad):
    width = HEADER_SPANS[name].width
    value = 1 << width if bad == "too_big" else -1
    with expect(FieldRangeError, f"Header.{name}", f"does not fit in {width} bits"):
        pack_header(MsgHeader(opcode=Opcode.COMP, cls=MsgClass.RSP, **{name: value}))


def test_pack_header_size_field_width():
    with expect(FieldRangeError, "Header.size", "does not fit in 3 bits"):
        pack_header(header(Opcode.NC_READ, size=8), strict=False)


def test_pack_header_type_checks():
    with expect(FieldTypeError, "Header.src", "is not an integer"):
        pack_header(header(Opcode.COMP, src="3"))
    with expect(EnumValueError, "Header.opcode", "is not a member of Opcode"):
        pack_header(MsgHeader(opcode=0x18, cls=MsgClass.RSP))
    with expect(EnumValueError, "Header.state", "is not a member of CacheState"):
        pack_header(header(Opcode.COMP, state=ErrorCode.OK))
    with pytest.raises(TypeError):
        pack_header({"opcode": Opcode.COMP})


def test_pack_header_opcode_class():
    h = header(Opcode.READ_SHARED, cls=MsgClass.DAT)
    with expect(OpcodeClassError, "Header.cls", "READ_SHARED travels in class REQ"):
        pack_header(h)
    bits = pack_header(h, strict=False)
    assert unpack_header(bits, strict=False) == h


def test_pack_header_size_rule():
    h = header(Opcode.NC_READ, size=MAX_SIZE + 1)
    with expect(SizeError, "Header.size", "above 6"):
        pack_header(h)
    assert unpack_header(pack_header(h, strict=False), strict=False) == h


@pytest.mark.parametrize(
    ("opcode", "width", "nbytes"),
    [
        (Opcode.READ_SHARED, 128, 1),
        (Opcode.COMP_DATA, 128, 63),
        (Opcode.COMP_DATA, 512, 65),
        (Opcode.ATOMIC_ADD, 256, 8),
        (Opcode.ATOMIC_DATA, 512, 16),
    ],
)
def test_message_data_length(opcode, width, nbytes):
    msg = Message(header=header(opcode), data=bytes(nbytes))
    expected = message_data_bytes(opcode, PARAMS[width])
    with expect(DataLengthError, "Message.data", f"carries {expected} bytes"):
        message_to_flits(msg, PARAMS[width])


def test_message_data_type():
    with expect(FieldTypeError, "Message.data", "is not bytes"):
        Message(header=header(Opcode.COMP_DATA), data="abc")


def test_message_byte_enable_range():
    msg = Message(header=header(Opcode.COMP_DATA), data=bytes(64), byte_enable=1 << 64)
    with expect(FieldRangeError, "Message.byte_enable", "does not fit in 64 bits"):
        message_to_flits(msg, PARAMS[128])
    atomic = Message(header=header(Opcode.ATOMIC_ADD), data=bytes(16), byte_enable=1 << 16)
    with expect(FieldRangeError, "Message.byte_enable", "does not fit in 16 bits"):
        message_to_flits(atomic, PARAMS[128])


def test_message_header_checked():
    msg = Message(header=header(Opcode.COMP, tag=256))
    with expect(FieldRangeError, "Header.tag"):
        message_to_flits(msg, DEFAULT)


@pytest.mark.parametrize(
    ("flit", "field"),
    [
        (Flit(head=2, tail=False, payload=0), "Flit.head"),
        (Flit(head=False, tail=-1, payload=0), "Flit.tail"),
        (Flit(head=False, tail=False, payload=1 << 144), "Flit.payload"),
    ],
)
def test_pack_flit_range(flit, field):
    with expect(FieldRangeError, field, "does not fit"):
        pack_flit(flit, DEFAULT)


def test_unpack_flit_range():
    with expect(FieldRangeError, "Flit", "does not fit in 146 bits"):
        unpack_flit(1 << 146, DEFAULT)


@pytest.mark.parametrize(
    ("changes", "error", "field", "text"),
    [
        ({"seq": 256}, FieldRangeError, "LinkFlit.seq", "does not fit in 8 bits"),
        ({"ack": -1}, FieldRangeError, "LinkFlit.ack", "does not fit in 8 bits"),
        ({"nak": 2}, FieldRangeError, "LinkFlit.nak", "does not fit in 1 bits"),
        ({"vc": 8}, FieldRangeError, "LinkFlit.vc", "does not fit in 3 bits"),
        ({"vc": 4}, FieldRangeError, "LinkFlit.vc", "not a virtual channel of this fabric (0..3)"),
        ({"credits": (0, 0, 0)}, FieldRangeError, "LinkFlit.credits", "tuple of 4 counts"),
        ({"credits": (0, 16, 0, 0)}, FieldRangeError, "LinkFlit.credits[1]", "fit in 4 bits"),
        ({"kind": 1}, EnumValueError, "LinkFlit.kind", "is not a member of LinkKind"),
        (
            {"flit": Flit(head=True, tail=True, payload=1 << 144)},
            FieldRangeError,
            "LinkFlit.flit.payload",
            "does not fit in 144 bits",
        ),
    ],
)
def test_pack_link_flit_checks(changes, error, field, text):
    lf = LinkFlit(**{**link_flit(DEFAULT, LinkKind.SEQ).__dict__, **changes})
    with expect(error, field, text):
        pack_link_flit(lf, DEFAULT)


@pytest.mark.parametrize("kind", [LinkKind.IDLE, LinkKind.INIT], ids=lambda k: k.name)
def test_pack_link_rules(kind):
    carrying = link_flit(DEFAULT, kind, flit=NO_FLIT)
    with expect(LinkRuleError, "LinkFlit.has_flit", f"on a {kind.name} flit"):
        pack_link_flit(carrying, DEFAULT)
    crediting = link_flit(DEFAULT, kind, credits=(0, 0, 1, 0))
    with expect(LinkRuleError, "LinkFlit.credits", "only SEQ flits"):
        pack_link_flit(crediting, DEFAULT)
    for lf in (carrying, crediting):
        bits = pack_link_flit(lf, DEFAULT, strict=False)
        with pytest.raises(LinkRuleError):
            unpack_link_flit(bits, DEFAULT)
        assert unpack_link_flit(bits, DEFAULT, strict=False).kind is kind


# --------------------------------------------------------------------------------------------
# Unpack-side checks


def test_unpack_header_width():
    with expect(FieldRangeError, "Header", "does not fit in 128 bits"):
        unpack_header(1 << 128)
    with expect(FieldRangeError, "Header"):
        unpack_header(-1)
    with expect(FieldTypeError, "Header"):
        unpack_header("0x1")


def test_unpack_header_unknown_opcodes():
    valid = {o.value for o in Opcode}
    for value in range(1 << HEADER_SPANS["opcode"].width):
        bits = pack_fields(Header, {"opcode": value})
        if value in valid:
            continue
        with expect(EnumValueError, "Header.opcode", f"{value:#x} is not a valid Opcode"):
            unpack_header(bits, strict=False)


def test_unpack_header_unknown_error_code():
    bits = pack_fields(Header, {"opcode": Opcode.ERROR, "cls": MsgClass.RSP, "err": 7})
    with expect(EnumValueError, "Header.err", "0x7 is not a valid ErrorCode"):
        unpack_header(bits)


def test_unpack_header_wrong_class_for_every_opcode():
    for opcode in Opcode:
        for cls in MsgClass:
            bits = pack_fields(Header, {"opcode": opcode, "cls": cls})
            if cls is opcode_class(opcode):
                assert unpack_header(bits).cls is cls
                continue
            with expect(OpcodeClassError, "Header.cls", f"{opcode.name} travels in class"):
                unpack_header(bits)
            assert unpack_header(bits, strict=False).cls is cls


def test_unpack_header_reserved_bits():
    good = pack_header(header(Opcode.READ_UNIQUE, src=1, addr=0x40))
    span = HEADER_SPANS["rsvd"]
    for bit in range(span.offset, HEADER_BITS):
        bits = good | 1 << bit
        with expect(ReservedBitsError, "Header.rsvd", "is not zero"):
            unpack_header(bits)
        assert unpack_header(bits, strict=False) == unpack_header(good)


@pytest.mark.parametrize("size", [7])
def test_unpack_header_size(size):
    bits = pack_fields(Header, {"opcode": Opcode.NC_READ, "cls": MsgClass.REQ, "size": size})
    with expect(SizeError, "Header.size", f"Header.size = {size} is above 6"):
        unpack_header(bits)


def _line_flits(params: FabricParams = DEFAULT) -> list[Flit]:
    msg = Message(header=header(Opcode.COMP_DATA, src=4, dst=1), data=bytes(range(64)))
    return message_to_flits(msg, params)


def _with(f: Flit, **kw) -> Flit:
    return Flit(**{**f.__dict__, **kw})


def test_flits_to_message_empty():
    with expect(BeatCountError, "Message.flits", "at least a header flit"):
        flits_to_message([], DEFAULT)


def test_flits_to_message_first_not_head():
    flits = _line_flits()
    with expect(FlitSequenceError, "Flit[0].head", "starts with a head flit"):
        flits_to_message([_with(flits[0], head=False), *flits[1:]], DEFAULT)


def test_flits_to_message_head_inside():
    flits = _line_flits()
    flits[2] = _with(flits[2], head=True)
    with expect(FlitSequenceError, "Flit[2].head", "inside a message"):
        flits_to_message(flits, DEFAULT)


def test_flits_to_message_tail_early():
    flits = _line_flits()
    flits[1] = _with(flits[1], tail=True)
    with expect(FlitSequenceError, "Flit[1].tail", "before the last flit"):
        flits_to_message(flits, DEFAULT)


def test_flits_to_message_tail_missing():
    flits = _line_flits()
    flits[-1] = _with(flits[-1], tail=False)
    with expect(FlitSequenceError, "Flit[4].tail", "the last flit must be a tail"):
        flits_to_message(flits, DEFAULT)


@pytest.mark.parametrize("beats", [0, 3, 5])
def test_flits_to_message_beat_count(beats):
    flits = _line_flits()
    data = [_with(flits[1], tail=False)] * beats
    if data:
        data[-1] = _with(data[-1], tail=True)
    stream = [_with(flits[0], tail=not data), *data]
    with expect(BeatCountError, "Message.flits", f"has 4 data beats, got {beats}"):
        flits_to_message(stream, DEFAULT)


def test_flits_to_message_header_payload_upper_bits():
    params = PARAMS[256]
    (f,) = message_to_flits(Message(header=header(Opcode.COMP)), params)
    for bit in (HEADER_BITS, params.payload_bits - 1):
        with expect(ReservedBitsError, "Flit[0].payload", "are not zero"):
            flits_to_message([_with(f, payload=f.payload | 1 << bit)], params)


def test_flits_to_message_payload_range():
    flits = _line_flits()
    flits[3] = _with(flits[3], payload=1 << 144)
    with expect(FieldRangeError, "Flit[3].payload", "does not fit in 144 bits"):
        flits_to_message(flits, DEFAULT)


def test_flits_to_message_header_checks_apply():
    (f,) = message_to_flits(Message(header=header(Opcode.COMP)), DEFAULT)
    bad = _with(f, payload=f.payload ^ (MsgClass.RSP.value ^ MsgClass.REQ.value) << 6)
    with expect(OpcodeClassError, "Header.cls"):
        flits_to_message([bad], DEFAULT)
    assert flits_to_message([bad], DEFAULT, strict=False).header.cls is MsgClass.REQ


def test_assembler_reports_and_recovers():
    params = DEFAULT
    good = _line_flits()
    assembler = MessageAssembler(params)
    bad = [*good[:-1], _with(good[-1], tail=False)]
    results = [assembler.push(f) for f in bad[:-1]]
    assert results == [None] * 4
    with expect(FlitSequenceError, "Flit[4].tail"):
        assembler.push(bad[-1])
    assert not assembler.busy
    with expect(FlitSequenceError, "Flit[0].head"):
        assembler.push(good[1])
    assert [assembler.push(f) for f in good][-1] == flits_to_message(good, params)


def test_unpack_link_flit_width():
    size = link_flit_layout(DEFAULT).size
    with expect(FieldRangeError, "LinkFlit", f"does not fit in {size} bits"):
        unpack_link_flit(1 << size, DEFAULT)


def test_unpack_link_flit_crc():
    bits = pack_link_flit(link_flit(DEFAULT, LinkKind.IDLE, ack=9), DEFAULT)
    with expect(CrcError, "LinkFlit.crc", "does not match the CRC-32C of the other 185 bits"):
        unpack_link_flit(bits ^ 1 << 200, DEFAULT)


def test_unpack_link_flit_invalid_kind():
    body = pack_fields(link_flit_layout(DEFAULT, with_crc=False), {"kind": 3})
    with expect(EnumValueError, "LinkFlit.kind", "0x3 is not a valid LinkKind"):
        unpack_link_flit(add_link_crc(body, DEFAULT), DEFAULT)


def test_unpack_link_flit_vc_beyond_vcs():
    body = pack_fields(link_flit_layout(DEFAULT, with_crc=False), {"kind": LinkKind.SEQ, "vc": 5})
    with expect(FieldRangeError, "LinkFlit.vc", "not a virtual channel"):
        unpack_link_flit(add_link_crc(body, DEFAULT), DEFAULT)


def test_add_link_crc_matches_pack(seed):
    rng = random.Random(seed)
    for params in LINK_PARAMS:
        lf = random_link_flit(rng, params)
        bits = pack_link_flit(lf, params)
        width = link_flit_layout(params, with_crc=False).size
        body = bits & (1 << width) - 1
        assert add_link_crc(body, params) == bits
        assert bits >> width == crc32c_bits(body, width)


# --------------------------------------------------------------------------------------------
# CRC error detection


@pytest.mark.parametrize("params", [DEFAULT, LINK_PARAMS[3]], ids=lambda p: f"w{p.data_width}")
def test_crc_detects_every_single_bit_flip(seed, params):
    rng = random.Random(seed)
    head = message_to_flits(random_message(rng, params, Opcode.READ_SHARED), params)[0]
    lf = link_flit(params, LinkKind.SEQ, flit=head, vc=1, seq=7, ack=3, credits=[1] * params.vcs)
    bits = pack_link_flit(lf, params)
    width = link_flit_layout(params).size
    for bit in range(width):
        with pytest.raises(CrcError):
            unpack_link_flit(bits ^ 1 << bit, params)


def test_crc_detects_two_bit_flips(seed):
    rng = random.Random(seed)
    for params in LINK_PARAMS:
        width = link_flit_layout(params).size
        for _ in range(500):
            bits = pack_link_flit(random_link_flit(rng, params), params)
            first, second = rng.sample(range(width), 2)
            with pytest.raises(CrcError):
                unpack_link_flit(bits ^ 1 << first ^ 1 << second, params)
