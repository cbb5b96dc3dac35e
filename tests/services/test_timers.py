"""Disappearing messages: the timer agreed by both sides, expiring on each side and on the relay."""

from __future__ import annotations

import time

from app.services.events import MessageArrived, MessagesExpired, MessageStatusChanged, TimerChanged
from app.services.types import Message, MessageStatus
from tests.support.clients import WAIT_SECONDS, Client, first_message, open_client, until
from tests.support.mailbox import deliverable
from tests.support.relay import RelayProcess

TIMER = 2
HOUR = 3600.0


def _message(client: Client, conversation_id: int, message_id: int) -> Message:
    page = client.enclave.history(conversation_id, limit=500).result(WAIT_SECONDS)
    [message] = [m for m in page.messages if m.id == message_id]
    return message


def _sent(client: Client, message: Message) -> None:
    client.wait_for(
        MessageStatusChanged, lambda e: e.message_id == message.id and e.status is MessageStatus.SENT
    )


def test_timer_is_agreed_and_messages_expire_on_both_sides(pair: tuple[Client, Client]) -> None:
    """Test that the peer adopts the timer; the sender's copy expires from leaving, the reader's reading."""
    alice, bob = pair
    conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
    alice.enclave.send_text(conversation.id, "before the timer").result(WAIT_SECONDS)
    bob_conversation = bob.wait_for(MessageArrived).conversation

    alice.enclave.set_timer(conversation.id, TIMER).result(WAIT_SECONDS)
    changed = bob.wait_for(TimerChanged)
    assert (changed.conversation_id, changed.timer_seconds, changed.by_peer) == (
        bob_conversation.id,
        TIMER,
        True,
    )
    [summary] = bob.enclave.conversations().result(WAIT_SECONDS)
    assert summary.conversation.timer_seconds == TIMER

    before = time.time()
    sent = alice.enclave.send_text(conversation.id, "this will vanish").result(WAIT_SECONDS)
    assert sent.expire_after == TIMER
    _sent(alice, sent)
    leaving = _message(alice, conversation.id, sent.id)
    assert leaving.expires_at is not None and before + TIMER <= leaving.expires_at <= time.time() + TIMER
    arrived = bob.wait_for(MessageArrived)
    assert arrived.message.expire_after == TIMER and arrived.message.expires_at is None
    alice.wait_for(MessagesExpired, lambda e: sent.id in e.message_ids, timeout=TIMER + 10)
    assert [m.body for m in alice.enclave.history(conversation.id).result(WAIT_SECONDS).messages] == [
        "before the timer"
    ]

    unread = _message(bob, bob_conversation.id, arrived.message.id)
    assert unread.expires_at is None, "the recipient's countdown starts when the message is read"
    bob.enclave.mark_read(bob_conversation.id).result(WAIT_SECONDS)
    bob.wait_for(MessagesExpired, lambda e: arrived.message.id in e.message_ids, timeout=TIMER + 10)
    remaining = bob.enclave.history(bob_conversation.id).result(WAIT_SECONDS).messages
    assert [m.body for m in remaining] == ["before the timer"]
    assert bob.enclave.search("vanish").result(WAIT_SECONDS) == []


def test_a_disappearing_message_that_has_not_left_is_never_swept(
    relay: RelayProcess, pair: tuple[Client, Client]
) -> None:
    """Test that a timed message written offline survives past its timer, leaves, and only then counts down.

    The sender's clock is moved an hour on while the relay is down (an injected clock;
    opening the profile sweeps what is due): a message whose countdown had started at
    writing would be gone.
    """
    alice, bob = pair
    conversation, _ = first_message(alice, bob, "hello")
    alice.enclave.set_timer(conversation.id, TIMER).result(WAIT_SECONDS)
    bob.wait_for(TimerChanged)

    relay.stop()
    written = alice.enclave.send_text(conversation.id, "typed while the relay was down").result(WAIT_SECONDS)
    assert written.status is MessageStatus.PENDING and written.expires_at is None
    alice.close()
    later = open_client(alice.profile, clock=lambda: time.time() + HOUR)
    try:
        assert [m.id for m in later.enclave.pending().result(WAIT_SECONDS)] == [written.id]
        relay.start()
        arrived = bob.wait_for(MessageArrived, timeout=30)
        assert arrived.message.body == "typed while the relay was down"
        _sent(later, written)
        left = _message(later, conversation.id, written.id)
        assert left.expires_at is not None and left.expires_at >= time.time() + HOUR
        later.wait_for(MessagesExpired, lambda e: written.id in e.message_ids, timeout=TIMER + 10)
    finally:
        later.close()


def test_a_disappearing_message_that_arrives_after_its_timer_is_never_shown(
    relay: RelayProcess, pair: tuple[Client, Client]
) -> None:
    """Test that a disappearing message to a recipient who stays offline past its timer waits at the
    relay like any envelope, and is dropped, unshown and acked, when it arrives."""
    alice, bob = pair
    conversation, _ = first_message(alice, bob, "hello")
    alice.enclave.set_timer(conversation.id, TIMER).result(WAIT_SECONDS)
    bob.wait_for(TimerChanged)
    assert bob.enclave.account is not None
    device_id = bob.enclave.account.device_id
    bob.close()
    waiting = deliverable(relay, device_id)  # a control message whose ack the close may have cut off

    late = alice.enclave.send_text(conversation.id, "too late").result(WAIT_SECONDS)
    _sent(alice, late)
    assert deliverable(relay, device_id) == waiting + 1
    alice.enclave.set_timer(conversation.id, 0).result(WAIT_SECONDS)
    alice.enclave.send_text(conversation.id, "after").result(WAIT_SECONDS)

    reopened = open_client(bob.profile, clock=lambda: time.time() + HOUR)
    try:
        arrived = reopened.wait_for(MessageArrived)
        assert arrived.message.body == "after"
        bodies = [
            m.body for m in reopened.enclave.history(arrived.conversation.id).result(WAIT_SECONDS).messages
        ]
        assert bodies == ["after", "hello"]
        until(lambda: deliverable(relay, device_id) == 0, "every envelope is acked")
    finally:
        reopened.close()
