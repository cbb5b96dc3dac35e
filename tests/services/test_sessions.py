"""Receiving's bookkeeping: contacts' device keys (new, changed, replacement) and lost files' names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.base.errors import OfflineError
from app.base.limits import MAX_FILENAME_BYTES
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.sealed import unseal
from app.protocol.content import Receipt, ReceiptType
from app.protocol.envelope import Envelope
from app.services.errors import NoDeviceError
from app.services.events import KeyChanged
from app.services.incoming import UNAVAILABLE_SUFFIX, unavailable_name
from app.services.sessions import blocked, note_device
from storage.records import Trust
from storage.store import Store
from tests.support.clients import passphrase
from tests.support.devices import Bench, Device, introduce, open_session
from tests.support.transport import InMemoryDirectory


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.create(tmp_path / "profile", passphrase()) as opened:
        opened.contacts.upsert("bob", "Bob Baker")
        yield opened


def test_first_device_is_trusted_on_first_use_and_a_new_key_blocks(store: Store) -> None:
    """Test that a contact's first key is unverified, and a different key for it blocks sending once."""
    assert note_device(store, "bob", 1, b"\x01" * 32) is None
    assert not blocked(store, "bob")
    assert note_device(store, "bob", 1, b"\x01" * 32) is None
    assert note_device(store, "bob", 1, b"\x02" * 32) == KeyChanged("bob", 1)
    assert blocked(store, "bob") and blocked(store, "bob", 1) and not blocked(store, "bob", 7)
    assert note_device(store, "bob", 1, b"\x02" * 32) is None, "the same change is reported once"
    store.contacts.accept_changed_key("bob", 1)
    assert not blocked(store, "bob")


def test_a_device_that_appears_for_a_known_contact_is_a_replacement(store: Store) -> None:
    """Test that a second device of a contact whose device we knew starts as changed, naming the old key."""
    note_device(store, "bob", 1, b"\x01" * 32)
    assert note_device(store, "bob", 2, b"\x03" * 32) == KeyChanged("bob", 2)
    device = store.contacts.device("bob", 2)
    assert device is not None and device.trust is Trust.CHANGED
    assert device.previous_identity_key == b"\x01" * 32
    assert blocked(store, "bob") and not blocked(store, "bob", 1)


def test_the_stand_in_for_a_lost_file_keeps_within_the_name_limit() -> None:
    """Test that a 255-byte multi-byte file name still fits once marked unavailable, as valid UTF-8."""
    longest = "отчёт" * 25 + "x" * 5
    assert len(longest.encode("utf-8")) == MAX_FILENAME_BYTES
    name = unavailable_name(longest)
    assert len(name.encode("utf-8")) <= MAX_FILENAME_BYTES and name.endswith(UNAVAILABLE_SUFFIX)
    assert name.startswith("отчёт") and unavailable_name("memo.txt") == "memo.txt" + UNAVAILABLE_SUFFIX


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    opened = Bench(tmp_path / "bench")
    yield opened
    opened.close()


@pytest.fixture
def pair(bench: Bench) -> tuple[Device, Device]:
    """Alice and Bob, who know each other, with a session both hold."""
    alice, bob = bench.device("alice"), bench.device("bob")
    introduce(alice, bob)
    open_session(alice, bob)
    return alice, bob


def _sealed_receipt(alice: Device) -> Envelope:
    """A delivery receipt Alice seals for Bob, taken from her outbox."""
    with alice.store.transaction():
        alice.sessions.seal("bob", 1, Receipt(ReceiptType.DELIVERED, 0, (bytes(16),)), 2**32, message_id=None)
    [entry] = alice.store.outbox.due(float("inf"))
    return Envelope.parse(entry.envelope)


def test_a_known_session_is_used_without_the_relay(bench: Bench, pair: tuple[Device, Device]) -> None:
    """Test that ensure() answers from the store when a session exists, and needs the relay when not."""
    alice, _ = pair
    assert bench.run(alice.sessions.ensure("bob", None)) == [1]
    assert bench.run(alice.sessions.ensure("bob", 1)) == [1]
    with pytest.raises(OfflineError):
        bench.run(alice.sessions.ensure("carol", None))


def test_opening_saves_nothing_until_kept(pair: tuple[Device, Device]) -> None:
    """Test that open() decrypts in memory (twice alike), and only keep() advances the stored session."""
    alice, bob = pair
    envelope = _sealed_receipt(alice)
    unsealed = unseal(
        recipient=bob.identity,
        untrusted=envelope.sealed,
        envelope_id=envelope.envelope_id,
        trust_root=bob.credentials.trust_root(),
        now=0,
    )
    before = bob.store.sessions.get("alice", 1)
    first = bob.sessions.open(unsealed.sender, unsealed.message)
    assert bob.sessions.open(unsealed.sender, unsealed.message).plaintext == first.plaintext
    assert bob.store.sessions.get("alice", 1) == before

    with bob.store.transaction():
        assert bob.sessions.keep(unsealed.sender, first) is None, "the key is the one on record"
    assert bob.store.sessions.get("alice", 1) == first.session.to_bytes() != before


def test_forgetting_a_device_drops_its_session_but_not_its_key(pair: tuple[Device, Device]) -> None:
    """Test that a revoked device's session goes while its key stays, so a replacement is noticed."""
    alice, _ = pair
    alice.sessions.forget("bob", 1)
    assert not alice.sessions.has("bob", 1) and alice.sessions.devices("bob") == []
    device = alice.store.contacts.device("bob", 1)
    assert device is not None and device.trust is Trust.UNVERIFIED
    assert note_device(alice.store, "bob", 2, bytes(range(32))) == KeyChanged("bob", 2)


def test_ensure_makes_a_session_with_each_listed_device_and_notes_its_key(bench: Bench) -> None:
    """Test that fetched bundles give a session per device, a new device of a known colleague is a change."""
    directory = InMemoryDirectory()
    alice = bench.device("alice", directory=directory)
    bobs = [bench.device("bob", n) for n in (1, 2)]
    bobs[0].publish(directory)
    assert bench.run(alice.sessions.ensure("bob", None)) == [1]
    assert alice.store.contacts.get("bob").display_name == "bob"
    assert alice.events == []

    alice.sessions.forget("bob", 1)
    bobs[1].publish(directory)
    assert bench.run(alice.sessions.ensure("bob", None)) == [1, 2]
    assert alice.emitted(KeyChanged) == [KeyChanged("bob", 2)], "device 2 appeared beside the known one"
    assert alice.sessions.blocked("bob", 2) and not alice.sessions.blocked("bob", 1)
    with pytest.raises(NoDeviceError):
        bench.run(alice.sessions.ensure("nobody", None))


def test_devices_first_seen_in_one_fetch_are_the_accounts_devices_not_a_key_change(bench: Bench) -> None:
    """Test that a colleague's two devices, seen together on first contact, are both unverified and
    neither blocks; a third appearing later beside them is a change."""
    directory = InMemoryDirectory()
    alice = bench.device("alice", directory=directory)
    bobs = [bench.device("bob", n) for n in (1, 2, 3)]
    bobs[0].publish(directory)
    bobs[1].publish(directory)
    assert bench.run(alice.sessions.ensure("bob", None)) == [1, 2]
    assert alice.emitted(KeyChanged) == []
    assert not alice.sessions.blocked("bob")
    assert {d.trust for d in alice.store.contacts.devices("bob")} == {Trust.UNVERIFIED}

    bobs[2].publish(directory)
    alice.sessions.forget("bob", 1)
    alice.sessions.forget("bob", 2)
    assert bench.run(alice.sessions.ensure("bob", None)) == [1, 2, 3]
    assert alice.emitted(KeyChanged) == [KeyChanged("bob", 3)]
    assert alice.sessions.blocked("bob", 3) and not alice.sessions.blocked("bob", 2)


def test_a_bundle_whose_certificate_does_not_name_its_key_is_refused(bench: Bench) -> None:
    """Test that a fetched bundle is used only if its certificate, signed by the trust root and
    unexpired, names the account asked for, the device and the bundle's identity key: a relay
    handing out another key for Bob, with Bob's certificate or one it signed itself, gets nothing."""
    directory = InMemoryDirectory()
    alice = bench.device("alice", directory=directory)
    bob, mallory = bench.device("bob"), bench.device("mallory")
    forger = IdentityKeyPair.generate(bench.random)
    forged = [
        lambda: (mallory.bundle().to_bytes(), bob.certificate.encode()),
        lambda: (mallory.bundle().to_bytes(), mallory.certificate.encode()),
        lambda: (
            mallory.bundle().to_bytes(),
            DeviceCertificate.issue(
                forger, account_id="bob", device_id=1, identity_key=mallory.identity.public, expires_at=2**40
            ).encode(),
        ),
        lambda: (bob.bundle().to_bytes(), bench.certify("bob", 1, bob.identity.public, seconds=-1).encode()),
        lambda: (bob.bundle().to_bytes(), b"\x01 not a certificate"),
    ]
    for answer in forged:
        directory.publish("bob", 1, answer)
        with pytest.raises(NoDeviceError):
            bench.run(alice.sessions.ensure("bob", None))
        assert alice.sessions.devices("bob") == []
        assert alice.store.contacts.devices("bob") == []
    bob.publish(directory)
    assert bench.run(alice.sessions.ensure("bob", None)) == [1]
    device = alice.store.contacts.device("bob", 1)
    assert device is not None and device.identity_key == bob.identity.public
