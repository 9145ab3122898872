"""Python codec for the unifab wire format: headers, messages, flits and link flits.

Every bit position comes from the Amaranth layouts in :mod:`unifab.flit` (walked with
:func:`layout_fields`), so the codec and the RTL cannot disagree about where a field lives.
Every field is range-checked on pack and on unpack (Amaranth's ``Const`` truncates silently);
a failed check raises a :class:`CodecError` subclass whose ``field`` names the field.

Levels, from the inside out:

* :func:`pack_fields` / :func:`unpack_fields` — any layout, raw integers, width checks only
  (use them to build deliberately malformed bits for tests).
* :class:`MsgHeader` ↔ 128-bit header (:func:`pack_header`, :func:`unpack_header`).
* :class:`Message` ↔ list of :class:`Flit` (:func:`message_to_flits`,
  :func:`flits_to_message`, :class:`MessageAssembler` for streams).
* :class:`LinkFlit` ↔ link flit bits with CRC-32C (:func:`pack_link_flit`,
  :func:`unpack_link_flit`).
"""

import enum as py_enum
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from functools import cache
from typing import Any, NamedTuple

from amaranth.hdl import Shape
from amaranth.lib import data

from .crc import crc32c_bits
from .flit import (
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
    beat_layout,
    data_beats,
    flit_layout,
    link_flit_layout,
    opcode_class,
)

__all__ = [
    "MAX_SIZE",
    "NO_FLIT",
    "BeatCountError",
    "CodecError",
    "CrcError",
    "DataLengthError",
    "EnumValueError",
    "FieldRangeError",
    "FieldSpan",
    "FieldTypeError",
    "Flit",
    "FlitSequenceError",
    "LinkFlit",
    "LinkRuleError",
    "Message",
    "MessageAssembler",
    "MsgHeader",
    "OpcodeClassError",
    "ReservedBitsError",
    "SizeError",
    "add_link_crc",
    "describe",
    "describe_link_flit",
    "flits_to_message",
    "header",
    "layout_fields",
    "link_flit",
    "message",
    "message_data_bytes",
    "message_to_flits",
    "messages_from_flits",
    "pack_fields",
    "pack_flit",
    "pack_header",
    "pack_link_flit",
    "random_header",
    "random_message",
    "unpack_fields",
    "unpack_flit",
    "unpack_header",
    "unpack_link_flit",
]

MAX_SIZE = (LINE_BYTES - 1).bit_length()  # log2 of the largest access: one line (6)


# --------------------------------------------------------------------------------------------
# Errors


class CodecError(ValueError):
    """A value that cannot be packed, or bits that are not a well-formed encoding.

    ``field`` names the offending field (``"Header.addr"``, ``"Flit[2].tail"``, ...) and
    ``value`` holds the offending value.
    """

    def __init__(self, message: str, *, field: str, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class FieldTypeError(CodecError):
    """A field holds a value of the wrong Python type."""


class FieldRangeError(CodecError):
    """A value does not fit its field (or is not a legal value of it, e.g. ``vc >= vcs``)."""


class EnumValueError(CodecError):
    """An enum field holds a value that is not a member of its enum."""


class OpcodeClassError(CodecError):
    """An opcode travels in a message class other than :func:`unifab.flit.opcode_class`."""


class ReservedBitsError(CodecError):
    """Reserved bits are not zero."""


class SizeError(CodecError):
    """``Header.size`` is above :data:`MAX_SIZE` (an access larger than a line)."""


class FlitSequenceError(CodecError):
    """``head``/``tail`` flags out of order: a message is one head flit ... one tail flit."""


class BeatCountError(CodecError):
    """A message has the wrong number of flits for its opcode and data width."""


class DataLengthError(CodecError):
    """``Message.data`` has the wrong number of bytes for its opcode and data width."""


class LinkRuleError(CodecError):
    """A link flit breaks a link-layer rule (IDLE and INIT carry no flit and no credits)."""


class CrcError(CodecError):
    """The CRC-32C of a link flit does not match its other fields."""


# --------------------------------------------------------------------------------------------
# Layout-driven field packing


@dataclass(frozen=True)
class FieldSpan:
    """One leaf field of a layout: dotted path, bit offset, width and enum class (if any)."""

    name: str
    offset: int
    width: int
    enum: type[py_enum.Enum] | None = None

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1


def _sub_layout(shape: Any) -> data.Layout | None:
    if isinstance(shape, data.Layout):
        return shape
    if isinstance(shape, type) and issubclass(shape, data.View):
        return data.Layout.cast(shape)
    return None


def _flatten(layout: data.Layout, prefix: str, base: int) -> Iterator[FieldSpan]:
    for key, field in layout:
        if isinstance(layout, data.ArrayLayout):
            name = f"{prefix}[{key}]"
        else:
            name = f"{prefix}.{key}" if prefix else str(key)
        offset = base + field.offset
        sub = _sub_layout(field.shape)
        if sub is not None:
            yield from _flatten(sub, name, offset)
        elif isinstance(field.shape, type) and issubclass(field.shape, py_enum.Enum):
            yield FieldSpan(name, offset, field.width, field.shape)
        else:
            shape = Shape.cast(field.shape)
            if shape.signed:
                raise TypeError(f"field {name} is signed; the wire format has no signed fields")
            yield FieldSpan(name, offset, field.width)


@cache
def layout_fields(layout: Any) -> tuple[FieldSpan, ...]:
    """Leaf fields of an Amaranth layout (or ``data.Struct`` class) in bit order.

    Nested layouts are flattened into dotted paths: ``"flit.payload"``, ``"credits[2]"``.
    """
    return tuple(_flatten(data.Layout.cast(layout), "", 0))


@cache
def _layout_size(layout: Any) -> int:
    return data.Layout.cast(layout).size


def _fmt(value: int, width: int) -> str:
    return hex(value) if width > 8 else str(value)


def _range_text(width: int) -> str:
    return f"0..{_fmt((1 << width) - 1, width)}"


def _check_int(what: str, value: object, width: int) -> int:
    """``value`` as an int that fits in ``width`` unsigned bits, else raise."""
    if isinstance(value, py_enum.Enum) or not isinstance(value, int):
        raise FieldTypeError(
            f"{what} = {value!r} is not an integer (expected {_range_text(width)})",
            field=what,
            value=value,
        )
    if value < 0 or value >> width:
        raise FieldRangeError(
            f"{what} = {_fmt(value, width)} does not fit in {width} bits ({_range_text(width)})",
            field=what,
            value=value,
        )
    return int(value)


def _enum_text(enum_cls: type[py_enum.Enum]) -> str:
    members = list(enum_cls)
    if len(members) <= 8:
        return " (valid: " + ", ".join(f"{m.name}={m.value}" for m in members) + ")"
    return ""


def _decode_enum(what: str, enum_cls: type[py_enum.Enum], raw: int) -> py_enum.Enum:
    try:
        return enum_cls(raw)
    except ValueError:
        raise EnumValueError(
            f"{what} = {raw:#x} is not a valid {enum_cls.__name__}{_enum_text(enum_cls)}",
            field=what,
            value=raw,
        ) from None


def _encode_field(what: str, span: FieldSpan, value: object, *, allow_raw_enum: bool) -> int:
    if span.enum is not None:
        if isinstance(value, span.enum):
            return int(value.value)
        if not allow_raw_enum or isinstance(value, py_enum.Enum):
            name = span.enum.__name__
            raise EnumValueError(
                f"{what} = {value!r} is not a member of {name}{_enum_text(span.enum)}",
                field=what,
                value=value,
            )
    return _check_int(what, value, span.width)


def _pack(layout: Any, values: Mapping[str, object], what: str, *, raw: bool) -> int:
    bits = 0
    for span in layout_fields(layout):
        value = values.get(span.name, 0) if raw else values[span.name]
        bits |= _encode_field(f"{what}.{span.name}", span, value, allow_raw_enum=raw) << span.offset
    return bits


def pack_fields(layout: Any, values: Mapping[str, object], *, what: str = "value") -> int:
    """Pack raw field values (flattened names, see :func:`layout_fields`) into an integer.

    Missing fields are zero; enum fields take members or raw integers. Only widths are
    checked, so this builds deliberately malformed encodings (unknown opcodes, reserved
    bits set) for tests. ``what`` prefixes field names in error messages.
    """
    names = {span.name for span in layout_fields(layout)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise KeyError(f"{what} has no field(s) {', '.join(unknown)}; fields: {sorted(names)}")
    return _pack(layout, values, what, raw=True)


def unpack_fields(layout: Any, bits: int, *, what: str = "value") -> dict[str, int]:
    """Raw field values of ``bits`` (flattened names); checks only the total width."""
    bits = _check_int(what, bits, _layout_size(layout))
    return {span.name: (bits >> span.offset) & span.mask for span in layout_fields(layout)}


def _unpack(layout: Any, bits: int, what: str) -> dict[str, Any]:
    """Field values of ``bits`` with enum fields decoded (unknown values raise)."""
    values: dict[str, Any] = {}
    for name, raw in unpack_fields(layout, bits, what=what).items():
        span = _spans_by_name(layout)[name]
        if span.enum is not None:
            values[name] = _decode_enum(f"{what}.{name}", span.enum, raw)
        else:
            values[name] = raw
    return values


@cache
def _spans_by_name(layout: Any) -> dict[str, FieldSpan]:
    return {span.name: span for span in layout_fields(layout)}


class _Layouts(NamedTuple):
    flit: data.StructLayout
    beat: data.StructLayout
    link: data.StructLayout
    link_without_crc: data.StructLayout


@cache
def _layouts(params: FabricParams) -> _Layouts:
    if not isinstance(params, FabricParams):
        raise TypeError(f"params must be a FabricParams, not {type(params).__name__}")
    return _Layouts(
        flit=flit_layout(params),
        beat=beat_layout(params),
        link=link_flit_layout(params),
        link_without_crc=link_flit_layout(params, with_crc=False),
    )


# --------------------------------------------------------------------------------------------
# Header


@dataclass(frozen=True, kw_only=True)
class MsgHeader:
    """A message header, field for field as :class:`unifab.flit.Header` (``rsvd`` is zero)."""

    opcode: Opcode
    cls: MsgClass
    src: int = 0
    dst: int = 0
    tag: int = 0
    fwd: int = 0
    addr: int = 0
    size: int = 0
    state: CacheState = CacheState.I
    err: ErrorCode = ErrorCode.OK
    poison: int = 0
    qos: int = 0


_HEADER_NAMES = tuple(f.name for f in fields(MsgHeader))
_HEADER_RESERVED = "rsvd"
if set(_HEADER_NAMES) | {_HEADER_RESERVED} != {s.name for s in layout_fields(Header)}:
    raise ImportError("codec.MsgHeader and flit.Header disagree on field names")


def _check_header_rules(h: MsgHeader) -> None:
    expected = opcode_class(h.opcode)
    if h.cls is not expected:
        raise OpcodeClassError(
            f"Header.cls = {h.cls.name} but {h.opcode.name} travels in class {expected.name}",
            field="Header.cls",
            value=h.cls,
        )
    if h.size > MAX_SIZE:
        raise SizeError(
            f"Header.size = {h.size} is above {MAX_SIZE} (an access of at most {LINE_BYTES} bytes)",
            field="Header.size",
            value=h.size,
        )


def pack_header(h: MsgHeader, *, strict: bool = True) -> int:
    """The 128-bit encoding of a header.

    Widths and enum types are always checked. ``strict=False`` skips the protocol rules
    (opcode class, ``size`` <= 6) to build malformed requests for error-path tests.
    """
    if not isinstance(h, MsgHeader):
        raise TypeError(f"pack_header takes a MsgHeader, not {type(h).__name__}")
    values: dict[str, object] = {name: getattr(h, name) for name in _HEADER_NAMES}
    values[_HEADER_RESERVED] = 0
    bits = _pack(Header, values, "Header", raw=False)
    if strict:
        _check_header_rules(h)
    return bits


def unpack_header(bits: int, *, strict: bool = True) -> MsgHeader:
    """Decode a 128-bit header.

    Unknown enum values always raise. ``strict=False`` skips the protocol rules (reserved bits
    zero, opcode class, ``size`` <= 6) so a model can still answer a malformed request.
    """
    values = _unpack(Header, bits, "Header")
    rsvd = values.pop(_HEADER_RESERVED)
    h = MsgHeader(**values)
    if strict:
        if rsvd:
            span = _spans_by_name(Header)[_HEADER_RESERVED]
            raise ReservedBitsError(
                f"Header.rsvd = {rsvd:#x} is not zero (bits {span.offset}..{HEADER_BITS - 1})",
                field="Header.rsvd",
                value=rsvd,
            )
        _check_header_rules(h)
    return h


def _default_size(opcode: Opcode) -> int:
    if opcode is Opcode.NC_READ:
        return MAX_SIZE
    if opcode in ATOMIC_OPCODES:
        return 3
    return 0


def header(
    opcode: Opcode,
    *,
    cls: MsgClass | None = None,
    src: int = 0,
    dst: int = 0,
    tag: int = 0,
    fwd: int = 0,
    addr: int = 0,
    size: int | None = None,
    state: CacheState = CacheState.I,
    err: ErrorCode = ErrorCode.OK,
    poison: int = 0,
    qos: int = 0,
) -> MsgHeader:
    """A :class:`MsgHeader` with defaults: ``cls`` from the opcode, ``size`` 6 for NC_READ,
    3 (8 bytes) for atomics and 0 otherwise."""
    return MsgHeader(
        opcode=opcode,
        cls=opcode_class(opcode) if cls is None else cls,
        src=src,
        dst=dst,
        tag=tag,
        fwd=fwd,
        addr=addr,
        size=_default_size(opcode) if size is None else size,
        state=state,
        err=err,
        poison=poison,
        qos=qos,
    )


def _addr_text(addr: int) -> str:
    digits = f"{addr:012x}"
    return "0x" + "_".join(digits[i : i + 4] for i in range(0, len(digits), 4))


def describe(h: MsgHeader | int) -> str:
    """One line of human text, e.g. ``REQ READ_SHARED 3->5 tag=0x12 addr=0x0000_1234_5640``.

    Takes a header or its bits. Broken rules are flagged (``!class``, ``!size``, ``!rsvd=``);
    bits that do not decode at all give ``"?? <reason>"``.
    """
    rsvd = 0
    if not isinstance(h, MsgHeader):
        try:
            rsvd = unpack_fields(Header, h, what="Header")[_HEADER_RESERVED]
            h = unpack_header(h, strict=False)
        except CodecError as error:
            return f"?? {error}"
    route = f"{h.src}->{h.dst} tag={h.tag:#04x} addr={_addr_text(h.addr)}"
    text = f"{h.cls.name} {h.opcode.name} {route}"
    extras = []
    if h.fwd or h.opcode in (Opcode.SNP_SHARED, Opcode.SNP_UNIQUE):
        extras.append(f"fwd={h.fwd}")
    if h.size or h.opcode is Opcode.NC_READ or h.opcode in ATOMIC_OPCODES:
        extras.append(f"size={h.size}")
    if h.state is not CacheState.I or h.cls is MsgClass.DAT:
        extras.append(f"state={h.state.name}")
    if h.err is not ErrorCode.OK or h.opcode is Opcode.ERROR:
        extras.append(f"err={h.err.name}")
    if h.poison:
        extras.append("poison")
    if h.qos:
        extras.append(f"qos={h.qos}")
    if h.cls is not opcode_class(h.opcode):
        extras.append("!class")
    if h.size > MAX_SIZE:
        extras.append("!size")
    if rsvd:
        extras.append(f"!rsvd={rsvd:#x}")
    return " ".join([text, *extras])


# --------------------------------------------------------------------------------------------
# Flits and messages


@dataclass(frozen=True, kw_only=True)
class Flit:
    """A flit on one virtual channel: a header or one data beat."""

    head: bool
    tail: bool
    payload: int


def _flit_values(f: Flit, what: str) -> dict[str, object]:
    if not isinstance(f, Flit):
        raise TypeError(f"{what} must be a Flit, not {type(f).__name__}")
    return {"head": f.head, "tail": f.tail, "payload": f.payload}


def pack_flit(f: Flit, params: FabricParams) -> int:
    """The :func:`unifab.flit.flit_layout` encoding of a flit."""
    return _pack(_layouts(params).flit, _flit_values(f, "Flit"), "Flit", raw=False)


def unpack_flit(bits: int, params: FabricParams) -> Flit:
    """Decode :func:`unifab.flit.flit_layout` bits."""
    v = unpack_fields(_layouts(params).flit, bits, what="Flit")
    return Flit(head=bool(v["head"]), tail=bool(v["tail"]), payload=v["payload"])


def message_data_bytes(opcode: Opcode, params: FabricParams) -> int:
    """Bytes of ``Message.data``: a line (64) for line data, one beat for atomics, else 0."""
    return data_beats(opcode, params.data_width) * params.data_width // 8


@dataclass(frozen=True, kw_only=True)
class Message:
    """A header and its data.

    ``data`` is the line (64 bytes, byte 0 first) for line-data opcodes; one beat
    (``data_width / 8`` bytes: operand at ``[0:8]``, CAS compare value at ``[8:16]``) for
    atomics and ATOMIC_DATA; empty otherwise. ``byte_enable`` has one bit per data byte
    (bit ``i`` for ``data[i]``); ``None`` means every byte and is replaced by that mask.
    """

    header: MsgHeader
    data: bytes = b""
    byte_enable: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.data, bytearray | memoryview):
            object.__setattr__(self, "data", bytes(self.data))
        if not isinstance(self.data, bytes):
            raise FieldTypeError(
                f"Message.data = {self.data!r} is not bytes", field="Message.data", value=self.data
            )
        if self.byte_enable is None:
            object.__setattr__(self, "byte_enable", (1 << len(self.data)) - 1)


def message(h: MsgHeader, data: bytes = b"", byte_enable: int | None = None) -> Message:
    """Shorthand for ``Message(header=h, data=data, byte_enable=byte_enable)``."""
    return Message(header=h, data=data, byte_enable=byte_enable)


def message_to_flits(msg: Message, params: FabricParams, *, strict: bool = True) -> list[Flit]:
    """The flits of a message: one header flit, then ``data_beats(opcode, W)`` data flits.

    ``strict`` is passed to :func:`pack_header`.
    """
    if not isinstance(msg, Message):
        raise TypeError(f"message_to_flits takes a Message, not {type(msg).__name__}")
    layouts = _layouts(params)
    header_bits = pack_header(msg.header, strict=strict)
    opcode = msg.header.opcode
    width = params.data_width
    nbytes = message_data_bytes(opcode, params)
    if len(msg.data) != nbytes:
        raise DataLengthError(
            f"Message.data is {len(msg.data)} bytes; {opcode.name} carries {nbytes} bytes"
            f" at data_width {width}",
            field="Message.data",
            value=len(msg.data),
        )
    byte_enable = _check_int("Message.byte_enable", msg.byte_enable, nbytes)
    beats = data_beats(opcode, width)
    beat_bytes = width // 8
    flits = [Flit(head=True, tail=beats == 0, payload=header_bits)]
    for i in range(beats):
        chunk = msg.data[i * beat_bytes : (i + 1) * beat_bytes]
        enables = (byte_enable >> (i * beat_bytes)) & ((1 << beat_bytes) - 1)
        payload = _pack(
            layouts.beat,
            {"data": int.from_bytes(chunk, "little"), "be": enables},
            "Beat",
            raw=False,
        )
        flits.append(Flit(head=False, tail=i == beats - 1, payload=payload))
    return flits


def flits_to_message(
    flits: Iterable[Flit], params: FabricParams, *, strict: bool = True
) -> Message:
    """Reassemble one message; checks head/tail flags, beat count and reserved bits.

    ``strict`` is passed to :func:`unpack_header`.
    """
    flits = list(flits)
    layouts = _layouts(params)
    for i, f in enumerate(flits):
        _pack(layouts.flit, _flit_values(f, f"Flit[{i}]"), f"Flit[{i}]", raw=False)
    if not flits:
        raise BeatCountError(
            "a message has at least a header flit, got none", field="Message.flits", value=0
        )
    if not flits[0].head:
        raise FlitSequenceError(
            "Flit[0].head = 0: a message starts with a head flit", field="Flit[0].head", value=0
        )
    payload = flits[0].payload
    upper = payload >> HEADER_BITS
    if upper:
        raise ReservedBitsError(
            f"Flit[0].payload bits {HEADER_BITS}..{params.payload_bits - 1} = {upper:#x}"
            " are not zero (a header flit carries a 128-bit header)",
            field="Flit[0].payload",
            value=upper,
        )
    h = unpack_header(payload, strict=strict)
    beats = data_beats(h.opcode, params.data_width)
    if len(flits) != 1 + beats:
        raise BeatCountError(
            f"{h.opcode.name} at data_width {params.data_width} has {beats} data beats,"
            f" got {len(flits) - 1}",
            field="Message.flits",
            value=len(flits) - 1,
        )
    last = len(flits) - 1
    for i, f in enumerate(flits):
        if i and f.head:
            raise FlitSequenceError(
                f"Flit[{i}].head = 1 inside a message (only the header flit is a head)",
                field=f"Flit[{i}].head",
                value=1,
            )
        if bool(f.tail) != (i == last):
            where = "the last flit must be a tail" if i == last else "before the last flit"
            raise FlitSequenceError(
                f"Flit[{i}].tail = {int(bool(f.tail))}: {where}",
                field=f"Flit[{i}].tail",
                value=int(bool(f.tail)),
            )
    beat_bytes = params.data_width // 8
    chunks = []
    byte_enable = 0
    for i, f in enumerate(flits[1:]):
        beat = unpack_fields(layouts.beat, f.payload, what=f"Flit[{i + 1}].payload")
        chunks.append(beat["data"].to_bytes(beat_bytes, "little"))
        byte_enable |= beat["be"] << (i * beat_bytes)
    return Message(header=h, data=b"".join(chunks), byte_enable=byte_enable)


class MessageAssembler:
    """Collects the flits of one virtual channel and returns each message as it completes."""

    def __init__(self, params: FabricParams, *, strict: bool = True) -> None:
        self.params = params
        self.strict = strict
        self._pending: list[Flit] = []
        self._expected: int | None = None

    def _message_flits(self, first: Flit) -> int:
        """Flits in the message that ``first`` starts (1 if it cannot start one)."""
        if not first.head:
            return 1
        raw = unpack_fields(Header, first.payload & ((1 << HEADER_BITS) - 1))["opcode"]
        try:
            return 1 + data_beats(Opcode(raw), self.params.data_width)
        except ValueError:
            return 1

    @property
    def busy(self) -> bool:
        """True between a message's head flit and its tail flit."""
        return bool(self._pending)

    def push(self, flit: Flit) -> Message | None:
        """Add one flit; the completed message on its tail flit, else ``None``.

        A malformed message raises :class:`CodecError`; the assembler then starts afresh.
        """
        self._pending.append(flit)
        if self._expected is None:
            self._expected = self._message_flits(flit)
        if not flit.tail and len(self._pending) < self._expected:
            return None
        flits, self._pending, self._expected = self._pending, [], None
        return flits_to_message(flits, self.params, strict=self.strict)


def messages_from_flits(
    flits: Iterable[Flit], params: FabricParams, *, strict: bool = True
) -> list[Message]:
    """Split a flit stream (one virtual channel) into messages."""
    assembler = MessageAssembler(params, strict=strict)
    messages = [m for f in flits if (m := assembler.push(f)) is not None]
    if assembler.busy:
        raise BeatCountError(
            "the flit stream ends inside a message", field="Message.flits", value=None
        )
    return messages


# --------------------------------------------------------------------------------------------
# Link flits


NO_FLIT = Flit(head=False, tail=False, payload=0)


@dataclass(frozen=True, kw_only=True)
class LinkFlit:
    """A flit on a physical link (:func:`unifab.flit.link_flit_layout`).

    ``credits[v]`` returns credits of virtual channel ``v``. ``crc`` is filled in by
    :func:`unpack_link_flit`; :func:`pack_link_flit` always computes it and ignores this field.
    """

    kind: LinkKind
    credits: tuple[int, ...]
    seq: int = 0
    ack: int = 0
    nak: bool = False
    has_flit: bool = False
    vc: int = 0
    flit: Flit = NO_FLIT
    crc: int | None = None


def link_flit(
    params: FabricParams,
    kind: LinkKind,
    *,
    flit: Flit | None = None,
    vc: int = 0,
    seq: int = 0,
    ack: int = 0,
    nak: bool = False,
    credits: Iterable[int] | None = None,
) -> LinkFlit:
    """A :class:`LinkFlit` with defaults: no credits returned, ``has_flit`` iff ``flit``."""
    return LinkFlit(
        kind=kind,
        credits=tuple(credits) if credits is not None else (0,) * params.vcs,
        seq=seq,
        ack=ack,
        nak=nak,
        has_flit=flit is not None,
        vc=vc,
        flit=NO_FLIT if flit is None else flit,
    )


def _check_vc(vc: int, params: FabricParams) -> None:
    if vc >= params.vcs:
        raise FieldRangeError(
            f"LinkFlit.vc = {vc} is not a virtual channel of this fabric (0..{params.vcs - 1})",
            field="LinkFlit.vc",
            value=vc,
        )


def _check_link_rules(kind: LinkKind, has_flit: int, credits: tuple[int, ...]) -> None:
    if kind is LinkKind.SEQ:
        return
    if has_flit:
        raise LinkRuleError(
            f"LinkFlit.has_flit = 1 on a {kind.name} flit (only SEQ flits carry flits)",
            field="LinkFlit.has_flit",
            value=has_flit,
        )
    if any(credits):
        raise LinkRuleError(
            f"LinkFlit.credits = {list(credits)} on a {kind.name} flit"
            " (only SEQ flits, which are replayed, return credits)",
            field="LinkFlit.credits",
            value=credits,
        )


def _link_values(lf: LinkFlit, params: FabricParams) -> dict[str, object]:
    if not isinstance(lf, LinkFlit):
        raise TypeError(f"pack_link_flit takes a LinkFlit, not {type(lf).__name__}")
    credits = lf.credits
    if not isinstance(credits, tuple | list) or len(credits) != params.vcs:
        raise FieldRangeError(
            f"LinkFlit.credits = {credits!r} must be a tuple of {params.vcs} counts"
            f" (one per virtual channel)",
            field="LinkFlit.credits",
            value=credits,
        )
    values: dict[str, object] = {
        "kind": lf.kind,
        "seq": lf.seq,
        "ack": lf.ack,
        "nak": lf.nak,
        "has_flit": lf.has_flit,
        "vc": lf.vc,
    }
    values.update({f"flit.{k}": v for k, v in _flit_values(lf.flit, "LinkFlit.flit").items()})
    values.update({f"credits[{i}]": c for i, c in enumerate(credits)})
    return values


def add_link_crc(body: int, params: FabricParams) -> int:
    """Full link flit bits from the bits of every field but the CRC (no other checks).

    For tests and channel models that build link flits field by field with
    :func:`pack_fields` on ``link_flit_layout(params, with_crc=False)``.
    """
    layouts = _layouts(params)
    width = layouts.link_without_crc.size
    body = _check_int("LinkFlit body", body, width)
    crc = pack_fields(layouts.link, {"crc": crc32c_bits(body, width)}, what="LinkFlit")
    return body | crc


def pack_link_flit(lf: LinkFlit, params: FabricParams, *, strict: bool = True) -> int:
    """The link flit bits, CRC-32C included (the CRC covers every other field).

    ``strict=False`` skips the link rules (IDLE/INIT carry no flit and no credits).
    """
    layouts = _layouts(params)
    values = _link_values(lf, params)
    bits = _pack(layouts.link_without_crc, values, "LinkFlit", raw=False)
    _check_vc(lf.vc, params)
    if strict:
        _check_link_rules(lf.kind, int(lf.has_flit), tuple(lf.credits))
    values["crc"] = crc32c_bits(bits, layouts.link_without_crc.size)
    return _pack(layouts.link, values, "LinkFlit", raw=False)


def unpack_link_flit(bits: int, params: FabricParams, *, strict: bool = True) -> LinkFlit:
    """Decode link flit bits; the CRC is checked first (:class:`CrcError`).

    ``strict=False`` skips the link rules (IDLE/INIT carry no flit and no credits).
    """
    layouts = _layouts(params)
    raw = unpack_fields(layouts.link, bits, what="LinkFlit")
    width = layouts.link_without_crc.size
    body = bits & ((1 << width) - 1)
    expected = crc32c_bits(body, width)
    if raw["crc"] != expected:
        raise CrcError(
            f"LinkFlit.crc = {raw['crc']:#010x} does not match the CRC-32C of the other"
            f" {width} bits ({expected:#010x})",
            field="LinkFlit.crc",
            value=raw["crc"],
        )
    values = _unpack(layouts.link, bits, "LinkFlit")
    _check_vc(values["vc"], params)
    credits = tuple(values[f"credits[{i}]"] for i in range(params.vcs))
    if strict:
        _check_link_rules(values["kind"], values["has_flit"], credits)
    return LinkFlit(
        kind=values["kind"],
        credits=credits,
        seq=values["seq"],
        ack=values["ack"],
        nak=bool(values["nak"]),
        has_flit=bool(values["has_flit"]),
        vc=values["vc"],
        flit=Flit(
            head=bool(values["flit.head"]),
            tail=bool(values["flit.tail"]),
            payload=values["flit.payload"],
        ),
        crc=values["crc"],
    )


def describe_link_flit(lf: LinkFlit) -> str:
    """One line of human text, e.g. ``SEQ seq=5 ack=3 vc=0 H[REQ READ_SHARED ...] cr=1,0,0,0``."""
    parts = [lf.kind.name]
    if lf.kind is LinkKind.INIT:
        parts.append(f"seen={lf.seq & 1}")
    elif lf.kind is LinkKind.SEQ:
        parts.append(f"seq={lf.seq}")
    parts.append(f"ack={lf.ack}")
    if lf.nak:
        parts.append("NAK")
    if lf.has_flit:
        flags = ("H" if lf.flit.head else "") + ("T" if lf.flit.tail else "")
        if lf.flit.head:
            body = describe(lf.flit.payload & ((1 << HEADER_BITS) - 1))
        else:
            body = f"payload={lf.flit.payload:#x}"
        parts.append(f"vc={lf.vc} {flags or '-'}[{body}]")
    if any(lf.credits):
        parts.append("cr=" + ",".join(str(c) for c in lf.credits))
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# Random traffic (seeded), for tests, golden vectors and traffic generators


def random_header(rng: random.Random, opcode: Opcode | None = None) -> MsgHeader:
    """A well-formed header with random fields (every field drawn from its full range)."""
    spans = _spans_by_name(Header)
    if opcode is None:
        opcode = rng.choice(list(Opcode))

    def bits(name: str) -> int:
        return rng.getrandbits(spans[name].width)

    return MsgHeader(
        opcode=opcode,
        cls=opcode_class(opcode),
        src=bits("src"),
        dst=bits("dst"),
        tag=bits("tag"),
        fwd=bits("fwd"),
        addr=bits("addr"),
        size=rng.randrange(MAX_SIZE + 1),
        state=rng.choice(list(CacheState)),
        err=rng.choice(list(ErrorCode)),
        poison=bits("poison"),
        qos=bits("qos"),
    )


def random_message(
    rng: random.Random, params: FabricParams, opcode: Opcode | None = None
) -> Message:
    """A well-formed message with a random header, data and byte enables."""
    h = random_header(rng, opcode)
    nbytes = message_data_bytes(h.opcode, params)
    return Message(header=h, data=rng.randbytes(nbytes), byte_enable=rng.getrandbits(nbytes))
