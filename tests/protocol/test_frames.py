"""Relay frames: every body round-trips, and the limits are enforced on both sides."""

from __future__ import annotations

import pytest

from app.base.errors import LocalProtocolError, RemoteProtocolError, UnsupportedVersionError
from app.crypto.keys import NO_ONE_TIME_PREKEY
from app.protocol.envelope import Envelope
from app.protocol.frames import (
    MAX_ACKS_PER_FRAME,
    MAX_FRAME_BYTES,
    Ack,
    DirectoryLookup,
    Frame,
    FrameType,
    Response,
    Send,
    Status,
    UploadedPreKey,
    UploadPreKeys,
)


def test_frames_and_bodies_round_trip() -> None:
    """Test that a SEND frame and its body parse back to what was encoded."""
    envelope = Envelope(envelope_id=b"\x01" * 16, expires_at=99, sealed=b"sealed")
    frame = Frame(FrameType.SEND, 42, Send(7, envelope).encode())
    parsed = Frame.parse(frame.encode())
    assert parsed == frame
    assert Send.parse(parsed.body) == Send(7, envelope)
    response = Response(Status.RATE_LIMITED, "подождите минуту")
    assert Response.parse(response.encode()) == response
    assert DirectoryLookup.parse(DirectoryLookup("김").encode()).query == "김"


def test_frame_refuses_unknown_type_version_and_excess_size() -> None:
    """Test that unknown frame types and versions and oversized frames are refused by type."""
    with pytest.raises(RemoteProtocolError, match="unknown frame type"):
        Frame.parse(b"\x01\x55\x00\x00\x00\x00")
    with pytest.raises(UnsupportedVersionError):
        Frame.parse(b"\x02\x03\x00\x00\x00\x00")
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        Frame.parse(b"\x01\x03" + b"\x00" * MAX_FRAME_BYTES)


def test_ack_bounds_are_enforced_when_building_and_parsing() -> None:
    """Test that an empty or too-long ack can be neither built nor parsed."""
    with pytest.raises(LocalProtocolError):
        Ack(()).encode()
    with pytest.raises(LocalProtocolError):
        Ack((b"\x00" * 16,) * (MAX_ACKS_PER_FRAME + 1)).encode()
    with pytest.raises(RemoteProtocolError):
        Ack.parse(b"\x00\x00")
    with pytest.raises(RemoteProtocolError):
        Ack.parse((MAX_ACKS_PER_FRAME + 1).to_bytes(2, "big"))


def test_the_none_prekey_id_can_be_neither_uploaded_nor_parsed() -> None:
    """Test that one-time prekey id 0xFFFFFFFF ("none" in a bundle) is refused both ways."""
    key = b"\x09" * 32
    with pytest.raises(LocalProtocolError, match="means 'none'"):
        UploadPreKeys(None, (UploadedPreKey(NO_ONE_TIME_PREKEY, key),)).encode()
    crafted = b"\x00" + (1).to_bytes(2, "big") + NO_ONE_TIME_PREKEY.to_bytes(4, "big") + key
    with pytest.raises(RemoteProtocolError, match="means 'none'"):
        UploadPreKeys.parse(crafted)
    highest = NO_ONE_TIME_PREKEY - 1
    assert (
        UploadPreKeys.parse(UploadPreKeys(None, (UploadedPreKey(highest, key),)).encode())
        .one_time_prekeys[0]
        .key_id
        == highest
    )
