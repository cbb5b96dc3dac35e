"""Receiving's bookkeeping: contacts' device keys (new, changed, replacement) and lost files' names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.base.limits import MAX_FILENAME_BYTES
from app.services.events import KeyChanged
from app.services.incoming import UNAVAILABLE_SUFFIX, unavailable_name
from app.services.sessions import blocked, note_device
from storage.records import Trust
from storage.store import Store
from tests.support.clients import passphrase


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
