"""Sending: storing, sealing and queueing what this device writes, with real stores and sessions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from app.protocol.envelope import Envelope
from app.protocol.lifetime import envelope_expiry
from app.services.errors import IdentityChangedError, SecretChatError
from app.services.events import MessageArrived, MessageHeld
from app.sync.transport import TransportState
from storage.records import ConversationKind, MessageStatus, NewMessage
from storage.store import Store
from tests.support.devices import Bench, Device, FakeClock, introduce, open_session
from tests.support.transport import InMemoryDirectory

TIMER = 60
Snapshot = tuple[int, int, int]
"""(messages, outbox entries, unsealed marks) as a commit left them."""


@pytest.fixture
def alice(bench: Bench) -> Device:
    """Alice, offline (nothing she seals leaves), who knows Bob."""
    alice = bench.device("alice", state=TransportState.OFFLINE)
    introduce(alice, bench.device("bob"))
    return alice


@pytest.fixture
def bob(bench: Bench, alice: Device) -> Device:
    return bench.devices[1]


def _commits(monkeypatch: pytest.MonkeyPatch, store: Store) -> list[Snapshot]:
    """What the store held after each outermost ``store.transaction()`` that committed.

    A spy around the real method: the store still does all the work.
    """
    original = store.transaction
    seen: list[Snapshot] = []
    depth = 0

    @contextlib.contextmanager
    def transaction() -> Iterator[None]:
        nonlocal depth
        depth += 1
        try:
            with original():
                yield
        finally:
            depth -= 1
        if depth == 0:
            seen.append((store.messages.count(), len(store.outbox.due(float("inf"))), store.unsealed.count()))

    monkeypatch.setattr(store, "transaction", transaction)
    return seen


def test_a_text_with_a_session_is_stored_and_sealed_in_one_commit(
    bench: Bench, alice: Device, bob: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that a text to a device with a session is stored with its envelope in the same commit."""
    open_session(alice, bob)
    conversation = alice.direct(bob)
    commits = _commits(monkeypatch, alice.store)
    message = bench.run(alice.sending.send_text(conversation.id, "in one go"))

    assert commits == [(1, 1, 0)], "no commit held the message without its envelope"
    [entry] = alice.store.outbox.due(float("inf"))
    assert (entry.recipient, entry.recipient_device, entry.message_id) == ("bob", 1, message.id)
    assert not alice.store.unsealed.contains(message.id)
    assert message.status is MessageStatus.PENDING, "pending until the transport has stored it"

    alice.transport.go_online()
    bench.deliver(alice, bob)
    assert [e.message.body for e in bob.emitted(MessageArrived)] == ["in one go"]


def test_without_a_session_and_offline_a_text_waits_pending_and_unsealed(
    bench: Bench, alice: Device, bob: Device
) -> None:
    """Test that a text to a colleague with no session, written offline, waits unsealed and pending."""
    conversation = alice.direct(bob)
    message = bench.run(alice.sending.send_text(conversation.id, "when you are back"))
    bench.run(alice.sending.seal_pending())

    assert message.status is MessageStatus.PENDING
    assert alice.store.unsealed.contains(message.id)
    assert alice.store.outbox.next_attempt() is None
    assert [m.id for m in alice.conversations.pending()] == [message.id]


def test_texts_written_before_a_session_leave_in_order_once_there_is_one(
    bench: Bench, alice: Device, bob: Device
) -> None:
    """Test that texts waiting for a session are sealed oldest first once it exists, and arrive so."""
    conversation = alice.direct(bob)
    for text in ("first", "second", "third"):
        bench.run(alice.sending.send_text(conversation.id, text))
    assert alice.store.unsealed.count() == 3

    open_session(alice, bob, answered=False)
    bench.run(alice.sending.seal_pending())
    assert alice.store.unsealed.count() == 0
    alice.transport.go_online()
    bench.deliver(alice, bob)
    assert [e.message.body for e in bob.emitted(MessageArrived)] == ["first", "second", "third"]


def test_a_disappearing_message_waits_unsealed_offline_and_gets_no_expiry_while_pending(
    bench: Bench, alice: Device, bob: Device
) -> None:
    """Test that a timed message is not sealed offline, never swept while waiting, and sealed once online."""
    clock = bench.clock
    assert isinstance(clock, FakeClock)
    open_session(alice, bob)
    conversation = alice.direct(bob, timer_seconds=TIMER)
    message = bench.run(alice.sending.send_text(conversation.id, "for a minute"))
    assert message.expire_after == TIMER
    assert alice.store.unsealed.contains(message.id) and alice.store.outbox.next_attempt() is None

    clock.advance(10 * TIMER)
    bench.run(alice.sending.seal_pending())
    assert alice.store.sweep() == []
    waiting = alice.store.messages.get(message.id)
    assert waiting.status is MessageStatus.PENDING and waiting.expires_at is None
    assert alice.store.outbox.next_attempt() is None

    alice.transport.go_online()
    bench.run(alice.sending.seal_pending())
    [entry] = alice.store.outbox.due(float("inf"))
    assert entry.message_id == message.id and not alice.store.unsealed.contains(message.id)
    assert Envelope.parse(entry.envelope).expires_at == envelope_expiry(clock.now), "as every envelope's"
    assert alice.store.messages.get(message.id).expires_at is None, "its countdown starts once it has left"


def test_a_message_to_a_device_whose_key_changed_is_refused_when_written(
    bench: Bench, alice: Device, bob: Device
) -> None:
    """Test that writing to a colleague whose key changed raises IdentityChangedError and stores nothing."""
    open_session(alice, bob)
    alice.store.contacts.record_device_key("bob", 1, bytes(range(32)))
    conversation = alice.direct(bob)
    with pytest.raises(IdentityChangedError) as refused:
        bench.run(alice.sending.send_text(conversation.id, "not to a stranger"))
    assert refused.value.account_id == "bob"
    assert alice.store.messages.count() == 0 and alice.store.outbox.next_attempt() is None


def test_a_key_change_found_while_sealing_holds_the_message_once_and_seals_nothing(
    bench: Bench, alice: Device
) -> None:
    """Test that a waiting message meeting a changed key emits MessageHeld once and leaves no envelope."""
    bobs = [bench.devices[1], bench.device("bob", 2)]
    for bob in bobs:
        introduce(alice, bob)
        open_session(alice, bob)
    sessions = [alice.store.sessions.get("bob", n) for n in (1, 2)]
    conversation = alice.direct(bobs[0], timer_seconds=TIMER)
    message = bench.run(alice.sending.send_text(conversation.id, "held"))
    alice.store.contacts.record_device_key("bob", 2, bytes(range(32)))

    alice.transport.go_online()
    bench.run(alice.sending.seal_pending())
    bench.run(alice.sending.seal_pending())
    assert alice.emitted(MessageHeld) == [MessageHeld(message.id, conversation.id, "bob")]
    assert [e for e in alice.store.outbox.due(float("inf")) if e.recipient_device == 2] == []
    assert alice.store.outbox.next_attempt() is None, "nothing leaves for the colleague until accepted"
    assert alice.store.unsealed.contains(message.id)
    assert [alice.store.sessions.get("bob", n) for n in (1, 2)] == sessions


def test_forwarding_out_of_a_secret_chat_is_refused(bench: Bench, alice: Device, bob: Device) -> None:
    """Test that a secret chat's message cannot be forwarded, while a direct one's can."""
    open_session(alice, bob)
    secret = alice.store.conversations.create(
        ConversationKind.SECRET,
        peer_account_id="bob",
        timer_seconds=TIMER,
        secret_id=bytes(16),
        peer_device=1,
    )
    target = alice.store.conversations.create(ConversationKind.DIRECT, peer_account_id="carol")
    alice.store.contacts.upsert("carol", "Carol")
    hidden = alice.store.messages.add(
        NewMessage(secret.id, b"s" * 16, "for your eyes", MessageStatus.DELIVERED, bench.clock(), "bob", 1)
    )
    with pytest.raises(SecretChatError):
        bench.run(alice.sending.forward(hidden.id, target.id))
    assert alice.store.messages.count(target.id) == 0 and alice.store.unsealed.count() == 0

    plain = bench.run(alice.sending.send_text(alice.direct(bob).id, "pass it on"))
    copy = bench.run(alice.sending.forward(plain.id, target.id))
    assert (copy.conversation_id, copy.body) == (target.id, "pass it on")
    assert copy.message_id != plain.message_id


def test_a_session_is_made_from_the_directory_for_a_text_that_waited(bench: Bench) -> None:
    """Test that a text written while the directory was unreachable is sealed from a fetched bundle."""
    directory = InMemoryDirectory(online=False)
    alice, bob = bench.device("alice", directory=directory), bench.device("bob")
    alice.store.contacts.upsert("bob", "Bob")
    bob.publish(directory)
    message = bench.run(alice.sending.send_text(alice.direct(bob).id, "found you"))
    assert alice.store.unsealed.contains(message.id)

    directory.online = True
    bench.run(alice.sending.seal_pending())
    assert directory.asked == ["bob"] and alice.store.sessions.devices("bob") == [1]
    bench.deliver(alice, bob)
    assert [e.message.body for e in bob.emitted(MessageArrived)] == ["found you"]


def test_a_waiting_message_deleted_while_another_is_sealed_is_skipped(bench: Bench) -> None:
    """Test that deleting a waiting message while seal_pending awaits the directory spoils nothing else."""
    directory = InMemoryDirectory(online=False)
    alice, bob = bench.device("alice", directory=directory), bench.device("bob")
    alice.store.contacts.upsert("bob", "Bob")
    alice.store.contacts.upsert("carol", "Carol")
    bob.publish(directory)
    to_carol = alice.store.conversations.create(ConversationKind.DIRECT, peer_account_id="carol")
    first = bench.run(alice.sending.send_text(alice.direct(bob).id, "first"))
    doomed = bench.run(alice.sending.send_text(to_carol.id, "deleted while waiting"))
    last = bench.run(alice.sending.send_text(alice.direct(bob).id, "last"))
    assert alice.store.unsealed.count() == 3

    async def delete_while_sealing() -> None:
        directory.online = True
        directory.hold()
        sealing = asyncio.get_running_loop().create_task(alice.sending.seal_pending())
        while directory.asked != ["bob"]:
            await asyncio.sleep(0)
        assert alice.conversations.delete_messages([doomed.id]) == [doomed.id]
        directory.release()
        await sealing

    bench.run(delete_while_sealing())
    assert [e.message_id for e in alice.store.outbox.due(float("inf"))] == [first.id, last.id]
    assert alice.store.unsealed.count() == 0
