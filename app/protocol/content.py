"""What a session message carries once decrypted: content and control messages.

Content is a text or a file pointer; control messages are receipts, timer changes and
key updates. All share one framing, ``version || kind || body``, padded with ISO/IEC
7816-4 padding (libsodium's ``sodium_pad``) to a multiple of ``PADDING_BLOCK_BYTES``
before encryption, so a ciphertext's length says little about its text.

``parse_content`` raises ``RemoteProtocolError`` (or its ``UnsupportedVersionError``)
for anything it refuses and nothing else. docs/PROTOCOL.md, "Content".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import nacl.exceptions
from nacl import bindings

from app.base.codec import Reader, Writer
from app.base.errors import LocalProtocolError, RemoteProtocolError
from app.base.limits import (
    KEY_BYTES,
    MAX_ATTACHMENT_BYTES,
    MAX_FILENAME_BYTES,
    MAX_MIME_TYPE_BYTES,
    MAX_PLAINTEXT_BYTES,
    MAX_RECEIPT_MESSAGE_IDS,
    MAX_TEXT_BYTES,
    MAX_TIMER_SECONDS,
    PADDING_BLOCK_BYTES,
)
from app.protocol.checkpoint import MAX_NOTE_BYTES

CONTENT_VERSION = 1
CONTENT_VERSIONS = frozenset({CONTENT_VERSION})
MESSAGE_ID_BYTES = 16
GROUP_ID_BYTES = 16
SECRET_ID_BYTES = 16
DIGEST_BYTES = 32
MAX_ATTACHMENT_ID_BYTES = 64
MAX_GROUP_CHANGES = 1000
"""Changes in one group changes content (a new member's welcome is split to fit)."""

_FLAG_GROUP = 0x01
_FLAG_SECRET = 0x02
_FLAG_LOG_HEAD = 0x04
_KNOWN_FLAGS = _FLAG_GROUP | _FLAG_SECRET | _FLAG_LOG_HEAD


class ContentKind(IntEnum):
    TEXT = 1
    FILE = 2
    RECEIPT = 3
    TIMER_CHANGE = 4
    KEY_UPDATE = 5
    GROUP_CHANGES = 6


class ReceiptType(IntEnum):
    DELIVERED = 1
    READ = 2


class KeyUpdateAction(IntEnum):
    RESET_SESSION = 1
    """The sender lost or discarded the session; the recipient starts a new one with X3DH."""


def _check_length(value: bytes, n: int, field: str) -> None:
    if len(value) != n:
        raise LocalProtocolError(f"{field} must be {n} bytes")


def _check_range(value: int, low: int, high: int, field: str) -> None:
    if not low <= value <= high:
        raise LocalProtocolError(f"{field} {value} is outside {low}..{high}")


def _check_text(value: str, limit: int, field: str, *, allow_empty: bool = True) -> None:
    size = len(value.encode("utf-8", errors="surrogatepass"))
    if size > limit:
        raise LocalProtocolError(f"{field} of {size} bytes exceeds the limit of {limit}")
    if not allow_empty and not value:
        raise LocalProtocolError(f"{field} may not be empty")


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """What every user-visible message carries besides its body."""

    message_id: bytes
    sent_at: int
    """Milliseconds since the Unix epoch, by the sender's clock."""
    expire_after: int
    """Disappearing timer in seconds (0: the message does not disappear)."""
    group_id: bytes | None = None
    secret_id: bytes | None = None
    """The secret chat the message belongs to (None: the direct conversation or a group)."""
    log_head: bytes | None = None
    """The newest key log head the sender accepted (a signed note), for the recipient to check
    against its own (docs/PROTOCOL.md, "What a reader checks")."""

    def __post_init__(self) -> None:
        _check_length(self.message_id, MESSAGE_ID_BYTES, "message id")
        _check_range(self.sent_at, 0, 2**63 - 1, "sent_at")
        _check_range(self.expire_after, 0, MAX_TIMER_SECONDS, "timer")
        _check_scope(self.group_id, self.secret_id, self.log_head)
        if self.secret_id is not None and self.expire_after == 0:
            raise LocalProtocolError("a secret chat message must carry a timer")

    def write(self, w: Writer) -> None:
        w.fixed(self.message_id, MESSAGE_ID_BYTES, "message id").u64(self.sent_at).u32(self.expire_after)
        _write_scope(w, self.group_id, self.secret_id, self.log_head)

    @classmethod
    def read(cls, r: Reader) -> MessageHeader:
        message_id, sent_at, expire_after = r.fixed(MESSAGE_ID_BYTES), r.u64(), r.u32()
        return cls(message_id, sent_at, expire_after, *_read_scope(r))


def _check_scope(group_id: bytes | None, secret_id: bytes | None, log_head: bytes | None) -> None:
    if group_id is not None:
        _check_length(group_id, GROUP_ID_BYTES, "group id")
    if secret_id is not None:
        _check_length(secret_id, SECRET_ID_BYTES, "secret chat id")
    if group_id is not None and secret_id is not None:
        raise LocalProtocolError("a message belongs to a group or a secret chat, not both")
    if log_head is not None and not 1 <= len(log_head) <= MAX_NOTE_BYTES:
        raise LocalProtocolError(f"a key log head is 1 to {MAX_NOTE_BYTES} bytes")


def _write_scope(w: Writer, group_id: bytes | None, secret_id: bytes | None, log_head: bytes | None) -> None:
    """The flags byte and what it announces: which conversation besides the direct one, and the
    sender's key log head."""
    flags = (
        (_FLAG_GROUP if group_id is not None else 0)
        | (_FLAG_SECRET if secret_id is not None else 0)
        | (_FLAG_LOG_HEAD if log_head is not None else 0)
    )
    w.u8(flags)
    if group_id is not None:
        w.fixed(group_id, GROUP_ID_BYTES, "group id")
    if secret_id is not None:
        w.fixed(secret_id, SECRET_ID_BYTES, "secret chat id")
    if log_head is not None:
        w.var16(log_head, MAX_NOTE_BYTES, "key log head")


def _read_scope(r: Reader) -> tuple[bytes | None, bytes | None, bytes | None]:
    flags = r.u8()
    if flags & ~_KNOWN_FLAGS:
        raise r.fail(f"unknown flags {flags:#04x}")
    if flags & (_FLAG_GROUP | _FLAG_SECRET) == _FLAG_GROUP | _FLAG_SECRET:
        raise r.fail("both a group id and a secret chat id")
    group_id = r.fixed(GROUP_ID_BYTES) if flags & _FLAG_GROUP else None
    secret_id = r.fixed(SECRET_ID_BYTES) if flags & _FLAG_SECRET else None
    log_head = r.var16(MAX_NOTE_BYTES, "key log head") if flags & _FLAG_LOG_HEAD else None
    if log_head == b"":
        raise r.fail("an empty key log head")
    return group_id, secret_id, log_head


@dataclass(frozen=True, slots=True)
class TextMessage:
    header: MessageHeader
    text: str

    kind = ContentKind.TEXT

    def __post_init__(self) -> None:
        _check_text(self.text, MAX_TEXT_BYTES, "text", allow_empty=False)

    def write(self, w: Writer) -> None:
        self.header.write(w)
        w.var32(self.text.encode("utf-8"), MAX_TEXT_BYTES, "text")

    @classmethod
    def read(cls, r: Reader) -> TextMessage:
        header = MessageHeader.read(r)
        return cls(header, _utf8(r, r.var32(MAX_TEXT_BYTES, "text"), "text"))


@dataclass(frozen=True, slots=True)
class FileMessage:
    """A pointer to an encrypted blob on the relay, with the key that opens it."""

    header: MessageHeader
    attachment_id: bytes
    key: bytes
    digest: bytes
    """SHA-256 of the encrypted blob as uploaded."""
    size: int
    """Size of the decrypted file in bytes."""
    filename: str
    mime_type: str
    caption: str = ""

    kind = ContentKind.FILE

    def __post_init__(self) -> None:
        if not 1 <= len(self.attachment_id) <= MAX_ATTACHMENT_ID_BYTES:
            raise LocalProtocolError("an attachment id is 1 to 64 bytes")
        _check_length(self.key, KEY_BYTES, "attachment key")
        _check_length(self.digest, DIGEST_BYTES, "attachment digest")
        _check_range(self.size, 0, MAX_ATTACHMENT_BYTES, "attachment size")
        _check_text(self.filename, MAX_FILENAME_BYTES, "file name", allow_empty=False)
        _check_text(self.mime_type, MAX_MIME_TYPE_BYTES, "MIME type")
        _check_text(self.caption, MAX_TEXT_BYTES, "caption")

    def write(self, w: Writer) -> None:
        self.header.write(w)
        w.var16(self.attachment_id, MAX_ATTACHMENT_ID_BYTES, "attachment id")
        w.fixed(self.key, KEY_BYTES, "attachment key").fixed(self.digest, DIGEST_BYTES, "digest")
        w.u64(self.size)
        w.text16(self.filename, MAX_FILENAME_BYTES, "file name")
        w.text16(self.mime_type, MAX_MIME_TYPE_BYTES, "MIME type")
        w.var32(self.caption.encode("utf-8"), MAX_TEXT_BYTES, "caption")

    @classmethod
    def read(cls, r: Reader) -> FileMessage:
        return cls(
            header=MessageHeader.read(r),
            attachment_id=r.var16(MAX_ATTACHMENT_ID_BYTES, "attachment id"),
            key=r.fixed(KEY_BYTES),
            digest=r.fixed(DIGEST_BYTES),
            size=r.u64(),
            filename=r.text16(MAX_FILENAME_BYTES, "file name"),
            mime_type=r.text16(MAX_MIME_TYPE_BYTES, "MIME type"),
            caption=_utf8(r, r.var32(MAX_TEXT_BYTES, "caption"), "caption"),
        )


@dataclass(frozen=True, slots=True)
class Receipt:
    receipt_type: ReceiptType
    timestamp: int
    """Milliseconds since the Unix epoch when the messages were delivered or read."""
    message_ids: tuple[bytes, ...]

    kind = ContentKind.RECEIPT

    def __post_init__(self) -> None:
        _check_range(len(self.message_ids), 1, MAX_RECEIPT_MESSAGE_IDS, "receipt message count")
        for message_id in self.message_ids:
            _check_length(message_id, MESSAGE_ID_BYTES, "message id")
        _check_range(self.timestamp, 0, 2**63 - 1, "timestamp")

    def write(self, w: Writer) -> None:
        w.u8(self.receipt_type).u64(self.timestamp).u16(len(self.message_ids))
        for message_id in self.message_ids:
            w.fixed(message_id, MESSAGE_ID_BYTES, "message id")

    @classmethod
    def read(cls, r: Reader) -> Receipt:
        receipt_type = r.enum(ReceiptType, "receipt type")
        timestamp, count = r.u64(), r.u16()
        if count > MAX_RECEIPT_MESSAGE_IDS:
            raise r.fail(f"{count} message ids exceeds the limit of {MAX_RECEIPT_MESSAGE_IDS}")
        return cls(receipt_type, timestamp, tuple(r.fixed(MESSAGE_ID_BYTES) for _ in range(count)))


@dataclass(frozen=True, slots=True)
class TimerChange:
    """The conversation's disappearing timer, agreed by an encrypted control message."""

    timer_seconds: int
    changed_at: int
    group_id: bytes | None = None
    secret_id: bytes | None = None
    log_head: bytes | None = None

    kind = ContentKind.TIMER_CHANGE

    def __post_init__(self) -> None:
        _check_range(self.timer_seconds, 0, MAX_TIMER_SECONDS, "timer")
        _check_range(self.changed_at, 0, 2**63 - 1, "changed_at")
        _check_scope(self.group_id, self.secret_id, self.log_head)
        if self.secret_id is not None and self.timer_seconds == 0:
            raise LocalProtocolError("a secret chat's timer cannot be turned off")

    def write(self, w: Writer) -> None:
        w.u64(self.changed_at).u32(self.timer_seconds)
        _write_scope(w, self.group_id, self.secret_id, self.log_head)

    @classmethod
    def read(cls, r: Reader) -> TimerChange:
        changed_at, timer_seconds = r.u64(), r.u32()
        return cls(timer_seconds, changed_at, *_read_scope(r))


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    action: KeyUpdateAction

    kind = ContentKind.KEY_UPDATE

    def write(self, w: Writer) -> None:
        w.u8(self.action)

    @classmethod
    def read(cls, r: Reader) -> KeyUpdate:
        return cls(r.enum(KeyUpdateAction, "key update action"))


@dataclass(frozen=True, slots=True)
class GroupChanges:
    """Changes of one or more groups, as their encodings (app/protocol/groupchange.py): each is
    parsed and verified by the service that takes it, so one bad change spoils no other."""

    changes: tuple[bytes, ...]

    kind = ContentKind.GROUP_CHANGES

    def write(self, w: Writer) -> None:
        if not 1 <= len(self.changes) <= MAX_GROUP_CHANGES:
            raise LocalProtocolError(f"a group changes content carries 1 to {MAX_GROUP_CHANGES} changes")
        w.u16(len(self.changes))
        for change in self.changes:
            if not change:
                raise LocalProtocolError("a group change is empty")
            w.var32(change, MAX_PLAINTEXT_BYTES, "group change")

    @classmethod
    def read(cls, r: Reader) -> GroupChanges:
        count = r.u16()
        if not 1 <= count <= MAX_GROUP_CHANGES:
            raise r.fail(f"a group changes content carries 1 to {MAX_GROUP_CHANGES} changes")
        changes = tuple(r.var32(MAX_PLAINTEXT_BYTES, "group change") for _ in range(count))
        if not all(changes):
            raise r.fail("a group change is empty")
        return cls(changes)


Content = TextMessage | FileMessage | Receipt | TimerChange | KeyUpdate | GroupChanges
_READERS: dict[int, type[TextMessage | FileMessage | Receipt | TimerChange | KeyUpdate | GroupChanges]] = {
    cls.kind: cls for cls in (TextMessage, FileMessage, Receipt, TimerChange, KeyUpdate, GroupChanges)
}


def _utf8(r: Reader, raw: bytes, field: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise r.fail(f"{field} is not valid UTF-8") from e


def encode_content(content: Content) -> bytes:
    """The padded plaintext a session message encrypts."""
    w = Writer("content").u8(CONTENT_VERSION).u8(content.kind)
    content.write(w)
    return bindings.sodium_pad(w.getvalue(), PADDING_BLOCK_BYTES)


def parse_content(untrusted: bytes) -> Content:
    """Unpad and parse decrypted content; refuse anything malformed with ``RemoteProtocolError``."""
    if not untrusted or len(untrusted) % PADDING_BLOCK_BYTES or len(untrusted) > MAX_PLAINTEXT_BYTES:
        raise RemoteProtocolError("malformed content: not a whole number of padding blocks")
    try:
        unpadded = bindings.sodium_unpad(untrusted, PADDING_BLOCK_BYTES)
    except nacl.exceptions.CryptoError as e:
        raise RemoteProtocolError("malformed content: bad padding") from e
    r = Reader(unpadded, "content")
    r.version(supported=CONTENT_VERSIONS, known=CONTENT_VERSIONS)
    reader = _READERS.get(r.u8())
    if reader is None:
        raise r.fail("unknown content kind")
    try:
        content = reader.read(r)
    except LocalProtocolError as e:
        raise r.fail(str(e)) from e
    r.finish()
    return content
