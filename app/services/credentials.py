"""Who this device is: its account, identity key, certificate and relay, as the store keeps them,
and whom it trusts to certify devices.

Loaded from the store when the profile opens, set once by enrolment, and the certificate
replaced by each renewal at the enrolment authority. The parts that seal, open or
authenticate read them here; nothing else keeps a copy. The trust root of every
certificate, this device's and its colleagues', is the enrolment authority key of the
organisation config in force (``trust_root``), never a key the relay hands out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from app.base.errors import CertificateError, OfflineError, RemoteProtocolError
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.protocol.frames import Authenticated
from app.services.clock import Clock
from app.services.errors import AuthorityUnknownError, NotEnrolledError
from app.services.settings import (
    CERTIFICATE,
    CERTIFICATE_RECEIVED,
    PENDING_ENROLMENT,
    RelaySettings,
    load_relay,
    save_relay,
    save_relay_address,
)
from app.sync.authority import AuthorityAddress
from app.sync.link import RelayAddress
from storage.records import Identity
from storage.store import Store


class Credentials:
    def __init__(
        self, store: Store, clock: Clock, *, authority: Callable[[], AuthorityAddress | None]
    ) -> None:
        self._store = store
        self._clock = clock
        self._authority = authority
        """The enrolment authority the organisation config in force names (``Provisioning.authority``)."""
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

    def authority(self) -> AuthorityAddress:
        """The enrolment authority of the config in force; ``AuthorityUnknownError`` with none."""
        authority = self._authority()
        if authority is None:
            raise AuthorityUnknownError(
                "no organisation config is in force, so this device knows no enrolment authority: "
                "install or import your organisation's config"
            )
        return authority

    def trust_root(self) -> bytes:
        """The key every device certificate must be signed by: the config's authority key."""
        return self.authority().key

    def certificate_valid(self) -> bool:
        return self.certificate is not None and self.certificate.expires_at > self._clock()

    def sealing_keys(self) -> tuple[IdentityKeyPair, DeviceCertificate]:
        """The identity and certificate a sealed envelope is made with."""
        if self.identity is None or self.certificate is None:
            raise OfflineError("this device has no certificate from the enrolment authority yet")
        return self.identity, self.certificate

    def pending_enrolment(self) -> tuple[IdentityKeyPair, bytes] | None:
        """The identity and certificate of an enrolment the relay has not registered yet."""
        saved = self._store.settings.get(PENDING_ENROLMENT)
        if saved is None:
            return None
        seed, certificate = saved.split(" ")
        return IdentityKeyPair.from_seed(bytes.fromhex(seed)), bytes.fromhex(certificate)

    def save_pending(self, identity: IdentityKeyPair, certificate: bytes) -> None:
        with self._store.transaction():
            self._store.settings.set(PENDING_ENROLMENT, f"{identity.seed.hex()} {certificate.hex()}")

    def drop_pending(self) -> None:
        with self._store.transaction():
            self._store.settings.delete(PENDING_ENROLMENT)

    def save_enrolment(
        self, identity: IdentityKeyPair, certificate: DeviceCertificate, relay: RelaySettings
    ) -> Identity:
        """Keep what enrolment gave this device; it counts here once the transaction commits."""
        with self._store.transaction():
            account = self._store.identity.save(certificate.account_id, certificate.device_id, identity.seed)
            save_relay(self._store, relay)
            self._store.settings.set(CERTIFICATE, certificate.encode().hex())
            self._store.settings.set(CERTIFICATE_RECEIVED, str(int(self._clock())))
            self._store.settings.delete(PENDING_ENROLMENT)
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
        self,
        account: Identity,
        identity: IdentityKeyPair,
        relay: RelaySettings,
        certificate: DeviceCertificate,
    ) -> None:
        self.account, self.identity, self.relay = account, identity, relay
        self.certificate = certificate

    def online(self, authenticated: Authenticated) -> None:
        """The relay authenticated this device: keep the upload token for this connection."""
        self.upload_token = authenticated.upload_token

    def certificate_received_at(self, *, default: float) -> float:
        """When this device received its current certificate; ``default`` if it does not know."""
        saved = self._store.settings.get(CERTIFICATE_RECEIVED)
        return float(saved) if saved else default

    def current_certificate(self) -> bytes:
        """The certificate this device presents when it authenticates."""
        if self.certificate is None:
            raise NotEnrolledError("enrol this device first")
        return self.certificate.encode()

    def renewed(self, untrusted: bytes) -> DeviceCertificate:
        """The enrolment authority renewed this device's certificate: keep it once it is checked
        as at enrolment (``own_certificate``); one that fails is ``CertificateError`` and the
        current certificate stays."""
        account, identity = self.require()
        certificate = own_certificate(
            untrusted,
            trust_root=self.trust_root(),
            identity_key=identity.public,
            now=int(self._clock()),
            account_id=account.account_id,
            device_id=account.device_id,
        )
        with self._store.transaction():
            self._store.settings.set(CERTIFICATE, untrusted.hex())
            self._store.settings.set(CERTIFICATE_RECEIVED, str(int(self._clock())))
        self.certificate = certificate
        return certificate


def own_certificate(
    untrusted: bytes,
    *,
    trust_root: bytes,
    identity_key: bytes,
    now: int,
    account_id: str | None = None,
    device_id: int | None = None,
) -> DeviceCertificate:
    """This device's certificate, once it is seen to be signed by ``trust_root``, unexpired, and to
    name this device's identity key (and its account and device id, where they are known: at
    enrolment the authority assigns them); ``CertificateError`` otherwise.

    Checked at enrolment and on every renewal: a server that handed this device a
    certificate for another key or account would make every colleague refuse its messages,
    or make them speak for someone else.
    """
    try:
        certificate = DeviceCertificate.parse(untrusted)
    except RemoteProtocolError as e:
        raise CertificateError(f"this device's certificate does not parse: {e}") from e
    certificate.verify(trust_root=trust_root, now=now)
    if certificate.identity_key != identity_key:
        raise CertificateError("the certificate does not name this device's identity key")
    if (account_id, device_id) != (None, None) and (certificate.account_id, certificate.device_id) != (
        account_id,
        device_id,
    ):
        raise CertificateError("the certificate does not name this device's account and device id")
    return certificate
