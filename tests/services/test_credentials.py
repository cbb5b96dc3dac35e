"""Credentials: who this device is, as its store keeps it across restarts, and whom it trusts to
certify devices (the enrolment authority of the organisation config in force)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nacl.utils
import pytest

from app.base.errors import CertificateError, OfflineError
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.protocol.frames import Authenticated
from app.services.credentials import Credentials
from app.services.errors import AuthorityUnknownError, NotEnrolledError
from app.services.settings import CERTIFICATE, PENDING_ENROLMENT, RelaySettings
from app.sync.authority import AuthorityAddress
from storage.store import Store
from tests.support.clients import passphrase
from tests.support.devices import AUTHORITY_URL, NOW, RELAY, FakeClock
from tests.support.relay import TEST_AUTHORITY

LIFETIME = 3600
AUTHORITY = AuthorityAddress((AUTHORITY_URL,), RELAY.pins, TEST_AUTHORITY.public)
"""The enrolment authority an organisation config in force names (nothing connects to it here)."""


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
def identity() -> IdentityKeyPair:
    return IdentityKeyPair.generate(nacl.utils.random)


def _credentials(store: Store, clock: FakeClock) -> Credentials:
    return Credentials(store, clock, authority=lambda: AUTHORITY)


def _certificate(identity: IdentityKeyPair, expires_at: float) -> DeviceCertificate:
    return DeviceCertificate.issue(
        TEST_AUTHORITY,
        account_id="alice",
        device_id=3,
        identity_key=identity.public,
        expires_at=int(expires_at),
    )


def _enrol(
    credentials: Credentials, store: Store, identity: IdentityKeyPair, clock: FakeClock
) -> DeviceCertificate:
    certificate = _certificate(identity, clock() + LIFETIME)
    with store.transaction():
        credentials.save_enrolment(identity, certificate, RelaySettings(RELAY))
    return certificate


def test_an_unenrolled_profile_has_no_credentials(store: Store, clock: FakeClock) -> None:
    """Test that before enrolment nothing can be sealed or presented and the use cases are told to
    enrol first."""
    credentials = _credentials(store, clock)
    assert (credentials.account, credentials.identity, credentials.relay, credentials.certificate) == (
        None,
        None,
        None,
        None,
    )
    assert not credentials.certificate_valid()
    with pytest.raises(NotEnrolledError):
        credentials.require()
    with pytest.raises(NotEnrolledError):
        credentials.current_certificate()
    with pytest.raises(OfflineError):
        credentials.sealing_keys()


def test_the_trust_root_is_the_authority_key_of_the_config_in_force(store: Store, clock: FakeClock) -> None:
    """Test that the trust root is the enrolment authority key the config in force names, read
    afresh each time, and that with no config in force there is none (AuthorityUnknownError)."""
    in_force: list[AuthorityAddress] = []
    credentials = Credentials(store, clock, authority=lambda: in_force[0] if in_force else None)
    with pytest.raises(AuthorityUnknownError, match="no organisation config is in force"):
        credentials.trust_root()
    with pytest.raises(AuthorityUnknownError):
        credentials.authority()
    in_force.append(AUTHORITY)
    assert credentials.trust_root() == TEST_AUTHORITY.public
    assert credentials.authority() == AUTHORITY


def test_enrolment_is_kept_across_a_restart(
    store: Store, profile: Path, clock: FakeClock, identity: IdentityKeyPair
) -> None:
    """Test that what enrolment saved, the account and device id the certificate names among it, is
    what a reopened profile's credentials load and present."""
    certificate = _enrol(_credentials(store, clock), store, identity, clock)
    store.close()
    with Store.open(profile, passphrase(), clock=clock) as reopened:
        loaded = _credentials(reopened, clock)
        account, loaded_identity = loaded.require()
        assert (account.account_id, account.device_id) == ("alice", 3)
        assert loaded_identity.public == identity.public
        assert loaded.relay == RelaySettings(RELAY)
        assert loaded.certificate == certificate
        assert loaded.current_certificate() == certificate.encode()
        assert loaded.sealing_keys() == (loaded_identity, certificate)


def test_an_enrolment_rolled_back_leaves_the_device_unenrolled(
    store: Store, clock: FakeClock, identity: IdentityKeyPair
) -> None:
    """Test that credentials whose enrolment transaction rolled back stay as unenrolled as the store."""
    credentials = _credentials(store, clock)
    certificate = _certificate(identity, clock() + LIFETIME)
    with pytest.raises(Rollback), store.transaction():
        credentials.save_enrolment(identity, certificate, RelaySettings(RELAY))
        raise Rollback
    assert store.identity.load() is None
    assert credentials.account is None and credentials.certificate is None


def test_a_pending_enrolment_is_kept_until_the_enrolment_is_saved(
    store: Store, profile: Path, clock: FakeClock, identity: IdentityKeyPair
) -> None:
    """Test that the identity and certificate of an enrolment the relay has not registered yet are
    kept across a restart, and that saving the enrolment drops them."""
    certificate = _certificate(identity, clock() + LIFETIME)
    _credentials(store, clock).save_pending(identity, certificate.encode())
    store.close()
    with Store.open(profile, passphrase(), clock=clock) as reopened:
        credentials = _credentials(reopened, clock)
        pending = credentials.pending_enrolment()
        assert pending is not None
        kept_identity, kept_certificate = pending
        assert (kept_identity.seed, kept_certificate) == (identity.seed, certificate.encode())
        assert credentials.account is None
        with reopened.transaction():
            credentials.save_enrolment(kept_identity, certificate, RelaySettings(RELAY))
        assert credentials.pending_enrolment() is None
        assert reopened.settings.get(PENDING_ENROLMENT) is None


def test_a_dropped_pending_enrolment_is_gone(
    store: Store, clock: FakeClock, identity: IdentityKeyPair
) -> None:
    """Test that a pending enrolment dropped (its certificate no longer valid) leaves nothing."""
    credentials = _credentials(store, clock)
    credentials.save_pending(identity, _certificate(identity, clock() + LIFETIME).encode())
    credentials.drop_pending()
    assert credentials.pending_enrolment() is None
    assert store.settings.get(PENDING_ENROLMENT) is None


def test_the_certificate_is_valid_until_it_expires(
    store: Store, clock: FakeClock, identity: IdentityKeyPair
) -> None:
    """Test that certificate_valid follows the injected clock up to the certificate's expiry."""
    credentials = _credentials(store, clock)
    certificate = _enrol(credentials, store, identity, clock)
    clock.now = certificate.expires_at - 1
    assert credentials.certificate_valid()
    clock.now = certificate.expires_at
    assert not credentials.certificate_valid()


def test_a_renewed_certificate_is_kept_and_the_upload_token_is_not(
    store: Store, profile: Path, clock: FakeClock, identity: IdentityKeyPair
) -> None:
    """Test that a renewal's certificate replaces the old one on disk and is what the device presents
    from then on, while the relay's upload token is kept in memory only."""
    credentials = _credentials(store, clock)
    _enrol(credentials, store, identity, clock)
    credentials.online(Authenticated(b"token"))
    clock.advance(LIFETIME)
    fresh = _certificate(identity, clock() + LIFETIME)
    assert credentials.renewed(fresh.encode()) == fresh
    assert credentials.certificate_valid() and credentials.upload_token == b"token"
    assert credentials.current_certificate() == fresh.encode()

    store.close()
    with Store.open(profile, passphrase(), clock=clock) as reopened:
        loaded = _credentials(reopened, clock)
        assert loaded.certificate == fresh and loaded.upload_token == b""


def test_a_renewed_certificate_that_is_not_this_devices_own_is_refused(
    store: Store, clock: FakeClock, identity: IdentityKeyPair
) -> None:
    """Test that a certificate naming another key, account or device id, signed by another key than
    the config's authority key, expired, or not a certificate at all, is CertificateError, and the
    current one stays, on disk too."""
    credentials = _credentials(store, clock)
    current = _enrol(credentials, store, identity, clock)
    on_disk = store.settings.get(CERTIFICATE)
    stranger = IdentityKeyPair.generate(nacl.utils.random)
    later = int(clock() + 2 * LIFETIME)

    def issued(signer: IdentityKeyPair, account_id: str, device_id: int, key: bytes, until: int) -> bytes:
        return DeviceCertificate.issue(
            signer, account_id=account_id, device_id=device_id, identity_key=key, expires_at=until
        ).encode()

    refused = [
        issued(TEST_AUTHORITY, "alice", 3, stranger.public, later),
        issued(TEST_AUTHORITY, "mallory", 3, identity.public, later),
        issued(TEST_AUTHORITY, "alice", 4, identity.public, later),
        issued(stranger, "alice", 3, identity.public, later),
        issued(TEST_AUTHORITY, "alice", 3, identity.public, int(clock())),
        b"\x01 not a certificate",
    ]
    for untrusted in refused:
        with pytest.raises(CertificateError):
            credentials.renewed(untrusted)
        assert credentials.certificate == current
        assert credentials.current_certificate() == current.encode()
        assert store.settings.get(CERTIFICATE) == on_disk
    fresh = issued(TEST_AUTHORITY, "alice", 3, identity.public, later)
    assert credentials.renewed(fresh).encode() == fresh
