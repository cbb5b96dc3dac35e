"""Relay frames: every body round-trips, and the limits are enforced on both sides."""

from __future__ import annotations

import pytest
from hypothesis import given

from app.base.codec import Writer
from app.base.errors import LocalProtocolError, RemoteProtocolError, UnsupportedVersionError
from app.crypto.keys import NO_ONE_TIME_PREKEY
from app.protocol.envelope import Envelope
from app.protocol.frames import (
    MAX_ACKS_PER_FRAME,
    MAX_CERTIFICATE_FRAME_BYTES,
    MAX_FRAME_BYTES,
    Ack,
    Authenticate,
    Authenticated,
    DirectoryLookup,
    Enrol,
    Frame,
    FrameType,
    Response,
    Send,
    SignedPreKeyUpload,
    Status,
    UploadedPreKey,
    UploadPreKeys,
)
from tests.protocol.strategies import authenticated, authentications, enrolments

SIGNED = SignedPreKeyUpload(1, b"\x01" * 32, b"\x02" * 64)
CERTIFICATE = b"\x03" * 150


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


@given(enrolments)
def test_an_enrolment_round_trips(enrol: Enrol) -> None:
    """Test that ENROL (certificate, challenge signature, signed and one-time prekeys) parses back
    to what was encoded."""
    assert Enrol.parse(enrol.encode()) == enrol


@given(authentications)
def test_an_authentication_round_trips(authenticate: Authenticate) -> None:
    """Test that AUTHENTICATE (device id, challenge signature, current certificate) parses back to
    what was encoded."""
    assert Authenticate.parse(authenticate.encode()) == authenticate


@given(authenticated)
def test_the_authenticated_answer_round_trips(answer: Authenticated) -> None:
    """Test that the answer to AUTHENTICATE, an upload token alone, parses back to what was encoded."""
    assert Authenticated.parse(answer.encode()) == answer


def test_a_certificate_over_the_limit_is_refused_in_enrol_and_authenticate_both_ways() -> None:
    """Test that a certificate of MAX_CERTIFICATE_FRAME_BYTES + 1 bytes can be neither built into
    nor parsed from ENROL or AUTHENTICATE, and one of the limit exactly can."""
    at_limit, over = b"\x05" * MAX_CERTIFICATE_FRAME_BYTES, b"\x05" * (MAX_CERTIFICATE_FRAME_BYTES + 1)
    assert Enrol.parse(Enrol(at_limit, b"\x04" * 64, SIGNED, ()).encode()).certificate == at_limit
    assert Authenticate.parse(Authenticate(1, b"\x04" * 64, at_limit).encode()).certificate == at_limit
    with pytest.raises(LocalProtocolError, match="certificate"):
        Enrol(over, b"\x04" * 64, SIGNED, ()).encode()
    with pytest.raises(LocalProtocolError, match="certificate"):
        Authenticate(1, b"\x04" * 64, over).encode()
    crafted_enrol = Writer("test").u16(len(over)).raw(over).raw(b"\x04" * 64).getvalue()
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        Enrol.parse(crafted_enrol + UploadPreKeys(SIGNED, ()).encode())
    crafted_authenticate = Writer("test").u32(1).raw(b"\x04" * 64).u16(len(over)).raw(over).getvalue()
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        Authenticate.parse(crafted_authenticate)


def test_an_enrolment_needs_a_signed_prekey_and_a_whole_signature() -> None:
    """Test that ENROL without a signed prekey does not parse, and one whose challenge signature is
    not 64 bytes can be neither built nor parsed."""
    without = Writer("test").u16(len(CERTIFICATE)).raw(CERTIFICATE).raw(b"\x04" * 64).getvalue()
    with pytest.raises(RemoteProtocolError, match="needs a signed prekey"):
        Enrol.parse(without + UploadPreKeys(None, ()).encode())
    with pytest.raises(LocalProtocolError, match="sig"):
        Enrol(CERTIFICATE, b"\x04" * 63, SIGNED, ()).encode()
    short = Writer("test").u16(len(CERTIFICATE)).raw(CERTIFICATE).raw(b"\x04" * 63).getvalue()
    with pytest.raises(RemoteProtocolError):
        Enrol.parse(short + UploadPreKeys(SIGNED, ()).encode())


def test_an_authenticate_without_a_certificate_field_or_an_old_answer_is_refused() -> None:
    """Test that AUTHENTICATE in the layout from before certificates came from the authority
    (device id and signature only) does not parse, nor does an Authenticated answer that still
    carries a relay-signed certificate before the token."""
    old_authenticate = Writer("test").u32(1).raw(b"\x04" * 64).getvalue()
    with pytest.raises(RemoteProtocolError, match="truncated"):
        Authenticate.parse(old_authenticate)
    token = b"\x07" * 44
    old_answer = Writer("test").u16(len(CERTIFICATE)).raw(CERTIFICATE).u16(len(token)).raw(token).getvalue()
    with pytest.raises(RemoteProtocolError):
        Authenticated.parse(old_answer)
