"""The key log's signed heads: C2SP ``tlog-checkpoint`` bodies in C2SP ``signed-note`` envelopes.

A checkpoint is three lines (``origin``, the tree size in decimal, the root in padded
base64), optionally followed by extension lines; the note is that text, a blank line, and
signature lines ``— <key name> <base64(key id || signature)>``, the dash being U+2014.
With an Ed25519 key the key id is the first 4 bytes of ``SHA-256(key name || 0x0A || 0x01 ||
public key)`` and the signature is plain Ed25519 over the text, its last newline included.
A note may carry signatures by several keys: lines by other names or ids are ignored, and
it counts only with one by the expected key that verifies. docs/PROTOCOL.md, "Key log".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from app.base.errors import InvalidSignatureError, LocalProtocolError, RemoteProtocolError
from app.base.limits import KEY_BYTES
from app.crypto.primitives import ed25519_sign, ed25519_verify

MAX_NOTE_BYTES = 4096
MAX_SIGNATURE_LINES = 16
KEY_ID_BYTES = 4
ALGORITHM_ED25519 = 0x01
DASH = "\u2014 "
SIZE_DIGITS = re.compile(r"0|[1-9][0-9]{0,18}")
"""Decimal without leading zeros; 19 digits bound ``int()`` (the size must be below 2^63)."""
KEY_NAME = re.compile(r"[^\s+]+")
"""A key name has no white space and no ``+`` (C2SP signed-note)."""
ROOT_BYTES = 32


def key_id(key_name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(
        key_name.encode("utf-8") + b"\n" + bytes([ALGORITHM_ED25519]) + public_key
    ).digest()[:KEY_ID_BYTES]


def verifier_key(key_name: str, public_key: bytes) -> str:
    """The C2SP verifier key string ``name+hex(key id)+base64(0x01 || public key)``."""
    encoded = base64.b64encode(bytes([ALGORITHM_ED25519]) + public_key).decode("ascii")
    return f"{key_name}+{key_id(key_name, public_key).hex()}+{encoded}"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> bytes:
        if KEY_NAME.fullmatch(self.origin) is None:
            raise LocalProtocolError("an origin has no white space and no '+'")
        if not 0 <= self.size < 1 << 63 or len(self.root) != ROOT_BYTES:
            raise LocalProtocolError("a checkpoint needs a size below 2^63 and a 32-byte root")
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii"), *self.extensions]
        return "".join(line + "\n" for line in lines).encode("utf-8")


def open_note(untrusted: bytes, *, key_name: str, public_key: bytes) -> str:
    """The text of the signed note ``untrusted`` (its final newline included) if ``public_key``,
    named ``key_name``, signed it: ``RemoteProtocolError`` for a malformed note,
    ``InvalidSignatureError`` for one with no valid signature line by that key."""
    if len(untrusted) > MAX_NOTE_BYTES:
        raise RemoteProtocolError(f"a signed note of {len(untrusted)} bytes exceeds {MAX_NOTE_BYTES}")
    try:
        note = untrusted.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RemoteProtocolError("a signed note is not UTF-8") from e
    text, separator, signatures = note.rpartition("\n\n")
    if not separator or not text or "\r" in note or not signatures.endswith("\n"):
        raise RemoteProtocolError("a signed note is its text, a blank line and signature lines")
    text += "\n"
    lines = signatures[:-1].split("\n")
    if len(lines) > MAX_SIGNATURE_LINES:
        raise RemoteProtocolError(f"a signed note carries at most {MAX_SIGNATURE_LINES} signatures")
    wanted = key_id(key_name, public_key)
    verified = False
    for line in lines:
        name, signature = _signature_line(line)
        if name != key_name or signature[:KEY_ID_BYTES] != wanted:
            continue  # another key's: C2SP says to ignore it
        try:
            ed25519_verify(
                public_key=public_key,
                context=b"",
                message=text.encode("utf-8"),
                signature=signature[KEY_ID_BYTES:],
            )
        except InvalidSignatureError:
            continue
        verified = True
    if not verified:
        raise InvalidSignatureError(f"the note is not signed by the key {key_name}")
    return text


def sign_note(text: bytes, *, key_name: str, secret_key: bytes) -> bytes:
    """``text`` (ending in a newline) with one signature line by the key (its libsodium secret key)."""
    if not text.endswith(b"\n") or b"\n\n" in text:
        raise LocalProtocolError("a note's text ends in a newline and holds no blank line")
    signature = ed25519_sign(secret_key=secret_key, context=b"", message=text)
    encoded = base64.b64encode(key_id(key_name, secret_key[KEY_BYTES:]) + signature).decode("ascii")
    return text + f"\n{DASH}{key_name} {encoded}\n".encode()


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: bytes
    """The whole signed note as received, kept as the evidence it is."""

    @classmethod
    def parse(cls, untrusted: bytes, *, key_name: str, public_key: bytes, origin: str) -> SignedCheckpoint:
        """The checkpoint in the note ``untrusted`` if ``public_key``, named ``key_name``, signed it
        and its origin is ``origin`` (errors as ``open_note``'s)."""
        checkpoint = _checkpoint(open_note(untrusted, key_name=key_name, public_key=public_key))
        if checkpoint.origin != origin:
            raise RemoteProtocolError(f"the head is of the log {checkpoint.origin!r}, not of {origin!r}")
        return cls(checkpoint, untrusted)


def _signature_line(line: str) -> tuple[str, bytes]:
    if not line.startswith(DASH):
        raise RemoteProtocolError("a signature line starts with an em dash and a space")
    name, space, encoded = line[len(DASH) :].partition(" ")
    if not space or KEY_NAME.fullmatch(name) is None:
        raise RemoteProtocolError("a signature line names a key without white space or '+'")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RemoteProtocolError("a signature line's signature is not base64") from e
    if len(signature) < KEY_ID_BYTES + 1:
        raise RemoteProtocolError("a signature line's signature is shorter than a key id")
    return name, signature


def _checkpoint(text: str) -> Checkpoint:
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise RemoteProtocolError("a checkpoint has an origin, a size and a root")
    origin, size, encoded_root, *extensions = lines
    if KEY_NAME.fullmatch(origin) is None:
        raise RemoteProtocolError("a checkpoint's origin is empty or holds white space or '+'")
    if SIZE_DIGITS.fullmatch(size) is None or int(size) >= 1 << 63:
        raise RemoteProtocolError("a checkpoint's size is a decimal below 2^63 without leading zeros")
    try:
        root = base64.b64decode(encoded_root, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RemoteProtocolError("a checkpoint's root is not base64") from e
    if len(root) != ROOT_BYTES or base64.b64encode(root).decode("ascii") != encoded_root:
        raise RemoteProtocolError("a checkpoint's root is not 32 bytes in padded base64")
    if any(not line for line in extensions):
        raise RemoteProtocolError("a checkpoint's extension lines are not empty")
    return Checkpoint(origin, int(size), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, *, key_name: str, secret_key: bytes) -> bytes:
    """The signed note of ``checkpoint`` by the key (its libsodium secret key)."""
    return sign_note(checkpoint.body(), key_name=key_name, secret_key=secret_key)
