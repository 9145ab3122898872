"""CRC-32C (Castagnoli), the link flit's check code, as a golden model for the RTL.

A link flit of ``n`` bits is serialized little-endian into ``ceil(n / 8)`` bytes (the top byte
padded with zeros) and checked with standard reflected CRC-32C (init and final XOR
``0xFFFFFFFF``), so any CRC-32C library gives the same value. For a fixed width the CRC is an
affine function of the bits — ``crc(x) = crc(0) ^ XOR(column[i] for each set bit i)`` — which is
how :mod:`unifab.hdl.link.crc` builds its single-cycle XOR network.
"""

from __future__ import annotations

from functools import cache

__all__ = ["CRC32C_POLY_REFLECTED", "crc32c", "crc32c_bits", "crc32c_columns"]

CRC32C_POLY_REFLECTED = 0x82F63B78


@cache
def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (CRC32C_POLY_REFLECTED if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


def crc32c(data: bytes) -> int:
    """Standard CRC-32C of a byte string (``crc32c(b"123456789") == 0xE3069283``)."""
    table = _table()
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_bits(value: int, width: int) -> int:
    """CRC-32C of a ``width``-bit value serialized little-endian into whole bytes."""
    if width <= 0:
        raise ValueError(f"width must be positive, not {width}")
    if value < 0 or value >> width:
        raise ValueError(f"value does not fit in {width} bits")
    return crc32c(value.to_bytes((width + 7) // 8, "little"))


@cache
def crc32c_columns(width: int) -> tuple[int, tuple[int, ...]]:
    """``(crc of zero, per-bit column)`` so that the CRC is affine in the input bits."""
    base = crc32c_bits(0, width)
    return base, tuple(crc32c_bits(1 << i, width) ^ base for i in range(width))
