"""ExpirySchedule: disappearing messages swept on time on the running loop, and the face told."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.protocol.content import MESSAGE_ID_BYTES
from app.services.events import MessagesExpired
from storage.errors import NotFoundError
from storage.records import ConversationKind, Message, MessageStatus, NewMessage
from tests.support.devices import Bench, Device

SOON = 0.2
"""Seconds until the short-lived message is due (the wait for it is bounded, not slept)."""
TIMER = 3600


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    opened = Bench(tmp_path, clock=time.time)
    yield opened
    opened.close()


def _received(bench: Bench, device: Device, conversation_id: int, expires_at: float | None) -> Message:
    return device.store.messages.add(
        NewMessage(
            conversation_id=conversation_id,
            message_id=bench.random(MESSAGE_ID_BYTES),
            body="a message",
            status=MessageStatus.READ,
            sent_at=time.time(),
            sender="bob",
            sender_device=1,
            expires_at=expires_at,
            expire_after=TIMER if expires_at is not None else 0,
        )
    )


def test_a_due_message_is_swept_on_time_and_the_face_told(bench: Bench, alice: Device) -> None:
    """Test that a message is deleted once due, ahead of one due later, and MessagesExpired names it."""
    conversation = alice.store.conversations.create(ConversationKind.DIRECT, peer_account_id="bob")
    keeps = _received(bench, alice, conversation.id, None)
    later = _received(bench, alice, conversation.id, time.time() + TIMER)
    soon = _received(bench, alice, conversation.id, time.time() + SOON)
    assert soon.expires_at is not None

    bench.until(lambda: bool(alice.emitted(MessagesExpired)), "the short-lived message expired")
    assert time.time() >= soon.expires_at, "not swept before its time"
    assert alice.emitted(MessagesExpired) == [MessagesExpired((soon.id,))]
    with pytest.raises(NotFoundError):
        alice.store.messages.get(soon.id)
    assert [alice.store.messages.get(m.id).id for m in (keeps, later)] == [keeps.id, later.id]


def test_a_countdown_started_later_is_swept_too(bench: Bench, alice: Device) -> None:
    """Test that an expiry written after the schedule started (a message read) arms it for that time."""
    conversation = alice.store.conversations.create(ConversationKind.DIRECT, peer_account_id="bob")
    unread = _received(bench, alice, conversation.id, None)
    alice.store.messages.set_expiry(unread.id, time.time() + SOON)

    bench.until(lambda: bool(alice.emitted(MessagesExpired)), "the read message expired")
    assert alice.emitted(MessagesExpired) == [MessagesExpired((unread.id,))]
    assert alice.store.messages.count() == 0
