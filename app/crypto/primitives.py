"""Thin, keyword-only wrappers over the libsodium and ``cryptography`` primitives we use.

Nothing here is a primitive written by hand: X25519, Ed25519, XChaCha20-Poly1305 and
keyed BLAKE2b are libsodium's (through PyNaCl), HKDF-SHA256 is ``cryptography``'s,
HMAC-SHA256 is the standard library's (OpenSSL). The wrappers check lengths, turn library
exceptions into Enclave's ``CryptoError`` types and name every HKDF purpose by an ``INFO_*`` constant
that docs/PROTOCOL.md quotes word for word.

The AEAD, which runs twice per message, calls libsodium through PyNaCl's own cffi
handle (``nacl._sodium``) instead of ``nacl.bindings``: the public binding formats its
error messages eagerly on every call, which cost about 5 microseconds of a 10
microsecond call (bench/crypto.py). It is the same libsodium function in the same
library file; PyNaCl is pinned, and tests/crypto/test_primitives.py checks this path
against the public binding and the published test vector.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

import nacl.encoding
import nacl.exceptions
import nacl.hash
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl import bindings
from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _lib

from app.base.errors import DecryptionError, InvalidKeyError, InvalidSignatureError, LocalProtocolError
from app.base.limits import AEAD_TAG_BYTES, KEY_BYTES, SIGNATURE_BYTES, XCHACHA_NONCE_BYTES

RandomSource = Callable[[int], bytes]
"""Returns n random bytes. Production passes ``nacl.utils.random``; tests inject their own."""

# Every HKDF in Enclave has its own purpose string (docs/PROTOCOL.md, "Key derivation").
INFO_X3DH = b"enclave:v1:x3dh"
INFO_ROOT = b"enclave:v1:ratchet-root"
INFO_SEALED_EPHEMERAL = b"enclave:v1:sealed-ephemeral"
INFO_SEALED_STATIC = b"enclave:v1:sealed-static"
INFO_DELIVERY_KEY = b"enclave:v1:delivery-key"

# Ed25519 signatures are domain-separated by a context prefix on the signed bytes.
SIGN_CONTEXT_SIGNED_PREKEY = b"enclave:v1:signed-prekey"
SIGN_CONTEXT_DEVICE_CERTIFICATE = b"enclave:v1:device-certificate"
SIGN_CONTEXT_RELAY_AUTH = b"enclave:v1:relay-auth"
SIGN_CONTEXT_ORG_CONFIG = b"enclave:v1:org-config"
SIGN_CONTEXT_CERTIFY_REQUEST = b"enclave:v1:certify-request"
SIGN_CONTEXT_RENEW_REQUEST = b"enclave:v1:renew-request"
SIGN_CONTEXT_ADMIN_ACTION = b"enclave:v1:admin-action"
SIGN_CONTEXT_GROUP_CHANGE = b"enclave:v1:group-change"

# The Double Ratchet's recommended chain KDF inputs (Signal's specification, 5.2).
CHAIN_MESSAGE_KEY_INPUT = b"\x01"
CHAIN_NEXT_KEY_INPUT = b"\x02"

_SHA256 = hashes.SHA256()


def _require(value: bytes, n: int, name: str) -> None:
    if type(value) is not bytes or len(value) != n:
        raise LocalProtocolError(f"{name} must be {n} bytes")


def x25519(*, private_key: bytes, public_key: bytes) -> bytes:
    """The X25519 shared secret; a low-order ``public_key`` (all-zero output) is refused."""
    _require(private_key, KEY_BYTES, "X25519 private key")
    if len(public_key) != KEY_BYTES:
        raise InvalidKeyError("a public key must be 32 bytes")
    try:
        shared = bindings.crypto_scalarmult(private_key, public_key)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.CryptoError) as e:
        raise InvalidKeyError("the peer's public key is weak (low order) and was refused") from e
    return shared


def x25519_public(*, private_key: bytes) -> bytes:
    _require(private_key, KEY_BYTES, "X25519 private key")
    return bindings.crypto_scalarmult_base(private_key)


def ed25519_keypair_from_seed(*, seed: bytes) -> tuple[bytes, bytes]:
    """(public key, 64-byte libsodium secret key) for a 32-byte seed."""
    _require(seed, KEY_BYTES, "Ed25519 seed")
    return bindings.crypto_sign_seed_keypair(seed)


def ed25519_to_x25519_public(*, public_key: bytes) -> bytes:
    """The Montgomery form of an Ed25519 public key (libsodium's birational map)."""
    if len(public_key) != KEY_BYTES:
        raise InvalidKeyError("an identity key must be 32 bytes")
    try:
        return bindings.crypto_sign_ed25519_pk_to_curve25519(public_key)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.CryptoError) as e:
        raise InvalidKeyError("the identity key is not a valid Ed25519 point") from e


def ed25519_to_x25519_private(*, secret_key: bytes) -> bytes:
    _require(secret_key, 64, "Ed25519 secret key")
    return bindings.crypto_sign_ed25519_sk_to_curve25519(secret_key)


def ed25519_sign(*, secret_key: bytes, context: bytes, message: bytes) -> bytes:
    _require(secret_key, 64, "Ed25519 secret key")
    signed = bindings.crypto_sign(context + message, secret_key)
    return signed[:SIGNATURE_BYTES]


def ed25519_verify(*, public_key: bytes, context: bytes, message: bytes, signature: bytes) -> None:
    """Raise ``InvalidSignatureError`` unless ``signature`` is valid over ``context || message``."""
    if len(public_key) != KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        raise InvalidSignatureError("a signature or its key has the wrong length")
    try:
        bindings.crypto_sign_open(signature + context + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as e:
        raise InvalidSignatureError("the signature does not verify") from e


def hkdf(*, ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869), extract and expand."""
    return HKDF(algorithm=_SHA256, length=length, salt=salt, info=info).derive(ikm)


def hmac_sha256(*, key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def hmac_sha256_verify(*, key: bytes, data: bytes, tag: bytes) -> bool:
    """Whether ``tag`` is HMAC-SHA256(key, data), compared in constant time."""
    return hmac.compare_digest(hmac_sha256(key=key, data=data), tag)


def blake2b_256(*, key: bytes, data: bytes) -> bytes:
    """Keyed BLAKE2b with a 32-byte digest (RFC 7693; libsodium ``crypto_generichash``)."""
    if not 1 <= len(key) <= nacl.hash.BLAKE2B_KEYBYTES_MAX:
        raise LocalProtocolError("a BLAKE2b key must be 1 to 64 bytes")
    return nacl.hash.blake2b(data, digest_size=KEY_BYTES, key=key, encoder=nacl.encoding.RawEncoder)


def aead_encrypt(*, key: bytes, nonce: bytes, associated_data: bytes, plaintext: bytes) -> bytes:
    """XChaCha20-Poly1305 (IETF); ciphertext with its 16-byte tag appended."""
    _require(key, KEY_BYTES, "AEAD key")
    _require(nonce, XCHACHA_NONCE_BYTES, "AEAD nonce")
    plaintext, associated_data = bytes(plaintext), bytes(associated_data)
    out = _ffi.new("unsigned char[]", len(plaintext) + AEAD_TAG_BYTES)
    _lib.crypto_aead_xchacha20poly1305_ietf_encrypt(
        out,
        _ffi.NULL,
        plaintext,
        len(plaintext),
        associated_data,
        len(associated_data),
        _ffi.NULL,
        nonce,
        key,
    )
    return _ffi.buffer(out)[:]


def aead_decrypt(*, key: bytes, nonce: bytes, associated_data: bytes, ciphertext: bytes) -> bytes:
    """Raise ``DecryptionError`` if the ciphertext or associated data was altered."""
    _require(key, KEY_BYTES, "AEAD key")
    _require(nonce, XCHACHA_NONCE_BYTES, "AEAD nonce")
    if len(ciphertext) < AEAD_TAG_BYTES:
        raise DecryptionError("the ciphertext is shorter than its authentication tag")
    ciphertext, associated_data = bytes(ciphertext), bytes(associated_data)
    out = _ffi.new("unsigned char[]", len(ciphertext) - AEAD_TAG_BYTES)
    failed = _lib.crypto_aead_xchacha20poly1305_ietf_decrypt(
        out,
        _ffi.NULL,
        _ffi.NULL,
        ciphertext,
        len(ciphertext),
        associated_data,
        len(associated_data),
        nonce,
        key,
    )
    if failed:
        raise DecryptionError("the message was altered or is not meant for this session")
    return _ffi.buffer(out)[:]
