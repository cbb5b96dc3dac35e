"""Device certificates: a trusted issuer vouches that an identity key belongs to a device.

A certificate travels inside every sealed envelope so the recipient learns who sent it
and can check that the issuer (the key the organisation config pins) vouched for that
sender's identity key. The server never sees it. docs/PROTOCOL.md, "Device certificate".
"""

from __future__ import annotations

from dataclasses import dataclass

from app.base.codec import Reader, Writer
from app.base.errors import CertificateError, InvalidSignatureError, LocalProtocolError
from app.base.limits import KEY_BYTES, MAX_ACCOUNT_ID_BYTES, SIGNATURE_BYTES
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import SIGN_CONTEXT_DEVICE_CERTIFICATE, ed25519_verify

CERTIFICATE_VERSION = 1
CERTIFICATE_VERSIONS = frozenset({CERTIFICATE_VERSION})
MAX_CERTIFICATE_BYTES = 1 + 2 + MAX_ACCOUNT_ID_BYTES + 4 + KEY_BYTES + 8 + SIGNATURE_BYTES


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    account_id: str
    device_id: int
    identity_key: bytes
    expires_at: int
    """Unix seconds after which the certificate is refused."""
    signature: bytes

    @staticmethod
    def _body(account_id: str, device_id: int, identity_key: bytes, expires_at: int) -> bytes:
        if not account_id:
            raise LocalProtocolError("a certificate needs an account id")
        return (
            Writer("device certificate")
            .u8(CERTIFICATE_VERSION)
            .text16(account_id, MAX_ACCOUNT_ID_BYTES, "account id")
            .u32(device_id)
            .fixed(identity_key, KEY_BYTES, "identity key")
            .u64(expires_at)
            .getvalue()
        )

    @classmethod
    def issue(
        cls, issuer: IdentityKeyPair, *, account_id: str, device_id: int, identity_key: bytes, expires_at: int
    ) -> DeviceCertificate:
        body = cls._body(account_id, device_id, identity_key, expires_at)
        signature = issuer.sign(context=SIGN_CONTEXT_DEVICE_CERTIFICATE, message=body)
        return cls(account_id, device_id, identity_key, expires_at, signature)

    def encode(self) -> bytes:
        return (
            self._body(self.account_id, self.device_id, self.identity_key, self.expires_at) + self.signature
        )

    @classmethod
    def parse(cls, untrusted: bytes) -> DeviceCertificate:
        r = Reader(untrusted, "device certificate")
        r.version(supported=CERTIFICATE_VERSIONS, known=CERTIFICATE_VERSIONS)
        account_id = r.text16(MAX_ACCOUNT_ID_BYTES, "account id")
        if not account_id:
            raise r.fail("empty account id")
        certificate = cls(account_id, r.u32(), r.fixed(KEY_BYTES), r.u64(), r.fixed(SIGNATURE_BYTES))
        r.finish()
        return certificate

    def verify(self, *, trust_root: bytes, now: int) -> None:
        """Raise ``CertificateError`` unless ``trust_root`` signed it and it has not expired."""
        body = self._body(self.account_id, self.device_id, self.identity_key, self.expires_at)
        try:
            ed25519_verify(
                public_key=trust_root,
                context=SIGN_CONTEXT_DEVICE_CERTIFICATE,
                message=body,
                signature=self.signature,
            )
        except InvalidSignatureError as e:
            raise CertificateError("the sender's certificate is not signed by this organisation") from e
        if now >= self.expires_at:
            raise CertificateError("the sender's certificate has expired")
