"""Signed prekeys in the store: made, published, retired and deleted for good."""

from __future__ import annotations

import pytest

from app.base.errors import StorageError
from storage.errors import NotFoundError
from storage.store import Store
from tests.storage.harness import FakeClock, database_files

SIGNATURE = b"s" * 64


def _private(key_id: int) -> bytes:
    """A private key whose bytes are easy to find on disk."""
    return bytes([0xA0 + key_id]) * 32


def test_enrolments_key_is_current_and_ids_grow_from_it(store: Store, clock: FakeClock) -> None:
    """Test that a key added as published is the current one, and the next id is one above it."""
    assert store.signed_prekeys.current() is None
    assert store.signed_prekeys.next_id() == 1
    store.signed_prekeys.add(1, _private(1), SIGNATURE, published=True)
    current = store.signed_prekeys.current()
    assert current is not None
    assert (current.key_id, current.private_key, current.signature) == (1, _private(1), SIGNATURE)
    assert current.created_at == current.published_at == clock()
    assert current.retired_at is None
    assert store.signed_prekeys.unpublished() is None
    assert store.signed_prekeys.next_id() == 2


def test_publishing_a_new_key_retires_the_current_one(store: Store, clock: FakeClock) -> None:
    """Test that an unpublished key is not current until published, and publishing retires the one before."""
    store.signed_prekeys.add(1, _private(1), SIGNATURE, published=True)
    clock.advance(10)
    store.signed_prekeys.add(2, _private(2), SIGNATURE, published=False)
    assert store.signed_prekeys.current().key_id == 1  # type: ignore[union-attr]
    assert store.signed_prekeys.unpublished().key_id == 2  # type: ignore[union-attr]
    clock.advance(10)
    store.signed_prekeys.publish(2)
    assert store.signed_prekeys.current().key_id == 2  # type: ignore[union-attr]
    assert store.signed_prekeys.unpublished() is None
    old = store.signed_prekeys.get(1)
    assert old.retired_at == clock() and old.private_key == _private(1), "kept for its grace period"
    with pytest.raises(ValueError, match="already published"):
        store.signed_prekeys.publish(2)


def test_at_most_one_key_waits_for_its_upload(store: Store) -> None:
    """Test that the store refuses a second unpublished signed prekey, and a second current one."""
    store.signed_prekeys.add(1, _private(1), SIGNATURE, published=True)
    store.signed_prekeys.add(2, _private(2), SIGNATURE, published=False)
    with pytest.raises(StorageError):
        store.signed_prekeys.add(3, _private(3), SIGNATURE, published=False)
    with pytest.raises(StorageError):
        store.signed_prekeys.add(4, _private(4), SIGNATURE, published=True)
    assert store.signed_prekeys.next_id() == 3


def test_only_keys_retired_before_the_cut_off_are_deleted(store: Store, clock: FakeClock) -> None:
    """Test that deleting retired keys spares the current one and those retired after the cut-off."""
    store.signed_prekeys.add(1, _private(1), SIGNATURE, published=True)
    for key_id in (2, 3):
        clock.advance(100)
        store.signed_prekeys.add(key_id, _private(key_id), SIGNATURE, published=False)
        store.signed_prekeys.publish(key_id)
    first_retired = store.signed_prekeys.get(1).retired_at
    assert first_retired is not None
    assert store.delete_retired_signed_prekeys(before=first_retired) == []
    assert store.delete_retired_signed_prekeys(before=first_retired + 1) == [1]
    with pytest.raises(NotFoundError):
        store.signed_prekeys.get(1)
    assert store.signed_prekeys.get(2).retired_at is not None
    assert store.delete_retired_signed_prekeys(before=clock() + 1000) == [2]
    assert store.signed_prekeys.current().key_id == 3  # type: ignore[union-attr]
    assert store.signed_prekeys.next_id() == 4, "ids never go back, even after deletions"


def test_a_deleted_private_key_is_gone_from_the_twin_raw_bytes(twin: Store, clock: FakeClock) -> None:
    """Test that a deleted signed prekey's private half is in neither the database file nor the WAL."""
    twin.signed_prekeys.add(1, _private(1), SIGNATURE, published=True)
    twin.signed_prekeys.add(2, _private(2), SIGNATURE, published=False)
    twin.signed_prekeys.publish(2)
    twin.checkpoint()
    assert _private(1) in b"".join(database_files(twin.profile_dir).values()), "the check must see it first"
    clock.advance(1)
    assert twin.delete_retired_signed_prekeys(before=clock()) == [1]
    raw = b"".join(database_files(twin.profile_dir).values())
    assert _private(1) not in raw
    assert _private(2) in raw
