"""The data-value invariant checked from outside: a versioned reference memory.

A bench that only sees when each access was issued and when it completed (an AXI port) cannot
know the instant an access took effect. It can still check that every load returns a value
some store could have left there: the value of a store that had begun before the load ended,
and that was not overwritten by another store completed before the load began. Every access is
on one aligned word of ``word_bytes``; atomics are a read and a write at once.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DataValueError", "VersionedMemory"]


class DataValueError(AssertionError):
    """A load returned a value no store could have left there."""


@dataclass
class _Version:
    value: int
    start: int  # when the store was issued
    end: int | None  # when it completed (None: still outstanding)


class VersionedMemory:
    """Per word, every version written, with the interval its store was in flight.

    Use :meth:`begin_store` at issue and :meth:`end_store` at completion; :meth:`check_load`
    at a load's completion with its issue time. Initial contents are ``initial`` (or 0).
    """

    def __init__(self, *, word_bytes: int = 8, initial: dict[int, int] | None = None) -> None:
        self.word_bytes = word_bytes
        self.words: dict[int, list[_Version]] = {}
        self.initial = dict(initial or {})
        self.checked = 0

    def _versions(self, addr: int) -> list[_Version]:
        if addr % self.word_bytes:
            raise ValueError(f"{addr:#x} is not aligned to {self.word_bytes}-byte words")
        v = self.words.get(addr)
        if v is None:
            v = self.words[addr] = [_Version(self.initial.get(addr, 0), -1, -1)]
        return v

    def begin_store(self, addr: int, value: int, now: int) -> _Version:
        version = _Version(value, now, None)
        self._versions(addr).append(version)
        return version

    def end_store(self, version: _Version, now: int) -> None:
        version.end = now

    def allowed(self, addr: int, start: int, end: int) -> set[int]:
        """Values a load issued at ``start`` and completed at ``end`` may return."""
        versions = self._versions(addr)
        # A store that completed before the load began hides every store that had completed
        # before it was issued.
        floor = max((v.start for v in versions if v.end is not None and v.end < start), default=-2)
        return {
            v.value
            for v in versions
            if v.start <= end and not (v.end is not None and v.end < floor)
        }

    def check_load(self, addr: int, value: int, start: int, end: int, *, who: str = "") -> None:
        self.checked += 1
        allowed = self.allowed(addr, start, end)
        if value not in allowed:
            shown = ", ".join(f"{v:#x}" for v in sorted(allowed)[:6])
            raise DataValueError(
                f"{who}load of {addr:#x} issued at {start}, done at {end} returned {value:#x};"
                f" possible values: {shown}"
            )

    def prune(self, now: int) -> None:
        """Forget versions no future load can return (keeps long runs small)."""
        for addr, versions in self.words.items():
            floor = max(
                (v.start for v in versions if v.end is not None and v.end < now), default=-2
            )
            self.words[addr] = [v for v in versions if v.end is None or v.end >= floor]
