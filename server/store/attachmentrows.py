"""Attachment rows as the PostgreSQL backend stores them: a small header sealed under the hourly
mailbox keys, and the blob's chunks sealed under a key of the attachment's own.

The header row names the attachment only by a tag under its epoch's key (``EpochKey.
attachment_tag``) and holds, sealed, the attachment id, its size and expiry, a random handle
and a random chunk key. The chunk rows are found by that handle and sealed under that chunk
key, and are never resealed: each sweep reseals only the headers of older epochs (a few dozen
bytes each, however large the blob), and once the header's last epoch key is destroyed, the
chunk key is gone with it, so the chunks' dead tuples and WAL records are ciphertext under a
key that no longer exists (server/store/sealing.py says when that is). The handle is random:
it links a chunk row to nothing but its header, and only while that header can be opened.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from server.store.base import StoreError
from server.store.sealing import EpochKey, open_with, seal_with

HANDLE_BYTES = 16
CHUNK_KEY_BYTES = 32
_FIXED = HANDLE_BYTES + CHUNK_KEY_BYTES + 8 + 8
"""The header's fixed part: handle, chunk key, ``u64`` size, ``u64`` expiry; the id follows."""


@dataclass(frozen=True, slots=True)
class AttachmentHeader:
    attachment_id: str
    handle: bytes
    chunk_key: bytes
    size: int
    expires_at: int

    @classmethod
    def new(cls, attachment_id: str, expires_at: int) -> AttachmentHeader:
        """A header with a fresh handle and chunk key; its size is set once the chunks are in."""
        return cls(
            attachment_id,
            secrets.token_bytes(HANDLE_BYTES),
            secrets.token_bytes(CHUNK_KEY_BYTES),
            0,
            expires_at,
        )

    def with_size(self, size: int) -> AttachmentHeader:
        return AttachmentHeader(self.attachment_id, self.handle, self.chunk_key, size, self.expires_at)

    def seal(self, key: EpochKey) -> tuple[bytes, bytes]:
        """(its tag, it sealed) under ``key``."""
        tag = key.attachment_tag(self.attachment_id)
        plaintext = (
            self.handle
            + self.chunk_key
            + self.size.to_bytes(8, "big")
            + self.expires_at.to_bytes(8, "big")
            + self.attachment_id.encode("ascii")
        )
        return tag, key.seal_row(tag=tag, plaintext=plaintext)

    @classmethod
    def open(cls, key: EpochKey, *, tag: bytes, sealed: bytes) -> AttachmentHeader:
        """The header sealed under ``key`` for ``tag``; ``StoreError`` if it is not one."""
        plaintext = key.open_row(tag=tag, sealed=sealed)
        if len(plaintext) <= _FIXED:
            raise StoreError("an attachment header is too short")
        return cls(
            plaintext[_FIXED:].decode("ascii"),
            plaintext[:HANDLE_BYTES],
            plaintext[HANDLE_BYTES : HANDLE_BYTES + CHUNK_KEY_BYTES],
            int.from_bytes(plaintext[_FIXED - 16 : _FIXED - 8], "big"),
            int.from_bytes(plaintext[_FIXED - 8 : _FIXED], "big"),
        )

    def _chunk_ad(self, index: int) -> bytes:
        return self.handle + index.to_bytes(4, "big")

    def seal_chunk(self, index: int, chunk: bytes) -> bytes:
        return seal_with(self.chunk_key, self._chunk_ad(index), chunk)

    def open_chunk(self, index: int, sealed: bytes) -> bytes:
        opened = open_with(self.chunk_key, self._chunk_ad(index), sealed)
        if opened is None:
            raise StoreError(f"chunk {index} of an attachment does not open")
        return opened
