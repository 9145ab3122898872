"""The unifab wire format, defined once.

Everything that touches a flit — RTL, codec, golden models, testbenches — takes its field
names, widths and encodings from this module. ``docs/protocol.md`` is the prose version.

Layers, from the inside out:

* :class:`Header` — the fixed 128-bit message header (class, opcode, nodes, tag, 48-bit
  global address, cache state, error code, poison, QoS).
* A *message* is one header flit followed by ``data_beats(opcode, W)`` data flits on the same
  virtual channel. A data flit carries ``W`` data bits and ``W/8`` byte enables.
* :func:`flit_layout` — what travels on a fabric port on one virtual channel: ``head``,
  ``tail`` and a ``W + W/8``-bit payload (a header or a data beat).
* :func:`link_flit_layout` — what travels on a physical link: a flit plus its virtual
  channel, sequence number, ACK/NAK, credit returns and a CRC-32C.

The codec in :mod:`unifab.codec` range-checks every field before it is packed: Amaranth's
``Const`` and ``Layout.const`` truncate silently.
"""

from dataclasses import dataclass

from amaranth.hdl import unsigned
from amaranth.lib import data, enum

__all__ = [
    "ADDR_BITS",
    "ATOMIC_OPCODES",
    "HEADER_BITS",
    "LINE_BYTES",
    "LINE_DATA_OPCODES",
    "NODE_BITS",
    "TAG_BITS",
    "CacheState",
    "ErrorCode",
    "FabricParams",
    "Header",
    "LinkKind",
    "MsgClass",
    "Opcode",
    "beat_layout",
    "data_beats",
    "flit_layout",
    "link_flit_layout",
    "opcode_class",
]

LINE_BYTES = 64
ADDR_BITS = 48
NODE_BITS = 8
TAG_BITS = 8
HEADER_BITS = 128


class MsgClass(enum.Enum, shape=2):
    """Message class; each class travels on its own virtual channel(s).

    A message that causes another travels in a different class: REQ (requester → home)
    causes SNP, RSP or DAT; SNP (home → cache) causes RSP or DAT; RSP and DAT always sink.
    """

    REQ = 0
    SNP = 1
    RSP = 2
    DAT = 3


class Opcode(enum.Enum, shape=6):
    """Message opcodes. The upper bits group them by class (see :func:`opcode_class`)."""

    # REQ: requester -> home
    READ_SHARED = 0x01  # coherent read, may be granted S or E
    READ_UNIQUE = 0x02  # coherent read for ownership, granted E/M
    UPGRADE = 0x03  # S -> E without data (CleanUnique)
    WRITE_BACK = 0x04  # dirty line leaves a cache (carries the line)
    CLEAN_EVICT = 0x05  # clean line leaves a cache (no data)
    NC_READ = 0x06  # non-coherent read of `1 << size` bytes
    NC_WRITE = 0x07  # non-coherent write of a line with byte enables
    ATOMIC_ADD = 0x08  # far atomics: executed at home, return the old value
    ATOMIC_SWAP = 0x09
    ATOMIC_CAS = 0x0A
    ATOMIC_AND = 0x0B
    ATOMIC_OR = 0x0C
    ATOMIC_XOR = 0x0D
    ATOMIC_MIN = 0x0E  # signed
    ATOMIC_MAX = 0x0F  # signed
    # SNP: home -> cache
    SNP_INV = 0x10  # invalidate, acknowledge with SNP_RESP_I (or SNP_RESP_DATA if dirty)
    SNP_SHARED = 0x11  # downgrade to S and forward data to `fwd` (and home if dirty)
    SNP_UNIQUE = 0x12  # invalidate and forward data to `fwd`
    # RSP: no data, always sinks
    COMP = 0x18  # completion of a write, upgrade, evict or write-back
    COMP_ACK = 0x19  # requester -> home: data received, transaction may close
    SNP_RESP_I = 0x1A  # snooped cache is now invalid, had no dirty data
    SNP_RESP_S = 0x1B  # snooped cache kept a shared copy, had no dirty data
    ERROR = 0x1C  # request refused; `err` says why
    # DAT: data, always sinks
    COMP_DATA = 0x20  # read data; `state` is the state granted
    SNP_RESP_DATA = 0x21  # snooped dirty line to home; `state` is the snooped cache's new state
    FWD_DATA = 0x22  # line forwarded cache-to-cache; `state` is the state granted
    ATOMIC_DATA = 0x23  # old value of a far atomic (one beat)


ATOMIC_OPCODES = frozenset(
    {
        Opcode.ATOMIC_ADD,
        Opcode.ATOMIC_SWAP,
        Opcode.ATOMIC_CAS,
        Opcode.ATOMIC_AND,
        Opcode.ATOMIC_OR,
        Opcode.ATOMIC_XOR,
        Opcode.ATOMIC_MIN,
        Opcode.ATOMIC_MAX,
    }
)

LINE_DATA_OPCODES = frozenset(
    {
        Opcode.WRITE_BACK,
        Opcode.NC_WRITE,
        Opcode.COMP_DATA,
        Opcode.SNP_RESP_DATA,
        Opcode.FWD_DATA,
    }
)


def opcode_class(opcode: Opcode) -> MsgClass:
    """The message class an opcode must travel in."""
    group = opcode.value >> 3
    if group <= 1:
        return MsgClass.REQ
    if group == 2:
        return MsgClass.SNP
    if group == 3:
        return MsgClass.RSP
    return MsgClass.DAT


def data_beats(opcode: Opcode, data_width: int) -> int:
    """Number of data flits that follow the header flit of a message."""
    if opcode in LINE_DATA_OPCODES:
        return LINE_BYTES * 8 // data_width
    if opcode in ATOMIC_OPCODES or opcode is Opcode.ATOMIC_DATA:
        return 1
    return 0


class CacheState(enum.Enum, shape=2):
    """MESI state, as granted in responses and reported by snooped caches."""

    I = 0  # noqa: E741 — the MESI letter is the name users expect
    S = 1
    E = 2
    M = 3


class ErrorCode(enum.Enum, shape=3):
    """Why a request was refused (carried by ``Opcode.ERROR`` responses)."""

    OK = 0
    DECODE = 1  # the global address decodes to no memory window
    DENIED = 2  # the access table forbids this source this access
    POISON = 3  # the data is poisoned
    MALFORMED = 4  # unknown opcode, wrong class for the opcode, reserved bits set
    WINDOW = 5  # the address is outside the home agent's window
    UNSUPPORTED = 6  # a well-formed request this target does not implement


class Header(data.Struct):
    """The 128-bit message header, least significant field first.

    ``size`` is log2 of the access size in bytes for NC_READ and atomics (0..6);
    ``fwd`` names the node a snooped cache forwards data to (in a snoop) or the home (in a
    ``FWD_DATA``, for the requester's ``COMP_ACK``); ``rsvd`` must be zero.
    """

    opcode: Opcode
    cls: MsgClass
    src: unsigned(NODE_BITS)
    dst: unsigned(NODE_BITS)
    tag: unsigned(TAG_BITS)
    fwd: unsigned(NODE_BITS)
    addr: unsigned(ADDR_BITS)
    size: unsigned(3)
    state: CacheState
    err: ErrorCode
    poison: unsigned(1)
    qos: unsigned(2)
    rsvd: unsigned(HEADER_BITS - 99)


assert Header.as_shape().size == HEADER_BITS


class LinkKind(enum.Enum, shape=2):
    """What a link flit is."""

    IDLE = 0  # carries ACK/NAK only; not sequenced, not replayed
    SEQ = 1  # sequenced and replayed: may carry a flit and/or credit returns
    INIT = 2  # link-up handshake; `seq` bit 0 says whether the sender has seen its peer


@dataclass(frozen=True, kw_only=True)
class FabricParams:
    """Widths shared by every block of one fabric.

    ``data_width`` is the data bits per flit (a line is ``512 / data_width`` data beats);
    ``vcs`` the virtual channels per port; ``seq_bits`` the link sequence number width;
    ``credit_bits`` the width of each per-VC credit-return field in a link flit.
    """

    data_width: int = 128
    vcs: int = 4
    seq_bits: int = 8
    credit_bits: int = 4

    def __post_init__(self) -> None:
        if self.data_width not in (128, 256, 512):
            raise ValueError(f"data_width must be 128, 256 or 512, not {self.data_width!r}")
        if not 4 <= self.vcs <= 8:
            raise ValueError(f"vcs must be 4..8 (at least one per message class), not {self.vcs!r}")
        if not 4 <= self.seq_bits <= 12:
            raise ValueError(f"seq_bits must be 4..12, not {self.seq_bits!r}")
        if not 1 <= self.credit_bits <= 8:
            raise ValueError(f"credit_bits must be 1..8, not {self.credit_bits!r}")

    @property
    def payload_bits(self) -> int:
        """Bits of a flit payload: a header, or ``data_width`` data bits plus byte enables."""
        return self.data_width + self.data_width // 8

    @property
    def line_beats(self) -> int:
        return LINE_BYTES * 8 // self.data_width

    @property
    def vc_bits(self) -> int:
        return 3

    def vc_of(self, cls: MsgClass) -> int:
        """The default virtual channel of a message class."""
        return cls.value


def flit_layout(params: FabricParams) -> data.StructLayout:
    """A flit on one virtual channel of a fabric port."""
    return data.StructLayout(
        {
            "head": 1,
            "tail": 1,
            "payload": params.payload_bits,
        }
    )


def beat_layout(params: FabricParams) -> data.StructLayout:
    """The payload of a data flit: data bits and one byte enable per data byte."""
    return data.StructLayout({"data": params.data_width, "be": params.data_width // 8})


def link_flit_layout(params: FabricParams, *, with_crc: bool = True) -> data.StructLayout:
    """A flit on a physical link. The CRC-32C covers every other field."""
    fields: dict = {
        "kind": LinkKind,
        "seq": params.seq_bits,
        "ack": params.seq_bits,
        "nak": 1,
        "has_flit": 1,
        "vc": params.vc_bits,
        "flit": flit_layout(params),
        "credits": data.ArrayLayout(params.credit_bits, params.vcs),
    }
    if with_crc:
        fields["crc"] = 32
    return data.StructLayout(fields)
