"""Who this device is: its account, identity key, certificate and relay, as the store keeps them.

Loaded from the store when the profile opens, set once by enrolment, and the
certificate renewed on every connection. The parts that seal or authenticate read
them here; nothing else keeps a copy.
"""

from __future__ import annotations

import dataclasses

from app.base.errors import CertificateError, OfflineError, RemoteProtocolError
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.protocol.frames import Authenticated
from app.services.clock import Clock
from app.services.errors import NotEnrolledError
from app.services.settings import CERTIFICATE, RelaySettings, load_relay, save_relay, save_relay_address
from app.sync.link import RelayAddress
from storage.records import Identity
from storage.store import Store


class Credentials:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        record = store.identity.load()
        self.account: Identity | None = record
        self.identity: IdentityKeyPair | None = IdentityKeyPair.from_seed(record.seed) if record else None
        self.relay: RelaySettings | None = load_relay(store)
        saved = store.settings.get(CERTIFICATE)
        self.certificate: DeviceCertificate | None = (
            DeviceCertificate.parse(bytes.fromhex(saved)) if saved else None
        )
        self.upload_token = b""
        """Valid for the current connection only; a new one comes with each authentication."""

    def require(self) -> tuple[Identity, IdentityKeyPair]:
        if self.account is None or self.identity is None:
            raise NotEnrolledError("enrol this device first")
        return self.account, self.identity

    def certificate_valid(self) -> bool:
        return self.certificate is not None and self.certificate.expires_at > self._clock()

    def sealing_keys(self) -> tuple[IdentityKeyPair, DeviceCertificate]:
        """The identity and certificate a sealed envelope is made with."""
        if self.identity is None or self.certificate is None:
            raise OfflineError("this device has no certificate from the relay yet")
        return self.identity, self.certificate

    def save_enrolment(
        self,
        identity: IdentityKeyPair,
        account_id: str,
        device_id: int,
        relay: RelaySettings,
        certificate: bytes,
    ) -> Identity:
        """Keep what enrolment gave this device; it counts here once the transaction commits."""
        with self._store.transaction():
            account = self._store.identity.save(account_id, device_id, identity.seed)
            save_relay(self._store, relay)
            self._store.settings.set(CERTIFICATE, certificate.hex())
            self._store.after_commit(lambda: self._adopt(account, identity, relay, certificate))
        return account

    def readdressed(self, address: RelayAddress) -> None:
        """Reach the relay at ``address`` from now on (a newer organisation config moved it or
        rotated its pins); the device stays enrolled as it is."""
        if self.relay is None:
            raise NotEnrolledError("enrol this device first")
        save_relay_address(self._store, address)
        self.relay = dataclasses.replace(self.relay, address=address)

    def _adopt(
        self, account: Identity, identity: IdentityKeyPair, relay: RelaySettings, certificate: bytes
    ) -> None:
        self.account, self.identity, self.relay = account, identity, relay
        self.certificate = DeviceCertificate.parse(certificate)

    def renewed(self, authenticated: Authenticated) -> DeviceCertificate:
        """The relay authenticated this device: keep its fresh certificate and upload token.

        The certificate is checked as at enrolment (``own_certificate``); one that fails is
        ``CertificateError`` and the current certificate stays (the upload token is kept:
        it only lets this device upload to this relay).
        """
        account, identity = self.require()
        if self.relay is None:
            raise NotEnrolledError("enrol this device first")
        self.upload_token = authenticated.upload_token
        certificate = own_certificate(
            authenticated.certificate,
            trust_root=self.relay.trust_root,
            account_id=account.account_id,
            device_id=account.device_id,
            identity_key=identity.public,
            now=int(self._clock()),
        )
        self._store.settings.set(CERTIFICATE, authenticated.certificate.hex())
        self.certificate = certificate
        return certificate


def own_certificate(
    untrusted: bytes, *, trust_root: bytes, account_id: str, device_id: int, identity_key: bytes, now: int
) -> DeviceCertificate:
    """This device's certificate, once it is seen to be signed by ``trust_root``, unexpired, and to
    name this device's account, device id and identity key; ``CertificateError`` otherwise.

    Checked at enrolment and on every authentication: a relay that handed this device a
    certificate for another key or account would make every colleague refuse its messages,
    or make them speak for someone else.
    """
    try:
        certificate = DeviceCertificate.parse(untrusted)
    except RemoteProtocolError as e:
        raise CertificateError(f"this device's certificate does not parse: {e}") from e
    certificate.verify(trust_root=trust_root, now=now)
    named = (certificate.account_id, certificate.device_id, certificate.identity_key)
    if named != (account_id, device_id, identity_key):
        raise CertificateError("the relay's certificate does not name this device's account, id and key")
    return certificate
