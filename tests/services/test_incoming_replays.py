"""Replays: a relay that hands a first message over again, under a new envelope id or after the
recipient forgot its id, changes nothing; a message that cannot be read is told to the user."""

from __future__ import annotations

import pytest

from app.base.limits import ENVELOPE_ID_BYTES
from app.crypto.keys import PreKeyBundle
from app.crypto.session import initiate_session
from app.protocol.envelope import Envelope
from app.services.events import Event, MessageArrived, MessageUnreadable
from storage.records import PreKeyKind
from tests.support.devices import Bench, Device, open_session


def _start(bench: Bench, alice: Device, bob: Device, *, one_time: bool) -> None:
    """Alice starts a session from Bob's bundle, with or without a one-time prekey (the directory
    may have none left: then nothing but the base key tells a replayed first message apart)."""
    bundle = bob.bundle()
    if not one_time:
        bundle = PreKeyBundle(
            bundle.identity_key, bundle.signed_prekey_id, bundle.signed_prekey, bundle.signed_prekey_signature
        )
    session = initiate_session(alice.identity, bundle, bench.random)
    alice.store.sessions.put(bob.account_id, bob.device_id, session.to_bytes())


def _send(bench: Bench, sender: Device, recipient: Device, text: str) -> list[Envelope]:
    """The sender writes ``text``; what its outbox held is handed to the recipient."""
    bench.run(sender.sending.send_text(sender.direct(recipient).id, text))
    return bench.deliver(sender, recipient)


def _bodies(device: Device) -> list[str]:
    return [e.message.body for e in device.emitted(MessageArrived)]


def _state(device: Device) -> tuple[object, ...]:
    """What receiving could write: sessions, one-time prekeys, queued envelopes, messages."""
    store = device.store
    return (
        store.sessions.get("alice", 1),
        [k.key_id for k in store.prekeys.list(PreKeyKind.ONE_TIME)],
        len(store.outbox.due(float("inf"))),
        store.messages.count(),
    )


def _replayed(bench: Bench, bob: Device, envelope: Envelope) -> list[Event]:
    """Hand ``envelope`` to Bob again; what he emitted for it. Nothing may be written meanwhile."""
    before, emitted = _state(bob), len(bob.events)
    bench.run(bob.receiving.receive(envelope, bob.transport))
    assert bob.transport.acked[-1] == envelope.envelope_id, "acked, so the relay stops offering it"
    assert _state(bob) == before
    assert not bob.store.seen.contains(envelope.envelope_id)
    return bob.events[emitted:]


def _both_directions_work(bench: Bench, alice: Device, bob: Device, round_: int) -> None:
    """Bob replies and Alice reads it; Alice writes again and Bob reads it."""
    _send(bench, bob, alice, f"reply {round_}")
    assert _bodies(alice)[-1] == f"reply {round_}"
    _send(bench, alice, bob, f"again {round_}")
    assert _bodies(bob)[-1] == f"again {round_}"


@pytest.mark.parametrize("one_time", [True, False], ids=["one-time prekey", "no one-time prekey"])
def test_a_first_message_under_a_new_envelope_id_is_refused_and_told(
    bench: Bench, alice: Device, bob: Device, one_time: bool
) -> None:
    """Test that a first message's sealed bytes re-wrapped under a new envelope id are refused with
    nothing written, the user is told which device it claims to be from, and the session goes on."""
    _start(bench, alice, bob, one_time=one_time)
    [first] = _send(bench, alice, bob, "first")
    assert _bodies(bob) == ["first"]

    rewrapped = Envelope(
        envelope_id=bench.random(ENVELOPE_ID_BYTES), expires_at=first.expires_at, sealed=first.sealed
    )
    [told] = _replayed(bench, bob, rewrapped)
    assert isinstance(told, MessageUnreadable)
    assert (told.account_id, told.device_id) == ("alice", 1) and "envelope id" in told.reason

    _both_directions_work(bench, alice, bob, 1)
    assert _bodies(bob) == ["first", "again 1"] and _bodies(alice) == ["reply 1"]


@pytest.mark.parametrize("one_time", [True, False], ids=["one-time prekey", "no one-time prekey"])
def test_a_first_message_replayed_after_its_id_was_forgotten_changes_nothing(
    bench: Bench, alice: Device, bob: Device, one_time: bool
) -> None:
    """Test that the very envelope of a first message, handed over again once Bob no longer has its
    id, is dropped silently with nothing written, both before and after Bob's ratchet moved on."""
    _start(bench, alice, bob, one_time=one_time)
    [first] = _send(bench, alice, bob, "first")

    bob.store.seen.prune(bench.clock() + 1)
    assert _replayed(bench, bob, first) == [], "still on Alice's first chain: a replay, not a failure"
    _both_directions_work(bench, alice, bob, 1)

    bob.store.seen.prune(bench.clock() + 1)
    assert _replayed(bench, bob, first) == [], "Bob has left that chain: its keys are used"
    _both_directions_work(bench, alice, bob, 2)
    assert _bodies(bob) == ["first", "again 1", "again 2"]
    assert _bodies(alice) == ["reply 1", "reply 2"]


def test_a_first_message_of_a_replaced_session_does_not_run_x3dh_again(
    bench: Bench, alice: Device, bob: Device
) -> None:
    """Test that once Alice started a new session, a replay of the old one's first message (no
    one-time prekey, so X3DH alone could not tell) leaves Bob's new session in place."""
    _start(bench, alice, bob, one_time=False)
    [old_first] = _send(bench, alice, bob, "first")
    _both_directions_work(bench, alice, bob, 1)
    _start(bench, alice, bob, one_time=False)
    _send(bench, alice, bob, "a new session")
    assert _bodies(bob) == ["first", "again 1", "a new session"]

    bob.store.seen.prune(bench.clock() + 1)
    assert _replayed(bench, bob, old_first) == []
    _both_directions_work(bench, alice, bob, 2)
    assert _bodies(bob) == ["first", "again 1", "a new session", "again 2"]
    assert _bodies(alice) == ["reply 1", "reply 2"]


def test_a_message_that_cannot_be_decrypted_is_told_naming_its_sender(
    bench: Bench, alice: Device, bob: Device
) -> None:
    """Test that a message whose session Bob no longer holds is dropped, its id kept, and Bob told
    that a message from Alice's device could not be decrypted."""
    open_session(alice, bob)
    bob.store.sessions.delete("alice", 1)
    [lost] = _send(bench, alice, bob, "you will not read this")
    assert _bodies(bob) == [] and bob.transport.acked == [lost.envelope_id]
    assert bob.store.seen.contains(lost.envelope_id)
    [told] = bob.emitted(MessageUnreadable)
    assert (told.account_id, told.device_id) == ("alice", 1) and "no session" in told.reason
