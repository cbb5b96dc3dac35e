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
from app.base.text import control_character
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import SIGN_CONTEXT_DEVICE_CERTIFICATE, ed25519_verify

CERTIFICATE_VERSION = 2
"""The version issued: the first to carry the account's display name and department."""
CERTIFICATE_VERSIONS = frozenset({1, CERTIFICATE_VERSION})
"""Version 1 carries no name; it stays readable, as the key log holds version 1 certificates."""
MAX_NAME_BYTES = 128
"""A display name or a department in a certificate, as in a directory answer."""
MAX_CERTIFICATE_BYTES = (
    1
    + 2
    + MAX_ACCOUNT_ID_BYTES
    + 2
    + MAX_NAME_BYTES
    + 2
    + MAX_NAME_BYTES
    + 4
    + KEY_BYTES
    + 8
    + SIGNATURE_BYTES
)


def name_refusal(value: str) -> str | None:
    """Why ``value`` cannot be a certificate's display name or department, or None if it can."""
    bad = control_character(value)
    if bad is not None:
        return f"holds the control character {bad}"
    if len(value.encode("utf-8", errors="replace")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes of UTF-8"
    return None


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    account_id: str
    device_id: int
    identity_key: bytes
    expires_at: int
    """Unix seconds after which the certificate is refused."""
    signature: bytes
    display_name: str = ""
    """The account's name as the authority vouches for it: what a recipient shows for the sender,
    so that nobody asks the relay's directory who wrote (empty in a version 1 certificate)."""
    department: str = ""
    version: int = CERTIFICATE_VERSION

    def _body(self) -> bytes:
        if not self.account_id:
            raise LocalProtocolError("a certificate needs an account id")
        w = Writer("device certificate").u8(self.version)
        w.text16(self.account_id, MAX_ACCOUNT_ID_BYTES, "account id")
        if self.version >= CERTIFICATE_VERSION:
            for value, field in ((self.display_name, "display name"), (self.department, "department")):
                refusal = name_refusal(value)
                if refusal is not None:
                    raise LocalProtocolError(f"the {field} {refusal}")
                w.text16(value, MAX_NAME_BYTES, field)
        elif self.display_name or self.department:
            raise LocalProtocolError("a version 1 certificate carries no name")
        return (
            w.u32(self.device_id)
            .fixed(self.identity_key, KEY_BYTES, "identity key")
            .u64(self.expires_at)
            .getvalue()
        )

    @classmethod
    def issue(
        cls,
        issuer: IdentityKeyPair,
        *,
        account_id: str,
        device_id: int,
        identity_key: bytes,
        expires_at: int,
        display_name: str = "",
        department: str = "",
    ) -> DeviceCertificate:
        unsigned = cls(account_id, device_id, identity_key, expires_at, b"", display_name, department)
        signature = issuer.sign(context=SIGN_CONTEXT_DEVICE_CERTIFICATE, message=unsigned._body())
        return cls(account_id, device_id, identity_key, expires_at, signature, display_name, department)

    def encode(self) -> bytes:
        return self._body() + self.signature

    @classmethod
    def parse(cls, untrusted: bytes) -> DeviceCertificate:
        r = Reader(untrusted, "device certificate")
        version = r.version(supported=CERTIFICATE_VERSIONS, known=CERTIFICATE_VERSIONS)
        account_id = r.text16(MAX_ACCOUNT_ID_BYTES, "account id")
        if not account_id:
            raise r.fail("empty account id")
        names = ["", ""]
        if version >= CERTIFICATE_VERSION:
            for index, field in enumerate(("display name", "department")):
                names[index] = r.text16(MAX_NAME_BYTES, field)
                bad = control_character(names[index])
                if bad is not None:
                    raise r.fail(f"{field} holds the control character {bad}")
        device_id, identity_key, expires_at = r.u32(), r.fixed(KEY_BYTES), r.u64()
        certificate = cls(
            account_id,
            device_id,
            identity_key,
            expires_at,
            r.fixed(SIGNATURE_BYTES),
            names[0],
            names[1],
            version,
        )
        r.finish()
        return certificate

    def verify(self, *, trust_root: bytes, now: int) -> None:
        """Raise ``CertificateError`` unless ``trust_root`` signed it and it has not expired."""
        try:
            ed25519_verify(
                public_key=trust_root,
                context=SIGN_CONTEXT_DEVICE_CERTIFICATE,
                message=self._body(),
                signature=self.signature,
            )
        except InvalidSignatureError as e:
            raise CertificateError("the sender's certificate is not signed by this organisation") from e
        if now >= self.expires_at:
            raise CertificateError("the sender's certificate has expired")
