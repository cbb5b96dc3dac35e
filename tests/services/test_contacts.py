"""Contacts: the contact list in the store, and the names certificates give colleagues, with no relay."""

from __future__ import annotations

import pytest

from app.base.errors import OfflineError
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from storage.errors import NotFoundError
from tests.support.devices import Bench, Device


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


def _certificate(bench: Bench, account_id: str, name: str = "", department: str = "") -> DeviceCertificate:
    return DeviceCertificate.issue(
        IdentityKeyPair.generate(bench.random),
        account_id=account_id,
        device_id=1,
        identity_key=IdentityKeyPair.generate(bench.random).public,
        expires_at=2_000_000_000,
        display_name=name,
        department=department,
    )


def test_an_unknown_sender_is_named_by_their_certificate(bench: Bench, alice: Device) -> None:
    """Test that a stranger's certificate names the new contact (name and department), and that a
    certificate without a name (version 1) names them by account id."""
    with alice.store.transaction():
        alice.contacts.ensure(_certificate(bench, "dave", "Dave Dunn", "Legal"))
        alice.contacts.ensure(_certificate(bench, "erin"))
    assert (alice.contacts.get("dave").display_name, alice.contacts.get("dave").department) == (
        "Dave Dunn",
        "Legal",
    )
    assert alice.contacts.get("erin").display_name == "erin"


def test_a_known_contact_takes_a_new_name_from_the_certificate_and_keeps_its_own_otherwise(
    bench: Bench, alice: Device
) -> None:
    """Test that a contact keeps the name it has for a certificate without one, and takes the name
    and department of a certificate that names it otherwise (an admin renamed the account)."""
    alice.contacts.add("bob", "Bob Baker", "Finance")
    with alice.store.transaction():
        alice.contacts.ensure(_certificate(bench, "bob"))
    assert (alice.contacts.get("bob").display_name, alice.contacts.get("bob").department) == (
        "Bob Baker",
        "Finance",
    )
    with alice.store.transaction():
        alice.contacts.ensure(_certificate(bench, "bob", "Robert Baker", "Treasury"))
    assert (alice.contacts.get("bob").display_name, alice.contacts.get("bob").department) == (
        "Robert Baker",
        "Treasury",
    )


def test_a_directory_lookup_offline_is_an_offline_error(bench: Bench, alice: Device) -> None:
    """Test that searching the directory with no relay says so with OfflineError."""
    with pytest.raises(OfflineError):
        bench.run(alice.contacts.lookup("bob"))
