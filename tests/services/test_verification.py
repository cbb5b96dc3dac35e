"""Verification: safety numbers both sides compare, and accepting a colleague's new key."""

from __future__ import annotations

import pytest

from app.crypto.safety import SafetyNumber
from app.services.errors import NoDeviceError
from app.services.events import KeyChanged, MessageArrived, MessageHeld
from app.sync.transport import TransportState
from storage.records import Trust
from tests.support.devices import Bench, Device, introduce, open_session
from tests.support.transport import InMemoryDirectory

TIMER = 60


@pytest.fixture
def alice(bench: Bench) -> Device:
    return bench.device("alice", state=TransportState.OFFLINE)


@pytest.fixture
def bob(bench: Bench, alice: Device) -> Device:
    bob = bench.device("bob")
    introduce(alice, bob)
    open_session(alice, bob)
    return bob


def _reinstalled(bench: Bench, alice: Device) -> Device:
    """Bob's new laptop, device 2 (a relay never gives a device id twice, and the key log refuses a
    second key for one), whose first message has reached Alice: a changed key, since she knew
    another device of Bob's.

    Alice is online from here on (she acks what arrives).
    """
    alice.transport.go_online()
    laptop = bench.device("bob", 2)
    laptop.store.contacts.upsert("alice", "Alice")
    laptop.store.contacts.record_device_key("alice", 1, alice.identity.public)  # as her bundle showed it
    open_session(laptop, alice, answered=False)
    bench.run(laptop.sending.send_text(laptop.direct(alice).id, "new laptop, same Bob"))
    bench.deliver(laptop, alice)
    if KeyChanged("bob", 2) not in alice.events:
        raise AssertionError("Alice did not notice Bob's new key")
    return laptop


def test_safety_numbers_match_on_both_sides(bench: Bench, alice: Device, bob: Device) -> None:
    """Test that both colleagues see the same 60 digits, and a verified mark shows on the view."""
    [hers] = alice.verification.safety_numbers("bob")
    [his] = bob.verification.safety_numbers("alice")
    assert hers.digits == his.digits and len(hers.digits) == 60 and hers.digits.isdigit()
    assert (hers.account_id, hers.device_id, hers.trust) == ("bob", 1, Trust.UNVERIFIED)

    alice.verification.mark_verified("bob", 1)
    [verified] = alice.verification.safety_numbers("bob")
    assert verified.trust is Trust.VERIFIED and verified.digits == hers.digits
    with pytest.raises(NoDeviceError):
        alice.verification.mark_verified("bob", 9)


def test_a_changed_key_shows_the_new_safety_number(bench: Bench, alice: Device, bob: Device) -> None:
    """Test that after a key change the number shown is the one the new device shows, marked changed."""
    [before] = alice.verification.safety_numbers("bob")
    laptop = _reinstalled(bench, alice)
    [old, after] = alice.verification.safety_numbers("bob")
    [laptops] = laptop.verification.safety_numbers("alice")
    assert (old, after.device_id, after.trust) == (before, 2, Trust.CHANGED)
    assert after.digits == laptops.digits != before.digits


def test_accepting_a_changed_key_lets_the_held_messages_leave_for_it(
    bench: Bench, alice: Device, bob: Device
) -> None:
    """Test that a message held for a new key is sealed for it once accepted, and the new device reads it."""
    held = bench.run(alice.sending.send_text(alice.direct(bob, timer_seconds=TIMER).id, "waits for you"))
    laptop = _reinstalled(bench, alice)
    bench.run(alice.sending.seal_pending())
    assert alice.emitted(MessageHeld) == [MessageHeld(held.id, held.conversation_id, "bob")]
    assert [e for e in alice.store.outbox.due(float("inf")) if e.message_id == held.id] == []
    assert alice.sessions.blocked("bob")

    bench.run(alice.verification.accept_key_change("bob"))
    device = alice.store.contacts.device("bob", 2)
    assert device is not None and device.trust is Trust.UNVERIFIED
    assert not alice.sessions.blocked("bob") and not alice.store.unsealed.contains(held.id)
    sealed = [e.recipient_device for e in alice.store.outbox.due(float("inf")) if e.message_id == held.id]
    assert sorted(sealed) == [1, 2]

    bench.deliver(alice, laptop)
    assert "waits for you" in [e.message.body for e in laptop.emitted(MessageArrived)]


def test_a_colleagues_keys_can_be_compared_before_the_first_message(bench: Bench) -> None:
    """Test that safety numbers for a colleague this device has never written to are fetched from
    the directory, match the ones the colleague computes, and can be marked verified; offline,
    nothing is known and nothing fails."""
    directory = InMemoryDirectory()
    alice = bench.device("alice", directory=directory)
    bob = bench.device("bob")
    bob.publish(directory)
    assert alice.verification.safety_numbers("bob") == []
    [hers] = bench.run(alice.verification.fetched_safety_numbers("bob"))
    his = SafetyNumber.compute(
        local_identity=bob.identity.public,
        local_id="bob",
        remote_identity=alice.identity.public,
        remote_id="alice",
    )
    assert hers.digits == his.digits and hers.trust is Trust.UNVERIFIED
    alice.verification.mark_verified("bob", 1)
    assert [n.trust for n in alice.verification.safety_numbers("bob")] == [Trust.VERIFIED]

    directory.online = False
    carol = bench.device("carol")
    carol.publish(directory)
    assert bench.run(alice.verification.fetched_safety_numbers("carol")) == []
