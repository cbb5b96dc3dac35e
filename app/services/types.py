"""The values the facade hands to its faces, reached here so that a face never imports storage.

They are the store's own frozen records (plain values, never cursors), and the
directory's entries; a face reads them, it never builds them to call the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.protocol.frames import DirectoryEntry
from app.provisioning.policy import PolicyEntry, Source
from app.services.groupadmin import GroupInfo, GroupReceipts
from app.services.keylog import KeyLogStatus
from storage.keylog import LoggedBinding
from storage.messages import MAX_PAGE_SIZE
from storage.records import (
    Attachment,
    Contact,
    Conversation,
    ConversationKind,
    Identity,
    Message,
    MessageStatus,
    Page,
    PageCursor,
    Trust,
)

__all__ = [
    "MAX_PAGE_SIZE",
    "Attachment",
    "Contact",
    "Conversation",
    "ConversationKind",
    "ConversationSummary",
    "DirectoryEntry",
    "GroupInfo",
    "GroupReceipts",
    "Identity",
    "KeyLogStatus",
    "LoggedBinding",
    "Message",
    "MessageStatus",
    "Page",
    "PageCursor",
    "PolicyEntry",
    "SafetyNumberView",
    "Source",
    "Trust",
]


@dataclass(frozen=True, slots=True)
class SafetyNumberView:
    account_id: str
    device_id: int
    digits: str
    """60 digits; compare them with the colleague's, in person or by phone."""
    qr_payload: bytes
    trust: Trust


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    conversation: Conversation
    unread: int
    blocked: bool
    """A key changed: sending waits until the user accepts it."""
