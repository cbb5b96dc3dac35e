"""Key files of the organisation's signing keys (the root, the enrolment authority, each
admin's own), sealed with a passphrase.

The root key signs the organisation config and is meant to stay on an admin's offline
machine; whoever copies its file still needs the passphrase, and each guess costs an
Argon2id run (libsodium's *moderate* cost, 256 MiB). The file carries its format version,
the key's role, the KDF and its cost, salt, nonce and the public key in clear, and the
32-byte Ed25519 seed encrypted with XChaCha20-Poly1305 under the Argon2id key, with every
byte before the ciphertext as associated data: a file whose role, cost or public key was
edited does not open. docs/PROTOCOL.md, "Organisation config", gives the bytes. Bytes in,
bytes out; ``server.orgadmin`` reads and writes the files.
"""

from __future__ import annotations

import enum
import struct
import unicodedata
from dataclasses import dataclass

import nacl.pwhash

from app.base.errors import DecryptionError
from app.base.limits import KEY_BYTES, XCHACHA_NONCE_BYTES
from app.crypto.primitives import RandomSource, aead_decrypt, aead_encrypt, ed25519_keypair_from_seed
from app.provisioning.errors import ProvisioningError

MAGIC = b"ENCLAVES"
"""``ENCLAVES``: an Enclave signing key (the profile's key header is ``ENCLAVEK``)."""
KEY_FILE_VERSION = 1
KEY_FILE_VERSIONS = frozenset({KEY_FILE_VERSION})
KDF_ARGON2ID13 = 1
SALT_BYTES = nacl.pwhash.argon2id.SALTBYTES
_HEADER = struct.Struct(f">8sBBBIQ{SALT_BYTES}s{XCHACHA_NONCE_BYTES}s{KEY_BYTES}s")
SEALED_SEED_BYTES = KEY_BYTES + 16
KEY_FILE_BYTES = _HEADER.size + SEALED_SEED_BYTES
MAX_OPSLIMIT = 64
MAX_MEMLIMIT = 4 * 1024 * 1024 * 1024


class Role(enum.IntEnum):
    ROOT = 1
    """The organisation's root: signs the organisation config."""
    AUTHORITY = 2
    """The enrolment authority: signs device certificates."""
    ADMIN = 3
    """One admin: signs each of that admin's actions into the key log."""

    def describe(self) -> str:
        return {Role.ROOT: "organisation root", Role.AUTHORITY: "enrolment authority", Role.ADMIN: "admin"}[
            self
        ]


_DESCRIPTIONS = {Role.ROOT: "organisation root", Role.AUTHORITY: "enrolment authority", Role.ADMIN: "admin"}


@dataclass(frozen=True, slots=True)
class Cost:
    opslimit: int
    memlimit: int


MODERATE = Cost(nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE)
MINIMUM = Cost(nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)
"""For tests only: a key sealed at this cost falls to a guessing attack."""


class KeyFileError(ProvisioningError):
    """A key file is not an Enclave key file, is of another role, or was damaged."""


class WrongKeyPassphraseError(ProvisioningError):
    """The passphrase does not open the key file (or the file was altered)."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    role: Role
    public_key: bytes
    secret_key: bytes
    """libsodium's 64-byte Ed25519 secret key (seed || public key)."""


def _kdf(passphrase: str, salt: bytes, cost: Cost) -> bytes:
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return nacl.pwhash.argon2id.kdf(KEY_BYTES, secret, salt, opslimit=cost.opslimit, memlimit=cost.memlimit)


def new_key_file(
    role: Role, passphrase: str, *, random: RandomSource, cost: Cost = MODERATE
) -> tuple[bytes, SigningKey]:
    """A fresh key of ``role`` and its file's bytes, sealed with ``passphrase``."""
    return seal_key(role, passphrase, random(KEY_BYTES), random=random, cost=cost)


def seal_key(
    role: Role, passphrase: str, seed: bytes, *, random: RandomSource, cost: Cost = MODERATE
) -> tuple[bytes, SigningKey]:
    """The key file's bytes for the Ed25519 key of ``seed``, sealed with ``passphrase``, and the key."""
    if not passphrase:
        raise ValueError("a key file's passphrase must not be empty")
    public, secret = ed25519_keypair_from_seed(seed=seed)
    salt, nonce = random(SALT_BYTES), random(XCHACHA_NONCE_BYTES)
    header = _HEADER.pack(
        MAGIC, KEY_FILE_VERSION, role, KDF_ARGON2ID13, cost.opslimit, cost.memlimit, salt, nonce, public
    )
    sealed = aead_encrypt(
        key=_kdf(passphrase, salt, cost), nonce=nonce, associated_data=header, plaintext=seed
    )
    return header + sealed, SigningKey(role, public, secret)


def untrusted_public_key(untrusted: bytes, *, role: Role, source: str) -> bytes:
    """The public key a key file holds (no passphrase needed), after checking its header."""
    return _header(untrusted, role=role, source=source)[3]


def open_key_file(untrusted: bytes, passphrase: str, *, role: Role, source: str) -> SigningKey:
    """The signing key in a key file of ``role``, or a typed refusal naming ``source``."""
    cost, salt, nonce, public = _header(untrusted, role=role, source=source)
    header, sealed = untrusted[: _HEADER.size], untrusted[_HEADER.size :]
    try:
        seed = aead_decrypt(
            key=_kdf(passphrase, salt, cost), nonce=nonce, associated_data=header, ciphertext=sealed
        )
    except DecryptionError as e:
        raise WrongKeyPassphraseError(
            f"the passphrase does not open {source} (or the file was altered)"
        ) from e
    derived, secret = ed25519_keypair_from_seed(seed=seed)
    if derived != public:
        raise KeyFileError(f"{source} is damaged: its key does not match its public key")
    return SigningKey(role, public, secret)


def _header(untrusted: bytes, *, role: Role, source: str) -> tuple[Cost, bytes, bytes, bytes]:
    if len(untrusted) < 9 or untrusted[:8] != MAGIC:
        raise KeyFileError(f"{source} is not an Enclave signing key file")
    if untrusted[8] not in KEY_FILE_VERSIONS:
        raise KeyFileError(f"{source} is a key file of version {untrusted[8]}; update Enclave to read it")
    if len(untrusted) != KEY_FILE_BYTES:
        raise KeyFileError(f"{source} is damaged: {len(untrusted)} bytes, not {KEY_FILE_BYTES}")
    _, _, found_role, kdf, opslimit, memlimit, salt, nonce, public = _HEADER.unpack(untrusted[: _HEADER.size])
    if found_role != role:
        try:
            what = Role(found_role).describe()
        except ValueError:
            what = f"role {found_role}"
        raise KeyFileError(f"{source} holds the {what} key, not the {role.describe()} key")
    if kdf != KDF_ARGON2ID13:
        raise KeyFileError(f"{source} names an unknown key derivation ({kdf})")
    if not (
        nacl.pwhash.argon2id.OPSLIMIT_MIN <= opslimit <= MAX_OPSLIMIT
        and nacl.pwhash.argon2id.MEMLIMIT_MIN <= memlimit <= MAX_MEMLIMIT
    ):
        raise KeyFileError(f"{source} is damaged: its Argon2id cost is out of bounds")
    return Cost(opslimit, memlimit), salt, nonce, public
