"""The key header: the small file beside the database that says how its key is obtained.

It holds no secret: the profile id (the keystore entry's user name), which protection
the profile uses, a key check value and, for a passphrase, the Argon2id salt and cost.
The byte layout is in docs/STORAGE.md. The key check value lets us tell a wrong key or
passphrase from a file that is not ours *before* SQLCipher touches the database; it is
a BLAKE2b MAC of the profile id under the database key, so it reveals nothing about a
random 256-bit key, and for a passphrase it is no better an oracle than the database's
own first page (both cost one Argon2id run per guess).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

import nacl.encoding
import nacl.hash
import nacl.pwhash

from app.base.codec import Reader, Writer
from app.base.errors import RemoteProtocolError, UnsupportedVersionError
from app.base.limits import KEY_BYTES
from storage.errors import KeyHeaderDamagedError, NotAnEnclaveDatabaseError, UnsupportedProfileVersionError
from storage.fileio import atomic_write

MAGIC = b"ENCLAVEK"
HEADER_VERSION = 2
"""Version 2 adds a checksum, so a changed byte reads as a damaged header, not a wrong key."""
HEADER_VERSIONS_SUPPORTED = frozenset({1, HEADER_VERSION})
HEADER_VERSIONS_KNOWN = frozenset({1, HEADER_VERSION})
CHECKSUM_SINCE = 2
"""The first header version that ends with a checksum."""
CHECKSUM_BYTES = 16
CHECKSUM_PERSON = b"enclave:keyhdr:2"
"""BLAKE2b personalisation of the version 2 checksum (exactly 16 bytes)."""


def _checksum(data: bytes) -> bytes:
    return nacl.hash.blake2b(
        data, digest_size=CHECKSUM_BYTES, person=CHECKSUM_PERSON, encoder=nacl.encoding.RawEncoder
    )


PROFILE_ID_BYTES = 16
KDF_ARGON2ID13 = 1
SALT_BYTES = nacl.pwhash.argon2id.SALTBYTES

MAX_HEADER_BYTES = 256
"""A key header is under 100 bytes; a larger file is not one."""

MAX_OPSLIMIT = 64
MAX_MEMLIMIT = 4 * 1024 * 1024 * 1024
"""Argon2id cost read from disk is bounded, so a planted header cannot make us allocate without limit."""


class Protection(enum.IntEnum):
    """How a profile's database key is obtained."""

    UNENCRYPTED = 0
    """No key: the unencrypted twin used only by tests and benchmarks."""
    KEYSTORE = 1
    PASSPHRASE = 2

    def describe(self) -> str:
        return {0: "no encryption", 1: "the system keystore", 2: "a passphrase"}[self.value]


@dataclass(frozen=True, slots=True)
class Argon2Cost:
    """Argon2id work factors (libsodium's opslimit and memlimit in bytes)."""

    opslimit: int
    memlimit: int

    def __post_init__(self) -> None:
        if not nacl.pwhash.argon2id.OPSLIMIT_MIN <= self.opslimit <= MAX_OPSLIMIT:
            raise ValueError(f"Argon2id opslimit {self.opslimit} is out of range")
        if not nacl.pwhash.argon2id.MEMLIMIT_MIN <= self.memlimit <= MAX_MEMLIMIT:
            raise ValueError(f"Argon2id memlimit {self.memlimit} is out of range")


MODERATE_COST = Argon2Cost(nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE)
"""The default: about 0.7 s and 256 MiB on a two-core workstation, once per unlock."""

MINIMUM_COST = Argon2Cost(nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)
"""For tests only: exercises the real derivation without its cost."""


@dataclass(frozen=True, slots=True)
class KeyHeader:
    protection: Protection
    profile_id: bytes
    key_check: bytes = field(repr=False)
    salt: bytes = b""
    cost: Argon2Cost | None = None

    def __post_init__(self) -> None:
        if len(self.profile_id) != PROFILE_ID_BYTES or len(self.key_check) != KEY_BYTES:
            raise ValueError("malformed key header fields")
        if (self.protection is Protection.PASSPHRASE) != (
            self.cost is not None and len(self.salt) == SALT_BYTES
        ):
            raise ValueError("a passphrase header needs a salt and a cost, and only it")

    @property
    def profile_name(self) -> str:
        """The profile id as text: the keystore entry's user name."""
        return self.profile_id.hex()

    def to_bytes(self) -> bytes:
        w = Writer("key header").raw(MAGIC).u8(HEADER_VERSION).u8(self.protection)
        w.fixed(self.profile_id, PROFILE_ID_BYTES, "profile id").fixed(self.key_check, KEY_BYTES, "key check")
        if self.cost is not None:
            w.u8(KDF_ARGON2ID13).u32(self.cost.opslimit).u64(self.cost.memlimit)
            w.fixed(self.salt, SALT_BYTES, "salt")
        body = w.getvalue()
        return body + _checksum(body)

    @classmethod
    def parse(cls, untrusted: bytes) -> KeyHeader:
        """Parse a key header; anything else is ``NotAnEnclaveDatabaseError``."""
        try:
            return cls._parse(untrusted)
        except UnsupportedVersionError as e:
            if e.known:
                raise NotAnEnclaveDatabaseError(f"key header version {e.version} is no longer read") from e
            latest = max(HEADER_VERSIONS_SUPPORTED)
            raise UnsupportedProfileVersionError("key header", e.version, latest) from e
        except (RemoteProtocolError, ValueError) as e:
            raise NotAnEnclaveDatabaseError("its key header is damaged") from e

    @classmethod
    def _parse(cls, untrusted: bytes) -> KeyHeader:
        r = Reader(untrusted, "key header")
        if r.fixed(len(MAGIC)) != MAGIC:
            raise r.fail("wrong magic")
        version = r.version(supported=HEADER_VERSIONS_SUPPORTED, known=HEADER_VERSIONS_KNOWN)
        protection = Protection(r.u8())  # an unknown value raises ValueError: not our header
        profile_id = r.fixed(PROFILE_ID_BYTES)
        key_check = r.fixed(KEY_BYTES)
        salt, cost = b"", None
        if protection is Protection.PASSPHRASE:
            if r.u8() != KDF_ARGON2ID13:
                raise r.fail("unknown key derivation")
            opslimit, memlimit = r.u32(), r.u64()
            cost = Argon2Cost(opslimit, memlimit)
            salt = r.fixed(SALT_BYTES)
        if version >= CHECKSUM_SINCE:
            body = untrusted[: len(untrusted) - r.remaining()]
            if r.fixed(CHECKSUM_BYTES) != _checksum(body):
                raise KeyHeaderDamagedError("of this profile")
        r.finish()
        return cls(protection, profile_id, key_check, salt, cost)


def read_header(path: Path) -> KeyHeader:
    """Read and parse the key header at ``path``."""
    try:
        with path.open("rb") as f:
            untrusted = f.read(MAX_HEADER_BYTES + 1)
    except FileNotFoundError as e:
        raise NotAnEnclaveDatabaseError("the folder has no key header") from e
    if len(untrusted) > MAX_HEADER_BYTES:
        raise NotAnEnclaveDatabaseError("its key header is too large")
    try:
        return KeyHeader.parse(untrusted)
    except KeyHeaderDamagedError as e:
        raise KeyHeaderDamagedError(path) from e


def write_header(path: Path, header: KeyHeader) -> None:
    """Write the key header atomically, mode 0600."""
    atomic_write(path, header.to_bytes())
