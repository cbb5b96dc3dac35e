"""The base keys of accepted first messages: kept with the signed prekey they named, and no longer."""

from __future__ import annotations

from pathlib import Path

import nacl.utils

from app.crypto.keys import IdentityKeyPair, OneTimePreKey, PreKeyBundle, SignedPreKey
from app.crypto.session import PreKeyMessage, accept_session, initiate_session
from storage import schema
from storage.database import Database
from storage.keyheader import write_header
from storage.keys import Passphrase, provision
from storage.store import ATTACHMENTS_NAME, DATABASE_NAME, KEY_HEADER_NAME, Store
from tests.storage.harness import FakeClock

SIGNATURE = b"s" * 64
ALICE, BASE = b"\xa1" * 32, b"\xba" * 32


def test_a_base_key_is_known_for_its_sender_only(store: Store) -> None:
    """Test that a recorded base key is found for the identity key it came with, and not for another."""
    store.signed_prekeys.add(1, b"\x01" * 32, SIGNATURE, published=True)
    assert not store.base_keys.contains(ALICE, BASE)
    store.base_keys.add(ALICE, BASE, signed_prekey_id=1)
    store.base_keys.add(ALICE, BASE, signed_prekey_id=1)
    assert store.base_keys.contains(ALICE, BASE)
    assert not store.base_keys.contains(b"\xa2" * 32, BASE)
    assert not store.base_keys.contains(ALICE, b"\xbb" * 32)


def test_a_base_key_goes_with_the_signed_prekey_it_named(store: Store, clock: FakeClock) -> None:
    """Test that deleting a retired signed prekey forgets the base keys of its messages, and only those."""
    store.signed_prekeys.add(1, b"\x01" * 32, SIGNATURE, published=True)
    store.base_keys.add(ALICE, BASE, signed_prekey_id=1)
    clock.advance(10)
    store.signed_prekeys.add(2, b"\x02" * 32, SIGNATURE, published=False)
    store.signed_prekeys.publish(2)
    store.base_keys.add(ALICE, b"\xbb" * 32, signed_prekey_id=2)
    assert store.delete_retired_signed_prekeys(before=clock() + 1) == [1]
    assert not store.base_keys.contains(ALICE, BASE)
    assert store.base_keys.contains(ALICE, b"\xbb" * 32)


def test_migrating_to_v8_keeps_the_base_keys_of_stored_sessions(
    profile: Path, passphrase: Passphrase, clock: FakeClock
) -> None:
    """Test that a v7 store's sessions give their base keys, tied to the newest signed prekey."""
    random = nacl.utils.random
    alice, bob = IdentityKeyPair.generate(random), IdentityKeyPair.generate(random)
    signed, one_time = SignedPreKey.generate(bob, 4, random), OneTimePreKey.generate(9, random)
    bundle = PreKeyBundle(bob.public, 4, signed.keypair.public, signed.signature, 9, one_time.keypair.public)
    first = PreKeyMessage.parse(initiate_session(alice, bundle, random).encrypt(b"hello").body)
    session, _ = accept_session(bob, first, signed, one_time, random)

    profile.mkdir()
    (profile / ATTACHMENTS_NAME).mkdir()
    header, raw_key = provision(passphrase, random)
    db = Database.create(profile / DATABASE_NAME, raw_key)
    schema.migrate(db, target=7)
    with db.transaction():
        for key_id in (3, 4):
            db.execute(
                """INSERT INTO signed_prekeys (key_id, private_key, signature, created_at, published_at,
                    retired_at) VALUES (?, ?, ?, 1, 1, ?)""",
                (key_id, bytes([key_id]) * 32, SIGNATURE, 2 if key_id == 3 else None),
            )
        db.execute(
            "INSERT INTO sessions (account_id, device_id, state, updated_at) VALUES ('alice', 1, ?, 5)",
            (session.to_bytes(),),
        )
        db.execute(
            "INSERT INTO sessions (account_id, device_id, state, updated_at) VALUES ('carol', 1, ?, 5)",
            (b"not session state",),
        )
    db.close()
    write_header(profile / KEY_HEADER_NAME, header)

    with Store.open(profile, passphrase, clock=clock) as store:
        assert store.schema_version == schema.LATEST_VERSION
        assert store.base_keys.contains(alice.public, first.base_key)
        assert store.delete_retired_signed_prekeys(before=10) == [3]
        assert store.base_keys.contains(alice.public, first.base_key), "tied to the newest key"
        assert store.sessions.get("carol", 1) == b"not session state"
