"""Golden vectors that freeze the wire format, and the generated tables of docs/protocol.md.

``python -m unifab.golden --write`` regenerates ``data/golden_vectors.json`` from
:func:`make_vectors`; the tests check that the file, the codec and Amaranth's own packing agree
and that :func:`make_vectors` still reproduces the file. A change to the wire format therefore
shows up as a diff of the committed file.

``python -m unifab.golden --doc-tables`` prints the field, opcode and enum tables of
``docs/protocol.md``; ``--update-doc docs/protocol.md`` rewrites them in place.
"""

import argparse
import enum as py_enum
import json
import random
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from .codec import (
    MAX_SIZE,
    BeatCountError,
    CodecError,
    CrcError,
    EnumValueError,
    Flit,
    FlitSequenceError,
    LinkFlit,
    LinkRuleError,
    Message,
    MsgHeader,
    OpcodeClassError,
    ReservedBitsError,
    SizeError,
    add_link_crc,
    header,
    layout_fields,
    link_flit,
    message_to_flits,
    pack_fields,
    pack_flit,
    pack_header,
    pack_link_flit,
    random_message,
)
from .flit import (
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
    opcode_class,
)

__all__ = [
    "DATA_PATH",
    "DEFAULT_SEED",
    "ERROR_CLASSES",
    "doc_tables",
    "header_from_json",
    "header_to_json",
    "link_flit_from_json",
    "load_vectors",
    "make_vectors",
    "message_from_json",
    "params_from_json",
    "render_doc_blocks",
    "render_vectors",
    "update_doc",
]

DATA_PATH = Path(__file__).parent / "data" / "golden_vectors.json"
DEFAULT_SEED = 0x5EED_F117
FORMAT = "unifab-golden-vectors"
VERSION = 1
DATA_WIDTHS = (128, 256, 512)

#: Error classes a malformed vector may name.
ERROR_CLASSES: dict[str, type[CodecError]] = {
    cls.__name__: cls
    for cls in (
        BeatCountError,
        CrcError,
        EnumValueError,
        FlitSequenceError,
        LinkRuleError,
        OpcodeClassError,
        ReservedBitsError,
        SizeError,
    )
}


# --------------------------------------------------------------------------------------------
# JSON forms


def _hex(value: int) -> str:
    return f"{value:#x}"


def _int(value: int | str) -> int:
    return int(value, 0) if isinstance(value, str) else int(value)


def params_to_json(params: FabricParams) -> dict[str, int]:
    return asdict(params)


def params_from_json(obj: dict[str, int]) -> FabricParams:
    return FabricParams(**obj)


def header_to_json(h: MsgHeader) -> dict[str, Any]:
    """Header fields: enums by name, fields wider than 16 bits as hex strings."""
    widths = {span.name: span.width for span in layout_fields(Header)}
    out: dict[str, Any] = {}
    for f in fields(MsgHeader):
        value = getattr(h, f.name)
        if isinstance(value, py_enum.Enum):
            out[f.name] = value.name
        else:
            out[f.name] = _hex(value) if widths[f.name] > 16 else value
    return out


def header_from_json(obj: dict[str, Any]) -> MsgHeader:
    enums = {span.name: span.enum for span in layout_fields(Header) if span.enum is not None}
    values = {
        name: enums[name][value] if name in enums else _int(value) for name, value in obj.items()
    }
    return MsgHeader(**values)


def _flit_to_json(f: Flit) -> dict[str, Any]:
    return {"head": int(f.head), "tail": int(f.tail), "payload": _hex(f.payload)}


def _flit_from_json(obj: dict[str, Any]) -> Flit:
    return Flit(head=bool(obj["head"]), tail=bool(obj["tail"]), payload=_int(obj["payload"]))


def message_from_json(vector: dict[str, Any]) -> Message:
    """The :class:`Message` of a ``message`` vector."""
    return Message(
        header=header_from_json(vector["header"]),
        data=bytes.fromhex(vector["data"]),
        byte_enable=_int(vector["byte_enable"]),
    )


def _link_flit_to_json(lf: LinkFlit) -> dict[str, Any]:
    return {
        "kind": lf.kind.name,
        "seq": lf.seq,
        "ack": lf.ack,
        "nak": int(lf.nak),
        "has_flit": int(lf.has_flit),
        "vc": lf.vc,
        "flit": _flit_to_json(lf.flit),
        "credits": list(lf.credits),
    }


def link_flit_from_json(obj: dict[str, Any]) -> LinkFlit:
    """The :class:`LinkFlit` of a ``link_flit`` vector's ``fields`` (``crc`` left as None)."""
    return LinkFlit(
        kind=LinkKind[obj["kind"]],
        credits=tuple(obj["credits"]),
        seq=obj["seq"],
        ack=obj["ack"],
        nak=bool(obj["nak"]),
        has_flit=bool(obj["has_flit"]),
        vc=obj["vc"],
        flit=_flit_from_json(obj["flit"]),
    )


# --------------------------------------------------------------------------------------------
# Vectors


def _header_vector(name: str, h: MsgHeader) -> dict[str, Any]:
    return {
        "name": name,
        "type": "header",
        "fields": header_to_json(h),
        "packed": _hex(pack_header(h)),
    }


def _message_vector(name: str, msg: Message, params: FabricParams) -> dict[str, Any]:
    flits = message_to_flits(msg, params)
    return {
        "name": name,
        "type": "message",
        "params": params_to_json(params),
        "header": header_to_json(msg.header),
        "data": msg.data.hex(),
        "byte_enable": _hex(msg.byte_enable or 0),
        "header_packed": _hex(pack_header(msg.header)),
        "flits": [{**_flit_to_json(f), "packed": _hex(pack_flit(f, params))} for f in flits],
    }


def _link_vector(name: str, lf: LinkFlit, params: FabricParams) -> dict[str, Any]:
    packed = pack_link_flit(lf, params)
    crc_span = {s.name: s for s in layout_fields(link_flit_layout(params))}["crc"]
    return {
        "name": name,
        "type": "link_flit",
        "params": params_to_json(params),
        "fields": _link_flit_to_json(lf),
        "crc": _hex(packed >> crc_span.offset),
        "packed": _hex(packed),
    }


def _header_vectors() -> list[dict[str, Any]]:
    spans = {s.name: s for s in layout_fields(Header)}

    def top(name: str) -> int:
        return spans[name].mask

    zero = header(Opcode.READ_SHARED, size=0)
    ones = header(
        Opcode.ATOMIC_DATA,
        src=top("src"),
        dst=top("dst"),
        tag=top("tag"),
        fwd=top("fwd"),
        addr=top("addr"),
        size=MAX_SIZE,
        state=CacheState.M,
        err=max(ErrorCode, key=lambda e: e.value),
        poison=1,
        qos=top("qos"),
    )
    pattern = header(
        Opcode.SNP_SHARED,
        src=0xAA,
        dst=0x55,
        tag=0xA5,
        fwd=0x5A,
        addr=0xAAAA_5555_AAAA,
        size=5,
        state=CacheState.S,
        err=ErrorCode.DENIED,
        qos=2,
    )
    return [
        _header_vector("header/zero", zero),
        _header_vector("header/max", ones),
        _header_vector("header/pattern", pattern),
    ]


def _message_vectors(rng: random.Random) -> list[dict[str, Any]]:
    vectors = []
    counters = {True: 0, False: 0}  # cycle widths separately for messages with and without data
    for opcode in Opcode:
        carries_data = data_beats(opcode, 128) > 0
        width = DATA_WIDTHS[counters[carries_data] % len(DATA_WIDTHS)]
        counters[carries_data] += 1
        params = FabricParams(data_width=width)
        msg = random_message(rng, params, opcode)
        vectors.append(_message_vector(f"message/{opcode.name}/w{width}", msg, params))
    return vectors


def _link_vectors(rng: random.Random) -> list[dict[str, Any]]:
    default = FabricParams()
    small = FabricParams(data_width=128, vcs=4, seq_bits=4, credit_bits=1)
    mid = FabricParams(data_width=256, vcs=6, seq_bits=10, credit_bits=3)
    large = FabricParams(data_width=512, vcs=8, seq_bits=12, credit_bits=8)

    def flits_of(params: FabricParams, opcode: Opcode) -> list[Flit]:
        return message_to_flits(random_message(rng, params, opcode), params)

    def credits(params: FabricParams) -> list[int]:
        return [rng.getrandbits(params.credit_bits) for _ in range(params.vcs)]

    seq_top = (1 << default.seq_bits) - 1
    header_flit = flits_of(default, Opcode.READ_UNIQUE)[0]
    data_flit = flits_of(mid, Opcode.COMP_DATA)[2]
    large_flit = flits_of(large, Opcode.FWD_DATA)[1]
    large_max = link_flit(
        large,
        LinkKind.SEQ,
        flit=Flit(head=True, tail=True, payload=(1 << large.payload_bits) - 1),
        vc=large.vcs - 1,
        seq=(1 << large.seq_bits) - 1,
        ack=(1 << large.seq_bits) - 1,
        nak=True,
        credits=[(1 << large.credit_bits) - 1] * large.vcs,
    )
    cases: list[tuple[str, LinkFlit, FabricParams]] = [
        ("link/IDLE/zero", link_flit(default, LinkKind.IDLE), default),
        ("link/IDLE/ack", link_flit(default, LinkKind.IDLE, ack=0x5A), default),
        ("link/IDLE/nak", link_flit(default, LinkKind.IDLE, ack=seq_top, nak=True), default),
        ("link/INIT/unseen", link_flit(default, LinkKind.INIT, seq=0, ack=seq_top), default),
        ("link/INIT/seen", link_flit(default, LinkKind.INIT, seq=1, ack=seq_top), default),
        (
            "link/SEQ/header",
            link_flit(default, LinkKind.SEQ, flit=header_flit, vc=0, seq=0x12, ack=0x34),
            default,
        ),
        (
            "link/SEQ/credits-only",
            link_flit(default, LinkKind.SEQ, seq=0x80, ack=0x7F, credits=credits(default)),
            default,
        ),
        (
            "link/SEQ/data-w256",
            link_flit(
                mid, LinkKind.SEQ, flit=data_flit, vc=3, seq=0x2A5, ack=0x15A, credits=credits(mid)
            ),
            mid,
        ),
        (
            "link/SEQ/data-w512",
            link_flit(
                large, LinkKind.SEQ, flit=large_flit, vc=7, seq=0xFFE, ack=3, credits=credits(large)
            ),
            large,
        ),
        ("link/SEQ/max-w512", large_max, large),
        (
            "link/SEQ/small",
            link_flit(small, LinkKind.SEQ, flit=header_flit, vc=2, seq=15, ack=7, credits=[1] * 4),
            small,
        ),
    ]
    return [_link_vector(name, lf, params) for name, lf, params in cases]


def _malformed(name: str, kind: str, error: type[CodecError], field: str, **body: Any) -> dict:
    return {"name": name, "type": kind, "error": error.__name__, "field": field, **body}


def _malformed_vectors() -> list[dict[str, Any]]:
    default = FabricParams()
    good = {"opcode": Opcode.READ_SHARED, "cls": MsgClass.REQ, "src": 1, "dst": 2, "addr": 0x40}

    def hbits(**kw: Any) -> str:
        return _hex(pack_fields(Header, {**good, **kw}, what="Header"))

    link_body = link_flit_layout(default, with_crc=False)
    bad_kind = add_link_crc(pack_fields(link_body, {"kind": 3, "ack": 5}), default)
    good_link = pack_link_flit(link_flit(default, LinkKind.IDLE, ack=5), default)
    credits_in_idle = add_link_crc(
        pack_fields(link_body, {"kind": LinkKind.IDLE, "credits[1]": 1}), default
    )
    data_msg = message_to_flits(
        Message(header=header(Opcode.COMP_DATA, dst=1), data=bytes(range(64))), default
    )
    no_tail = [*data_msg[:-1], Flit(head=False, tail=False, payload=data_msg[-1].payload)]
    short = [*data_msg[:2], Flit(head=False, tail=True, payload=data_msg[2].payload)]
    upper = [Flit(head=True, tail=True, payload=pack_header(header(Opcode.COMP)) | 1 << 140)]
    params = {"params": params_to_json(default)}
    return [
        _malformed(
            "bad/header/opcode-0", "header", EnumValueError, "Header.opcode", bits=hbits(opcode=0)
        ),
        _malformed(
            "bad/header/opcode-3f",
            "header",
            EnumValueError,
            "Header.opcode",
            bits=hbits(opcode=0x3F),
        ),
        _malformed(
            "bad/header/class",
            "header",
            OpcodeClassError,
            "Header.cls",
            bits=hbits(cls=MsgClass.DAT),
        ),
        _malformed(
            "bad/header/rsvd", "header", ReservedBitsError, "Header.rsvd", bits=hbits(rsvd=1 << 28)
        ),
        _malformed("bad/header/size", "header", SizeError, "Header.size", bits=hbits(size=7)),
        _malformed(
            "bad/link/kind-3",
            "link_flit",
            EnumValueError,
            "LinkFlit.kind",
            bits=_hex(bad_kind),
            **params,
        ),
        _malformed(
            "bad/link/crc",
            "link_flit",
            CrcError,
            "LinkFlit.crc",
            bits=_hex(good_link ^ 1 << 100),
            **params,
        ),
        _malformed(
            "bad/link/idle-credits",
            "link_flit",
            LinkRuleError,
            "LinkFlit.credits",
            bits=_hex(credits_in_idle),
            **params,
        ),
        _malformed(
            "bad/message/no-tail",
            "message",
            FlitSequenceError,
            f"Flit[{len(no_tail) - 1}].tail",
            flits=[_flit_to_json(f) for f in no_tail],
            **params,
        ),
        _malformed(
            "bad/message/short",
            "message",
            BeatCountError,
            "Message.flits",
            flits=[_flit_to_json(f) for f in short],
            **params,
        ),
        _malformed(
            "bad/message/header-upper-bits",
            "message",
            ReservedBitsError,
            "Flit[0].payload",
            flits=[_flit_to_json(f) for f in upper],
            **params,
        ),
    ]


def make_vectors(seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Every golden vector, drawn deterministically from ``seed``."""
    rng = random.Random(seed)
    vectors = [
        *_header_vectors(),
        *_message_vectors(rng),
        *_link_vectors(rng),
        *_malformed_vectors(),
    ]
    return {
        "format": FORMAT,
        "version": VERSION,
        "seed": seed,
        "generator": "python -m unifab.golden --write",
        "vectors": vectors,
    }


def render_vectors(vectors: dict[str, Any]) -> str:
    """The file text of a vector set (stable formatting, one vector field per line)."""
    return json.dumps(vectors, indent=1) + "\n"


def load_vectors(path: Path = DATA_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as file:
        return json.load(file)


# --------------------------------------------------------------------------------------------
# Documentation tables

HEADER_MEANING = {
    "opcode": "What the message does (see Opcodes).",
    "cls": "Message class; must equal the opcode's class.",
    "src": "Node that sent the message.",
    "dst": "Node the message is routed to.",
    "tag": "Transaction tag: with the requester's node ID it names an outstanding transaction; "
    "every message the transaction causes carries it.",
    "fwd": "Snoops: the requester (SNP_SHARED / SNP_UNIQUE forward the line to it). FWD_DATA: "
    "the home, where the requester sends its COMP_ACK. 0 otherwise.",
    "addr": "Global byte address (line-aligned for coherent requests).",
    "size": "log2 of the access size in bytes for NC_READ and atomics (0..6).",
    "state": "Cache state granted (COMP_DATA, FWD_DATA, COMP) or kept by the snooped cache "
    "(SNP_RESP_DATA).",
    "err": "ERROR: why the request was refused. OK otherwise.",
    "poison": "The data of this message is poisoned and must not be consumed.",
    "qos": "Priority hint for arbitration, 0 lowest.",
    "rsvd": "Reserved, must be zero (MALFORMED otherwise).",
}

FLIT_MEANING = {
    "head": "First flit of a message (carries the header).",
    "tail": "Last flit of a message.",
    "payload": "Head flit: the 128-bit header, upper bits zero. Data flit: one data beat.",
}

BEAT_MEANING = {
    "data": "Data bits; byte `i` of the beat in bits `[8i+7:8i]`.",
    "be": "Byte enables; bit `i` enables byte `i`.",
}

LINK_MEANING = {
    "kind": "IDLE, SEQ or INIT (see Link kinds).",
    "seq": 'SEQ: sequence number. INIT: bit 0 = "I have seen your INIT". IDLE: 0.',
    "ack": "Cumulative ACK: last SEQ number received good and in order.",
    "nak": "Replay request: a bad CRC or a sequence gap was seen.",
    "has_flit": "The `flit` field carries a flit (SEQ only).",
    "vc": "Virtual channel of the flit.",
    "flit.head": "Flit `head`.",
    "flit.tail": "Flit `tail`.",
    "flit.payload": "Flit `payload`.",
    "credits[]": "Credits returned for virtual channel {i} (SEQ only).",
    "crc": "CRC-32C of every other bit of the link flit.",
}

#: Meaning and expected response of each opcode.
OPCODE_MEANING: dict[Opcode, tuple[str, str]] = {
    Opcode.READ_SHARED: (
        "Coherent read; S or E granted.",
        "COMP_DATA (S/E) from home, or FWD_DATA from the owner; then COMP_ACK to home.",
    ),
    Opcode.READ_UNIQUE: (
        "Coherent read for ownership; E or M granted.",
        "COMP_DATA (E/M) from home, or FWD_DATA from the owner; then COMP_ACK to home.",
    ),
    Opcode.UPGRADE: (
        "S to E without data.",
        "COMP (E) once other sharers are invalidated; then COMP_ACK.",
    ),
    Opcode.WRITE_BACK: ("Dirty line leaves a cache; carries the line.", "COMP."),
    Opcode.CLEAN_EVICT: ("Clean line leaves a cache.", "COMP."),
    Opcode.NC_READ: (
        "Non-coherent read of `1 << size` bytes.",
        "COMP_DATA; byte enables mark the bytes read.",
    ),
    Opcode.NC_WRITE: ("Non-coherent write of a line under byte enables.", "COMP."),
    Opcode.ATOMIC_ADD: ("Far atomic at home: add.", "ATOMIC_DATA with the old value."),
    Opcode.ATOMIC_SWAP: ("Far atomic: swap.", "ATOMIC_DATA with the old value."),
    Opcode.ATOMIC_CAS: (
        "Far atomic: compare (bytes 8..15) and swap (bytes 0..7).",
        "ATOMIC_DATA with the old value.",
    ),
    Opcode.ATOMIC_AND: ("Far atomic: bitwise AND.", "ATOMIC_DATA with the old value."),
    Opcode.ATOMIC_OR: ("Far atomic: bitwise OR.", "ATOMIC_DATA with the old value."),
    Opcode.ATOMIC_XOR: ("Far atomic: bitwise XOR.", "ATOMIC_DATA with the old value."),
    Opcode.ATOMIC_MIN: ("Far atomic: signed minimum.", "ATOMIC_DATA with the old value."),
    Opcode.ATOMIC_MAX: ("Far atomic: signed maximum.", "ATOMIC_DATA with the old value."),
    Opcode.SNP_INV: ("Invalidate the line.", "SNP_RESP_I, or SNP_RESP_DATA (I) if dirty."),
    Opcode.SNP_SHARED: (
        "Downgrade to S and forward the line to `fwd`.",
        "FWD_DATA (S) to `fwd`, and SNP_RESP_S to home (SNP_RESP_DATA (S) if dirty); "
        "SNP_RESP_I if no copy.",
    ),
    Opcode.SNP_UNIQUE: (
        "Invalidate and forward the line to `fwd`.",
        "FWD_DATA (E/M) to `fwd` and SNP_RESP_I to home; SNP_RESP_I alone if no copy.",
    ),
    Opcode.COMP: ("Completion of a write, upgrade, evict or write-back.", "none (sinks)"),
    Opcode.COMP_ACK: ("Requester to home: grant received, transaction may close.", "none (sinks)"),
    Opcode.SNP_RESP_I: ("Snooped cache is invalid, had no dirty data.", "none (sinks)"),
    Opcode.SNP_RESP_S: ("Snooped cache kept a shared copy, had no dirty data.", "none (sinks)"),
    Opcode.ERROR: ("Request refused; `err` says why.", "none (sinks)"),
    Opcode.COMP_DATA: ("Read data; `state` is the state granted.", "none (sinks)"),
    Opcode.SNP_RESP_DATA: (
        "Snooped dirty line to home; `state` is the snooped cache's new state.",
        "none (sinks)",
    ),
    Opcode.FWD_DATA: (
        "Line forwarded cache to cache; `state` is the state granted.",
        "none (sinks)",
    ),
    Opcode.ATOMIC_DATA: ("Old value of a far atomic (one beat, bytes 0..7).", "none (sinks)"),
}

CLASS_MEANING: dict[MsgClass, tuple[str, str]] = {
    MsgClass.REQ: ("Requester to home.", "SNP, RSP, DAT"),
    MsgClass.SNP: ("Home to a caching node.", "RSP, DAT"),
    MsgClass.RSP: ("Response without data.", "nothing (sinks)"),
    MsgClass.DAT: ("Response with data.", "nothing (sinks)"),
}

STATE_MEANING: dict[CacheState, str] = {
    CacheState.I: "Invalid.",
    CacheState.S: "Shared: clean, other caches may hold copies.",
    CacheState.E: "Exclusive: clean, no other copy.",
    CacheState.M: "Modified: dirty, no other copy.",
}

ERROR_MEANING: dict[ErrorCode, str] = {
    ErrorCode.OK: "No error.",
    ErrorCode.DECODE: "The global address decodes to no memory window.",
    ErrorCode.DENIED: "The access table forbids this source this access.",
    ErrorCode.POISON: "The data is poisoned.",
    ErrorCode.MALFORMED: "Unknown opcode, wrong class for the opcode, reserved bits set.",
    ErrorCode.WINDOW: "The address is outside the home agent's window.",
    ErrorCode.UNSUPPORTED: "A well-formed request this target does not implement.",
}

LINK_KIND_MEANING: dict[LinkKind, str] = {
    LinkKind.IDLE: "ACK/NAK only; not sequenced, not replayed; no flit, no credits.",
    LinkKind.SEQ: "Sequenced and replayed; carries a flit and/or credit returns.",
    LinkKind.INIT: 'Link-up handshake; `seq` bit 0 = "I have seen your INIT".',
}


def _table(head: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _type_text(span: Any) -> str:
    return span.enum.__name__ if span.enum is not None else f"u{span.width}"


def _field_table(layout: Any, meanings: dict[str, str]) -> str:
    rows = []
    for span in layout_fields(layout):
        key = re.sub(r"\[\d+\]", "[]", span.name)
        index = re.findall(r"\[(\d+)\]", span.name)
        meaning = meanings[key].replace("{i}", index[-1]) if index else meanings[key]
        top = span.offset + span.width - 1
        rows.append(
            [
                f"`{span.name}`",
                str(span.offset),
                str(span.width),
                f"[{top}:{span.offset}]",
                _type_text(span),
                meaning,
            ]
        )
    return _table(["Field", "Offset", "Width", "Bits", "Type", "Meaning"], rows)


def _sizes_table() -> str:
    rows = []
    for width in DATA_WIDTHS:
        p = FabricParams(data_width=width)
        rows.append(
            [
                str(width),
                str(p.line_beats),
                str(p.payload_bits),
                str(flit_layout(p).size),
                str(link_flit_layout(p, with_crc=False).size),
                str(link_flit_layout(p).size),
            ]
        )
    head = ["data_width W", "beats per line", "payload", "flit", "link flit w/o CRC", "link flit"]
    return _table(head, rows)


def _opcode_table() -> str:
    rows = []
    for opcode in Opcode:
        meaning, response = OPCODE_MEANING[opcode]
        beats = "/".join(str(data_beats(opcode, w)) for w in DATA_WIDTHS)
        cls = opcode_class(opcode).name
        rows.append([f"0x{opcode.value:02X}", f"`{opcode.name}`", cls, beats, meaning, response])
    return _table(
        ["Value", "Opcode", "Class", "Data beats (W=128/256/512)", "Meaning", "Response"], rows
    )


def _class_table() -> str:
    p = FabricParams()
    rows = [[str(c.value), f"`{c.name}`", str(p.vc_of(c)), *CLASS_MEANING[c]] for c in MsgClass]
    return _table(["Value", "Class", "Default VC", "Direction", "May cause"], rows)


def _enum_table(enum_cls: type[py_enum.Enum], meanings: dict[Any, str]) -> str:
    rows = [[str(m.value), f"`{m.name}`", meanings[m]] for m in enum_cls]
    return _table(["Value", "Name", "Meaning"], rows)


#: Generated tables of docs/protocol.md, by block name.
_DOC_TABLES: dict[str, Callable[[], str]] = {
    "classes": _class_table,
    "opcodes": _opcode_table,
    "header": lambda: _field_table(Header, HEADER_MEANING),
    "states": lambda: _enum_table(CacheState, STATE_MEANING),
    "errors": lambda: _enum_table(ErrorCode, ERROR_MEANING),
    "sizes": _sizes_table,
    "flit": lambda: _field_table(flit_layout(FabricParams()), FLIT_MEANING),
    "beat": lambda: _field_table(beat_layout(FabricParams()), BEAT_MEANING),
    "link-kinds": lambda: _enum_table(LinkKind, LINK_KIND_MEANING),
    "link-flit": lambda: _field_table(link_flit_layout(FabricParams()), LINK_MEANING),
}


def doc_tables() -> dict[str, str]:
    """The generated Markdown tables of docs/protocol.md, by block name."""
    return {name: make() for name, make in _DOC_TABLES.items()}


def _begin(name: str) -> str:
    return f"<!-- BEGIN GENERATED {name}: python -m unifab.golden --doc-tables -->"


def _end(name: str) -> str:
    return f"<!-- END GENERATED {name} -->"


def render_doc_blocks() -> str:
    """Every generated table between its markers, ready to paste into docs/protocol.md."""
    return "\n\n".join(f"{_begin(n)}\n{t}\n{_end(n)}" for n, t in doc_tables().items()) + "\n"


DOC_BLOCK = re.compile(
    r"<!-- BEGIN GENERATED (?P<name>[\w-]+):[^>]*-->\n"
    r"(?P<body>.*?)\n"
    r"<!-- END GENERATED (?P=name) -->",
    re.DOTALL,
)


def doc_blocks(text: str) -> dict[str, str]:
    """The generated blocks found in a document, by name."""
    return {m["name"]: m["body"] for m in DOC_BLOCK.finditer(text)}


def update_doc(path: Path) -> bool:
    """Rewrite the generated blocks of a document in place; True if it changed."""
    text = path.read_text(encoding="utf-8")
    tables = doc_tables()
    new = DOC_BLOCK.sub(
        lambda m: f"{_begin(m['name'])}\n{tables[m['name']]}\n{_end(m['name'])}", text
    )
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


# --------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m unifab.golden", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--write", action="store_true", help=f"write {DATA_PATH.name}")
    parser.add_argument("--check", action="store_true", help="check the file is up to date")
    parser.add_argument("--seed", type=lambda s: int(s, 0), default=DEFAULT_SEED)
    parser.add_argument("--doc-tables", action="store_true", help="print the protocol.md tables")
    parser.add_argument("--update-doc", type=Path, metavar="PATH", help="rewrite tables in PATH")
    args = parser.parse_args(argv)
    text = render_vectors(make_vectors(args.seed))
    if args.write:
        DATA_PATH.parent.mkdir(parents=True, exist_ok=True)
        DATA_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {len(make_vectors(args.seed)['vectors'])} vectors to {DATA_PATH}")
    if args.check:
        if not DATA_PATH.exists() or DATA_PATH.read_text(encoding="utf-8") != text:
            print(
                f"{DATA_PATH} is out of date: run python -m unifab.golden --write", file=sys.stderr
            )
            return 1
        print(f"{DATA_PATH} is up to date")
    if args.doc_tables:
        sys.stdout.write(render_doc_blocks())
    if args.update_doc:
        changed = update_doc(args.update_doc)
        print(f"{args.update_doc}: {'updated' if changed else 'up to date'}")
    if not (args.write or args.check or args.doc_tables or args.update_doc):
        parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
