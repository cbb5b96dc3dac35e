"""The encrypted attachment file: libsodium secretstream (XChaCha20-Poly1305) in 64 KiB chunks.

Layout (docs/STORAGE.md): ``"ENCATT"`` | version (1 byte, 1) | secretstream header (24
bytes) | chunks. Every chunk but the last holds exactly 64 KiB of plaintext plus a
17-byte tag; the last holds 0..64 KiB and carries ``TAG_FINAL``. The 7-byte prefix is
the associated data of every chunk. A file that ends before the final tag, or goes on
after it, is refused, so truncation and appending are both detected. A file is
streamed in both directions, never held whole in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import nacl.bindings as sodium
import nacl.exceptions

from app.base.limits import KEY_BYTES
from storage.errors import AttachmentCorruptError, AttachmentMissingError, AttachmentTooLargeError
from storage.fileio import replacing

MAGIC = b"ENCATT"
FILE_VERSION = 1
PREFIX = MAGIC + bytes((FILE_VERSION,))
CHUNK_BYTES = 64 * 1024
_ABYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
_HEADER_BYTES = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
_TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE


def _read_full(stream: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes, short only at the end of the stream."""
    parts = []
    while n > 0:
        part = stream.read(n)
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def encrypt_file(source: BinaryIO, dest: Path, *, key: bytes, limit: int) -> int:
    """Encrypt ``source`` into a new file ``dest`` (``fileio.replacing``); returns the plaintext size."""
    if len(key) != KEY_BYTES:
        raise ValueError("an attachment key is 32 bytes")
    with replacing(dest) as out:
        state = sodium.crypto_secretstream_xchacha20poly1305_state()
        out.write(PREFIX + sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key))
        size = 0
        chunk = _read_full(source, CHUNK_BYTES)
        while True:
            size += len(chunk)
            if size > limit:
                raise AttachmentTooLargeError(limit)
            following = _read_full(source, CHUNK_BYTES) if len(chunk) == CHUNK_BYTES else b""
            tag = _TAG_MESSAGE if following else _TAG_FINAL
            out.write(sodium.crypto_secretstream_xchacha20poly1305_push(state, chunk, PREFIX, tag))
            if tag == _TAG_FINAL:
                break
            chunk = following
    return size


def decrypt_file(path: Path, *, key: bytes) -> Iterator[bytes]:
    """Yield the plaintext chunk by chunk; each chunk is authentic when yielded.

    Truncation shows only at the end (``AttachmentCorruptError`` after the last good
    chunk), so a consumer must treat its output as unfinished until the iterator ends.
    """
    try:
        untrusted_file = path.open("rb")
    except FileNotFoundError as e:
        raise AttachmentMissingError() from e
    with untrusted_file:
        untrusted_start = _read_full(untrusted_file, len(PREFIX) + _HEADER_BYTES)
        if len(untrusted_start) < len(PREFIX) + _HEADER_BYTES or not untrusted_start.startswith(MAGIC):
            raise AttachmentCorruptError("not an Enclave attachment file")
        if untrusted_start[len(MAGIC)] != FILE_VERSION:
            raise AttachmentCorruptError(f"unknown file version {untrusted_start[len(MAGIC)]}")
        state = sodium.crypto_secretstream_xchacha20poly1305_state()
        try:
            sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, untrusted_start[len(PREFIX) :], key)
        except nacl.exceptions.CryptoError as e:
            raise AttachmentCorruptError("bad stream header") from e
        while True:
            untrusted_chunk = _read_full(untrusted_file, CHUNK_BYTES + _ABYTES)
            if len(untrusted_chunk) < _ABYTES:
                raise AttachmentCorruptError("the file is truncated")
            try:
                plaintext, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(
                    state, untrusted_chunk, PREFIX
                )
            except nacl.exceptions.CryptoError as e:
                raise AttachmentCorruptError("the file was altered or truncated") from e
            if tag == _TAG_FINAL:
                if untrusted_file.read(1):
                    raise AttachmentCorruptError("data follows the end of the file")
                yield plaintext
                return
            if tag != _TAG_MESSAGE or len(untrusted_chunk) != CHUNK_BYTES + _ABYTES:
                raise AttachmentCorruptError("the file is truncated")
            yield plaintext
