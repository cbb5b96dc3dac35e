"""Delivery: the outbox over a transport, and what each answer does to the messages and sessions."""

from __future__ import annotations

import pytest

from app.base.errors import OfflineError
from app.services import delivery
from app.services.events import MessageStatusChanged
from app.sync.transport import SendOutcome, TransportState
from storage.records import Message, MessageStatus
from tests.support.devices import Bench, Device, FakeClock, introduce, open_session

TIMER = 60


def _alice_and_bob(bench: Bench, bob_devices: int = 1) -> tuple[Device, list[Device]]:
    """Alice, offline, with a session to each of Bob's devices."""
    alice = bench.device("alice", state=TransportState.OFFLINE)
    bobs = [bench.device("bob", n) for n in range(1, bob_devices + 1)]
    for bob in bobs:
        introduce(alice, bob)
        open_session(alice, bob)
    return alice, bobs


def _queued(bench: Bench, alice: Device, bob: Device, texts: list[str], timer: int = 0) -> list[Message]:
    """Texts sealed into Alice's outbox while her transport is offline (nothing has left)."""
    conversation = alice.direct(bob, timer_seconds=timer)
    messages = [bench.run(alice.sending.send_text(conversation.id, text)) for text in texts]
    if alice.store.unsealed.count():
        raise AssertionError("the texts were expected to be sealed")
    return messages


def _status(device: Device, message: Message) -> MessageStatus:
    return device.store.messages.get(message.id).status


def test_the_first_stored_copy_marks_sent_and_starts_the_countdown_then(bench: Bench) -> None:
    """Test that a message is pending until a copy is stored, then sent, its expiry counting from then."""
    clock = bench.clock
    assert isinstance(clock, FakeClock)
    alice, bobs = _alice_and_bob(bench, bob_devices=2)
    alice.transport.go_online()  # a disappearing message is sealed only online
    alice.transport.answer(SendOutcome.BUSY, SendOutcome.BUSY)
    [message] = _queued(bench, alice, bobs[0], ["two copies"], timer=TIMER)
    bench.until(lambda: len(alice.transport.offered) == 2, "both copies were offered")
    waiting = alice.store.messages.get(message.id)
    assert waiting.status is MessageStatus.PENDING and waiting.expires_at is None

    clock.advance(1000)
    alice.transport.answer(SendOutcome.STORED, SendOutcome.BUSY)
    alice.delivery.kick()
    bench.until(lambda: _status(alice, message) is MessageStatus.SENT, "the message is sent")
    assert [(o.recipient_device, o.answer) for o in alice.transport.offered[2:]] == [
        (1, SendOutcome.STORED),
        (2, SendOutcome.BUSY),
    ]
    sent = alice.store.messages.get(message.id)
    assert sent.expires_at == clock.now + TIMER
    [left] = alice.store.outbox.due(float("inf"))
    assert (left.recipient, left.recipient_device, left.message_id) == ("bob", 2, message.id)

    clock.advance(1000)
    alice.transport.answer(SendOutcome.STORED)
    alice.delivery.kick()
    bench.until(lambda: alice.store.outbox.next_attempt() is None, "the second copy left")
    assert alice.store.messages.get(message.id).expires_at == sent.expires_at, "the countdown started once"
    assert alice.emitted(MessageStatusChanged) == [
        MessageStatusChanged(message.id, message.conversation_id, MessageStatus.SENT)
    ]


def test_busy_stops_the_flush_and_keeps_that_entry_and_those_after_it(bench: Bench) -> None:
    """Test that a busy answer leaves its entry and all later ones queued, in order, untried again."""
    alice, [bob] = _alice_and_bob(bench)
    messages = _queued(bench, alice, bob, ["first", "second", "third"])
    queued = alice.store.outbox.due(float("inf"))
    assert [e.message_id for e in queued] == [m.id for m in messages]

    alice.transport.answer(SendOutcome.STORED, SendOutcome.BUSY, SendOutcome.STORED)
    alice.transport.go_online()
    alice.delivery.kick()
    bench.until(lambda: _status(alice, messages[0]) is MessageStatus.SENT, "the first is sent")
    bench.idle()
    assert len(alice.transport.offered) == 3, "the flush stopped at the busy answer"
    assert alice.store.outbox.due(float("inf")) == queued[1:]
    assert [_status(alice, m) for m in messages[1:]] == [MessageStatus.PENDING] * 2

    alice.delivery.kick()  # what the retry alarm does later
    bench.until(lambda: alice.store.outbox.next_attempt() is None, "the rest left")
    again = [o.envelope.encode() for o in alice.transport.offered[3:]]
    assert again == [e.envelope for e in queued[1:]]
    assert [_status(alice, m) for m in messages] == [MessageStatus.SENT] * 3


def test_gone_drops_the_session_and_hands_the_message_back_when_no_device_took_it(bench: Bench) -> None:
    """Test that a revoked only device loses its session and its message goes back to be sealed again."""
    alice, [bob] = _alice_and_bob(bench)
    [message] = _queued(bench, alice, bob, ["to a revoked device"])
    alice.transport.answer(SendOutcome.GONE)
    alice.transport.go_online()
    alice.delivery.kick()
    bench.until(lambda: alice.requeued == 1, "the message was handed back")

    assert alice.store.sessions.get("bob", 1) is None
    assert alice.store.contacts.device("bob", 1) is not None, "the old key stays on record"
    assert alice.store.unsealed.contains(message.id)
    assert alice.store.outbox.next_attempt() is None
    assert _status(alice, message) is MessageStatus.PENDING
    assert alice.emitted(MessageStatusChanged) == []


def test_gone_for_one_device_while_another_stored_it_marks_the_message_sent(bench: Bench) -> None:
    """Test that a message one device took and another's revocation refused is sent, not sealed again."""
    alice, _ = _alice_and_bob(bench, bob_devices=2)
    [message] = _queued(bench, alice, bench.devices[1], ["one of two"])
    alice.transport.answer(SendOutcome.STORED, SendOutcome.GONE)
    alice.transport.go_online()
    alice.delivery.kick()
    bench.until(lambda: _status(alice, message) is MessageStatus.SENT, "the message is sent")

    assert alice.store.sessions.devices("bob") == [1]
    assert alice.requeued == 0 and not alice.store.unsealed.contains(message.id)


def test_refused_by_the_only_device_marks_the_message_failed(bench: Bench) -> None:
    """Test that a message its only device refused for good is failed, and its copy dropped."""
    alice, [bob] = _alice_and_bob(bench)
    [message] = _queued(bench, alice, bob, ["too late"])
    alice.transport.answer(SendOutcome.REFUSED)
    alice.transport.go_online()
    alice.delivery.kick()
    bench.until(lambda: alice.store.outbox.next_attempt() is None, "the refused copy is dropped")

    assert _status(alice, message) is MessageStatus.FAILED
    assert alice.store.messages.get(message.id).expires_at is None
    assert alice.emitted(MessageStatusChanged) == [
        MessageStatusChanged(message.id, message.conversation_id, MessageStatus.FAILED)
    ]


def test_refused_by_one_device_while_another_stored_it_marks_the_message_sent(bench: Bench) -> None:
    """Test that a copy refused for good does not fail a message another device took."""
    alice, _ = _alice_and_bob(bench, bob_devices=2)
    [message] = _queued(bench, alice, bench.devices[1], ["one of two"])
    alice.transport.answer(SendOutcome.STORED, SendOutcome.REFUSED)
    alice.transport.go_online()
    alice.delivery.kick()
    bench.until(lambda: alice.store.outbox.next_attempt() is None, "both copies settled")
    assert _status(alice, message) is MessageStatus.SENT
    assert alice.store.sessions.devices("bob") == [1, 2], "a refusal is about the envelope, not the device"


def test_a_copy_stored_before_a_restart_still_counts_when_the_last_is_refused(bench: Bench) -> None:
    """Test that a message one device took before a restart is sent when its other copy is refused after."""
    alice, bobs = _alice_and_bob(bench, bob_devices=2)
    [message] = _queued(bench, alice, bobs[0], ["one of two"])
    alice.transport.answer(SendOutcome.STORED, SendOutcome.BUSY)
    alice.transport.go_online()
    alice.delivery.kick()
    bench.until(lambda: len(alice.store.outbox.due(float("inf"))) == 1, "the first copy settled")

    alice = bench.reopen(alice)
    alice.transport.answer(SendOutcome.REFUSED)
    alice.delivery.kick()
    bench.until(lambda: alice.store.outbox.next_attempt() is None, "the second copy settled")
    assert _status(alice, message) is MessageStatus.SENT


def test_an_offline_error_leaves_the_outbox_and_the_session_untouched(bench: Bench) -> None:
    """Test that a send that raises OfflineError changes no entry, message or session."""
    alice, [bob] = _alice_and_bob(bench)
    messages = _queued(bench, alice, bob, ["first", "second"])
    queued = alice.store.outbox.due(float("inf"))
    session = alice.store.sessions.get("bob", 1)

    alice.transport.answer(OfflineError("the link dropped"), OfflineError("the link dropped"))
    alice.transport.go_online()
    alice.delivery.kick()
    bench.until(lambda: len(alice.transport.offered) == 2, "both envelopes offered")
    bench.idle()
    assert alice.store.outbox.due(float("inf")) == queued
    assert alice.store.sessions.get("bob", 1) == session
    assert [_status(alice, m) for m in messages] == [MessageStatus.PENDING] * 2
    assert alice.emitted(MessageStatusChanged) == []


def test_nothing_is_offered_while_the_transport_is_offline(bench: Bench) -> None:
    """Test that an offline transport is not called at all, and the outbox waits whole."""
    alice, [bob] = _alice_and_bob(bench)
    _queued(bench, alice, bob, ["waits"])
    queued = alice.store.outbox.due(float("inf"))
    alice.delivery.kick()
    bench.idle()
    assert alice.transport.offered == []
    assert alice.store.outbox.due(float("inf")) == queued


def test_drained_is_false_at_once_offline_and_true_once_everything_left(bench: Bench) -> None:
    """Test that drained() gives up without waiting while offline, and says True once the outbox is empty."""
    alice, [bob] = _alice_and_bob(bench)
    _queued(bench, alice, bob, ["waits"])
    started = bench.loop.time()
    assert bench.run(alice.delivery.drained(30.0)) is False
    assert bench.loop.time() - started < 15.0, "it did not wait for the timeout"
    assert alice.store.outbox.next_attempt() is not None

    alice.transport.go_online()
    assert bench.run(alice.delivery.drained(30.0)) is True
    assert alice.store.outbox.next_attempt() is None and len(alice.transport.stored) == 1


def test_a_send_that_fails_while_the_transport_stays_online_is_tried_again_unprompted(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that an OfflineError from a transport that is still online (the relay's unidentified socket
    dropped) arms the retry, so the envelope leaves with no new message or reconnection to kick it.

    The retry delay is shortened (a timing constant, not a component) so the test need not wait 15 s."""
    monkeypatch.setattr(delivery, "RETRY_SECONDS", 0.05)
    alice, [bob] = _alice_and_bob(bench)
    [message] = _queued(bench, alice, bob, ["comes back"])
    alice.transport.answer(OfflineError("the delivery path dropped"))
    alice.transport.go_online()
    alice.delivery.kick()
    bench.until(lambda: _status(alice, message) is MessageStatus.SENT, "the envelope left on the retry")
    assert isinstance(alice.transport.offered[0].answer, OfflineError)
    assert alice.transport.offered[-1].answer is SendOutcome.STORED
