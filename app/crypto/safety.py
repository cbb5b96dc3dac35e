"""Safety numbers: what two people compare to know no one sits between their devices.

The numeric form is Signal's (libsignal ``NumericFingerprintGenerator``, version 0):
per party, starting from ``h = 0x0000 || key || stable_id``, 5200 times
``h = SHA-512(h || key)``; the first 30 bytes, in six 5-byte big-endian chunks each
taken modulo 100000, give 30 digits; the two parties' digits are concatenated in
ascending order, so both sides see the same 60 digits. The QR payload carries both
32-byte fingerprints so one scan compares all of them. docs/PROTOCOL.md, "Safety numbers".
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from app.base.codec import Reader, Writer

FINGERPRINT_VERSION = 0
FINGERPRINT_ITERATIONS = 5200
QR_VERSION = 1
QR_VERSIONS = frozenset({QR_VERSION})
QR_FINGERPRINT_BYTES = 32


def fingerprint(identity_key: bytes, stable_id: bytes, iterations: int = FINGERPRINT_ITERATIONS) -> bytes:
    """The 64-byte iterated hash of one party's identity key and stable id."""
    digest = FINGERPRINT_VERSION.to_bytes(2, "big") + identity_key + stable_id
    for _ in range(iterations):
        digest = hashlib.sha512(digest + identity_key).digest()
    return digest


def displayable(fingerprint_bytes: bytes) -> str:
    """30 digits from the first 30 bytes of a fingerprint."""
    return "".join(
        f"{int.from_bytes(fingerprint_bytes[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5)
    )


@dataclass(frozen=True, slots=True)
class SafetyNumber:
    local: bytes
    remote: bytes

    @classmethod
    def compute(
        cls, *, local_identity: bytes, local_id: str, remote_identity: bytes, remote_id: str
    ) -> SafetyNumber:
        return cls(
            local=fingerprint(local_identity, local_id.encode("utf-8")),
            remote=fingerprint(remote_identity, remote_id.encode("utf-8")),
        )

    @property
    def digits(self) -> str:
        """The 60 digits, the same on both sides."""
        return "".join(sorted((displayable(self.local), displayable(self.remote))))

    def groups(self) -> list[str]:
        """The digits in twelve groups of five, as they are shown."""
        digits = self.digits
        return [digits[i : i + 5] for i in range(0, len(digits), 5)]

    def qr_payload(self) -> bytes:
        return (
            Writer("safety QR payload")
            .u8(QR_VERSION)
            .raw(self.local[:QR_FINGERPRINT_BYTES])
            .raw(self.remote[:QR_FINGERPRINT_BYTES])
            .getvalue()
        )

    def matches_scan(self, untrusted: bytes) -> bool:
        """Whether the peer's QR payload shows the same two keys (theirs is our mirror image).

        A payload that is not a safety QR code raises ``RemoteProtocolError``.
        """
        r = Reader(untrusted, "safety QR payload")
        r.version(supported=QR_VERSIONS, known=QR_VERSIONS)
        their_local, their_remote = r.fixed(QR_FINGERPRINT_BYTES), r.fixed(QR_FINGERPRINT_BYTES)
        r.finish()
        same_local = hmac.compare_digest(their_remote, self.local[:QR_FINGERPRINT_BYTES])
        same_remote = hmac.compare_digest(their_local, self.remote[:QR_FINGERPRINT_BYTES])
        return same_local and same_remote
