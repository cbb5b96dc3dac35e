"""The attachment blob: a file encrypted by its sender for upload to the relay.

``blob = u8 version (1) || XChaCha20-Poly1305(key, nonce = 24 zero bytes, ad = version
byte, file)``. Every file gets a fresh random key, which travels inside the file
message together with the SHA-256 digest of the blob, so one key never encrypts two
plaintexts and the all-zero nonce is safe (the argument of docs/PROTOCOL.md, 5.2). The
recipient checks the digest before decrypting: a blob the relay swapped or truncated is
refused before any of it is used. docs/PROTOCOL.md, "Attachment blob".

The whole file is held in memory; the relay caps attachments (100 MiB by default).
"""

from __future__ import annotations

import hashlib
import hmac

from app.base.errors import DecryptionError
from app.base.limits import AEAD_TAG_BYTES, KEY_BYTES, XCHACHA_NONCE_BYTES
from app.crypto.primitives import RandomSource, aead_decrypt, aead_encrypt

BLOB_VERSION = 1
_PREFIX = bytes((BLOB_VERSION,))
_NONCE = bytes(XCHACHA_NONCE_BYTES)


def blob_size(file_size: int) -> int:
    """The bytes of the blob of a ``file_size``-byte file: what a recipient downloads at most."""
    return 1 + file_size + AEAD_TAG_BYTES


def blob_digest(blob: bytes) -> bytes:
    return hashlib.sha256(blob).digest()


def encrypt_blob(plaintext: bytes, random: RandomSource) -> tuple[bytes, bytes, bytes]:
    """(blob, key, digest) for a file; ``key`` is fresh and must never be reused."""
    key = random(KEY_BYTES)
    blob = _PREFIX + aead_encrypt(key=key, nonce=_NONCE, associated_data=_PREFIX, plaintext=plaintext)
    return blob, key, blob_digest(blob)


def decrypt_blob(untrusted: bytes, *, key: bytes, digest: bytes, size: int) -> bytes:
    """The ``size``-byte file, or ``DecryptionError`` if the blob is not the one the message
    describes (its digest, or a length other than the size it declares)."""
    if len(untrusted) != blob_size(size):
        raise DecryptionError("the attachment is not of the size its message declares")
    if not hmac.compare_digest(blob_digest(untrusted), digest):
        raise DecryptionError("the attachment does not match its digest")
    if len(untrusted) < 1 + AEAD_TAG_BYTES or untrusted[:1] != _PREFIX:
        raise DecryptionError("the attachment is not an Enclave blob of a known version")
    return aead_decrypt(key=key, nonce=_NONCE, associated_data=_PREFIX, ciphertext=untrusted[1:])
