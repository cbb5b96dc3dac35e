"""The connection to the relay as a sans-I/O state machine: frames in, events out.

``Connection`` knows nothing of sockets, clocks or threads. The driver feeds it each
binary message the relay sends (``receive``) and writes the bytes it returns; the
services call ``request`` to make frames. Every rule about what may happen in which
state lives in ``TRANSITIONS`` below; a frame that arrives in a state that does not
expect it is a ``RemoteProtocolError`` and puts the connection in ``FAILED``.

States are named for what the device knows:

- ``AWAITING_CHALLENGE``: the socket is open; the relay has not spoken.
- ``CHALLENGED``: we hold a nonce and may enrol or authenticate.
- ``AUTHENTICATING``: our signature is on its way.
- ``ONLINE``: the relay accepted us; requests flow, envelopes are pushed.
- ``REFUSED``: the relay refused this device (revoked, disabled); do not reconnect.
- ``CLOSED``: the relay closed the connection for another reason; reconnect later.
- ``FAILED``: the relay broke the protocol; reconnect later.
- ``UNIDENTIFIED``: a socket of the unidentified path (``/v1/deliver``): no challenge, no
  authentication, only ``DELIVER`` requests and their answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto

from app.base.errors import LocalProtocolError, RemoteProtocolError
from app.crypto.primitives import SIGN_CONTEXT_RELAY_AUTH
from app.protocol.envelope import Envelope
from app.protocol.frames import (
    Authenticate,
    Authenticated,
    Challenge,
    Closing,
    Frame,
    FrameType,
    Notice,
    Response,
    Status,
    auth_message,
)


class State(Enum):
    AWAITING_CHALLENGE = auto()
    CHALLENGED = auto()
    AUTHENTICATING = auto()
    ONLINE = auto()
    REFUSED = auto()
    CLOSED = auto()
    FAILED = auto()
    UNIDENTIFIED = auto()


TERMINAL = frozenset({State.REFUSED, State.CLOSED, State.FAILED})

TRANSITIONS: dict[State, frozenset[FrameType]] = {
    State.AWAITING_CHALLENGE: frozenset({FrameType.CHALLENGE}),
    State.CHALLENGED: frozenset({FrameType.RESPONSE, FrameType.CLOSING}),
    State.AUTHENTICATING: frozenset({FrameType.RESPONSE, FrameType.CLOSING}),
    State.ONLINE: frozenset({FrameType.RESPONSE, FrameType.PUSH, FrameType.NOTICE, FrameType.CLOSING}),
    State.REFUSED: frozenset(),
    State.CLOSED: frozenset(),
    State.FAILED: frozenset(),
    State.UNIDENTIFIED: frozenset({FrameType.RESPONSE, FrameType.CLOSING}),
}
"""Which relay frames each state accepts; anything else is a protocol error."""

REFUSING_STATUSES = frozenset({Status.REVOKED, Status.ACCOUNT_DISABLED})


# Events: what the connection tells its driver and the services.


@dataclass(frozen=True, slots=True)
class Challenged:
    server_time: int


@dataclass(frozen=True, slots=True)
class Online:
    authenticated: Authenticated


@dataclass(frozen=True, slots=True)
class Answered:
    """The relay answered request ``request_id``."""

    request_id: int
    response: Response


@dataclass(frozen=True, slots=True)
class Pushed:
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Noticed:
    notice: Notice


@dataclass(frozen=True, slots=True)
class Refused:
    """The relay will not serve this device; show ``reason`` and stop reconnecting."""

    status: Status
    reason: str


@dataclass(frozen=True, slots=True)
class Closed:
    status: Status
    reason: str


Event = Challenged | Online | Answered | Pushed | Noticed | Refused | Closed

Signer = Callable[[bytes, bytes], bytes]
"""``signer(context, message) -> signature`` with the device's identity key."""


class Connection:
    """One socket's worth of protocol with the relay."""

    def __init__(self, *, unidentified: bool = False) -> None:
        """``unidentified``: a socket of the unidentified path, which never authenticates."""
        self.state = State.UNIDENTIFIED if unidentified else State.AWAITING_CHALLENGE
        self._nonce = b""
        self._next_request = 0
        self._auth_request = -1

    def _request_id(self) -> int:
        self._next_request += 1
        return self._next_request

    def request(self, frame_type: FrameType, body: bytes) -> tuple[int, bytes]:
        """(request id, frame bytes) for a request; only ENROL before authenticating, and only
        DELIVER (which is sent nowhere else) on the unidentified path."""
        allowed = (
            (self.state == State.ONLINE and frame_type != FrameType.DELIVER)
            or (self.state == State.CHALLENGED and frame_type == FrameType.ENROL)
            or (self.state == State.UNIDENTIFIED and frame_type == FrameType.DELIVER)
        )
        if not allowed:
            raise LocalProtocolError(f"cannot send {frame_type.name} while {self.state.name}")
        request_id = self._request_id()
        return request_id, Frame(frame_type, request_id, body).encode()

    def challenge_signature(self, device_id: int, signer: Signer) -> bytes:
        """The challenge signed for ``device_id``, as AUTHENTICATE and ENROL carry it."""
        if self.state != State.CHALLENGED:
            raise LocalProtocolError(f"cannot answer the challenge while {self.state.name}")
        return signer(SIGN_CONTEXT_RELAY_AUTH, auth_message(self._nonce, device_id))

    def authenticate(self, device_id: int, signer: Signer, certificate: bytes) -> bytes:
        """The AUTHENTICATE frame answering the challenge, with the device's current certificate."""
        signature = self.challenge_signature(device_id, signer)
        self._auth_request = self._request_id()
        self.state = State.AUTHENTICATING
        return Frame(
            FrameType.AUTHENTICATE,
            self._auth_request,
            Authenticate(device_id, signature, certificate).encode(),
        ).encode()

    def receive(self, untrusted: bytes) -> list[Event]:
        """Events for one frame from the relay; a protocol violation moves to FAILED and raises."""
        try:
            frame = Frame.parse(untrusted)
            if frame.type not in TRANSITIONS[self.state]:
                raise RemoteProtocolError(f"the relay sent {frame.type.name} while {self.state.name}")
            return self._handle(frame)
        except RemoteProtocolError:
            self.state = State.FAILED
            raise

    def _handle(self, frame: Frame) -> list[Event]:
        if frame.type == FrameType.CHALLENGE:
            challenge = Challenge.parse(frame.body)
            self._nonce, self.state = challenge.nonce, State.CHALLENGED
            return [Challenged(challenge.server_time)]
        if frame.type == FrameType.CLOSING:
            closing = Closing.parse(frame.body)
            refused = closing.status in REFUSING_STATUSES
            self.state = State.REFUSED if refused else State.CLOSED
            return [
                Refused(closing.status, closing.reason) if refused else Closed(closing.status, closing.reason)
            ]
        if frame.type == FrameType.PUSH:
            return [Pushed(Envelope.parse(frame.body))]
        if frame.type == FrameType.NOTICE:
            return [Noticed(Notice.parse(frame.body))]
        response = Response.parse(frame.body)
        if frame.request_id == self._auth_request and self.state == State.AUTHENTICATING:
            return self._authenticated(response)
        return [Answered(frame.request_id, response)]

    def _authenticated(self, response: Response) -> list[Event]:
        if response.status == Status.OK:
            self.state = State.ONLINE
            return [Online(Authenticated.parse(response.body))]
        if response.status in REFUSING_STATUSES:
            self.state = State.REFUSED
            return [Refused(response.status, response.reason)]
        self.state = State.CLOSED
        return [Closed(response.status, response.reason)]

    def connection_lost(self) -> None:
        if self.state not in TERMINAL:
            self.state = State.CLOSED


@dataclass(frozen=True, slots=True)
class Backoff:
    """Jittered exponential back-off between reconnection attempts (full jitter)."""

    base_seconds: float = 1.0
    cap_seconds: float = 60.0

    def delay(self, attempt: int, unit_random: float) -> float:
        """Seconds to wait before attempt ``attempt`` (0-based); ``unit_random`` in [0, 1)."""
        ceiling = min(self.cap_seconds, self.base_seconds * (2 ** min(attempt, 30)))
        return ceiling * (0.5 + unit_random / 2)
