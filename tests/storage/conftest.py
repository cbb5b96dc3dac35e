"""Fixtures of the store's tests: real SQLCipher files in tmp_path, a real Secret Service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.keyheader import MINIMUM_COST
from storage.keys import Keystore, Passphrase, Unencrypted
from storage.records import Conversation, ConversationKind
from storage.store import Store
from tests.conftest import require
from tests.storage.harness import PASSPHRASE, FakeClock, SecretService


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return tmp_path / "profile"


@pytest.fixture
def passphrase() -> Passphrase:
    """The passphrase path at libsodium's minimum Argon2id cost: the real derivation, fast."""
    return Passphrase(PASSPHRASE, MINIMUM_COST)


@pytest.fixture
def store(profile: Path, passphrase: Passphrase, clock: FakeClock) -> Iterator[Store]:
    """A new SQLCipher store protected by a passphrase."""
    opened = Store.create(profile, passphrase, clock=clock)
    yield opened
    opened.close()


@pytest.fixture
def twin(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    """The unencrypted twin: the same store code on a plain SQLite file, to read raw bytes."""
    opened = Store.create(tmp_path / "twin", Unencrypted(), clock=clock)
    yield opened
    opened.close()


@pytest.fixture
def direct(store: Store) -> Conversation:
    return store.conversations.create(ConversationKind.DIRECT, peer_account_id="alice@ministry")


@pytest.fixture(scope="session")
def secret_service_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretService | None]:
    """gnome-keyring on a private bus for the whole session (None where it is not installed)."""
    if not SecretService.available():
        yield None
        return
    service = SecretService.start(tmp_path_factory.mktemp("secret-service"))
    yield service
    service.stop()


@pytest.fixture
def secret_service(
    secret_service_daemon: SecretService | None, monkeypatch: pytest.MonkeyPatch
) -> SecretService:
    """The private Secret Service, made the one ``keyring`` talks to for this test."""
    require(
        secret_service_daemon,
        "gnome-keyring-daemon and dbus-daemon are not installed (test.sh installs them)",
    )
    if secret_service_daemon is None:
        raise RuntimeError("unreachable: require() skipped or failed")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", secret_service_daemon.address)
    return secret_service_daemon


@pytest.fixture
def keystore(secret_service: SecretService) -> Keystore:
    """The keystore path against the real Secret Service backend (never the user's keyring)."""
    return Keystore(secret_service.backend())
