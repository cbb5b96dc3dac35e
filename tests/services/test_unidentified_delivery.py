"""Unidentified delivery in the engine: a device's delivery key travels inside what it seals, and
envelopes to it then go without naming their sender (the relay's side: tests/server/test_unidentified.py)."""

from __future__ import annotations

import nacl.utils

from app.sync.transport import SendOutcome
from tests.support.devices import Bench, Device, introduce, open_session


def _pair(bench: Bench) -> tuple[Device, Device]:
    alice, bob = bench.device("alice"), bench.device("bob")
    introduce(alice, bob)
    open_session(alice, bob)
    return alice, bob


def _text(bench: Bench, sender: Device, recipient: Device, text: str) -> None:
    bench.run(sender.sending.send_text(sender.direct(recipient).id, text))
    bench.until(lambda: sender.store.outbox.next_attempt() is None, "the text left")


def test_only_a_first_envelope_to_a_device_that_never_wrote_names_its_sender(bench: Bench) -> None:
    """Test that Alice's first text to Bob goes without a key (it names her), that it teaches Bob her key so
    his receipt goes unidentified, and that his envelope teaches her his key for her next text."""
    alice, bob = _pair(bench)
    bench.run(alice.sending.send_text(alice.direct(bob).id, "first"))
    assert len(bench.deliver(alice, bob)) == 1
    assert [o.delivery_key for o in alice.transport.offered] == [None]
    assert bob.store.contacts.delivery_key("alice", alice.device_id) == alice.identity.delivery_key
    assert len(bench.deliver(bob, alice)) == 1
    assert [o.delivery_key for o in bob.transport.offered] == [alice.identity.delivery_key]
    assert alice.store.contacts.delivery_key("bob", bob.device_id) == bob.identity.delivery_key

    _text(bench, alice, bob, "second")
    assert alice.transport.offered[-1].delivery_key == bob.identity.delivery_key


def test_a_refused_key_is_forgotten_and_the_envelope_goes_on_the_devices_connection(bench: Bench) -> None:
    """Test that KEY_REFUSED leaves the envelope queued, forgets the key, and sends it again without one,
    so nothing is lost when a colleague's device no longer takes the key we hold."""
    alice, bob = _pair(bench)
    alice.store.contacts.set_delivery_key("bob", bob.device_id, nacl.utils.random(16))
    alice.transport.answer(SendOutcome.KEY_REFUSED)
    _text(bench, alice, bob, "still arrives")
    first, second = alice.transport.offered
    assert (first.answer, second.answer) == (SendOutcome.KEY_REFUSED, SendOutcome.STORED)
    assert first.envelope == second.envelope and second.delivery_key is None
    assert alice.store.contacts.delivery_key("bob", bob.device_id) is None


def test_a_new_identity_key_drops_the_old_delivery_key(bench: Bench) -> None:
    """Test that the delivery key learnt from a device goes when that device shows another identity key:
    it was the old key's, and the reinstalled device has its own."""
    alice, bob = _pair(bench)
    alice.store.contacts.set_delivery_key("bob", bob.device_id, bob.identity.delivery_key)
    alice.store.contacts.record_device_key("bob", bob.device_id, nacl.utils.random(32))
    assert alice.store.contacts.delivery_key("bob", bob.device_id) is None
