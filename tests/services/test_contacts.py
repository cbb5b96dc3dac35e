"""Contacts: the contact list in the store, and names for senders not yet on it, with no relay."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.base.errors import OfflineError
from storage.errors import NotFoundError
from tests.support.devices import Bench, Device

GAVE_UP = "a contact keeps its account id as name"


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    opened = Bench(tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def alice(bench: Bench) -> Device:
    return bench.device("alice")


def _gave_up(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "app.services.contacts" and GAVE_UP in r.getMessage()]


def test_added_contacts_are_listed_and_updated(alice: Device) -> None:
    """Test that adding a contact again updates its name, and an unknown one is NotFoundError."""
    alice.contacts.add("bob", "Bob", "Finance")
    alice.contacts.add("carol", "Carol")
    alice.contacts.add("bob", "Bob Baker", "Treasury")
    assert sorted((c.account_id, c.display_name, c.department) for c in alice.contacts.list()) == [
        ("bob", "Bob Baker", "Treasury"),
        ("carol", "Carol", ""),
    ]
    assert alice.contacts.get("bob").display_name == "Bob Baker"
    with pytest.raises(NotFoundError):
        alice.contacts.get("mallory")


def test_an_unknown_sender_becomes_a_contact_named_by_account_id_when_offline(
    bench: Bench, alice: Device, caplog: pytest.LogCaptureFixture
) -> None:
    """Test that a stranger is kept under their account id, and an offline directory is no failure."""
    caplog.set_level(logging.DEBUG)
    with alice.store.transaction():
        alice.contacts.ensure("dave")
    assert alice.contacts.get("dave").display_name == "dave"
    bench.until(lambda: bool(_gave_up(caplog)), "the directory look-up gave up")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_known_contact_keeps_its_name_and_is_not_looked_up(
    bench: Bench, alice: Device, caplog: pytest.LogCaptureFixture
) -> None:
    """Test that ensuring a contact already on the list changes nothing and asks the directory nothing."""
    caplog.set_level(logging.DEBUG)
    alice.contacts.add("bob", "Bob Baker")
    alice.contacts.ensure("bob")
    bench.idle()
    assert alice.contacts.get("bob").display_name == "Bob Baker"
    assert _gave_up(caplog) == []


def test_a_directory_lookup_offline_is_an_offline_error(bench: Bench, alice: Device) -> None:
    """Test that searching the directory with no relay says so with OfflineError."""
    with pytest.raises(OfflineError):
        bench.run(alice.contacts.lookup("bob"))
