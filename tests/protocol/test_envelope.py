"""The envelope the relay stores: round trip and strict parsing."""

from __future__ import annotations

import pytest

from app.base.errors import LocalProtocolError, RemoteProtocolError, UnsupportedVersionError
from app.base.limits import MAX_SEALED_BYTES
from app.protocol.envelope import Envelope
from tests.support.sessions import SeededRandom


def test_envelope_round_trips() -> None:
    """Test that an envelope parses back to itself."""
    envelope = Envelope.create(sealed=b"opaque", expires_at=1_800_000_000, random=SeededRandom(b"env"))
    assert Envelope.parse(envelope.encode()) == envelope


def test_envelope_refuses_trailing_truncated_and_foreign_bytes() -> None:
    """Test that trailing bytes, truncation and an unknown version are refused by type."""
    encoded = Envelope.create(sealed=b"opaque", expires_at=5, random=SeededRandom(b"env")).encode()
    with pytest.raises(RemoteProtocolError, match="trailing"):
        Envelope.parse(encoded + b"\x00")
    for cut in range(len(encoded)):
        with pytest.raises(RemoteProtocolError):
            Envelope.parse(encoded[:cut])
    with pytest.raises(UnsupportedVersionError):
        Envelope.parse(b"\x02" + encoded[1:])


def test_envelope_refuses_a_sealed_length_beyond_the_limit() -> None:
    """Test that a length prefix above MAX_SEALED_BYTES is refused before anything is read."""
    header = b"\x01" + b"\x00" * 16 + b"\x00" * 8
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        Envelope.parse(header + (MAX_SEALED_BYTES + 1).to_bytes(4, "big"))


def test_envelope_must_carry_something() -> None:
    """Test that an empty envelope can be neither built nor parsed."""
    with pytest.raises(LocalProtocolError):
        Envelope(envelope_id=b"\x00" * 16, expires_at=0, sealed=b"")
    with pytest.raises(RemoteProtocolError):
        Envelope.parse(b"\x01" + b"\x00" * 24 + b"\x00\x00\x00\x00")
