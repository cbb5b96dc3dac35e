"""The key log's signed heads: C2SP checkpoints in signed notes (app/protocol/checkpoint.py)."""

from __future__ import annotations

import base64

import pytest

from app.base.errors import InvalidSignatureError, RemoteProtocolError
from app.crypto.primitives import ed25519_keypair_from_seed
from app.protocol.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    key_id,
    open_note,
    sign_checkpoint,
    sign_note,
    verifier_key,
)

# golang.org/x/mod/sumdb/note's documented example key and note (data only).
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_TEXT = (
    b"If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
PETER_SIGNATURE = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
PETER_NOTE = PETER_TEXT + f"\n\u2014 PeterNeumann {PETER_SIGNATURE}\n".encode()
PETER_PUBLIC, PETER_SECRET = ed25519_keypair_from_seed(seed=base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:])

ORIGIN = "enclave/key-log/0123456789abcdef"
PUBLIC, SECRET = ed25519_keypair_from_seed(seed=b"\x07" * 32)
OTHER_PUBLIC, OTHER_SECRET = ed25519_keypair_from_seed(seed=b"\x08" * 32)
ROOT = bytes(range(32))


def _signed(size: int = 42, root: bytes = ROOT, secret: bytes = SECRET, origin: str = ORIGIN) -> bytes:
    return sign_checkpoint(Checkpoint(origin, size, root), key_name=origin, secret_key=secret)


def _parse(note: bytes, public: bytes = PUBLIC) -> SignedCheckpoint:
    return SignedCheckpoint.parse(note, key_name=ORIGIN, public_key=public, origin=ORIGIN)


def test_the_go_reference_note_verifies_and_is_reproduced() -> None:
    """Test that the sumdb/note example key has its published key id and verifier key, that its
    published note opens, and that signing its text gives the very same note (Ed25519 is deterministic)."""
    assert key_id("PeterNeumann", PETER_PUBLIC).hex() == "c74f20a3"
    assert verifier_key("PeterNeumann", PETER_PUBLIC) == PETER_VKEY
    assert open_note(PETER_NOTE, key_name="PeterNeumann", public_key=PETER_PUBLIC) == PETER_TEXT.decode()
    assert sign_note(PETER_TEXT, key_name="PeterNeumann", secret_key=PETER_SECRET) == PETER_NOTE
    with pytest.raises(InvalidSignatureError):
        open_note(
            PETER_NOTE.replace(b"cryptography", b"cryptographY"),
            key_name="PeterNeumann",
            public_key=PETER_PUBLIC,
        )


def test_a_checkpoint_is_three_lines_and_round_trips() -> None:
    """Test that a head's text is origin, decimal size and padded base64 root, and parses back."""
    note = _signed()
    assert note.startswith(f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n\n\u2014 {ORIGIN} ".encode())
    head = _parse(note)
    assert head.checkpoint == Checkpoint(ORIGIN, 42, ROOT) and head.note == note


def test_other_keys_signature_lines_are_ignored() -> None:
    """Test that a note cosigned by another key still verifies with ours, and not with the other's
    alone when ours is missing."""
    note = _signed()
    other_line = sign_note(Checkpoint(ORIGIN, 42, ROOT).body(), key_name="witness", secret_key=OTHER_SECRET)
    cosigned = note + other_line.split(b"\n\n", 1)[1]
    assert _parse(cosigned).checkpoint.size == 42
    only_other = Checkpoint(ORIGIN, 42, ROOT).body() + b"\n" + other_line.split(b"\n\n", 1)[1]
    with pytest.raises(InvalidSignatureError):
        _parse(only_other)


@pytest.mark.parametrize(
    ("note", "error"),
    [
        (_signed(secret=OTHER_SECRET), InvalidSignatureError),
        (_signed().replace(b"\n42\n", b"\n43\n"), InvalidSignatureError),
        (_signed(origin="enclave/key-log/another"), InvalidSignatureError),
        (
            sign_note(
                f"{ORIGIN}\n042\n{base64.b64encode(ROOT).decode()}\n".encode(),
                key_name=ORIGIN,
                secret_key=SECRET,
            ),
            RemoteProtocolError,
        ),
        (_signed()[:-1], RemoteProtocolError),
        (_signed().replace(b"\n\n", b"\n"), RemoteProtocolError),
        (b"\xff" + _signed(), RemoteProtocolError),
        (_signed() + b"x" * 5000, RemoteProtocolError),
        (_signed().replace("\u2014".encode(), b"-"), RemoteProtocolError),
    ],
    ids=[
        "other key",
        "size changed",
        "other origin",
        "leading zero",
        "no final newline",
        "no blank line",
        "not UTF-8",
        "too large",
        "plain dash",
    ],
)
def test_tampered_or_malformed_heads_are_refused(note: bytes, error: type[Exception]) -> None:
    """Test that a head by another key, altered after signing, of another log, or malformed is refused
    with the typed error for what is wrong."""
    with pytest.raises(error):
        _parse(note)


def test_a_root_that_is_not_32_bytes_in_padded_base64_is_refused() -> None:
    """Test that a root of the wrong length, or unpadded, does not parse even when signed."""
    for encoded in (base64.b64encode(bytes(31)).decode(), base64.b64encode(ROOT).decode().rstrip("=")):
        text = f"{ORIGIN}\n1\n{encoded}\n".encode()
        with pytest.raises(RemoteProtocolError):
            _parse(sign_note(text, key_name=ORIGIN, secret_key=SECRET))
