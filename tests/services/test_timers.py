"""Disappearing messages: the timer agreed by both sides, expiring on each side and on the relay."""

from __future__ import annotations

import time

from app.services.events import MessageArrived, MessagesExpired, TimerChanged
from tests.support.clients import WAIT_SECONDS, Client, first_message, open_client

TIMER = 2


def test_timer_is_agreed_and_messages_expire_on_both_sides(pair: tuple[Client, Client]) -> None:
    """Test that the peer adopts the timer; the sender's copy expires from sending, the reader's reading."""
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

    sent = alice.enclave.send_text(conversation.id, "this will vanish").result(WAIT_SECONDS)
    assert sent.expire_after == TIMER and sent.expires_at is not None
    arrived = bob.wait_for(MessageArrived)
    assert arrived.message.expire_after == TIMER and arrived.message.expires_at is None
    alice.wait_for(MessagesExpired, lambda e: sent.id in e.message_ids, timeout=TIMER + 10)
    assert [m.body for m in alice.enclave.history(conversation.id).result(WAIT_SECONDS).messages] == [
        "before the timer"
    ]

    time.sleep(TIMER + 0.5)
    assert len(bob.enclave.history(bob_conversation.id).result(WAIT_SECONDS).messages) == 2, (
        "the recipient's countdown starts when the message is read, not when it arrives"
    )
    bob.enclave.mark_read(bob_conversation.id).result(WAIT_SECONDS)
    bob.wait_for(MessagesExpired, lambda e: arrived.message.id in e.message_ids, timeout=TIMER + 10)
    remaining = bob.enclave.history(bob_conversation.id).result(WAIT_SECONDS).messages
    assert [m.body for m in remaining] == ["before the timer"]
    assert bob.enclave.search("vanish").result(WAIT_SECONDS) == []


def test_the_relay_drops_an_envelope_when_its_message_would_have_disappeared(
    pair: tuple[Client, Client],
) -> None:
    """Test that a disappearing message to a recipient who stays offline past its timer never arrives."""
    alice, bob = pair
    conversation, _ = first_message(alice, bob, "hello")
    alice.enclave.set_timer(conversation.id, TIMER).result(WAIT_SECONDS)
    bob.wait_for(TimerChanged)
    bob.close()

    alice.enclave.send_text(conversation.id, "too late").result(WAIT_SECONDS)
    time.sleep(TIMER + 2)
    alice.enclave.set_timer(conversation.id, 0).result(WAIT_SECONDS)
    alice.enclave.send_text(conversation.id, "after").result(WAIT_SECONDS)

    reopened = open_client(bob.profile)
    try:
        arrived = reopened.wait_for(MessageArrived)
        assert arrived.message.body == "after"
        bodies = [
            m.body for m in reopened.enclave.history(arrived.conversation.id).result(WAIT_SECONDS).messages
        ]
        assert bodies == ["after", "hello"]
    finally:
        reopened.close()
