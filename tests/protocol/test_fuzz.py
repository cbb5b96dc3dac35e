"""Fuzzing every parser: random and mutated bytes only ever raise the protocol's typed error.

A parser may accept a mutated input that happens to be valid; it may never raise
anything but ``RemoteProtocolError`` (parsers) or the documented crypto and state
errors (decryption, stored state): never an IndexError, a struct.error or a crash.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl import bindings

from app.base.errors import CryptoError, RemoteProtocolError, SessionStateError
from app.base.limits import PADDING_BLOCK_BYTES
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.ratchet import parse_message
from app.crypto.safety import SafetyNumber
from app.crypto.sealed import seal, unseal
from app.crypto.session import MessageKind, PreKeyMessage, Session, SessionMessage, initiate_session
from app.protocol.content import MessageHeader, TextMessage, encode_content, parse_content
from app.protocol.envelope import Envelope
from app.protocol.frames import (
    Ack,
    Authenticate,
    Authenticated,
    Bundles,
    Challenge,
    Closing,
    DeviceBundle,
    DirectoryEntry,
    DirectoryResults,
    Enrol,
    Frame,
    FrameType,
    Notice,
    NoticeKind,
    Response,
    Send,
    SignedPreKeyUpload,
    Status,
    UploadedPreKey,
    UploadPreKeys,
)
from tests.support.sessions import Device, SeededRandom, SessionPair

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 1_800_000_000


def _samples() -> dict[str, tuple[Callable[[bytes], object], bytes]]:
    """Each parser with one valid input to mutate."""
    random = SeededRandom(b"fuzz")
    issuer, alice, bob = (IdentityKeyPair.generate(random) for _ in range(3))
    certificate = DeviceCertificate.issue(
        issuer, account_id="fuzz", device_id=1, identity_key=alice.public, expires_at=2**40
    )
    device = Device.create(random)
    initiator = initiate_session(alice, device.bundle(), random)
    number = SafetyNumber.compute(
        local_identity=alice.public, local_id="a", remote_identity=bob.public, remote_id="b"
    )
    content = encode_content(TextMessage(MessageHeader(b"\x01" * 16, 1, 60, b"\x02" * 16), "привет, 안녕"))
    pair = SessionPair.establish(b"fuzz")
    envelope = Envelope.create(sealed=b"sealed", expires_at=NOW, random=random)
    prekeys = UploadPreKeys(
        SignedPreKeyUpload(1, b"\x01" * 32, b"\x02" * 64), (UploadedPreKey(1, b"\x03" * 32),) * 2
    )
    frame_bodies = {
        "frame": (Frame.parse, Frame(FrameType.SEND, 9, Send(3, envelope).encode()).encode()),
        "send": (Send.parse, Send(3, envelope).encode()),
        "enrol": (
            Enrol.parse,
            Enrol(
                certificate.encode(), b"\x04" * 64, prekeys.signed_prekey, prekeys.one_time_prekeys
            ).encode(),  # type: ignore[arg-type]
        ),
        "authenticate": (Authenticate.parse, Authenticate(1, b"\x08" * 64, certificate.encode()).encode()),
        "upload prekeys": (UploadPreKeys.parse, prekeys.encode()),
        "ack": (Ack.parse, Ack((b"\x05" * 16, b"\x06" * 16)).encode()),
        "response": (Response.parse, Response(Status.MAILBOX_FULL, "полный", b"body").encode()),
        "bundles": (
            Bundles.parse,
            Bundles((DeviceBundle(2, device.bundle().to_bytes(), certificate.encode()),)).encode(),
        ),
        "directory": (
            DirectoryResults.parse,
            DirectoryResults((DirectoryEntry("k.kim", "김민수", "외교부"),)).encode(),
        ),
        "closing": (Closing.parse, Closing(Status.REVOKED, "revoked").encode()),
        "notice": (Notice.parse, Notice(NoticeKind.PREKEYS_LOW, 3).encode()),
        "authenticated": (Authenticated.parse, Authenticated(b"\x07" * 44).encode()),
        "challenge": (Challenge.parse, Challenge(b"\x09" * 32, NOW).encode()),
    }
    return frame_bodies | {
        "content": (parse_content, content),
        "envelope": (
            Envelope.parse,
            Envelope.create(sealed=b"sealed", expires_at=NOW, random=random).encode(),
        ),
        "prekey message": (PreKeyMessage.parse, initiator.encrypt(b"first").body),
        "ratchet message": (parse_message, pair.alice.encrypt(b"ratchet").body),
        "certificate": (DeviceCertificate.parse, certificate.encode()),
        "prekey bundle": (type(device.bundle()).from_bytes, device.bundle().to_bytes()),
        "safety QR payload": (number.matches_scan, number.qr_payload()),
    }


SAMPLES = _samples()


@st.composite
def mutations(draw: st.DrawFn, sample: bytes) -> bytes:
    """A valid input with a few bytes flipped, cut, inserted or deleted."""
    data = bytearray(sample)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(min_value=1, max_value=255))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[at : at + draw(st.integers(min_value=1, max_value=8))]
    return bytes(data)


@pytest.mark.parametrize("name", sorted(SAMPLES))
@FUZZ
@given(untrusted=st.binary(max_size=600))
def test_random_bytes_raise_only_the_protocol_error(name: str, untrusted: bytes) -> None:
    """Test that a parser given random bytes accepts them or raises RemoteProtocolError."""
    parse, _ = SAMPLES[name]
    with contextlib.suppress(RemoteProtocolError):
        parse(untrusted)


@pytest.mark.parametrize("name", sorted(SAMPLES))
@FUZZ
@given(data=st.data())
def test_mutated_valid_bytes_raise_only_the_protocol_error(name: str, data: st.DataObject) -> None:
    """Test that a parser given a damaged valid input accepts it or raises RemoteProtocolError."""
    parse, sample = SAMPLES[name]
    with contextlib.suppress(RemoteProtocolError):
        parse(data.draw(mutations(sample)))


@FUZZ
@given(inner=st.binary(max_size=400))
def test_padded_random_content_raises_only_the_protocol_error(inner: bytes) -> None:
    """Test that correctly padded random bytes reach the content parser and only fail by type."""
    with contextlib.suppress(RemoteProtocolError):
        parse_content(bindings.sodium_pad(inner, PADDING_BLOCK_BYTES))


_PAIR = SessionPair.establish(b"fuzz-decrypt")
_STATE = _PAIR.bob.to_bytes()


@FUZZ
@given(kind=st.sampled_from(MessageKind), body=st.binary(max_size=300))
def test_random_session_messages_are_refused_and_change_nothing(kind: MessageKind, body: bytes) -> None:
    """Test that random message bytes raise a crypto or protocol error and leave the session as it was."""
    with pytest.raises((CryptoError, RemoteProtocolError)):
        _PAIR.bob.decrypt(SessionMessage(kind, body), _PAIR.random)
    assert _PAIR.bob.to_bytes() == _STATE


_SEAL_RANDOM = SeededRandom(b"fuzz-seal")
_ISSUER, _SENDER, _RECIPIENT = (IdentityKeyPair.generate(_SEAL_RANDOM) for _ in range(3))
_SEALED = seal(
    sender=_SENDER,
    certificate=DeviceCertificate.issue(
        _ISSUER, account_id="s", device_id=1, identity_key=_SENDER.public, expires_at=2**40
    ),
    recipient_identity=_RECIPIENT.public,
    envelope_id=bytes(16),
    delivery_key=_SENDER.delivery_key,
    message=SessionMessage(MessageKind.RATCHET, b"body"),
    random=_SEAL_RANDOM,
)


@FUZZ
@given(data=st.data())
def test_damaged_sealed_envelopes_raise_only_typed_errors(data: st.DataObject) -> None:
    """Test that random or mutated sealed bytes raise only a crypto or protocol error."""
    untrusted = data.draw(st.binary(max_size=300) | mutations(_SEALED))
    with contextlib.suppress(CryptoError, RemoteProtocolError):
        unseal(
            recipient=_RECIPIENT,
            untrusted=untrusted,
            envelope_id=bytes(16),
            trust_root=_ISSUER.public,
            now=NOW,
        )


@FUZZ
@given(data=st.data())
def test_damaged_session_state_raises_only_the_state_error(data: st.DataObject) -> None:
    """Test that random or mutated stored state raises only SessionStateError."""
    untrusted = data.draw(st.binary(max_size=300) | mutations(_STATE))
    with contextlib.suppress(SessionStateError):
        Session.from_bytes(untrusted)
