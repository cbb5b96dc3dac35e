"""The database key: OS keystore (real Secret Service) and passphrase, and every way unlocking fails."""

from __future__ import annotations

from pathlib import Path

import keyring.backends.fail
import pytest
from nacl.utils import random

from storage.errors import (
    KeystoreEntryCorruptError,
    KeystoreEntryMissingError,
    KeystoreLockedError,
    KeystoreUnavailableError,
    ProtectionMismatchError,
    WrongKeyError,
    WrongPassphraseError,
)
from storage.keyheader import MINIMUM_COST, Protection
from storage.keys import (
    KEYSTORE_SERVICE,
    KEYSTORE_VALUE_PREFIX,
    Keystore,
    Passphrase,
    kept_secret,
    keystore_available,
)
from storage.records import ConversationKind, MessageStatus, NewMessage
from storage.store import KEY_HEADER_NAME, Store, protection_of
from tests.conftest import require
from tests.storage.harness import PASSPHRASE, FakeClock, SecretService, snapshot, tree_bytes


def _fill(store: Store) -> None:
    conversation = store.conversations.create(ConversationKind.DIRECT, peer_account_id="bob@ministry")
    store.messages.add(NewMessage(conversation.id, b"m1", "budget figures", MessageStatus.SENT, sent_at=1.0))


def test_keystore_profile_round_trip(profile: Path, keystore: Keystore, clock: FakeClock) -> None:
    """Test that a keystore-protected profile reopens with the key the keystore holds."""
    with Store.create(profile, keystore, clock=clock) as store:
        _fill(store)
    assert protection_of(profile) is Protection.KEYSTORE
    with Store.open(profile, keystore, clock=clock) as store:
        assert store.messages.search("budget")[0].body == "budget figures"


def test_keystore_key_is_in_the_keystore_and_nowhere_in_the_profile(
    profile: Path, keystore: Keystore, secret_service: SecretService, clock: FakeClock
) -> None:
    """Test that the raw key is stored in Secret Service and appears in no file of the profile folder."""
    with Store.create(profile, keystore, clock=clock) as store:
        _fill(store)
        name = store.header.profile_name
    value = keystore.resolve().get_password(KEYSTORE_SERVICE, name)
    assert value is not None and value.startswith(KEYSTORE_VALUE_PREFIX)
    assert value.encode() in secret_service.secrets()
    raw_key = bytes.fromhex(value.removeprefix(KEYSTORE_VALUE_PREFIX))
    on_disk = tree_bytes(profile)
    assert raw_key not in on_disk
    assert raw_key.hex().encode() not in on_disk
    assert raw_key.hex().upper().encode() not in on_disk


def test_missing_keystore_entry(profile: Path, keystore: Keystore, clock: FakeClock) -> None:
    """Test that a deleted keystore entry raises KeystoreEntryMissingError and changes no file."""
    with Store.create(profile, keystore, clock=clock) as store:
        _fill(store)
        name = store.header.profile_name
    keystore.resolve().delete_password(KEYSTORE_SERVICE, name)
    before = snapshot(profile)
    with pytest.raises(KeystoreEntryMissingError, match="not in the system keystore"):
        Store.open(profile, keystore, clock=clock)
    assert snapshot(profile) == before


def test_keystore_entry_of_another_key_is_a_wrong_key(
    profile: Path, keystore: Keystore, clock: FakeClock
) -> None:
    """Test that a well-formed keystore key that does not match the profile raises WrongKeyError."""
    with Store.create(profile, keystore, clock=clock) as store:
        _fill(store)
        name = store.header.profile_name
    keystore.resolve().set_password(KEYSTORE_SERVICE, name, KEYSTORE_VALUE_PREFIX + "ab" * 32)
    before = snapshot(profile)
    with pytest.raises(WrongKeyError) as raised:
        Store.open(profile, keystore, clock=clock)
    assert not isinstance(raised.value, WrongPassphraseError)
    assert snapshot(profile) == before


def test_damaged_keystore_entry(profile: Path, keystore: Keystore, clock: FakeClock) -> None:
    """Test that a keystore value Enclave did not write raises KeystoreEntryCorruptError, changing no file."""
    with Store.create(profile, keystore, clock=clock) as store:
        name = store.header.profile_name
    keystore.resolve().set_password(KEYSTORE_SERVICE, name, "hunter2")
    before = snapshot(profile)
    with pytest.raises(KeystoreEntryCorruptError):
        Store.open(profile, keystore, clock=clock)
    assert snapshot(profile) == before


def test_locked_keystore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    """Test that a locked Secret Service collection raises KeystoreLockedError and changes no file."""
    require(SecretService.available(), "gnome-keyring-daemon and dbus-daemon are not installed")
    service = SecretService.start(tmp_path / "locked-service")  # its own daemon: locking is not undone
    try:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", service.address)
        keystore = Keystore(service.backend())
        profile = tmp_path / "profile"
        with Store.create(profile, keystore, clock=clock) as store:
            _fill(store)
        service.lock()
        before = snapshot(profile)
        with pytest.raises(KeystoreLockedError, match="locked"):
            Store.open(profile, keystore, clock=clock)
        assert snapshot(profile) == before
    finally:
        service.stop()


def test_keystore_that_went_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    """Test that a Secret Service that stopped answering raises KeystoreUnavailableError, changing no file."""
    require(SecretService.available(), "gnome-keyring-daemon and dbus-daemon are not installed")
    service = SecretService.start(tmp_path / "vanishing-service")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", service.address)
    keystore = Keystore(service.backend())
    profile = tmp_path / "profile"
    with Store.create(profile, keystore, clock=clock) as store:
        _fill(store)
    service.stop()
    before = snapshot(profile)
    with pytest.raises(KeystoreUnavailableError):
        Store.open(profile, keystore, clock=clock)
    assert snapshot(profile) == before


def test_no_keystore_backend_falls_back_to_a_passphrase(profile: Path, clock: FakeClock) -> None:
    """Test that without a keystore backend creation says so, and the passphrase path works instead."""
    none = Keystore(keyring.backends.fail.Keyring())
    assert not keystore_available(none.backend)
    with pytest.raises(KeystoreUnavailableError, match="passphrase"):
        Store.create(profile, none, clock=clock)
    assert not (profile / KEY_HEADER_NAME).exists()
    with Store.create(profile, Passphrase(PASSPHRASE, MINIMUM_COST), clock=clock) as store:
        _fill(store)
    assert protection_of(profile) is Protection.PASSPHRASE


def test_keystore_available_with_secret_service(keystore: Keystore) -> None:
    """Test that a working Secret Service backend counts as an available keystore."""
    assert keystore_available(keystore.backend)


def test_passphrase_round_trip_and_header(profile: Path, passphrase: Passphrase, clock: FakeClock) -> None:
    """Test that a passphrase profile reopens with the passphrase, its salt and cost in the key header."""
    with Store.create(profile, passphrase, clock=clock) as store:
        _fill(store)
        header = store.header
    assert header.cost == MINIMUM_COST and len(header.salt) == 16
    assert (profile / KEY_HEADER_NAME).stat().st_mode & 0o777 == 0o600
    with Store.open(profile, Passphrase(PASSPHRASE), clock=clock) as store:
        assert store.messages.count() == 1


def test_passphrase_is_unicode_normalised(profile: Path, clock: FakeClock) -> None:
    """Test that the same passphrase typed in composed or decomposed Unicode opens the profile."""
    with Store.create(profile, Passphrase("caf\u00e9 au lait", MINIMUM_COST), clock=clock):
        pass
    with Store.open(profile, Passphrase("cafe\u0301 au lait"), clock=clock) as store:
        assert store.schema_version >= 1


def test_wrong_passphrase(profile: Path, passphrase: Passphrase, clock: FakeClock) -> None:
    """Test that a wrong passphrase raises WrongPassphraseError and changes no file."""
    with Store.create(profile, passphrase, clock=clock) as store:
        _fill(store)
    before = snapshot(profile)
    with pytest.raises(WrongPassphraseError, match="Wrong passphrase"):
        Store.open(profile, Passphrase(PASSPHRASE + "!"), clock=clock)
    assert snapshot(profile) == before


def test_protection_mismatch(
    profile: Path, passphrase: Passphrase, keystore: Keystore, clock: FakeClock
) -> None:
    """Test that offering a keystore for a passphrase profile is refused by name and changes no file."""
    with Store.create(profile, passphrase, clock=clock):
        pass
    before = snapshot(profile)
    with pytest.raises(ProtectionMismatchError, match="a passphrase"):
        Store.open(profile, keystore, clock=clock)
    assert snapshot(profile) == before


def test_the_default_cost_is_moderate() -> None:
    """Test that a passphrase created without a cost gets Argon2id's moderate cost, not the test minimum."""
    assert Passphrase("x").cost.memlimit >= 256 * 1024 * 1024


def test_a_kept_secret_is_made_once_kept_in_the_keystore_and_given_back(
    secret_service: SecretService,
) -> None:
    """Test that kept_secret makes a 256-bit secret on first use, stores it in the Secret Service,
    gives the same one back later, and keeps a different one under another name."""
    backend = secret_service.backend()
    first = kept_secret("local-organisation /tmp/home root", random, backend)
    assert len(bytes.fromhex(first)) == 32
    assert kept_secret("local-organisation /tmp/home root", random, backend) == first
    other = kept_secret("local-organisation /tmp/home authority", random, backend)
    assert other != first
    assert first.encode() in secret_service.secrets() and other.encode() in secret_service.secrets()


def test_a_kept_secret_without_a_keystore_is_a_keystore_error() -> None:
    """Test that kept_secret with no keystore backend is KeystoreUnavailableError, not a secret."""
    with pytest.raises(KeystoreUnavailableError):
        kept_secret("anything", random, keyring.backends.fail.Keyring())
