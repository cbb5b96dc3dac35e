"""Credentials: who this device is, as its store keeps it across restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nacl.utils
import pytest

from app.base.errors import CertificateError, OfflineError
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.protocol.frames import Authenticated
from app.services.account import Account
from app.services.credentials import Credentials
from app.services.errors import NotEnrolledError
from app.services.events import Emitter, Event, Problem
from app.services.settings import CERTIFICATE, RelaySettings
from app.services.tasks import Tasks
from app.sync.link import RelayLink
from storage.store import Store
from tests.support.clients import passphrase
from tests.support.devices import NOW, RELAY, FakeClock

LIFETIME = 3600


class Rollback(Exception):
    """Raised by a test to roll its transaction back."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return tmp_path / "profile"


@pytest.fixture
def store(profile: Path, clock: FakeClock) -> Iterator[Store]:
    opened = Store.create(profile, passphrase(), clock=clock)
    yield opened
    opened.close()


@pytest.fixture
def root() -> IdentityKeyPair:
    return IdentityKeyPair.generate(nacl.utils.random)


@pytest.fixture
def identity() -> IdentityKeyPair:
    return IdentityKeyPair.generate(nacl.utils.random)


def _certificate(root: IdentityKeyPair, identity: IdentityKeyPair, expires_at: float) -> DeviceCertificate:
    return DeviceCertificate.issue(
        root, account_id="alice", device_id=3, identity_key=identity.public, expires_at=int(expires_at)
    )


def _enrol(
    credentials: Credentials, store: Store, root: IdentityKeyPair, identity: IdentityKeyPair, clock: FakeClock
) -> DeviceCertificate:
    certificate = _certificate(root, identity, clock() + LIFETIME)
    with store.transaction():
        credentials.save_enrolment(
            identity, "alice", 3, RelaySettings(RELAY, root.public), certificate.encode()
        )
    return certificate


def test_an_unenrolled_profile_has_no_credentials(store: Store, clock: FakeClock) -> None:
    """Test that before enrolment nothing can be sealed and the use cases are told to enrol first."""
    credentials = Credentials(store, clock)
    assert (credentials.account, credentials.identity, credentials.relay, credentials.certificate) == (
        None,
        None,
        None,
        None,
    )
    assert not credentials.certificate_valid()
    with pytest.raises(NotEnrolledError):
        credentials.require()
    with pytest.raises(OfflineError):
        credentials.sealing_keys()


def test_enrolment_is_kept_across_a_restart(
    store: Store, profile: Path, clock: FakeClock, root: IdentityKeyPair, identity: IdentityKeyPair
) -> None:
    """Test that what enrolment saved is what a reopened profile's credentials load."""
    certificate = _enrol(Credentials(store, clock), store, root, identity, clock)
    store.close()
    with Store.open(profile, passphrase(), clock=clock) as reopened:
        loaded = Credentials(reopened, clock)
        account, loaded_identity = loaded.require()
        assert (account.account_id, account.device_id) == ("alice", 3)
        assert loaded_identity.public == identity.public
        assert loaded.relay == RelaySettings(RELAY, root.public)
        assert loaded.certificate == certificate
        assert loaded.sealing_keys() == (loaded_identity, certificate)


def test_an_enrolment_rolled_back_leaves_the_device_unenrolled(
    store: Store, clock: FakeClock, root: IdentityKeyPair, identity: IdentityKeyPair
) -> None:
    """Test that credentials whose enrolment transaction rolled back stay as unenrolled as the store."""
    credentials = Credentials(store, clock)
    certificate = _certificate(root, identity, clock() + LIFETIME)
    with pytest.raises(Rollback), store.transaction():
        credentials.save_enrolment(
            identity, "alice", 3, RelaySettings(RELAY, root.public), certificate.encode()
        )
        raise Rollback
    assert store.identity.load() is None
    assert credentials.account is None and credentials.certificate is None


def test_the_certificate_is_valid_until_it_expires(
    store: Store, clock: FakeClock, root: IdentityKeyPair, identity: IdentityKeyPair
) -> None:
    """Test that certificate_valid follows the injected clock up to the certificate's expiry."""
    credentials = Credentials(store, clock)
    certificate = _enrol(credentials, store, root, identity, clock)
    clock.now = certificate.expires_at - 1
    assert credentials.certificate_valid()
    clock.now = certificate.expires_at
    assert not credentials.certificate_valid()


def test_a_renewed_certificate_is_kept_and_the_upload_token_is_not(
    store: Store, profile: Path, clock: FakeClock, root: IdentityKeyPair, identity: IdentityKeyPair
) -> None:
    """Test that a renewal's certificate replaces the old one on disk, its upload token only in memory."""
    credentials = Credentials(store, clock)
    _enrol(credentials, store, root, identity, clock)
    clock.advance(LIFETIME)
    fresh = _certificate(root, identity, clock() + LIFETIME)
    assert credentials.renewed(Authenticated(fresh.encode(), b"token")) == fresh
    assert credentials.certificate_valid() and credentials.upload_token == b"token"

    store.close()
    with Store.open(profile, passphrase(), clock=clock) as reopened:
        loaded = Credentials(reopened, clock)
        assert loaded.certificate == fresh and loaded.upload_token == b""


def test_a_renewed_certificate_that_is_not_this_devices_own_is_refused(
    store: Store, clock: FakeClock, root: IdentityKeyPair, identity: IdentityKeyPair
) -> None:
    """Test that a certificate naming another key, account or device id, signed by another root,
    expired, or not a certificate at all, is CertificateError, and the current one stays, on disk too."""
    credentials = Credentials(store, clock)
    current = _enrol(credentials, store, root, identity, clock)
    on_disk = store.settings.get(CERTIFICATE)
    stranger = IdentityKeyPair.generate(nacl.utils.random)
    later = int(clock() + 2 * LIFETIME)

    def issued(signer: IdentityKeyPair, account_id: str, device_id: int, key: bytes, until: int) -> bytes:
        return DeviceCertificate.issue(
            signer, account_id=account_id, device_id=device_id, identity_key=key, expires_at=until
        ).encode()

    refused = [
        issued(root, "alice", 3, stranger.public, later),
        issued(root, "mallory", 3, identity.public, later),
        issued(root, "alice", 4, identity.public, later),
        issued(stranger, "alice", 3, identity.public, later),
        issued(root, "alice", 3, identity.public, int(clock())),
        b"\x01 not a certificate",
    ]
    for untrusted in refused:
        with pytest.raises(CertificateError):
            credentials.renewed(Authenticated(untrusted, b"token"))
        assert credentials.certificate == current
        assert store.settings.get(CERTIFICATE) == on_disk
    fresh = issued(root, "alice", 3, identity.public, later)
    assert credentials.renewed(Authenticated(fresh, b"token")).encode() == fresh


def test_an_account_told_of_a_foreign_certificate_keeps_its_own_and_says_so(
    store: Store, clock: FakeClock, root: IdentityKeyPair, identity: IdentityKeyPair
) -> None:
    """Test that Account.authenticated, given a certificate for another key, emits a Problem and keeps
    sealing with the current certificate."""
    credentials = Credentials(store, clock)
    current = _enrol(credentials, store, root, identity, clock)
    events: list[Event] = []
    runner = asyncio.Runner()
    try:
        account = Account(
            store,
            credentials=credentials,
            relay=RelayLink(),
            tasks=Tasks(runner.get_loop()),
            emitter=Emitter(events.append),
            clock=clock,
            random=nacl.utils.random,
            organisation_relay=lambda: None,
        )
        foreign = DeviceCertificate.issue(
            root,
            account_id="alice",
            device_id=3,
            identity_key=IdentityKeyPair.generate(nacl.utils.random).public,
            expires_at=int(clock() + LIFETIME),
        )
        account.authenticated(Authenticated(foreign.encode(), b"token"))
    finally:
        runner.close()
    assert [type(e) for e in events] == [Problem]
    assert credentials.sealing_keys() == (identity, current)
