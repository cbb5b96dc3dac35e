"""Frames between a device and the relay: one binary WebSocket message each.

``version || type || request_id || body``. A device's requests carry a request id it
chooses; the relay answers each with a ``RESPONSE`` of the same id. Pushes and notices
from the relay carry request id 0. Bodies are per type and strictly parsed; any refusal
is a ``RemoteProtocolError``. docs/PROTOCOL.md, "Relay frames".

The relay learns from these frames only what it must: which device is connected, which
device an envelope is for, and the envelope's id and expiry. A ``SEND`` names no sender
beyond the authenticated connection it arrives on; a ``DELIVER``, on the unidentified path
(``/v1/deliver``), names no sender at all: it proves only that its sender holds the
recipient's delivery key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum

from app.base.codec import Reader, Writer
from app.base.errors import LocalProtocolError
from app.base.limits import (
    DELIVERY_KEY_BYTES,
    KEY_BYTES,
    MAX_ACCOUNT_ID_BYTES,
    MAX_ENVELOPE_BYTES,
    SIGNATURE_BYTES,
)
from app.base.text import CONTROL_CHARACTERS, control_character
from app.crypto.keys import NO_ONE_TIME_PREKEY
from app.protocol.envelope import ENVELOPE_ID_BYTES, Envelope

FRAME_VERSION = 1
FRAME_VERSIONS = frozenset({FRAME_VERSION})
CHALLENGE_BYTES = 32
MAX_FRAME_BYTES = MAX_ENVELOPE_BYTES + 64
MAX_PREKEYS_PER_UPLOAD = 200
MAX_ACKS_PER_FRAME = 512
MAX_DIRECTORY_RESULTS = 20
MAX_QUERY_BYTES = 128
MAX_DISPLAY_NAME_BYTES = 128
MAX_DEPARTMENT_BYTES = 128
MAX_DEVICES_PER_ACCOUNT = 16
MAX_CERTIFICATE_FRAME_BYTES = 512
MAX_BUNDLE_BYTES = 256
MAX_REASON_BYTES = 512
MAX_UPLOAD_TOKEN_BYTES = 128


def _write_text(w: Writer, value: str, limit: int, field: str) -> Writer:
    """``text16`` of a frame: refused, before it leaves, if it holds a control character."""
    bad = control_character(value)
    if bad is not None:
        raise LocalProtocolError(
            f"the {field} holds the control character {bad}, which a frame may not carry"
        )
    return w.text16(value, limit, field)


def _read_text(r: Reader, limit: int, field: str) -> str:
    """``text16`` of a frame: valid UTF-8 with no control character, or a malformed frame."""
    value = r.text16(limit, field)
    bad = control_character(value)
    if bad is not None:
        raise r.fail(f"{field} holds the control character {bad}")
    return value


def _reason(text: str) -> str:
    """A reason the relay writes may quote an error's text: control characters become U+FFFD,
    so an answer is never lost to the character rule its reader enforces."""
    return CONTROL_CHARACTERS.sub("\ufffd", text)


class FrameType(IntEnum):
    # device -> relay
    AUTHENTICATE = 0x01
    ENROL = 0x02
    SEND = 0x03
    ACK = 0x04
    FETCH_BUNDLES = 0x05
    UPLOAD_PREKEYS = 0x06
    DIRECTORY_LOOKUP = 0x07
    SET_DELIVERY_KEY = 0x08
    # device -> relay, on the unidentified path only
    DELIVER = 0x09
    # relay -> device
    CHALLENGE = 0x80
    RESPONSE = 0x81
    PUSH = 0x82
    NOTICE = 0x83
    CLOSING = 0x84


class Status(IntEnum):
    """How the relay answered a request; the names are what a device tells its user."""

    OK = 0
    BAD_REQUEST = 1
    UNAUTHENTICATED = 2
    REVOKED = 3
    NOT_FOUND = 4
    MAILBOX_FULL = 5
    RATE_LIMITED = 6
    TOO_LARGE = 7
    CODE_REFUSED = 8
    ACCOUNT_DISABLED = 9
    INTERNAL_ERROR = 10


class NoticeKind(IntEnum):
    PREKEYS_LOW = 1
    """The relay holds few one-time prekeys of this device; ``value`` is how many are left."""
    QUEUE_DRAINED = 2
    """Every envelope waiting at authentication time has been pushed; ``value`` is how many."""
    DEVICE_ADDED = 3
    """A device was added to this device's account (its id is ``value``): read the key log now."""


@dataclass(frozen=True, slots=True)
class Frame:
    type: FrameType
    request_id: int
    body: bytes

    def encode(self) -> bytes:
        return Writer("frame").u8(FRAME_VERSION).u8(self.type).u32(self.request_id).raw(self.body).getvalue()

    @classmethod
    def parse(cls, untrusted: bytes) -> Frame:
        r = Reader(untrusted, "frame")
        if len(untrusted) > MAX_FRAME_BYTES:
            raise r.fail(f"{len(untrusted)} bytes exceeds the limit of {MAX_FRAME_BYTES}")
        r.version(supported=FRAME_VERSIONS, known=FRAME_VERSIONS)
        frame_type = r.enum(FrameType, "frame type")
        return cls(frame_type, r.u32(), r.rest())


# Bodies. Each has ``encode() -> bytes`` and ``parse(untrusted) -> Self``.


@dataclass(frozen=True, slots=True)
class Challenge:
    nonce: bytes
    server_time: int

    def encode(self) -> bytes:
        return (
            Writer("challenge").fixed(self.nonce, CHALLENGE_BYTES, "nonce").u64(self.server_time).getvalue()
        )

    @classmethod
    def parse(cls, untrusted: bytes) -> Challenge:
        r = Reader(untrusted, "challenge")
        value = cls(r.fixed(CHALLENGE_BYTES), r.u64())
        r.finish()
        return value


def auth_message(nonce: bytes, device_id: int) -> bytes:
    """What a device signs, after ``SIGN_CONTEXT_RELAY_AUTH``, to answer a challenge."""
    return Writer("auth").fixed(nonce, CHALLENGE_BYTES, "nonce").u32(device_id).getvalue()


@dataclass(frozen=True, slots=True)
class Authenticate:
    """The challenge signed with the identity key, and the device's current certificate from
    the enrolment authority (the relay keeps the latest valid one and serves it in bundles)."""

    device_id: int
    signature: bytes
    certificate: bytes

    def encode(self) -> bytes:
        return (
            Writer("authenticate")
            .u32(self.device_id)
            .fixed(self.signature, SIGNATURE_BYTES, "sig")
            .var16(self.certificate, MAX_CERTIFICATE_FRAME_BYTES, "certificate")
            .getvalue()
        )

    @classmethod
    def parse(cls, untrusted: bytes) -> Authenticate:
        r = Reader(untrusted, "authenticate")
        value = cls(r.u32(), r.fixed(SIGNATURE_BYTES), r.var16(MAX_CERTIFICATE_FRAME_BYTES, "certificate"))
        r.finish()
        return value


@dataclass(frozen=True, slots=True)
class UploadedPreKey:
    key_id: int
    public: bytes


@dataclass(frozen=True, slots=True)
class SignedPreKeyUpload:
    key_id: int
    public: bytes
    signature: bytes


def _write_prekeys(
    w: Writer, signed: SignedPreKeyUpload | None, one_time: tuple[UploadedPreKey, ...]
) -> None:
    if len(one_time) > MAX_PREKEYS_PER_UPLOAD:
        raise LocalProtocolError(f"at most {MAX_PREKEYS_PER_UPLOAD} prekeys per upload")
    if signed is None:
        w.u8(0)
    else:
        w.u8(1).u32(signed.key_id).fixed(signed.public, KEY_BYTES, "signed prekey")
        w.fixed(signed.signature, SIGNATURE_BYTES, "signature")
    w.u16(len(one_time))
    for key in one_time:
        if key.key_id == NO_ONE_TIME_PREKEY:
            raise LocalProtocolError(f"one-time prekey id {NO_ONE_TIME_PREKEY:#x} means 'none'")
        w.u32(key.key_id).fixed(key.public, KEY_BYTES, "prekey")


def _read_prekeys(r: Reader) -> tuple[SignedPreKeyUpload | None, tuple[UploadedPreKey, ...]]:
    has_signed = r.u8()
    if has_signed > 1:
        raise r.fail("bad signed prekey flag")
    signed = SignedPreKeyUpload(r.u32(), r.fixed(KEY_BYTES), r.fixed(SIGNATURE_BYTES)) if has_signed else None
    count = r.u16()
    if count > MAX_PREKEYS_PER_UPLOAD:
        raise r.fail(f"{count} prekeys exceeds the limit of {MAX_PREKEYS_PER_UPLOAD}")
    one_time = tuple(UploadedPreKey(r.u32(), r.fixed(KEY_BYTES)) for _ in range(count))
    if any(key.key_id == NO_ONE_TIME_PREKEY for key in one_time):
        # A bundle carrying it would read as "no one-time prekey, and nothing follows".
        raise r.fail(f"one-time prekey id {NO_ONE_TIME_PREKEY:#x} means 'none' and cannot be uploaded")
    return signed, one_time


@dataclass(frozen=True, slots=True)
class Enrol:
    """A new device registers with its certificate from the enrolment authority and its keys.

    ``signature`` is the challenge signed as for ``Authenticate``, with the certificate's
    identity key and device id: the relay registers a key only from the device holding it.
    """

    certificate: bytes
    signature: bytes
    signed_prekey: SignedPreKeyUpload
    one_time_prekeys: tuple[UploadedPreKey, ...]

    def encode(self) -> bytes:
        w = Writer("enrol").var16(self.certificate, MAX_CERTIFICATE_FRAME_BYTES, "certificate")
        w.fixed(self.signature, SIGNATURE_BYTES, "sig")
        _write_prekeys(w, self.signed_prekey, self.one_time_prekeys)
        return w.getvalue()

    @classmethod
    def parse(cls, untrusted: bytes) -> Enrol:
        r = Reader(untrusted, "enrol")
        certificate, signature = r.var16(MAX_CERTIFICATE_FRAME_BYTES, "certificate"), r.fixed(SIGNATURE_BYTES)
        signed, one_time = _read_prekeys(r)
        r.finish()
        if signed is None:
            raise r.fail("enrolment needs a signed prekey")
        return cls(certificate, signature, signed, one_time)


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The relay's answer to a good signature: a token that authorises attachment uploads over
    HTTPS for as long as the relay's certificate lifetime setting."""

    upload_token: bytes

    def encode(self) -> bytes:
        return (
            Writer("authenticated")
            .var16(self.upload_token, MAX_UPLOAD_TOKEN_BYTES, "upload token")
            .getvalue()
        )

    @classmethod
    def parse(cls, untrusted: bytes) -> Authenticated:
        r = Reader(untrusted, "authenticated")
        value = cls(r.var16(MAX_UPLOAD_TOKEN_BYTES, "upload token"))
        r.finish()
        return value


@dataclass(frozen=True, slots=True)
class Send:
    recipient_device: int
    envelope: Envelope

    def encode(self) -> bytes:
        return (
            Writer("send")
            .u32(self.recipient_device)
            .var32(self.envelope.encode(), MAX_ENVELOPE_BYTES, "envelope")
            .getvalue()
        )

    @classmethod
    def parse(cls, untrusted: bytes) -> Send:
        r = Reader(untrusted, "send")
        recipient = r.u32()
        envelope = Envelope.parse(r.var32(MAX_ENVELOPE_BYTES, "envelope"))
        r.finish()
        return cls(recipient, envelope)


def delivery_key_hash(delivery_key: bytes) -> bytes:
    """What the relay keeps of a device's delivery key (SHA-256), and compares a presented one by."""
    return hashlib.sha256(delivery_key).digest()


@dataclass(frozen=True, slots=True)
class SetDeliveryKey:
    """The SHA-256 of the device's delivery key: from now on a ``DELIVER`` to it must carry the key."""

    key_hash: bytes

    def encode(self) -> bytes:
        return Writer("set delivery key").fixed(self.key_hash, KEY_BYTES, "key hash").getvalue()

    @classmethod
    def parse(cls, untrusted: bytes) -> SetDeliveryKey:
        r = Reader(untrusted, "set delivery key")
        value = cls(r.fixed(KEY_BYTES))
        r.finish()
        return value


@dataclass(frozen=True, slots=True)
class Deliver:
    """A ``SEND`` that names no sender: it carries the recipient device's delivery key instead."""

    recipient_device: int
    delivery_key: bytes
    envelope: Envelope

    def encode(self) -> bytes:
        return (
            Writer("deliver")
            .u32(self.recipient_device)
            .fixed(self.delivery_key, DELIVERY_KEY_BYTES, "delivery key")
            .var32(self.envelope.encode(), MAX_ENVELOPE_BYTES, "envelope")
            .getvalue()
        )

    @classmethod
    def parse(cls, untrusted: bytes) -> Deliver:
        r = Reader(untrusted, "deliver")
        recipient, key = r.u32(), r.fixed(DELIVERY_KEY_BYTES)
        envelope = Envelope.parse(r.var32(MAX_ENVELOPE_BYTES, "envelope"))
        r.finish()
        return cls(recipient, key, envelope)


@dataclass(frozen=True, slots=True)
class Push:
    envelope: Envelope

    def encode(self) -> bytes:
        return self.envelope.encode()

    @classmethod
    def parse(cls, untrusted: bytes) -> Push:
        return cls(Envelope.parse(untrusted))


@dataclass(frozen=True, slots=True)
class Ack:
    envelope_ids: tuple[bytes, ...]

    def encode(self) -> bytes:
        if not 1 <= len(self.envelope_ids) <= MAX_ACKS_PER_FRAME:
            raise LocalProtocolError(f"an ack names 1 to {MAX_ACKS_PER_FRAME} envelopes")
        w = Writer("ack").u16(len(self.envelope_ids))
        for envelope_id in self.envelope_ids:
            w.fixed(envelope_id, ENVELOPE_ID_BYTES, "envelope id")
        return w.getvalue()

    @classmethod
    def parse(cls, untrusted: bytes) -> Ack:
        r = Reader(untrusted, "ack")
        count = r.u16()
        if not 1 <= count <= MAX_ACKS_PER_FRAME:
            raise r.fail(f"an ack names 1 to {MAX_ACKS_PER_FRAME} envelopes, not {count}")
        value = cls(tuple(r.fixed(ENVELOPE_ID_BYTES) for _ in range(count)))
        r.finish()
        return value


@dataclass(frozen=True, slots=True)
class FetchBundles:
    account_id: str

    def encode(self) -> bytes:
        return _write_text(
            Writer("fetch bundles"), self.account_id, MAX_ACCOUNT_ID_BYTES, "account id"
        ).getvalue()

    @classmethod
    def parse(cls, untrusted: bytes) -> FetchBundles:
        r = Reader(untrusted, "fetch bundles")
        value = cls(_read_text(r, MAX_ACCOUNT_ID_BYTES, "account id"))
        r.finish()
        return value


@dataclass(frozen=True, slots=True)
class DeviceBundle:
    device_id: int
    bundle: bytes
    """A ``PreKeyBundle`` in its own format (app/crypto/keys.py), opaque to the relay."""
    certificate: bytes
    """The device's ``DeviceCertificate``: the fetcher checks that it names this bundle's
    identity key, the account asked for and this device id before it uses the bundle."""


@dataclass(frozen=True, slots=True)
class Bundles:
    devices: tuple[DeviceBundle, ...]

    def encode(self) -> bytes:
        if len(self.devices) > MAX_DEVICES_PER_ACCOUNT:
            raise LocalProtocolError("too many devices")
        w = Writer("bundles").u8(len(self.devices))
        for device in self.devices:
            w.u32(device.device_id).var16(device.bundle, MAX_BUNDLE_BYTES, "bundle")
            w.var16(device.certificate, MAX_CERTIFICATE_FRAME_BYTES, "certificate")
        return w.getvalue()

    @classmethod
    def parse(cls, untrusted: bytes) -> Bundles:
        r = Reader(untrusted, "bundles")
        count = r.u8()
        if count > MAX_DEVICES_PER_ACCOUNT:
            raise r.fail(f"{count} devices exceeds the limit of {MAX_DEVICES_PER_ACCOUNT}")
        value = cls(
            tuple(
                DeviceBundle(
                    r.u32(),
                    r.var16(MAX_BUNDLE_BYTES, "bundle"),
                    r.var16(MAX_CERTIFICATE_FRAME_BYTES, "certificate"),
                )
                for _ in range(count)
            )
        )
        r.finish()
        return value


@dataclass(frozen=True, slots=True)
class UploadPreKeys:
    signed_prekey: SignedPreKeyUpload | None
    one_time_prekeys: tuple[UploadedPreKey, ...]

    def encode(self) -> bytes:
        w = Writer("upload prekeys")
        _write_prekeys(w, self.signed_prekey, self.one_time_prekeys)
        return w.getvalue()

    @classmethod
    def parse(cls, untrusted: bytes) -> UploadPreKeys:
        r = Reader(untrusted, "upload prekeys")
        signed, one_time = _read_prekeys(r)
        r.finish()
        return cls(signed, one_time)


@dataclass(frozen=True, slots=True)
class Count:
    """A bare count: one-time prekeys left after an upload, a notice's value."""

    value: int

    def encode(self) -> bytes:
        return Writer("count").u32(self.value).getvalue()

    @classmethod
    def parse(cls, untrusted: bytes) -> Count:
        r = Reader(untrusted, "count")
        value = cls(r.u32())
        r.finish()
        return value


@dataclass(frozen=True, slots=True)
class DirectoryLookup:
    query: str

    def encode(self) -> bytes:
        return _write_text(Writer("directory lookup"), self.query, MAX_QUERY_BYTES, "query").getvalue()

    @classmethod
    def parse(cls, untrusted: bytes) -> DirectoryLookup:
        r = Reader(untrusted, "directory lookup")
        value = cls(_read_text(r, MAX_QUERY_BYTES, "query"))
        r.finish()
        return value


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    account_id: str
    display_name: str
    department: str


@dataclass(frozen=True, slots=True)
class DirectoryResults:
    entries: tuple[DirectoryEntry, ...]

    def encode(self) -> bytes:
        if len(self.entries) > MAX_DIRECTORY_RESULTS:
            raise LocalProtocolError("too many directory results")
        w = Writer("directory results").u8(len(self.entries))
        for entry in self.entries:
            _write_text(w, entry.account_id, MAX_ACCOUNT_ID_BYTES, "account id")
            _write_text(w, entry.display_name, MAX_DISPLAY_NAME_BYTES, "display name")
            _write_text(w, entry.department, MAX_DEPARTMENT_BYTES, "department")
        return w.getvalue()

    @classmethod
    def parse(cls, untrusted: bytes) -> DirectoryResults:
        r = Reader(untrusted, "directory results")
        count = r.u8()
        if count > MAX_DIRECTORY_RESULTS:
            raise r.fail(f"{count} results exceeds the limit of {MAX_DIRECTORY_RESULTS}")
        entries = tuple(
            DirectoryEntry(
                _read_text(r, MAX_ACCOUNT_ID_BYTES, "account id"),
                _read_text(r, MAX_DISPLAY_NAME_BYTES, "display name"),
                _read_text(r, MAX_DEPARTMENT_BYTES, "department"),
            )
            for _ in range(count)
        )
        r.finish()
        return cls(entries)


@dataclass(frozen=True, slots=True)
class Response:
    """The relay's answer to one request: a status, a reason a user can read, and a body."""

    status: Status
    reason: str = ""
    body: bytes = b""

    def encode(self) -> bytes:
        return (
            Writer("response")
            .u16(self.status)
            .text16(_reason(self.reason), MAX_REASON_BYTES, "reason")
            .raw(self.body)
            .getvalue()
        )

    @classmethod
    def parse(cls, untrusted: bytes) -> Response:
        r = Reader(untrusted, "response")
        status = r.enum(Status, "status", width=2)
        return cls(status, _read_text(r, MAX_REASON_BYTES, "reason"), r.rest())


@dataclass(frozen=True, slots=True)
class Notice:
    kind: NoticeKind
    value: int

    def encode(self) -> bytes:
        return Writer("notice").u8(self.kind).u32(self.value).getvalue()

    @classmethod
    def parse(cls, untrusted: bytes) -> Notice:
        r = Reader(untrusted, "notice")
        kind = r.enum(NoticeKind, "notice kind")
        value = cls(kind, r.u32())
        r.finish()
        return value


@dataclass(frozen=True, slots=True)
class Closing:
    """Sent just before the relay closes a connection, with why (revoked, malformed input)."""

    status: Status
    reason: str

    def encode(self) -> bytes:
        return (
            Writer("closing")
            .u16(self.status)
            .text16(_reason(self.reason), MAX_REASON_BYTES, "reason")
            .getvalue()
        )

    @classmethod
    def parse(cls, untrusted: bytes) -> Closing:
        r = Reader(untrusted, "closing")
        status = r.enum(Status, "status", width=2)
        value = cls(status, _read_text(r, MAX_REASON_BYTES, "reason"))
        r.finish()
        return value
