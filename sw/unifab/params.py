"""User parameters of the link layer, as frozen dataclasses with named presets."""

from dataclasses import dataclass, field

from unifab.flit import FabricParams, link_flit_layout

__all__ = ["LINK_PRESETS", "LinkParams", "check_flag"]


def check_flag(name: str, value: object) -> None:
    """Refuses a parameter that must be a ``bool`` (``1``, ``"yes"`` or ``None`` are errors)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, not {value!r}")


@dataclass(frozen=True, kw_only=True)
class LinkParams:
    """One link layer's sizes and timers.

    ``replay_depth`` flits stay in the replay buffer until acknowledged and must cover the
    round trip (2 × channel latency + ~8 cycles of pipeline) for full throughput;
    ``rx_depth`` is each virtual channel's receive buffer in flits, which is also the number of
    credits the peer starts with; ``ack_timeout`` is how many cycles without ACK progress
    trigger a replay; ``credit_delay`` is how long returned credits may wait for a data flit
    before a credit-only flit carries them; with ``registered_crc`` the receiver checks a
    flit's CRC one cycle and acts on it the next (one more cycle of latency, and the CRC
    tree no longer lies on the same path as the sequence, buffer and NAK logic); with
    ``registered_select`` the transmitter registers its choice of VC and writes the chosen flit
    the next cycle from a one-flit register per VC (one more cycle of latency, same throughput;
    the arbiter no longer lies between the input streams' ``ready`` and the replay buffer).
    """

    fabric: FabricParams = field(default_factory=FabricParams)
    replay_depth: int = 128
    rx_depth: int = 128
    ack_timeout: int = 256
    credit_delay: int = 8
    registered_crc: bool = False
    registered_select: bool = False

    def __post_init__(self) -> None:
        seq_space = 1 << self.fabric.seq_bits
        d = self.replay_depth
        if d < 2 or d & (d - 1):
            raise ValueError(f"replay_depth must be a power of two >= 2, not {d!r}")
        if d > seq_space // 2:
            raise ValueError(
                f"replay_depth {d} must be at most half the sequence space "
                f"(2**seq_bits / 2 = {seq_space // 2}) for go-back-N to be unambiguous"
            )
        if not 2 <= self.rx_depth <= 4096:
            raise ValueError(f"rx_depth must be 2..4096, not {self.rx_depth!r}")
        if self.ack_timeout < 16:
            raise ValueError(f"ack_timeout must be at least 16 cycles, not {self.ack_timeout!r}")
        if not 1 <= self.credit_delay <= 255:
            raise ValueError(f"credit_delay must be 1..255, not {self.credit_delay!r}")
        check_flag("registered_crc", self.registered_crc)
        check_flag("registered_select", self.registered_select)

    @property
    def link_bits(self) -> int:
        """Width of one link flit on the wire, CRC included."""
        return link_flit_layout(self.fabric).size


LINK_PRESETS: dict[str, LinkParams] = {
    # Full throughput at 32+ cycles of channel latency each way.
    "default": LinkParams(),
    # Small buffers for the FPGA self-test and for fast unit tests.
    "small": LinkParams(replay_depth=32, rx_depth=16, ack_timeout=128),
}
