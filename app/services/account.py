"""This device's place in the organisation: enrolment with a code from IT, the connection to the
relay, and certificate renewals at the enrolment authority.

Enrolment has two steps, each a separate service: the enrolment authority certifies a fresh
identity key with the code (app/sync/authority.py), and the relay registers the device from
that certificate (``link.enrol``). The certificate is kept in the store between the two,
since the code is spent once the authority answered: a relay that cannot be reached, or
that has no account yet, is retried with the same certificate and no new code. The
certificate is renewed at the authority when three quarters of its life are gone, and the
relay learns the new one at the next authentication (the link reconnects for it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus

from app.base.errors import AuthorityRefusedError, CertificateError, EnclaveError
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import RandomSource
from app.protocol.authority import CertifyRequest, RenewRequest
from app.protocol.frames import Authenticated, Enrol
from app.services import prekeys
from app.services.clock import Clock
from app.services.credentials import Credentials, own_certificate
from app.services.errors import AlreadyEnrolledError, AuthorityUnknownError
from app.services.events import Emitter, Problem
from app.services.relay import enrolment_address
from app.services.settings import RelaySettings
from app.services.tasks import Tasks
from app.sync import authority
from app.sync.link import LinkListener, RelayAddress, RelayLink, enrol
from app.sync.machine import Connection
from storage.records import Identity
from storage.store import Store

log = logging.getLogger(__name__)

RENEW_AT_FRACTION = 0.75
"""Renew the certificate when this much of the current one's lifetime has passed."""
RENEW_RETRY_SECONDS = 600.0
"""After a renewal that failed (the authority unreachable or refusing), the next try."""


def renewal_delay(*, received: float, expires_at: float, now: float) -> float:
    """Seconds from ``now`` until a certificate received at ``received`` is renewed: when
    ``RENEW_AT_FRACTION`` of its life has passed (at once if that is past)."""
    return max(0.0, received + (expires_at - received) * RENEW_AT_FRACTION - now)


class Account:
    def __init__(
        self,
        store: Store,
        *,
        credentials: Credentials,
        relay: RelayLink,
        tasks: Tasks,
        emitter: Emitter,
        clock: Clock,
        random: RandomSource,
        organisation_relay: Callable[[], RelayAddress | None],
    ) -> None:
        self._store = store
        self._organisation_relay = organisation_relay
        """The relay the organisation's config in force names (``Provisioning.relay``)."""
        self._emitter = emitter
        self._credentials = credentials
        self._relay = relay
        self._tasks = tasks
        self._clock = clock
        self._random = random
        self._renewal = tasks.alarm()

    def connect(self, listener: LinkListener) -> None:
        """Start the relay link if this profile is enrolled (offline use works either way)."""
        account, identity, relay = (
            self._credentials.account,
            self._credentials.identity,
            self._credentials.relay,
        )
        if account is None or identity is None or relay is None:
            return
        self._relay.start(
            self._follow_organisation() or relay.address,
            device_id=account.device_id,
            signer=lambda context, message: identity.sign(context=context, message=message),
            certificate=self._credentials.current_certificate,
            listener=listener,
        )

    async def relay_moved(self) -> None:
        """A config was accepted while the profile is open: its relay applies from the next connection
        on, and a connection to a key it no longer pins is dropped now."""
        if self._credentials.relay is not None and (address := self._follow_organisation()) is not None:
            await self._relay.readdress(address)

    def _follow_organisation(self) -> RelayAddress | None:
        """The organisation config's relay, kept as this profile's if it changed (a rotated pin, a
        moved relay: no re-enrolment); None with no config in force."""
        address = self._organisation_relay()
        relay = self._credentials.relay
        if address is not None and relay is not None and address != relay.address:
            log.info("the organisation's config changed the relay's addresses or pins")
            self._credentials.readdressed(address)
        return address

    async def enrol(self, relay_url: str | None, pin: str | None, code: str) -> Identity:
        """Enrol this device with a one-time code from IT: certified by the enrolment authority the
        organisation config names, then registered at its relay.

        The relay is the config's (``relay_url`` and ``pin`` may be left out, and must agree
        with it if given, ``relay.enrolment_address``); with no config in force there is no
        authority to trust and nothing is sent (``AuthorityUnknownError``). A certificate from
        an earlier attempt that the relay did not register yet is used again while it is
        valid, and the code is then not needed again.
        """
        if self._credentials.account is not None:
            raise AlreadyEnrolledError("this profile is already enrolled")
        issuer = self._credentials.authority()
        organisation = self._organisation_relay()
        if organisation is None:  # the same config names both; kept apart only by their types
            raise AuthorityUnknownError("no organisation config is in force")
        address = enrolment_address(organisation, relay_url, pin)
        identity, certificate = await self._certified(issuer, code)
        signed = prekeys.new_signed_prekey(identity, self._random)
        one_time = prekeys.new_one_time_prekeys(1, prekeys.ENROL_ONE_TIME_PREKEYS, self._random)

        def request(machine: Connection) -> Enrol:
            signature = machine.challenge_signature(
                certificate.device_id,
                lambda context, message: identity.sign(context=context, message=message),
            )
            return Enrol(
                certificate.encode(), signature, prekeys.upload_form(signed), prekeys.uploads(one_time)
            )

        await enrol(address, request)
        with self._store.transaction():
            account = self._credentials.save_enrolment(identity, certificate, RelaySettings(address))
            prekeys.save(self._store, signed, one_time)
        log.info("enrolled this device")
        return account

    async def _certified(
        self, issuer: authority.AuthorityAddress, code: str
    ) -> tuple[IdentityKeyPair, DeviceCertificate]:
        """The pending enrolment's identity and certificate if it is still valid, else a new identity
        certified with ``code`` (kept as pending before the relay is asked)."""
        now = int(self._clock())
        pending = self._credentials.pending_enrolment()
        if pending is not None:
            identity, untrusted = pending
            try:
                return identity, own_certificate(
                    untrusted, trust_root=issuer.key, identity_key=identity.public, now=now
                )
            except CertificateError:
                log.info("the certificate of an unfinished enrolment is no longer valid; certifying anew")
                self._credentials.drop_pending()
        identity = IdentityKeyPair.generate(self._random)
        request = CertifyRequest.make(code=code.strip(), identity=identity)
        untrusted = await authority.certify(issuer, request.encode())
        certificate = own_certificate(untrusted, trust_root=issuer.key, identity_key=identity.public, now=now)
        self._credentials.save_pending(identity, untrusted)
        return identity, certificate

    def authenticated(self, authenticated: Authenticated) -> None:
        """The relay accepted this device: keep the upload token, and renew the certificate when
        three quarters of its life are gone, counted from when this device received it, so that
        connecting often (or restarting) does not push the renewal towards the expiry."""
        self._credentials.online(authenticated)
        certificate = self._credentials.certificate
        if certificate is not None:
            now = self._clock()
            received = self._credentials.certificate_received_at(default=now)
            delay = renewal_delay(received=received, expires_at=certificate.expires_at, now=now)
            self._renewal.set(delay, lambda: self._tasks.spawn(self._renew()))

    async def _renew(self) -> None:
        """A fresh certificate from the enrolment authority, then a new authentication so the relay
        serves it to colleagues. A renewal that fails keeps the current certificate, says why,
        and is tried again in ``RENEW_RETRY_SECONDS``."""
        certificate, identity = self._credentials.certificate, self._credentials.identity
        if certificate is None or identity is None:
            return
        log.info("renewing this device's certificate")
        try:
            request = RenewRequest.make(
                certificate=certificate.encode(), timestamp=int(self._clock()), identity=identity
            )
            untrusted = await authority.renew(self._credentials.authority(), request.encode())
            self._credentials.renewed(untrusted)
        except AuthorityRefusedError as e:
            if e.status == HTTPStatus.TOO_MANY_REQUESTS:
                # Busy (many workstations behind one address), not a refusal: nothing to tell.
                log.info("the enrolment authority is busy; renewing later")
            else:
                log.warning("the certificate was not renewed (%s)", type(e).__name__)
                self._emitter.emit(Problem(f"This device's certificate was not renewed: {e}"))
            self._retry_renewal()
            return
        except CertificateError as e:
            log.warning("the certificate was not renewed (%s)", type(e).__name__)
            self._emitter.emit(Problem(f"This device's certificate was not renewed: {e}"))
            self._retry_renewal()
            return
        except EnclaveError as e:  # unreachable, a pin mismatch, no config in force
            log.info("the certificate could not be renewed now (%s); trying again later", type(e).__name__)
            self._retry_renewal()
            return
        await self._relay.renew()

    def _retry_renewal(self) -> None:
        self._renewal.set(RENEW_RETRY_SECONDS, lambda: self._tasks.spawn(self._renew()))
