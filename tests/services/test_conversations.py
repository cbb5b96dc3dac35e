"""Conversations: reading (countdowns and read receipts) and changing a timer, with real stores."""

from __future__ import annotations

import math

import pytest

from app.base.errors import OfflineError
from app.services.events import MessageArrived, MessageStatusChanged, TimerChanged
from storage.records import Message, MessageStatus
from tests.support.devices import CERTIFICATE_SECONDS, Bench, Device, FakeClock, open_session

TIMER = 60


@pytest.fixture
def clock(bench: Bench) -> FakeClock:
    assert isinstance(bench.clock, FakeClock)
    return bench.clock


def _arrived(bench: Bench, alice: Device, bob: Device) -> tuple[Message, Message]:
    """Alice's timed message, delivered to Bob, whose delivery receipt went back: (hers, his)."""
    open_session(alice, bob)
    mine = bench.run(alice.sending.send_text(alice.direct(bob, timer_seconds=TIMER).id, "read me"))
    bench.deliver(alice, bob)
    bench.deliver(bob, alice)
    if alice.store.messages.get(mine.id).status is not MessageStatus.DELIVERED:
        raise AssertionError("the delivery receipt did not arrive")
    [theirs] = bob.emitted(MessageArrived)
    return mine, theirs.message


def test_reading_starts_the_countdown_and_sends_a_read_receipt(
    bench: Bench, clock: FakeClock, alice: Device, bob: Device
) -> None:
    """Test that marking read starts each message's timer from now and tells the sender it was read."""
    mine, theirs = _arrived(bench, alice, bob)
    assert theirs.expire_after == TIMER and theirs.expires_at is None, "no countdown before reading"
    clock.advance(500)

    assert bob.conversations.mark_read(theirs.conversation_id) == 1
    read = bob.store.messages.get(theirs.id)
    assert read.status is MessageStatus.READ and read.read_at == clock.now
    assert read.expires_at == clock.now + TIMER
    assert MessageStatusChanged(theirs.id, theirs.conversation_id, MessageStatus.READ) in bob.events
    assert bob.receipts.seal_due(math.inf) == 1
    [receipt] = bob.store.outbox.due(float("inf"))
    assert (receipt.recipient, receipt.recipient_device, receipt.message_id) == ("alice", 1, None)

    bench.deliver(bob, alice)
    assert alice.store.messages.get(mine.id).status is MessageStatus.READ


def test_reading_with_read_receipts_off_starts_the_countdown_and_tells_nobody(
    bench: Bench, clock: FakeClock, alice: Device, bob: Device
) -> None:
    """Test that with read receipts off, reading still starts the timer but queues no receipt."""
    mine, theirs = _arrived(bench, alice, bob)
    bob.conversations.set_read_receipts(False)
    clock.advance(500)

    assert bob.conversations.mark_read(theirs.conversation_id) == 1
    assert bob.store.messages.get(theirs.id).expires_at == clock.now + TIMER
    assert bob.store.outbox.next_attempt() is None
    assert alice.store.messages.get(mine.id).status is MessageStatus.DELIVERED


def test_reading_again_changes_nothing(bench: Bench, alice: Device, bob: Device) -> None:
    """Test that marking a conversation read twice counts nothing and queues no second receipt."""
    _, theirs = _arrived(bench, alice, bob)
    assert bob.conversations.mark_read(theirs.conversation_id) == 1
    assert bob.store.pending_receipts.count() == 1
    assert bob.conversations.mark_read(theirs.conversation_id) == 0
    assert bob.store.pending_receipts.count() == 1


def test_a_timer_cannot_be_changed_offline_without_a_session(
    bench: Bench, alice: Device, bob: Device
) -> None:
    """Test that a timer change that needs the relay is refused and leaves the timer as it was."""
    conversation = alice.direct(bob)
    with pytest.raises(OfflineError):
        bench.run(alice.conversations.set_timer(conversation.id, TIMER))
    assert alice.store.conversations.get(conversation.id).timer_seconds == 0
    assert alice.emitted(TimerChanged) == [] and alice.store.outbox.next_attempt() is None


def test_a_timer_cannot_be_changed_with_an_expired_certificate(
    bench: Bench, clock: FakeClock, alice: Device, bob: Device
) -> None:
    """Test that without a fresh certificate from the relay the timer change is refused, unchanged."""
    open_session(alice, bob)
    conversation = alice.direct(bob)
    clock.advance(CERTIFICATE_SECONDS + 1)
    with pytest.raises(OfflineError):
        bench.run(alice.conversations.set_timer(conversation.id, TIMER))
    assert alice.store.conversations.get(conversation.id).timer_seconds == 0
    assert alice.emitted(TimerChanged) == [] and alice.store.outbox.next_attempt() is None


def test_a_timer_change_reaches_the_peer(bench: Bench, alice: Device, bob: Device) -> None:
    """Test that a timer change is kept here and adopted by the peer from its control message."""
    open_session(alice, bob)
    conversation = alice.direct(bob)
    updated = bench.run(alice.conversations.set_timer(conversation.id, TIMER))
    assert updated.timer_seconds == TIMER
    assert alice.emitted(TimerChanged) == [TimerChanged(conversation.id, TIMER, by_peer=False)]

    bench.deliver(alice, bob)
    [changed] = bob.emitted(TimerChanged)
    assert (changed.timer_seconds, changed.by_peer) == (TIMER, True)
    assert bob.store.conversations.get(changed.conversation_id).timer_seconds == TIMER
