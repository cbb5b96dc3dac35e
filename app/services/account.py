"""This device's place at the relay: enrolment with a code from IT, the connection, renewals."""

from __future__ import annotations

import logging
from collections.abc import Callable

from app.base.errors import CertificateError
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import RandomSource
from app.protocol.frames import Authenticated, Enrol
from app.services import prekeys
from app.services.clock import Clock
from app.services.credentials import Credentials, own_certificate
from app.services.errors import AlreadyEnrolledError
from app.services.events import Emitter, Problem
from app.services.relay import enrolment_address
from app.services.settings import RelaySettings
from app.services.tasks import Tasks
from app.sync.link import LinkListener, RelayAddress, RelayLink, enrol
from storage.records import Identity
from storage.store import Store

log = logging.getLogger(__name__)

RENEW_AT_FRACTION = 0.75
"""Reconnect for a fresh certificate when this much of the current one's lifetime has passed."""


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
        """Register this device with the relay using a one-time code from IT.

        The relay is the organisation config's if one is in force (``relay_url`` and ``pin``
        may then be left out, and must agree with it if given), else the one given
        (``relay.enrolment_address``); nothing is sent before that is settled.
        """
        if self._credentials.account is not None:
            raise AlreadyEnrolledError("this profile is already enrolled")
        address = enrolment_address(self._organisation_relay(), relay_url, pin)
        identity = IdentityKeyPair.generate(self._random)
        signed = prekeys.new_signed_prekey(identity, self._random)
        one_time = prekeys.new_one_time_prekeys(1, prekeys.ENROL_ONE_TIME_PREKEYS, self._random)
        enrolled = await enrol(
            address,
            Enrol(code.strip(), identity.public, prekeys.upload_form(signed), prekeys.uploads(one_time)),
        )
        own_certificate(
            enrolled.certificate,
            trust_root=enrolled.certificate_issuer,
            account_id=enrolled.account_id,
            device_id=enrolled.device_id,
            identity_key=identity.public,
            now=int(self._clock()),
        )
        with self._store.transaction():
            account = self._credentials.save_enrolment(
                identity,
                enrolled.account_id,
                enrolled.device_id,
                RelaySettings(address, enrolled.certificate_issuer),
                enrolled.certificate,
            )
            prekeys.save(self._store, signed, one_time)
        log.info("enrolled this device")
        return account

    def authenticated(self, authenticated: Authenticated) -> None:
        """The relay accepted this device: keep the fresh certificate and renew it before it runs out.

        A certificate that is not this device's own is refused: the current one stays in use
        until it runs out, the user is told, and renewal is tried again on schedule.
        """
        try:
            certificate = self._credentials.renewed(authenticated)
        except CertificateError as e:
            log.warning("refused the certificate the relay gave this device")
            self._emitter.emit(Problem(f"The relay gave this device a certificate not its own ({e})."))
            certificate = self._credentials.certificate
            if certificate is None:
                return
        lifetime = certificate.expires_at - self._clock()
        self._renewal.set(lifetime * RENEW_AT_FRACTION, lambda: self._tasks.spawn(self._renew()))

    async def _renew(self) -> None:
        """Authenticate again before the certificate runs out, so sealing never has to wait for it."""
        log.info("renewing this device's certificate")
        await self._relay.renew()
