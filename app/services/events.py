"""What the core tells its faces (desktop window, CLI): plain values passed to one callback.

The listener is called on the core's worker thread; a Qt face re-emits each event as a
signal with a queued connection, the CLI prints it. Events carry records, never
cursors or live objects, so a face can keep them as long as it likes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from storage.records import Conversation, Message, MessageStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MessageArrived:
    message: Message
    conversation: Conversation
    preview: str | None
    """What a notification may show; None in a secret chat, whose notifications say nothing."""


@dataclass(frozen=True, slots=True)
class MessageStatusChanged:
    message_id: int
    conversation_id: int
    status: MessageStatus


@dataclass(frozen=True, slots=True)
class MessageHeld:
    """A message waits on this device until the user accepts ``account_id``'s new key.

    No message has been encrypted for the new key yet (a delivery receipt for what that
    device sent may have been); the message leaves once the user has compared safety
    numbers and accepted it (``accept_key_change``).
    """

    message_id: int
    conversation_id: int
    account_id: str


@dataclass(frozen=True, slots=True)
class MessagesExpired:
    message_ids: tuple[int, ...]
    """Remove these from the screen: they are already gone from the store."""


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    state: str
    """``offline``, ``connecting``, ``online``, ``refused`` (this device was cut off) or ``stopped``."""
    reason: str


@dataclass(frozen=True, slots=True)
class KeyChanged:
    """A contact's device presented a new identity key; sending to the contact waits for the user."""

    account_id: str
    device_id: int


@dataclass(frozen=True, slots=True)
class TimerChanged:
    conversation_id: int
    timer_seconds: int
    by_peer: bool


@dataclass(frozen=True, slots=True)
class ConversationStarted:
    """The peer opened a conversation this device did not have (e.g. a secret chat)."""

    conversation: Conversation


@dataclass(frozen=True, slots=True)
class Problem:
    """Something on this device needs the user's attention (a full disk, a failing store).

    The engine keeps going; what could not be done is retried (an arriving message stays
    on the relay and is fetched again).
    """

    message: str


@dataclass(frozen=True, slots=True)
class MessageUnreadable:
    """A message arrived that this device could not decrypt or check: it was dropped, nothing of
    it can be shown, and its sender does not learn it (there is no negative receipt).

    The sender is named when the sealed layer opened and its certificate checked; otherwise
    (``None``) the envelope did not say who sent it. ``reason`` is the error's own words.
    """

    account_id: str | None
    device_id: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class DeviceAddedToAccount:
    """The key log shows a device added to this user's account after this one: if the user did
    not enrol it, someone else can read what is sent to them from now on."""

    device_id: int
    added_at: int
    """Unix seconds, as the relay logged it."""


@dataclass(frozen=True, slots=True)
class LogForked:
    """The key log was rewritten or shows different people different logs: sending stopped."""

    reason: str


@dataclass(frozen=True, slots=True)
class GroupChanged:
    """A group's state changed (its conversation's title, members, admins or timer may have)."""

    conversation_id: int
    group_id: bytes


@dataclass(frozen=True, slots=True)
class GroupChangeIgnored:
    """A change of a group was not applied: a forgery, a change by someone who is not an admin, or
    one made while its author's rights were being taken away. ``reason`` says which."""

    group_id: bytes
    account_id: str
    """Who the change claims as its author (for a forgery, not who made it)."""
    reason: str


Event = (
    MessageArrived
    | MessageStatusChanged
    | MessageHeld
    | MessagesExpired
    | ConnectionChanged
    | KeyChanged
    | TimerChanged
    | ConversationStarted
    | Problem
    | MessageUnreadable
    | DeviceAddedToAccount
    | LogForked
    | GroupChanged
    | GroupChangeIgnored
)
Listener = Callable[[Event], None]


class Emitter:
    """How the core's parts tell the face: one listener, and a failing listener never stops the core."""

    def __init__(self, listener: Listener) -> None:
        self._listener = listener

    def emit(self, *events: Event) -> None:
        for event in events:
            try:
                self._listener(event)
            except Exception:
                log.exception("an event listener failed")
