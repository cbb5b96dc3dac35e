"""The map of the client: every part of the engine, what it is given, and who hears the relay.

Each part is an object with one job that receives what it uses in its constructor;
none inherits from another or reaches into another's state. ``Client.build`` wires
them in dependency order, and this file is the one place to read who calls whom
(docs/ARCHITECTURE.md draws the same map):

- ``Credentials``: who this device is (account, identity key, certificate, relay).
- ``Contacts``: the contact list and the organisation's directory.
- ``Transparency``: the key log; every colleague key is checked against it before first use.
- ``Sessions``: sessions with colleagues' devices and the keys they showed.
- ``Delivery``: the outbox over the transport; marks messages sent.
- ``Receipts``: delivery and read receipts kept pending, sealed in batches after a random delay.
- ``Sending``: stores, seals and queues what this device sends.
- ``Receiving``: opens, stores and acks what the transport brings.
- ``Conversations``: conversations, reading, timers, receipts, search, deleting.
- ``Groups``: each group's signed changes and the state they resolve to (read by sending and
  receiving); ``GroupAdmin``: creating and changing groups, who got a group message.
- ``Verification``: safety numbers and accepting changed keys.
- ``PreKeys``: keeps the relay stocked with one-time prekeys; rotates the signed prekey.
- ``Account``: enrolment, the connection, certificate renewal.
- ``ExpirySchedule``: disappearing messages swept on time.
- ``Provisioning``: the organisation's signed configs and the effective policy; the
  parts that own a rule's action read it through ``Provisioning.rules`` and check it first.

Everything runs on the worker loop (``worker.Worker``), the store's own thread. A
coroutine yields only at network waits, and never between loading a ratchet session
and saving it, so two coroutines never advance the same session from the same state.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from app.base.errors import ProvisioningError, TransportError
from app.crypto.primitives import RandomSource
from app.protocol.envelope import Envelope
from app.protocol.frames import (
    Authenticated,
    FrameType,
    Notice,
    NoticeKind,
    SetDeliveryKey,
    delivery_key_hash,
)
from app.services.account import Account
from app.services.clock import Clock
from app.services.contacts import Contacts
from app.services.conversations import Conversations
from app.services.credentials import Credentials
from app.services.delivery import Delivery
from app.services.events import ConnectionChanged, Emitter, Listener, Problem
from app.services.expiry import ExpirySchedule
from app.services.groupadmin import GroupAdmin
from app.services.groups import Groups
from app.services.incoming import Receiving
from app.services.keylog import Transparency
from app.services.outgoing import Sending
from app.services.policy import Provisioning
from app.services.prekeys import PreKeys
from app.services.receipts import ReceiptDelays, Receipts
from app.services.sessions import Sessions
from app.services.tasks import Tasks
from app.services.verification import Verification
from app.sync.link import RelayLink
from app.sync.machine import Backoff
from app.sync.transport import Transport, TransportState
from storage.records import Identity
from storage.store import Store

log = logging.getLogger(__name__)


class Client:
    """One open profile's engine; build it on the worker loop, ``start`` it, ``close`` it."""

    def __init__(
        self,
        store: Store,
        *,
        relay: RelayLink,
        tasks: Tasks,
        credentials: Credentials,
        contacts: Contacts,
        transparency: Transparency,
        sessions: Sessions,
        delivery: Delivery,
        receipts: Receipts,
        sending: Sending,
        receiving: Receiving,
        conversations: Conversations,
        groups: GroupAdmin,
        verification: Verification,
        prekeys: PreKeys,
        account: Account,
        expiry: ExpirySchedule,
        provisioning: Provisioning,
        emitter: Emitter,
    ) -> None:
        self.store = store
        self.relay = relay
        self.tasks = tasks
        self.credentials = credentials
        self.contacts = contacts
        self.transparency = transparency
        self.sessions = sessions
        self.delivery = delivery
        self.receipts = receipts
        self.sending = sending
        self.receiving = receiving
        self.conversations = conversations
        self.groups = groups
        self.verification = verification
        self.prekeys = prekeys
        self.account = account
        self.expiry = expiry
        self.provisioning = provisioning
        self._emitter = emitter

    @classmethod
    def build(
        cls,
        store: Store,
        *,
        listener: Listener,
        clock: Clock,
        random: RandomSource,
        backoff: Backoff | None,
        system_config: Path,
        receipt_delays: ReceiptDelays | None = None,
    ) -> Client:
        """``receipt_delays``: how long receipts wait (default ``ReceiptDelays()``; tests pass less)."""
        tasks = Tasks(asyncio.get_running_loop())
        emitter = Emitter(listener)
        relay = RelayLink(backoff=backoff)
        provisioning = Provisioning(store, system_config=system_config, clock=clock)
        credentials = Credentials(store, clock, authority=provisioning.authority)
        rules = provisioning.rules
        contacts = Contacts(store, relay=relay, rules=rules)
        transparency = Transparency(
            store,
            credentials=credentials,
            relay=relay,
            emitter=emitter,
            tasks=tasks,
            clock=clock,
            trust=provisioning.transparency,
        )
        sessions = Sessions(
            store,
            credentials=credentials,
            relay=relay,
            contacts=contacts,
            transparency=transparency,
            emitter=emitter,
            clock=clock,
            random=random,
        )
        sending: Sending | None = None

        def reseal() -> None:
            # Delivery hands a message back when its device was revoked; Sending, made
            # just below with Delivery among its collaborators, seals it again.
            if sending is not None:
                tasks.spawn(sending.seal_pending())

        delivery = Delivery(
            store,
            transport=relay,
            sessions=sessions,
            emitter=emitter,
            tasks=tasks,
            clock=clock,
            on_requeued=reseal,
        )
        receipts = Receipts(
            store,
            credentials=credentials,
            sessions=sessions,
            delivery=delivery,
            tasks=tasks,
            clock=clock,
            random=random,
            rules=rules,
            delays=receipt_delays or ReceiptDelays(),
        )
        groups = Groups(store, credentials=credentials, transparency=transparency, clock=clock, random=random)
        sending = Sending(
            store,
            credentials=credentials,
            sessions=sessions,
            transparency=transparency,
            relay=relay,
            delivery=delivery,
            emitter=emitter,
            clock=clock,
            random=random,
            rules=rules,
            groups=groups,
        )
        return cls(
            store,
            relay=relay,
            tasks=tasks,
            credentials=credentials,
            contacts=contacts,
            transparency=transparency,
            sessions=sessions,
            delivery=delivery,
            receipts=receipts,
            sending=sending,
            receiving=Receiving(
                store,
                credentials=credentials,
                transparency=transparency,
                sessions=sessions,
                contacts=contacts,
                relay=relay,
                delivery=delivery,
                receipts=receipts,
                groups=groups,
                emitter=emitter,
                tasks=tasks,
                clock=clock,
                rules=rules,
            ),
            groups=GroupAdmin(
                store, groups=groups, sending=sending, credentials=credentials, emitter=emitter, rules=rules
            ),
            conversations=Conversations(
                store,
                credentials=credentials,
                contacts=contacts,
                sessions=sessions,
                transparency=transparency,
                sending=sending,
                receipts=receipts,
                emitter=emitter,
                clock=clock,
                random=random,
                rules=rules,
            ),
            verification=Verification(store, credentials=credentials, sessions=sessions, sending=sending),
            prekeys=PreKeys(
                store, credentials=credentials, relay=relay, tasks=tasks, clock=clock, random=random
            ),
            account=Account(
                store,
                credentials=credentials,
                relay=relay,
                tasks=tasks,
                emitter=emitter,
                clock=clock,
                random=random,
                organisation_relay=provisioning.relay,
            ),
            expiry=ExpirySchedule(store, emitter=emitter, tasks=tasks, clock=clock),
            provisioning=provisioning,
            emitter=emitter,
        )

    def start(self) -> None:
        """Connect to the relay if this profile is enrolled; receipts pending from before go when due."""
        self.receipts.arm()
        self.account.connect(self)

    async def enrol(self, relay_url: str | None, pin: str | None, code: str) -> Identity:
        """Register this device with a code from IT, then connect."""
        identity = await self.account.enrol(relay_url, pin, code)
        self.start()
        return identity

    async def import_config(self, path: Path) -> None:
        """Accept the user's config at ``path``; its relay (a rotated pin) applies at once."""
        self.provisioning.import_config(path)
        await self.account.relay_moved()

    async def close(self) -> None:
        await self.relay.stop()
        self.transparency.close()
        await self.tasks.close()
        self.expiry.close()
        self.store.close()

    # What the relay link tells (link.LinkListener): who hears each.

    async def on_online(self, authenticated: Authenticated) -> None:
        self.account.authenticated(authenticated)
        self.transparency.online()
        self.prekeys.online()
        self.receiving.forget_old_envelope_ids()
        await self._register_delivery_key()
        await self.sending.seal_pending()
        self.delivery.kick()
        await self._config_from_relay()

    async def _register_delivery_key(self) -> None:
        """Tell the relay (again: it costs one request) the hash of this device's delivery key, so that
        colleagues who learnt the key from our envelopes can write to us unidentified."""
        identity = self.credentials.identity
        if identity is None:
            return
        request = SetDeliveryKey(delivery_key_hash(identity.delivery_key))
        try:
            await self.relay.call(FrameType.SET_DELIVERY_KEY, request.encode())
        except TransportError as e:
            log.info("the delivery key could not be registered now (%s)", type(e).__name__)

    async def _config_from_relay(self) -> None:
        """Take a newer organisation config the relay publishes, checked as an import is (the relay
        cannot change it unseen: the root signed it); its relay applies at once. A refused one
        changes nothing and is reported; the relay being unable to answer is not."""
        try:
            published = await self.relay.published_config(self.credentials.upload_token)
        except TransportError as e:
            log.info("the relay's published config could not be fetched (%s)", type(e).__name__)
            return
        if published is None:
            return
        try:
            changed = self.provisioning.offered_by_relay(*published)
        except ProvisioningError as e:
            log.warning("refused the organisation config the relay published (%s)", type(e).__name__)
            self._emitter.emit(Problem(f"The relay offered an organisation config that was refused: {e}"))
            return
        if changed:
            log.info("accepted a newer organisation config from the relay")
            await self.account.relay_moved()

    async def on_envelope(self, envelope: Envelope, source: Transport) -> None:
        await self.receiving.receive(envelope, source)

    async def on_notice(self, notice: Notice) -> None:
        if notice.kind == NoticeKind.PREKEYS_LOW:
            await self.prekeys.refill()
        elif notice.kind == NoticeKind.DEVICE_ADDED:
            self.transparency.grew()

    def on_state(self, source: Transport, state: TransportState, reason: str) -> None:
        self._emitter.emit(ConnectionChanged(state.value, reason))
