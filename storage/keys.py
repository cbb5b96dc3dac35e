"""The database key: made at random and kept in the OS keystore, or derived from a passphrase.

Keystore: a random 256-bit key in the keystore through ``keyring``, service "Enclave",
user name the profile id (hex), value ``enclave-db-key-v1:<64 hex digits>``.
Passphrase: Argon2id (libsodium ``crypto_pwhash``) over the NFC-normalised UTF-8
passphrase with a random 16-byte salt; salt and cost sit in the key header.

Telling the failures apart (see docs/STORAGE.md): the key header's key check value is
compared before SQLCipher opens anything. Header present and the check fails: the
passphrase or keystore key is wrong. Header missing, damaged, or the check passes but
the database still cannot be read: the folder is not (or no longer) an Enclave store.
The key is never written to disk and never logged.

``kept_secret`` keeps other random secrets in the same keystore by name (the local
workspace's organisation keys are sealed with two), so that no passphrase needs a file.
"""

from __future__ import annotations

import hmac
import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import keyring
import keyring.errors
import nacl.encoding
import nacl.hash
import nacl.pwhash
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail

from app.base.limits import KEY_BYTES
from storage.errors import (
    KeystoreEntryCorruptError,
    KeystoreEntryMissingError,
    KeystoreLockedError,
    KeystoreUnavailableError,
    ProtectionMismatchError,
    WrongKeyError,
    WrongPassphraseError,
)
from storage.keyheader import MODERATE_COST, PROFILE_ID_BYTES, SALT_BYTES, Argon2Cost, KeyHeader, Protection

try:  # Secret Service (Linux) reports a bus that is gone with its own exceptions, outside keyring's.
    from secretstorage.exceptions import SecretStorageException as _SecretStorageException
except ImportError:  # pragma: no cover - other platforms

    class _SecretStorageException(Exception):  # type: ignore[no-redef]
        """Never raised where Secret Service is absent."""


log = logging.getLogger(__name__)

RandomSource = Callable[[int], bytes]
T = TypeVar("T")

KEYSTORE_SERVICE = "Enclave"
KEYSTORE_VALUE_PREFIX = "enclave-db-key-v1:"
KEY_CHECK_PERSON = b"enclave:keycheck"
"""BLAKE2b personalisation of the key check value (exactly 16 bytes)."""


@dataclass(frozen=True, slots=True)
class Keystore:
    """Keep a random key in the OS keystore. ``backend`` defaults to what ``keyring`` picks."""

    backend: KeyringBackend | None = None

    def resolve(self) -> KeyringBackend:
        return self.backend if self.backend is not None else keyring.get_keyring()


@dataclass(frozen=True, slots=True)
class Passphrase:
    """Derive the key from a passphrase; ``cost`` applies when a profile is created."""

    secret: str = field(repr=False)
    cost: Argon2Cost = MODERATE_COST


@dataclass(frozen=True, slots=True)
class Unencrypted:
    """No key at all: the unencrypted twin that tests and benchmarks compare against. Never for users."""


KeySource = Keystore | Passphrase | Unencrypted


def keystore_available(backend: KeyringBackend | None = None) -> bool:
    """Whether a real keystore backend exists; if not, the profile must use a passphrase."""
    chosen = backend if backend is not None else keyring.get_keyring()
    if isinstance(chosen, fail.Keyring):
        return False
    return not (isinstance(chosen, chainer.ChainerBackend) and not chosen.backends)


KEPT_USER_PREFIX = "secret:"
SECRET_BYTES = 32


def kept_secret(name: str, random: RandomSource, backend: KeyringBackend | None = None) -> str:
    """The random secret kept in the OS keystore as ``name`` (service "Enclave", user name
    ``secret:<name>``): the one kept, else a new one of 256 bits, kept now, as 64 hex digits.
    ``KeystoreUnavailableError`` or ``KeystoreLockedError`` when the keystore cannot be used."""
    chosen = Keystore(backend).resolve()
    user = KEPT_USER_PREFIX + name
    kept = _keystore_call(lambda: chosen.get_password(KEYSTORE_SERVICE, user))
    if kept:
        return kept
    made = random(SECRET_BYTES).hex()
    _keystore_call(lambda: chosen.set_password(KEYSTORE_SERVICE, user, made))
    return made


def key_check(raw_key: bytes, profile_id: bytes) -> bytes:
    """The key check value stored in the header: a BLAKE2b MAC of the profile id under the key."""
    return nacl.hash.blake2b(
        profile_id,
        digest_size=KEY_BYTES,
        key=raw_key,
        person=KEY_CHECK_PERSON,
        encoder=nacl.encoding.RawEncoder,
    )


def provision(source: KeySource, random: RandomSource) -> tuple[KeyHeader, bytes | None]:
    """Make a new profile's key and header; a keystore key is stored in the keystore here."""
    profile_id = random(PROFILE_ID_BYTES)
    if isinstance(source, Unencrypted):
        return KeyHeader(Protection.UNENCRYPTED, profile_id, bytes(KEY_BYTES)), None
    if isinstance(source, Passphrase):
        if not source.secret:
            raise ValueError("a passphrase must not be empty")
        salt = random(SALT_BYTES)
        raw_key = _derive(source.secret, salt, source.cost)
        header = KeyHeader(
            Protection.PASSPHRASE, profile_id, key_check(raw_key, profile_id), salt, source.cost
        )
        return header, raw_key
    raw_key = random(KEY_BYTES)
    header = KeyHeader(Protection.KEYSTORE, profile_id, key_check(raw_key, profile_id))
    backend = source.resolve()
    value = KEYSTORE_VALUE_PREFIX + raw_key.hex()
    _keystore_call(lambda: backend.set_password(KEYSTORE_SERVICE, header.profile_name, value))
    log.info("stored a new database key in the keystore (%s)", type(backend).__name__)
    return header, raw_key


def unlock(header: KeyHeader, source: KeySource) -> bytes | None:
    """The database key for ``header``, checked against its key check value before any use."""
    offered = {
        Keystore: Protection.KEYSTORE,
        Passphrase: Protection.PASSPHRASE,
        Unencrypted: Protection.UNENCRYPTED,
    }
    if offered[type(source)] is not header.protection:
        raise ProtectionMismatchError(header.protection.describe(), offered[type(source)].describe())
    if isinstance(source, Unencrypted):
        return None
    if isinstance(source, Passphrase):
        if header.cost is None:
            raise ProtectionMismatchError(header.protection.describe(), "a passphrase")
        raw_key = _derive(source.secret, header.salt, header.cost)
        if not hmac.compare_digest(key_check(raw_key, header.profile_id), header.key_check):
            raise WrongPassphraseError()
        return raw_key
    backend = source.resolve()
    untrusted_value = _keystore_call(lambda: backend.get_password(KEYSTORE_SERVICE, header.profile_name))
    if untrusted_value is None:
        raise KeystoreEntryMissingError(header.profile_name)
    raw_key = _parse_keystore_value(untrusted_value, header.profile_name)
    if not hmac.compare_digest(key_check(raw_key, header.profile_id), header.key_check):
        raise WrongKeyError()
    return raw_key


def forget(header: KeyHeader, source: KeySource) -> None:
    """Delete a keystore profile's key from the keystore (when the profile is deleted)."""
    if header.protection is not Protection.KEYSTORE or not isinstance(source, Keystore):
        return
    backend = source.resolve()
    try:
        _keystore_call(lambda: backend.delete_password(KEYSTORE_SERVICE, header.profile_name))
    except KeystoreUnavailableError as e:
        if not isinstance(e.__cause__, keyring.errors.PasswordDeleteError):
            raise


def _derive(passphrase: str, salt: bytes, cost: Argon2Cost) -> bytes:
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return nacl.pwhash.argon2id.kdf(KEY_BYTES, secret, salt, opslimit=cost.opslimit, memlimit=cost.memlimit)


def _parse_keystore_value(untrusted_value: str, profile_name: str) -> bytes:
    hex_key = untrusted_value.removeprefix(KEYSTORE_VALUE_PREFIX)
    if hex_key == untrusted_value or len(hex_key) != 2 * KEY_BYTES:
        raise KeystoreEntryCorruptError(profile_name)
    try:
        return bytes.fromhex(hex_key)
    except ValueError as e:
        raise KeystoreEntryCorruptError(profile_name) from e


def _keystore_call(call: Callable[[], T]) -> T:
    """Run a keyring call, turning its failures into the store's keystore errors."""
    try:
        return call()
    except keyring.errors.KeyringLocked as e:
        raise KeystoreLockedError() from e
    except (keyring.errors.KeyringError, _SecretStorageException, OSError) as e:
        raise KeystoreUnavailableError(type(e).__name__) from e
