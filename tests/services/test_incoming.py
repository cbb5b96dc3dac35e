"""Receiving: what a transport brings is opened, stored in one transaction, and only then acked."""

from __future__ import annotations

import math

import pytest

from app.base.errors import StorageError
from app.crypto.keys import IdentityKeyPair
from app.protocol.envelope import ENVELOPE_ID_BYTES, Envelope
from app.services.events import MessageArrived, MessageUnreadable, Problem
from app.services.incoming import SEEN_ENVELOPE_SECONDS
from storage.errors import NotFoundError, StoreFullError
from storage.keylog import LoggedBinding
from storage.records import OUTGOING, MessageStatus, PreKeyKind
from tests.support.devices import Bench, Device, FakeClock, open_session
from tests.support.transport import InMemoryTransport


def _sealed(bench: Bench, sender: Device, recipient: Device, text: str) -> Envelope:
    """What the sender's transport stored for a text to the recipient."""
    bench.run(sender.sending.send_text(sender.direct(recipient).id, text))
    sender.delivery.kick()
    bench.until(lambda: sender.store.outbox.next_attempt() is None, "the text left")
    return sender.transport.stored[-1]


def _bodies(device: Device) -> list[str]:
    return [e.message.body for e in device.emitted(MessageArrived)]


def test_an_envelope_is_stored_and_then_acked_on_the_transport_that_brought_it(
    bench: Bench, alice: Device, bob: Device
) -> None:
    """Test that an arriving message is stored first and acked after, on its own transport only."""
    open_session(alice, bob)
    envelope = _sealed(bench, alice, bob, "good morning")
    at_ack: list[tuple[bool, int]] = []
    brought = InMemoryTransport(
        on_ack=lambda envelope_id: at_ack.append(
            (bob.store.seen.contains(envelope_id), bob.store.messages.count())
        )
    )
    bench.run(bob.receiving.receive(envelope, brought))

    assert brought.acked == [envelope.envelope_id] and bob.transport.acked == []
    assert at_ack == [(True, 1)], "when the ack left, the message and its envelope id were stored"
    [arrived] = bob.emitted(MessageArrived)
    assert (arrived.message.body, arrived.message.sender, arrived.message.sender_device) == (
        "good morning",
        "alice",
        1,
    )
    assert arrived.preview == "good morning"
    stored = bob.store.messages.get(arrived.message.id)
    assert stored.status is MessageStatus.DELIVERED and stored.conversation_id == arrived.conversation.id


def test_a_repeated_envelope_is_acked_again_and_stored_once(bench: Bench, alice: Device, bob: Device) -> None:
    """Test that a redelivery of an envelope already stored is acked and shown no second time."""
    open_session(alice, bob)
    envelope = _sealed(bench, alice, bob, "only once")
    for _ in range(2):
        bench.run(bob.receiving.receive(envelope, bob.transport))
    assert bob.transport.acked == [envelope.envelope_id] * 2
    assert bob.store.messages.count() == 1 and _bodies(bob) == ["only once"]


def test_junk_is_acked_and_dropped(bench: Bench, alice: Device, bob: Device) -> None:
    """Test that an envelope that cannot be opened is acked so it stops coming, nothing is stored, and
    the user is told a message could not be read, from a sender it does not name."""
    open_session(alice, bob)
    session = bob.store.sessions.get("alice", 1)
    junk = Envelope(envelope_id=bench.random(ENVELOPE_ID_BYTES), expires_at=0, sealed=bench.random(300))
    bench.run(bob.receiving.receive(junk, bob.transport))
    assert bob.transport.acked == [junk.envelope_id]
    assert bob.store.messages.count() == 0 and bob.store.conversations.list() == []
    assert bob.store.sessions.get("alice", 1) == session
    [told] = bob.events
    assert isinstance(told, MessageUnreadable) and (told.account_id, told.device_id) == (None, None)


def test_a_message_from_a_device_outside_the_organisation_is_acked_and_dropped(
    bench: Bench, alice: Device, bob: Device
) -> None:
    """Test that a sender whose certificate another key signed is refused, though its crypto is sound."""
    open_session(alice, bob)
    impostor = IdentityKeyPair.generate(bench.random)
    alice.credentials.certificate = alice.certificate.issue(
        impostor,
        account_id="alice",
        device_id=1,
        identity_key=alice.identity.public,
        expires_at=alice.certificate.expires_at,
    )
    envelope = _sealed(bench, alice, bob, "trust me")
    bench.run(bob.receiving.receive(envelope, bob.transport))
    assert bob.transport.acked == [envelope.envelope_id]
    assert bob.store.messages.count() == 0 and _bodies(bob) == []


def test_a_known_device_the_key_log_has_since_revoked_is_refused(
    bench: Bench, alice: Device, bob: Device
) -> None:
    """Test that once the key log Bob has read revokes Alice's device, an envelope from it is refused (acked,
    nothing stored, the user told), though Bob knew its key: a revoked device that kept its contacts'
    delivery keys sends unidentified, so the relay cannot refuse it, and its recipients must."""
    open_session(alice, bob)
    first = _sealed(bench, alice, bob, "before the revocation")
    bench.run(bob.receiving.receive(first, bob.transport))
    assert _bodies(bob) == ["before the revocation"]
    bob.store.key_log.put(
        LoggedBinding(
            "alice", alice.device_id, alice.identity.public, added=0, added_at=0, revoked=1, revoked_at=0
        )
    )
    later = _sealed(bench, alice, bob, "after it")
    bench.run(bob.receiving.receive(later, bob.transport))
    assert later.envelope_id in bob.transport.acked
    assert _bodies(bob) == ["before the revocation"] and bob.store.messages.count() == 1
    assert any("key log" in p.message for p in bob.emitted(Problem))


def test_a_delivery_receipt_is_queued_for_the_sender(bench: Bench, alice: Device, bob: Device) -> None:
    """Test that storing a message records a pending delivery receipt, which is sealed when due and marks
    the message delivered there."""
    open_session(alice, bob)
    envelope = _sealed(bench, alice, bob, "did you get this")
    bench.run(bob.receiving.receive(envelope, bob.transport))
    assert bob.store.pending_receipts.count() == 1
    assert bob.receipts.seal_due(math.inf) == 1
    assert bob.store.pending_receipts.count() == 0
    [receipt] = bob.store.outbox.due(float("inf"))
    assert (receipt.recipient, receipt.recipient_device, receipt.message_id) == ("alice", 1, None)

    bench.deliver(bob, alice)
    [sent] = alice.store.messages.page(alice.direct(bob).id).messages
    assert sent.sender == OUTGOING and sent.status is MessageStatus.DELIVERED


def test_a_prekey_message_spends_the_one_time_prekey_it_used(
    bench: Bench, alice: Device, bob: Device
) -> None:
    """Test that the first message of a session deletes the one-time prekey it named, and only that one."""
    before = [k.key_id for k in bob.store.prekeys.list(PreKeyKind.ONE_TIME)]
    open_session(alice, bob, answered=False)
    used = before[0]
    envelope = _sealed(bench, alice, bob, "nice to meet you")
    bench.run(bob.receiving.receive(envelope, bob.transport))

    assert _bodies(bob) == ["nice to meet you"]
    with pytest.raises(NotFoundError):
        bob.store.prekeys.get(PreKeyKind.ONE_TIME, used)
    assert [k.key_id for k in bob.store.prekeys.list(PreKeyKind.ONE_TIME)] == before[1:]
    assert bob.store.sessions.get("alice", 1) is not None


def test_a_store_failure_while_receiving_emits_problem_and_does_not_ack(
    bench: Bench, alice: Device, bob: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that a store error in the receive transaction rolls it back, tells the user, and holds the ack.

    A full disk cannot be made safely here, so the transaction's last write (the delivery
    receipt, pending) is made to raise what SQLite's SQLITE_FULL maps to (a fault injection).
    """
    open_session(alice, bob)
    session = bob.store.sessions.get("alice", 1)
    envelope = _sealed(bench, alice, bob, "kept on the relay meanwhile")

    def full(*args: object, **kwargs: object) -> int:
        raise StoreFullError()

    monkeypatch.setattr(bob.store.pending_receipts, "add", full)
    with pytest.raises(StorageError):
        bench.run(bob.receiving.receive(envelope, bob.transport))
    [problem] = bob.emitted(Problem)
    assert "full" in problem.message
    assert bob.transport.acked == []
    assert bob.store.messages.count() == 0 and not bob.store.seen.contains(envelope.envelope_id)
    assert bob.store.pending_receipts.count() == 0
    assert bob.store.sessions.get("alice", 1) == session, "the session did not advance"

    monkeypatch.undo()
    bench.run(bob.receiving.receive(envelope, bob.transport))
    assert _bodies(bob) == ["kept on the relay meanwhile"] and bob.transport.acked == [envelope.envelope_id]


def test_envelope_ids_are_forgotten_once_no_envelope_can_wait_that_long(bench: Bench, alice: Device) -> None:
    """Test that the ids of envelopes taken longer ago than SEEN_ENVELOPE_SECONDS are forgotten and
    newer ones kept: the store does not keep a record of when each message came, for ever."""
    clock = bench.clock
    assert isinstance(clock, FakeClock)
    alice.store.seen.add(b"o" * ENVELOPE_ID_BYTES)
    clock.advance(SEEN_ENVELOPE_SECONDS - 10)
    alice.store.seen.add(b"n" * ENVELOPE_ID_BYTES)
    clock.advance(20)
    assert alice.receiving.forget_old_envelope_ids() == 1
    assert not alice.store.seen.contains(b"o" * ENVELOPE_ID_BYTES)
    assert alice.store.seen.contains(b"n" * ENVELOPE_ID_BYTES)
