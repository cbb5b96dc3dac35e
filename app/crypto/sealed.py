"""Sealed sender: the server sees the recipient device and opaque bytes, nothing more.

The construction follows Signal's sealed sender (version 1) with our primitives:

1. Ephemeral layer. A fresh X25519 key ``e``; ``okm = HKDF(ikm = X25519(e, R),
   salt = R || e_pub, info = INFO_SEALED_EPHEMERAL)`` gives a chain key, a key and a
   nonce; they encrypt the sender's identity key. Only the recipient can read it.
2. Static layer. ``HKDF(ikm = X25519(S, R), salt = chain_key || static_ciphertext,
   info = INFO_SEALED_STATIC)`` gives a key and a nonce that encrypt the sender's
   envelope id, the sender's delivery key, the sender's device certificate, the session
   message kind and the session message. Only the holder of the sender's identity key could have made this
   layer, so the recipient knows the identity key is genuine; the certificate says whose
   it is. The envelope id inside is compared with the envelope's: a relay that puts these
   bytes under a new id (to have a message opened again, past the recipient's record of
   ids it has seen) gets them refused. The delivery key is what lets the recipient write
   back to the sender's device without saying who it is (unidentified delivery, PROTOCOL
   section 15): every envelope a device seals teaches its key to the recipient.

The second layer's plaintext is padded (ISO/IEC 7816-4, libsodium's ``sodium_pad``) so that
every sealed envelope has one of a few sizes (``SEALED_SIZES``): the relay, which stores and
forwards them, tells a short text from a receipt or a timer change by nothing, and a long
text only by its bucket.

``R`` and ``S`` are the X25519 forms of the recipient's and sender's Ed25519 identity
keys. docs/PROTOCOL.md, "Sealed envelope", gives the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import nacl.exceptions
from nacl import bindings

from app.base.codec import Reader, Writer
from app.base.errors import (
    CertificateError,
    EnvelopeIdMismatchError,
    LocalProtocolError,
    RemoteProtocolError,
)
from app.base.limits import (
    AEAD_TAG_BYTES,
    DELIVERY_KEY_BYTES,
    ENVELOPE_ID_BYTES,
    KEY_BYTES,
    MAX_SEALED_BYTES,
    XCHACHA_NONCE_BYTES,
)
from app.crypto.certificate import MAX_CERTIFICATE_BYTES, DeviceCertificate
from app.crypto.keys import DHKeyPair, IdentityKeyPair, identity_dh_public
from app.crypto.primitives import (
    INFO_SEALED_EPHEMERAL,
    INFO_SEALED_STATIC,
    RandomSource,
    aead_decrypt,
    aead_encrypt,
    hkdf,
    x25519,
)
from app.crypto.session import MessageKind, SessionMessage

SEALED_VERSION = 2
SEALED_VERSIONS = frozenset({SEALED_VERSION})
KNOWN_SEALED_VERSIONS = frozenset({1, SEALED_VERSION})
"""Version 1 had no delivery key inside; it is refused as a version no longer supported."""
STATIC_CIPHERTEXT_BYTES = KEY_BYTES + AEAD_TAG_BYTES
SEALED_OVERHEAD_BYTES = 1 + KEY_BYTES + STATIC_CIPHERTEXT_BYTES + AEAD_TAG_BYTES
"""Version, ephemeral key, the static layer and the second layer's tag: 97 bytes."""
SEALED_SIZES = (1024, 4096, 16384, 65536, MAX_SEALED_BYTES)
"""The only lengths a sealed envelope has. 1 KiB holds a first message with a short text or a
receipt, with room for the longest certificate; each further bucket is four times the last."""
_KINDS = {kind.value: kind for kind in MessageKind}


@dataclass(frozen=True, slots=True)
class Unsealed:
    """What the recipient learns from a sealed envelope."""

    sender: DeviceCertificate
    message: SessionMessage
    delivery_key: bytes
    """The sender device's delivery key: what lets us send to it unidentified."""


def _ephemeral_keys(
    shared: bytes, recipient_dh: bytes, ephemeral_public: bytes
) -> tuple[bytes, bytes, bytes]:
    okm = hkdf(
        ikm=shared,
        salt=recipient_dh + ephemeral_public,
        info=INFO_SEALED_EPHEMERAL,
        length=2 * KEY_BYTES + XCHACHA_NONCE_BYTES,
    )
    return okm[:KEY_BYTES], okm[KEY_BYTES : 2 * KEY_BYTES], okm[2 * KEY_BYTES :]


def _static_keys(shared: bytes, chain_key: bytes, static_ciphertext: bytes) -> tuple[bytes, bytes]:
    okm = hkdf(
        ikm=shared,
        salt=chain_key + static_ciphertext,
        info=INFO_SEALED_STATIC,
        length=KEY_BYTES + XCHACHA_NONCE_BYTES,
    )
    return okm[:KEY_BYTES], okm[KEY_BYTES:]


def seal(
    *,
    sender: IdentityKeyPair,
    certificate: DeviceCertificate,
    recipient_identity: bytes,
    envelope_id: bytes,
    delivery_key: bytes,
    message: SessionMessage,
    random: RandomSource,
) -> bytes:
    """The sealed bytes of the envelope ``envelope_id`` (drawn before sealing, as they are bound),
    telling the recipient ``delivery_key``, the sender device's own."""
    if len(envelope_id) != ENVELOPE_ID_BYTES:
        raise LocalProtocolError(f"an envelope id is {ENVELOPE_ID_BYTES} bytes")
    if len(delivery_key) != DELIVERY_KEY_BYTES:
        raise LocalProtocolError(f"a delivery key is {DELIVERY_KEY_BYTES} bytes")
    recipient_dh = identity_dh_public(recipient_identity)
    ephemeral = DHKeyPair.generate(random)
    prefix = bytes((SEALED_VERSION,)) + ephemeral.public
    chain_key, key, nonce = _ephemeral_keys(
        x25519(private_key=ephemeral.private, public_key=recipient_dh), recipient_dh, ephemeral.public
    )
    static_ciphertext = aead_encrypt(key=key, nonce=nonce, associated_data=prefix, plaintext=sender.public)
    key, nonce = _static_keys(
        x25519(private_key=sender.dh.private, public_key=recipient_dh), chain_key, static_ciphertext
    )
    inner = (
        Writer("sealed content")
        .fixed(envelope_id, ENVELOPE_ID_BYTES, "envelope id")
        .fixed(delivery_key, DELIVERY_KEY_BYTES, "delivery key")
        .var16(certificate.encode(), MAX_CERTIFICATE_BYTES, "certificate")
        .u8(message.kind)
        .raw(message.body)
        .getvalue()
    )
    padded = bindings.sodium_pad(inner, _bucket(len(inner)) - SEALED_OVERHEAD_BYTES)
    sealed = aead_encrypt(key=key, nonce=nonce, associated_data=prefix + static_ciphertext, plaintext=padded)
    return prefix + static_ciphertext + sealed


def _bucket(inner_bytes: int) -> int:
    """The smallest sealed size whose padded plaintext holds ``inner_bytes`` and a padding byte."""
    for size in SEALED_SIZES:
        if inner_bytes < size - SEALED_OVERHEAD_BYTES:
            return size
    raise LocalProtocolError(f"{inner_bytes} bytes do not fit in a sealed envelope")


def unseal(
    *, recipient: IdentityKeyPair, untrusted: bytes, envelope_id: bytes, trust_root: bytes, now: int
) -> Unsealed:
    """Open the sealed bytes of the envelope ``envelope_id``, addressed to ``recipient``.

    Raises ``RemoteProtocolError`` for malformed bytes, ``DecryptionError`` if either
    layer fails to authenticate, ``CertificateError`` if the certificate is not
    ``trust_root``'s, has expired, or names another identity key than the one that
    sealed the envelope, ``EnvelopeIdMismatchError`` (naming the sender) if the bytes
    were sealed for another envelope id.
    """
    r = Reader(untrusted, "sealed envelope")
    if len(untrusted) not in SEALED_SIZES:
        raise r.fail(f"{len(untrusted)} bytes is not one of the sizes a sealed envelope has")
    r.version(supported=SEALED_VERSIONS, known=KNOWN_SEALED_VERSIONS)
    ephemeral_public = r.fixed(KEY_BYTES)
    static_ciphertext = r.fixed(STATIC_CIPHERTEXT_BYTES)
    sealed = r.rest()
    prefix = untrusted[: 1 + KEY_BYTES]

    chain_key, key, nonce = _ephemeral_keys(
        x25519(private_key=recipient.dh.private, public_key=ephemeral_public),
        recipient.dh.public,
        ephemeral_public,
    )
    sender_identity = aead_decrypt(key=key, nonce=nonce, associated_data=prefix, ciphertext=static_ciphertext)
    key, nonce = _static_keys(
        x25519(private_key=recipient.dh.private, public_key=identity_dh_public(sender_identity)),
        chain_key,
        static_ciphertext,
    )
    padded = aead_decrypt(key=key, nonce=nonce, associated_data=prefix + static_ciphertext, ciphertext=sealed)
    try:
        inner = bindings.sodium_unpad(padded, len(padded))
    except nacl.exceptions.CryptoError as e:
        raise RemoteProtocolError("malformed sealed content: bad padding") from e

    content = Reader(inner, "sealed content")
    sealed_envelope_id = content.fixed(ENVELOPE_ID_BYTES)
    delivery_key = content.fixed(DELIVERY_KEY_BYTES)
    certificate = DeviceCertificate.parse(content.var16(MAX_CERTIFICATE_BYTES, "certificate"))
    kind = _KINDS.get(content.u8())
    if kind is None:
        raise content.fail("unknown session message kind")
    body = content.rest()
    certificate.verify(trust_root=trust_root, now=now)
    if certificate.identity_key != sender_identity:
        raise CertificateError("the sender's certificate names a different identity key")
    if sealed_envelope_id != envelope_id:
        raise EnvelopeIdMismatchError(certificate.account_id, certificate.device_id)
    return Unsealed(sender=certificate, message=SessionMessage(kind, body), delivery_key=delivery_key)
