"""Attachment blobs: fresh keys, digest checked before decryption, every alteration refused."""

from __future__ import annotations

import pytest
from nacl.utils import random

from app.base.errors import DecryptionError
from app.crypto.blob import BLOB_VERSION, blob_digest, decrypt_blob, encrypt_blob


def test_round_trip_and_fresh_keys() -> None:
    """Test that a blob decrypts to its file and that two encryptions use different keys and bytes."""
    data = b"minutes of the meeting " * 1000
    blob, key, digest = encrypt_blob(data, random)
    again, other_key, _ = encrypt_blob(data, random)
    assert decrypt_blob(blob, key=key, digest=digest, size=len(data)) == data
    assert key != other_key and blob != again
    assert blob[0] == BLOB_VERSION and data not in blob


def test_swapped_truncated_or_flipped_blobs_are_refused() -> None:
    """Test that a wrong digest, a truncation or a size other than declared, a bit flip or a wrong key
    each raise DecryptionError."""
    blob, key, digest = encrypt_blob(b"report", random)
    other, _, _ = encrypt_blob(b"forged", random)
    with pytest.raises(DecryptionError, match="digest"):
        decrypt_blob(other, key=key, digest=digest, size=6)
    with pytest.raises(DecryptionError, match="size its message declares"):
        decrypt_blob(blob[:-1], key=key, digest=digest, size=6)
    with pytest.raises(DecryptionError, match="size its message declares"):
        decrypt_blob(blob, key=key, digest=digest, size=5)
    flipped = blob[:5] + bytes([blob[5] ^ 1]) + blob[6:]
    with pytest.raises(DecryptionError):
        decrypt_blob(flipped, key=key, digest=blob_digest(flipped), size=6)
    with pytest.raises(DecryptionError):
        decrypt_blob(blob, key=random(32), digest=digest, size=6)
    future = bytes([2]) + blob[1:]
    with pytest.raises(DecryptionError, match="version"):
        decrypt_blob(future, key=key, digest=blob_digest(future), size=6)
