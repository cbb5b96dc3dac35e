"""Strict big-endian reading and writing of Enclave's binary formats.

``Reader`` walks untrusted bytes: every read checks the remaining length, every
length prefix is checked against a caller's limit before anything is sliced, and
``finish()`` refuses trailing bytes. Every failure is a ``RemoteProtocolError`` naming
the format, never an ``IndexError`` or ``struct.error``. ``Writer`` is its mirror for
our own output and raises ``LocalProtocolError`` when asked to write what the format
cannot hold.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import TypeVar

from app.base.errors import LocalProtocolError, RemoteProtocolError, UnsupportedVersionError

_E = TypeVar("_E", bound=IntEnum)

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class Reader:
    """Consumes ``untrusted`` from the front; ``what`` names the format in error messages."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, untrusted: bytes, what: str) -> None:
        self._data = memoryview(untrusted)
        self._pos = 0
        self._what = what

    def fail(self, reason: str) -> RemoteProtocolError:
        """An error for this format; the caller raises it."""
        return RemoteProtocolError(f"malformed {self._what}: {reason}")

    def _take(self, n: int) -> memoryview:
        end = self._pos + n
        if end > len(self._data):
            raise self.fail(f"truncated at byte {self._pos} (needed {n} more)")
        view = self._data[self._pos : end]
        self._pos = end
        return view

    def version(self, *, supported: frozenset[int], known: frozenset[int]) -> int:
        """Read a format version byte; refuse one this build does not read.

        ``known`` holds every version ever defined, ``supported`` those we still read, so
        the error can say whether the sender is older or newer than us.
        """
        version = self.u8()
        if version not in supported:
            raise UnsupportedVersionError(self._what, version, known=version in known)
        return version

    def u8(self) -> int:
        return self._take(1)[0]

    def enum(self, enum: type[_E], field: str, *, width: int = 1) -> _E:
        """A u8 (or u16 with ``width=2``) that must be one of ``enum``'s values."""
        value = self.u8() if width == 1 else self.u16()
        try:
            return enum(value)
        except ValueError as e:
            raise self.fail(f"unknown {field} {value:#x}") from e

    def u16(self) -> int:
        return _U16.unpack(self._take(2))[0]

    def u32(self) -> int:
        return _U32.unpack(self._take(4))[0]

    def u64(self) -> int:
        return _U64.unpack(self._take(8))[0]

    def fixed(self, n: int) -> bytes:
        return bytes(self._take(n))

    def var16(self, limit: int, field: str) -> bytes:
        """Bytes after a u16 length, refused if the length exceeds ``limit``."""
        n = self.u16()
        if n > limit:
            raise self.fail(f"{field} of {n} bytes exceeds the limit of {limit}")
        return bytes(self._take(n))

    def var32(self, limit: int, field: str) -> bytes:
        """Bytes after a u32 length, refused if the length exceeds ``limit``."""
        n = self.u32()
        if n > limit:
            raise self.fail(f"{field} of {n} bytes exceeds the limit of {limit}")
        return bytes(self._take(n))

    def text16(self, limit: int, field: str) -> str:
        """UTF-8 text after a u16 byte length; invalid UTF-8 is refused, not replaced."""
        raw = self.var16(limit, field)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.fail(f"{field} is not valid UTF-8") from e

    def rest(self) -> bytes:
        """Everything not read yet (for a trailing opaque field)."""
        return bytes(self._take(len(self._data) - self._pos))

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def finish(self) -> None:
        """Refuse trailing bytes."""
        if self._pos != len(self._data):
            raise self.fail(f"{len(self._data) - self._pos} trailing bytes")


class Writer:
    """Builds a format; refuses values the format cannot hold."""

    __slots__ = ("_parts", "_what")

    def __init__(self, what: str) -> None:
        self._parts: list[bytes] = []
        self._what = what

    def _fail(self, reason: str) -> LocalProtocolError:
        return LocalProtocolError(f"cannot encode {self._what}: {reason}")

    def u8(self, value: int) -> Writer:
        if not 0 <= value <= 0xFF:
            raise self._fail(f"{value} does not fit in a u8")
        self._parts.append(bytes((value,)))
        return self

    def u16(self, value: int) -> Writer:
        if not 0 <= value <= 0xFFFF:
            raise self._fail(f"{value} does not fit in a u16")
        self._parts.append(_U16.pack(value))
        return self

    def u32(self, value: int) -> Writer:
        if not 0 <= value <= 0xFFFFFFFF:
            raise self._fail(f"{value} does not fit in a u32")
        self._parts.append(_U32.pack(value))
        return self

    def u64(self, value: int) -> Writer:
        if not 0 <= value <= 0xFFFFFFFFFFFFFFFF:
            raise self._fail(f"{value} does not fit in a u64")
        self._parts.append(_U64.pack(value))
        return self

    def fixed(self, value: bytes, n: int, field: str) -> Writer:
        if len(value) != n:
            raise self._fail(f"{field} must be {n} bytes, not {len(value)}")
        self._parts.append(bytes(value))
        return self

    def var16(self, value: bytes, limit: int, field: str) -> Writer:
        if len(value) > limit:
            raise self._fail(f"{field} of {len(value)} bytes exceeds the limit of {limit}")
        self._parts.append(_U16.pack(len(value)))
        self._parts.append(bytes(value))
        return self

    def var32(self, value: bytes, limit: int, field: str) -> Writer:
        if len(value) > limit:
            raise self._fail(f"{field} of {len(value)} bytes exceeds the limit of {limit}")
        self._parts.append(_U32.pack(len(value)))
        self._parts.append(bytes(value))
        return self

    def text16(self, value: str, limit: int, field: str) -> Writer:
        return self.var16(value.encode("utf-8"), limit, field)

    def raw(self, value: bytes) -> Writer:
        self._parts.append(bytes(value))
        return self

    def getvalue(self) -> bytes:
        return b"".join(self._parts)
