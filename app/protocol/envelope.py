"""The envelope: the only thing the relay stores, and all it can see of a message.

An envelope id (random, chosen by the sender, used by the recipient to drop
redeliveries, and sealed inside too, so a relay cannot re-wrap a message under a new
id), an expiry, and the sealed bytes. No sender, no conversation, no message
type: those travel inside the sealed layer. The recipient device is named by the frame
that carries the envelope, not by the envelope. docs/PROTOCOL.md, "Envelope".
"""

from __future__ import annotations

from dataclasses import dataclass

from app.base.codec import Reader, Writer
from app.base.errors import LocalProtocolError
from app.base.limits import ENVELOPE_ID_BYTES, MAX_ENVELOPE_BYTES, MAX_SEALED_BYTES
from app.crypto.primitives import RandomSource

ENVELOPE_VERSION = 1
ENVELOPE_VERSIONS = frozenset({ENVELOPE_VERSION})


def new_envelope_id(random: RandomSource) -> bytes:
    return random(ENVELOPE_ID_BYTES)


@dataclass(frozen=True, slots=True)
class Envelope:
    envelope_id: bytes
    expires_at: int
    """Unix seconds after which the relay drops the envelope undelivered."""
    sealed: bytes

    def __post_init__(self) -> None:
        if len(self.envelope_id) != ENVELOPE_ID_BYTES:
            raise LocalProtocolError(f"an envelope id is {ENVELOPE_ID_BYTES} bytes")
        if not self.sealed:
            raise LocalProtocolError("an envelope must carry sealed bytes")

    @classmethod
    def create(cls, *, sealed: bytes, expires_at: int, random: RandomSource) -> Envelope:
        """An envelope with a fresh id around opaque bytes (a relay's view). A client's sealed
        layer binds its id, so a client draws the id first (``new_envelope_id``) and seals with it."""
        return cls(envelope_id=new_envelope_id(random), expires_at=expires_at, sealed=sealed)

    def encode(self) -> bytes:
        return (
            Writer("envelope")
            .u8(ENVELOPE_VERSION)
            .fixed(self.envelope_id, ENVELOPE_ID_BYTES, "envelope id")
            .u64(self.expires_at)
            .var32(self.sealed, MAX_SEALED_BYTES, "sealed content")
            .getvalue()
        )

    @classmethod
    def parse(cls, untrusted: bytes) -> Envelope:
        r = Reader(untrusted, "envelope")
        if len(untrusted) > MAX_ENVELOPE_BYTES:
            raise r.fail(f"{len(untrusted)} bytes exceeds the limit of {MAX_ENVELOPE_BYTES}")
        r.version(supported=ENVELOPE_VERSIONS, known=ENVELOPE_VERSIONS)
        envelope_id = r.fixed(ENVELOPE_ID_BYTES)
        expires_at = r.u64()
        sealed = r.var32(MAX_SEALED_BYTES, "sealed content")
        r.finish()
        if not sealed:
            raise r.fail("empty sealed content")
        return cls(envelope_id=envelope_id, expires_at=expires_at, sealed=sealed)
