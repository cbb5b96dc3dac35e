"""Mailbox rows sealed under hourly keys that are destroyed: what the PostgreSQL backend stores.

PostgreSQL does not erase a deleted row: its bytes stay in the table's pages until vacuum
reclaims them and new rows overwrite them, and in the write-ahead log (and any WAL archive
or base backup) until its segments are recycled. So no column of a mailbox row is kept in
clear: the envelope (with its id, recipient and expiry) is sealed with XChaCha20-Poly1305
under the key of an *epoch* (``EPOCH_SECONDS``), and the row names its mailbox, its
envelope id and its expiry only by HMAC-SHA256 tags under that key, which the relay
recomputes to find them. Once every row of an epoch has been resealed under a newer key
(each sweep does it, in one transaction) the epoch's key is destroyed, and every copy of
those rows that PostgreSQL kept — dead tuples, WAL records — is ciphertext under a key
that no longer exists.

Destroyed, even for a relay whose data folder is seized: the keys form a one-way chain,
``chain(e + 1) = HKDF(chain(e), INFO_MAILBOX_RATCHET)``, and the file ``mailbox.key`` holds
only the oldest epoch still needed and its chain value, from which later keys follow and
earlier ones cannot be computed. Relays sharing one database start from the same file
(docs/ADMIN.md §6), so they all derive the same key for an epoch; each forgets old epochs
when it finds no row left under them. The file is kept one epoch behind the current one, so
a row a relay with a slower clock writes under the previous epoch is still read.

Attachments use the same keys for a small header per file, which holds the key of the file's
chunks (server/store/attachmentrows.py), so the hourly reseal never rewrites a file's bytes.

What this leaves: a row deleted in epoch ``e`` is unreadable once the file has moved past
``e``, within two epochs and a sweep of its deletion; the rows' sizes (the sealed envelope
is as long as the envelope, plus ``SEAL_OVERHEAD``) and PostgreSQL's own transaction ids
stay visible.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

from server.store.base import StoreError

EPOCH_SECONDS = 3600
MAILBOX_KEY_FILE = "mailbox.key"
INFO_MAILBOX_RATCHET = b"enclave:v1:relay-mailbox-ratchet"
INFO_MAILBOX_SEAL = b"enclave:v1:relay-mailbox-seal"
INFO_MAILBOX_TAG = b"enclave:v1:relay-mailbox-tag"
CHAIN_BYTES = 32
NONCE_BYTES = 24
TAG_BYTES = 16
ENVELOPE_ID_BYTES = 16
_HEADER = 4 + ENVELOPE_ID_BYTES + 8
"""Sealed with the envelope: ``u32`` recipient device, the envelope id, ``u64`` expiry."""
SEAL_OVERHEAD = NONCE_BYTES + _HEADER + 16
"""How much longer a sealed row is than the envelope it holds (nonce, header, AEAD tag)."""


class KeyFileError(StoreError):
    """The mailbox key file is missing, unreadable or not one."""


def _derive(chain: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(chain)


@dataclass(frozen=True, slots=True)
class Opened:
    device_id: int
    envelope_id: bytes
    expires_at: int
    envelope: bytes


def seal_with(key: bytes, ad: bytes, plaintext: bytes) -> bytes:
    """XChaCha20-Poly1305 under ``key`` with a random nonce, which leads the result."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, nonce, key)


def open_with(key: bytes, ad: bytes, sealed: bytes) -> bytes | None:
    """What ``seal_with`` sealed, or None if ``sealed`` is not that under ``key`` and ``ad``."""
    try:
        return crypto_aead_xchacha20poly1305_ietf_decrypt(sealed[NONCE_BYTES:], ad, sealed[:NONCE_BYTES], key)
    except CryptoError:
        return None


class EpochKey:
    """One epoch's keys: one seals rows, the other makes the tags that find them."""

    def __init__(self, epoch: int, chain: bytes) -> None:
        self.epoch = epoch
        self._seal = _derive(chain, INFO_MAILBOX_SEAL)
        self._tag = _derive(chain, INFO_MAILBOX_TAG)

    def _mac(self, *parts: bytes) -> bytes:
        return hmac.new(self._tag, b"".join(parts), hashlib.sha256).digest()[:TAG_BYTES]

    def mailbox_tag(self, device_id: int) -> bytes:
        return self._mac(b"mailbox", device_id.to_bytes(4, "big"))

    def envelope_tag(self, device_id: int, envelope_id: bytes) -> bytes:
        return self._mac(b"envelope", device_id.to_bytes(4, "big"), envelope_id)

    def expiry_tag(self, expires_at: int) -> bytes:
        return self._mac(b"expiry", expires_at.to_bytes(8, "big"))

    def attachment_tag(self, attachment_id: str) -> bytes:
        return self._mac(b"attachment", attachment_id.encode("ascii"))

    def _ad(self, tag: bytes) -> bytes:
        return self.epoch.to_bytes(8, "big") + tag

    def seal_row(self, *, tag: bytes, plaintext: bytes) -> bytes:
        """``plaintext`` sealed for the row found by ``tag`` (bound to it and to this epoch)."""
        return seal_with(self._seal, self._ad(tag), plaintext)

    def open_row(self, *, tag: bytes, sealed: bytes) -> bytes:
        """What ``seal_row`` sealed for ``tag``; ``StoreError`` if it is not that."""
        opened = open_with(self._seal, self._ad(tag), sealed)
        if opened is None:
            raise StoreError(f"a row of epoch {self.epoch} does not open")
        return opened

    def seal(self, *, device_id: int, envelope_id: bytes, expires_at: int, envelope: bytes) -> bytes:
        if len(envelope_id) != ENVELOPE_ID_BYTES:
            raise StoreError(f"an envelope id is {ENVELOPE_ID_BYTES} bytes")
        plaintext = device_id.to_bytes(4, "big") + envelope_id + expires_at.to_bytes(8, "big") + envelope
        return self.seal_row(tag=self.mailbox_tag(device_id), plaintext=plaintext)

    def open(self, *, tag: bytes, sealed: bytes) -> Opened:
        """The row sealed under this key for the mailbox ``tag``; ``StoreError`` if it is not one."""
        plaintext = self.open_row(tag=tag, sealed=sealed)
        return Opened(
            int.from_bytes(plaintext[:4], "big"),
            plaintext[4 : 4 + ENVELOPE_ID_BYTES],
            int.from_bytes(plaintext[4 + ENVELOPE_ID_BYTES : _HEADER], "big"),
            plaintext[_HEADER:],
        )


class MailboxKeys:
    """The chain of epoch keys, from the file ``path`` (``u64`` epoch || 32-byte chain value)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        """``clock``: what says which epoch it is (Unix seconds)."""
        self._path = path
        self._clock = clock
        self._state: tuple[int, bytes] | None = None
        """The file's epoch and chain value, read once; this process moves it on itself."""
        self._cache: dict[int, EpochKey] = {}

    @staticmethod
    def epoch_of(now: int) -> int:
        return now // EPOCH_SECONDS

    def create_if_missing(self) -> None:
        """A new chain beginning one epoch before the current one (first start of the first relay)."""
        if not self._path.exists():
            self._write(self.epoch_of(int(self._clock())) - 1, secrets.token_bytes(CHAIN_BYTES))

    def _read(self) -> tuple[int, bytes]:
        if self._state is not None:
            return self._state
        try:
            untrusted = self._path.read_bytes()
        except OSError as e:
            raise KeyFileError(f"cannot read the mailbox key file {self._path}: {e}") from e
        if len(untrusted) != 8 + CHAIN_BYTES:
            raise KeyFileError(f"{self._path} is not a mailbox key file")
        self._state = int.from_bytes(untrusted[:8], "big"), untrusted[8:]
        return self._state

    def _write(self, epoch: int, chain: bytes) -> None:
        """Replace the file durably, overwriting the old one's bytes in place first."""
        content = epoch.to_bytes(8, "big") + chain
        temporary = self._path.with_name(self._path.name + ".new")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileNotFoundError), self._path.open("r+b") as old:
            old.write(content)
            old.flush()
            os.fsync(old.fileno())
        os.replace(temporary, self._path)
        self._state = epoch, chain

    def current(self) -> EpochKey:
        """The key new rows are sealed under."""
        first, _ = self._read()
        return self.kept()[max(self.epoch_of(int(self._clock())), first) - first]

    def kept(self) -> list[EpochKey]:
        """Every epoch's key from the oldest kept to the one after the current one: a relay whose
        clock is a little ahead may already have resealed rows under it."""
        first, chain = self._read()
        last = max(self.epoch_of(int(self._clock())), first) + 1
        self._cache = {e: k for e, k in self._cache.items() if first <= e <= last}
        keys = []
        for epoch in range(first, last + 1):
            if epoch not in self._cache:
                self._cache[epoch] = EpochKey(epoch, chain)
            keys.append(self._cache[epoch])
            chain = _derive(chain, INFO_MAILBOX_RATCHET)
        return keys

    def forget_before(self, epoch: int) -> None:
        """Destroy every key of an epoch before ``epoch``: the file moves on, the cache drops them."""
        first, chain = self._read()
        if epoch <= first:
            return
        for _ in range(epoch - first):
            chain = _derive(chain, INFO_MAILBOX_RATCHET)
        self._write(epoch, chain)
        self._cache = {e: k for e, k in self._cache.items() if e >= epoch}
