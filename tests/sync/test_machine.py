"""The sans-I/O relay connection: states, refusals and protocol violations."""

from __future__ import annotations

import pytest

from app.base.errors import LocalProtocolError, RemoteProtocolError
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import SIGN_CONTEXT_RELAY_AUTH, ed25519_verify
from app.protocol.envelope import Envelope
from app.protocol.frames import (
    Authenticate,
    Authenticated,
    Challenge,
    Closing,
    Frame,
    FrameType,
    Response,
    Status,
    auth_message,
)
from app.sync.machine import Answered, Backoff, Connection, Online, Pushed, Refused, State
from tests.support.sessions import SeededRandom

IDENTITY = IdentityKeyPair.generate(SeededRandom(b"sync"))
NONCE = b"\x01" * 32
CERTIFICATE = b"the device's certificate"


def _signer(context: bytes, message: bytes) -> bytes:
    return IDENTITY.sign(context=context, message=message)


def _challenged() -> Connection:
    connection = Connection()
    connection.receive(Frame(FrameType.CHALLENGE, 0, Challenge(NONCE, 5).encode()).encode())
    assert connection.state == State.CHALLENGED
    return connection


def _authenticating() -> tuple[Connection, int]:
    connection = _challenged()
    request_id = Frame.parse(connection.authenticate(7, _signer, CERTIFICATE)).request_id
    assert connection.state == State.AUTHENTICATING
    return connection, request_id


def test_authenticate_signs_the_challenge_and_presents_the_certificate() -> None:
    """Test that AUTHENTICATE carries the device id, the challenge signed for it with the identity
    key, and the certificate given; and that the challenge can be answered only while challenged."""
    connection = _challenged()
    signature = connection.challenge_signature(7, _signer)
    ed25519_verify(
        public_key=IDENTITY.public,
        context=SIGN_CONTEXT_RELAY_AUTH,
        message=auth_message(NONCE, 7),
        signature=signature,
    )
    frame = Frame.parse(connection.authenticate(7, _signer, CERTIFICATE))
    assert frame.type == FrameType.AUTHENTICATE
    assert Authenticate.parse(frame.body) == Authenticate(7, signature, CERTIFICATE)
    with pytest.raises(LocalProtocolError, match="AUTHENTICATING"):
        connection.challenge_signature(7, _signer)
    with pytest.raises(LocalProtocolError):
        Connection().challenge_signature(7, _signer)


def test_successful_authentication_goes_online_and_passes_pushes_and_answers() -> None:
    """Test that CHALLENGE -> AUTHENTICATING -> ONLINE keeps the upload token, then a push and an
    answered request pass."""
    connection, auth_id = _authenticating()
    ok = Response(Status.OK, body=Authenticated(b"token").encode())
    (event,) = connection.receive(Frame(FrameType.RESPONSE, auth_id, ok.encode()).encode())
    assert isinstance(event, Online) and event.authenticated.upload_token == b"token"
    envelope = Envelope(envelope_id=b"\x02" * 16, expires_at=9, sealed=b"s")
    assert connection.receive(Frame(FrameType.PUSH, 0, envelope.encode()).encode()) == [Pushed(envelope)]
    request_id, _ = connection.request(FrameType.ACK, b"")
    answer = connection.receive(Frame(FrameType.RESPONSE, request_id, Response(Status.OK).encode()).encode())
    assert answer == [Answered(request_id, Response(Status.OK))]


def test_revocation_is_terminal_and_reported() -> None:
    """Test that a REVOKED answer and a CLOSING frame move to REFUSED with the relay's reason."""
    connection, auth_id = _authenticating()
    refused = Response(Status.REVOKED, "revoked by admin")
    assert connection.receive(Frame(FrameType.RESPONSE, auth_id, refused.encode()).encode()) == [
        Refused(Status.REVOKED, "revoked by admin")
    ]
    assert connection.state == State.REFUSED
    other = _challenged()
    other.receive(Frame(FrameType.CLOSING, 0, Closing(Status.ACCOUNT_DISABLED, "off").encode()).encode())
    assert other.state == State.REFUSED


def test_unexpected_frames_fail_the_connection() -> None:
    """Test that a PUSH before authentication and garbage bytes are protocol errors that move to FAILED."""
    connection = _challenged()
    envelope = Envelope(envelope_id=b"\x02" * 16, expires_at=9, sealed=b"s")
    with pytest.raises(RemoteProtocolError):
        connection.receive(Frame(FrameType.PUSH, 0, envelope.encode()).encode())
    assert connection.state == State.FAILED
    fresh = Connection()
    with pytest.raises(RemoteProtocolError):
        fresh.receive(b"\x01")
    assert fresh.state == State.FAILED


def test_requests_before_online_are_local_errors() -> None:
    """Test that only ENROL may be sent before authenticating."""
    connection = _challenged()
    connection.request(FrameType.ENROL, b"")
    with pytest.raises(LocalProtocolError):
        connection.request(FrameType.SEND, b"")


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    """Test that delays double per attempt, stay within [half, full] of the ceiling, and are capped."""
    backoff = Backoff(base_seconds=1.0, cap_seconds=60.0)
    assert backoff.delay(0, 0.0) == 0.5 and backoff.delay(0, 0.999) < 1.0
    assert backoff.delay(3, 0.0) == 4.0
    assert backoff.delay(50, 0.999) <= 60.0
