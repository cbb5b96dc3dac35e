"""The enrolment authority's two request bodies: certify a new device, renew a certificate.

Both are strict binary formats (app/base/codec.py) sent as HTTP POST bodies to the
authority (``authority/``), never to the relay. A certify request proves two things: that
the sender holds the enrolment code (an HMAC under ``code_key`` over the identity key,
which only the code's holder and the authority can compute, app/protocol/enrolment.py)
and that it holds the identity key it asks to have certified (a signature by that key
over the whole request). It carries no account and no device id: the code's account is
the authority's record, and the authority assigns the device id. A renew request is the
old certificate, a timestamp and a signature by the certified identity key.
docs/PROTOCOL.md, "Enrolment authority", gives the bytes and the checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.base.codec import Reader, Writer
from app.base.limits import KEY_BYTES, SIGNATURE_BYTES
from app.crypto.certificate import MAX_CERTIFICATE_BYTES
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import (
    SIGN_CONTEXT_CERTIFY_REQUEST,
    SIGN_CONTEXT_RENEW_REQUEST,
    ed25519_verify,
    hmac_sha256,
    hmac_sha256_verify,
)
from app.protocol import enrolment

REQUEST_VERSION = 1
REQUEST_VERSIONS = frozenset({REQUEST_VERSION})
MAC_CONTEXT_CERTIFY = b"enclave:v1:certify"
"""The first bytes of the HMAC's input (a purpose string, as signatures have contexts)."""
CODE_ID_BYTES = 32
MAC_BYTES = 32
MAX_CERTIFY_BYTES = 1 + CODE_ID_BYTES + KEY_BYTES + MAC_BYTES + SIGNATURE_BYTES
MAX_RENEW_BYTES = 1 + 2 + MAX_CERTIFICATE_BYTES + 8 + SIGNATURE_BYTES


def certify_mac_input(identity_key: bytes) -> bytes:
    """``MAC_CONTEXT_CERTIFY || IK``: the code's holder vouches for this identity key only."""
    return (
        Writer("certify MAC input")
        .raw(MAC_CONTEXT_CERTIFY)
        .fixed(identity_key, KEY_BYTES, "identity key")
        .getvalue()
    )


@dataclass(frozen=True, slots=True)
class CertifyRequest:
    """A device asks for its identity key to be certified; it names no account and no device.

    The authority takes the account from the code and draws the device id itself, so a
    device that knows only its code can certify, and no sender picks its own device id.
    """

    code_id: bytes
    identity_key: bytes
    mac: bytes
    signature: bytes

    @staticmethod
    def _signed(code_id: bytes, identity_key: bytes, mac: bytes) -> bytes:
        return (
            Writer("certify request")
            .u8(REQUEST_VERSION)
            .fixed(code_id, CODE_ID_BYTES, "code id")
            .fixed(identity_key, KEY_BYTES, "identity key")
            .fixed(mac, MAC_BYTES, "mac")
            .getvalue()
        )

    @classmethod
    def make(cls, *, code: str, identity: IdentityKeyPair) -> CertifyRequest:
        """The request a device sends for ``identity`` with the code its admin gave it."""
        code_id = enrolment.code_id(code)
        mac = hmac_sha256(key=enrolment.code_key(code), data=certify_mac_input(identity.public))
        signed = cls._signed(code_id, identity.public, mac)
        signature = identity.sign(context=SIGN_CONTEXT_CERTIFY_REQUEST, message=signed)
        return cls(code_id, identity.public, mac, signature)

    def encode(self) -> bytes:
        return self._signed(self.code_id, self.identity_key, self.mac) + self.signature

    @classmethod
    def parse(cls, untrusted: bytes) -> CertifyRequest:
        r = Reader(untrusted, "certify request")
        r.version(supported=REQUEST_VERSIONS, known=REQUEST_VERSIONS)
        request = cls(
            r.fixed(CODE_ID_BYTES), r.fixed(KEY_BYTES), r.fixed(MAC_BYTES), r.fixed(SIGNATURE_BYTES)
        )
        r.finish()
        return request

    def mac_valid(self, code_key: bytes) -> bool:
        return hmac_sha256_verify(key=code_key, data=certify_mac_input(self.identity_key), tag=self.mac)

    def verify_possession(self) -> None:
        """Raise ``InvalidSignatureError`` unless the identity key signed this request."""
        ed25519_verify(
            public_key=self.identity_key,
            context=SIGN_CONTEXT_CERTIFY_REQUEST,
            message=self._signed(self.code_id, self.identity_key, self.mac),
            signature=self.signature,
        )


@dataclass(frozen=True, slots=True)
class RenewRequest:
    certificate: bytes
    """The encoded DeviceCertificate to renew (parsed and checked by the authority)."""
    timestamp: int
    signature: bytes

    @staticmethod
    def _signed(certificate: bytes, timestamp: int) -> bytes:
        return (
            Writer("renew request")
            .u8(REQUEST_VERSION)
            .var16(certificate, MAX_CERTIFICATE_BYTES, "certificate")
            .u64(timestamp)
            .getvalue()
        )

    @classmethod
    def make(cls, *, certificate: bytes, timestamp: int, identity: IdentityKeyPair) -> RenewRequest:
        signature = identity.sign(
            context=SIGN_CONTEXT_RENEW_REQUEST, message=cls._signed(certificate, timestamp)
        )
        return cls(certificate, timestamp, signature)

    def encode(self) -> bytes:
        return self._signed(self.certificate, self.timestamp) + self.signature

    @classmethod
    def parse(cls, untrusted: bytes) -> RenewRequest:
        r = Reader(untrusted, "renew request")
        r.version(supported=REQUEST_VERSIONS, known=REQUEST_VERSIONS)
        request = cls(r.var16(MAX_CERTIFICATE_BYTES, "certificate"), r.u64(), r.fixed(SIGNATURE_BYTES))
        r.finish()
        return request

    def verify(self, identity_key: bytes) -> None:
        """Raise ``InvalidSignatureError`` unless ``identity_key`` signed this request."""
        ed25519_verify(
            public_key=identity_key,
            context=SIGN_CONTEXT_RENEW_REQUEST,
            message=self._signed(self.certificate, self.timestamp),
            signature=self.signature,
        )
