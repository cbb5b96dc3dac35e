"""The records the repositories hand out: frozen dataclasses and their state enums.

Times are unix seconds (float) from the store's injected clock. A message's ``id`` is
the store's own row id; ``message_id`` is the protocol's id chosen by its sender.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ConversationKind(enum.StrEnum):
    DIRECT = "direct"
    GROUP = "group"
    SECRET = "secret"  # noqa: S105 - a conversation kind, not a password
    """One peer, one device each, timer mandatory; never indexed for search."""


class MessageStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


class Trust(enum.StrEnum):
    UNVERIFIED = "unverified"
    VERIFIED = "verified"
    """The user compared safety numbers for this exact key."""
    CHANGED = "changed"
    """The device's identity key changed since we last saw it; sending is blocked until accepted."""


class PreKeyKind(enum.StrEnum):
    ONE_TIME = "one_time"
    """Signed prekeys live in their own table since schema v6 (``SignedPreKeyRecord``)."""


OUTGOING = ""
"""The ``sender`` of a message we wrote ourselves."""


@dataclass(frozen=True, slots=True)
class Identity:
    account_id: str
    device_id: int
    seed: bytes = field(repr=False)
    created_at: float


@dataclass(frozen=True, slots=True)
class PreKey:
    kind: PreKeyKind
    key_id: int
    private_key: bytes = field(repr=False)
    signature: bytes | None
    created_at: float


@dataclass(frozen=True, slots=True)
class SignedPreKeyRecord:
    """One of this device's signed prekeys: made, then published, then retired, then deleted."""

    key_id: int
    private_key: bytes = field(repr=False)
    signature: bytes
    created_at: float
    published_at: float | None
    """When the relay acknowledged it; None while its upload is not (yet) acknowledged."""
    retired_at: float | None
    """When the next one was published in its place; None while it is the current one."""


@dataclass(frozen=True, slots=True)
class Contact:
    account_id: str
    display_name: str
    department: str
    created_at: float


@dataclass(frozen=True, slots=True)
class ContactDevice:
    account_id: str
    device_id: int
    identity_key: bytes
    trust: Trust
    previous_identity_key: bytes | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class Conversation:
    id: int
    kind: ConversationKind
    peer_account_id: str | None
    group_id: bytes | None
    title: str
    timer_seconds: int
    classification: str
    created_at: float
    secret_id: bytes | None
    """A secret chat's id, the one both devices use in the protocol (16 bytes); None for other kinds."""
    peer_device: int | None
    """The one peer device a secret chat is bound to; None for other kinds and unbound (pre-v4) ones."""


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store; the store assigns its ``id``."""

    conversation_id: int
    message_id: bytes
    body: str = field(repr=False)
    status: MessageStatus
    sent_at: float
    sender: str = OUTGOING
    sender_device: int = 0
    received_at: float | None = None
    expires_at: float | None = None
    expire_after: int = 0
    """The disappearing timer the message carries, in seconds (0: it does not disappear)."""


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    conversation_id: int
    sender: str
    sender_device: int
    message_id: bytes
    body: str = field(repr=False)
    status: MessageStatus
    sent_at: float
    received_at: float | None
    read_at: float | None
    expires_at: float | None
    expire_after: int
    """Seconds from send (outgoing) or from reading (incoming) to ``expires_at``; 0: never."""

    @property
    def outgoing(self) -> bool:
        return self.sender == OUTGOING


@dataclass(frozen=True, slots=True)
class PageCursor:
    """Where the next older page starts: the oldest message of the page just read."""

    sent_at: float
    id: int


@dataclass(frozen=True, slots=True)
class Page:
    messages: tuple[Message, ...]
    """Newest first."""
    older: PageCursor | None
    """Pass as ``before`` to read further back; ``None`` at the start of history."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    message_id: int | None
    recipient: str
    recipient_device: int
    envelope: bytes = field(repr=False)
    created_at: float
    attempts: int
    next_attempt_at: float


@dataclass(frozen=True, slots=True)
class Attachment:
    id: int
    message_id: int
    name: str
    mime_type: str
    size: int
    created_at: float
