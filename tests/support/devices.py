"""Devices with real stores, certificates and sessions, and the engine's parts for each, with no relay.

A ``Bench`` holds what the devices of one test share: an event loop (the parts run on
it as they run on the worker loop), an organisation (its root, and its enrolment
authority's key, which certifies the devices), and a clock. ``Bench.device`` makes a
device as enrolment would leave it: a real SQLCipher profile in the test's folder holding
its identity, relay settings, certificate and prekeys, and the organisation's config
imported, as the user imports it before enrolling; its engine's parts are wired as
``Client.build`` wires them, so the trust root of every certificate is that config's
authority key, with ``Delivery`` over an in-memory transport (``tests.support.transport``).
The config has no policy and its ``Provisioning`` reads no system config (there is none in
the test's folder), so a test sets the policy as a user (``provisioning.set_user``) or
imports a newer config (version 2 on) that the bench's organisation signs
(``Bench.organisation``).

``introduce`` and ``open_session`` give two devices a pairwise session with the real
X3DH of ``app.crypto``, stored through the store's repositories, so that what one
device seals the other opens. Nothing here talks to a relay: the link the parts are
given is never started, so whatever needs the relay alone (prekey bundles, the
directory, files) is offline, and an envelope reaches its recipient when the test
hands it over (``Bench.deliver``).
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import nacl.utils

from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import DHKeyPair, IdentityKeyPair, OneTimePreKey, PreKeyBundle, SignedPreKey
from app.crypto.primitives import RandomSource
from app.crypto.session import PreKeyMessage, Session, accept_session, initiate_session
from app.protocol.envelope import Envelope
from app.services import prekeys
from app.services.clock import Clock
from app.services.contacts import Contacts
from app.services.conversations import Conversations
from app.services.credentials import Credentials
from app.services.delivery import Delivery
from app.services.events import Emitter, Event
from app.services.expiry import ExpirySchedule
from app.services.groupadmin import GroupAdmin
from app.services.groups import Groups
from app.services.incoming import Receiving
from app.services.keylog import Transparency
from app.services.outgoing import Sending
from app.services.policy import Provisioning
from app.services.receipts import ReceiptDelays, Receipts
from app.services.sessions import Sessions
from app.services.settings import RelaySettings
from app.services.tasks import Tasks
from app.services.verification import Verification
from app.sync.link import RelayAddress, RelayLink
from app.sync.transport import SendOutcome, TransportState
from storage.records import Conversation, ConversationKind
from storage.store import Store
from tests.storage.harness import FakeClock
from tests.support.benchlog import BenchLog
from tests.support.clients import passphrase
from tests.support.organisation import Organisation
from tests.support.transport import InMemoryDirectory, InMemoryTransport

T = TypeVar("T")
E = TypeVar("E")

NOW = 1_800_000_000.0
CERTIFICATE_SECONDS = 7 * 24 * 3600
WAIT_SECONDS = 5.0
BENCH_RECEIPTS = ReceiptDelays(3600.0, 3600.0)
"""The bench's receipts wait an hour: their alarm (real time) never rings during a test, so nothing is
sealed behind a test's back; ``Bench.deliver`` seals every pending receipt of the sender first. A test
of the delay gives the bench other ``ReceiptDelays``, moves its clock and calls ``seal_due``."""
POLL_SECONDS = 0.005
RELAY = RelayAddress(
    ("https://relay.invalid:8443",), ("sha256/" + base64.b64encode(bytes(32)).decode("ascii"),)
)
"""Where the devices believe their relay is; nothing ever connects to it."""
AUTHORITY_URL = "https://enrol.invalid:8444"
"""Where the devices' config says the enrolment authority is; nothing ever connects to it."""

__all__ = [
    "CERTIFICATE_SECONDS",
    "NOW",
    "RELAY",
    "Bench",
    "Device",
    "Enrolment",
    "FakeClock",
    "introduce",
    "open_session",
]


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What enrolment left a device with (its store holds the same)."""

    account_id: str
    device_id: int
    identity: IdentityKeyPair
    certificate: DeviceCertificate
    signed_prekey: SignedPreKey
    one_time_prekeys: list[OneTimePreKey]


@dataclass
class Device:
    """One enrolled device: its store and keys, and its engine's parts over an in-memory transport."""

    account_id: str
    device_id: int
    identity: IdentityKeyPair
    certificate: DeviceCertificate
    store: Store
    signed_prekey: SignedPreKey
    unused_prekeys: list[OneTimePreKey]
    """One-time prekeys not yet handed out in a bundle (their private halves are in the store)."""
    transport: InMemoryTransport
    log: BenchLog
    """The key log this device reads (the bench's, unless the test gave it another)."""
    relay: RelayLink
    """Never started: what only the relay serves (bundles, directory, files) is offline."""
    tasks: Tasks
    credentials: Credentials
    contacts: Contacts
    transparency: Transparency
    sessions: Sessions
    delivery: Delivery
    receipts: Receipts
    sending: Sending
    receiving: Receiving
    conversations: Conversations
    groups: GroupAdmin
    group_state: Groups
    verification: Verification
    expiry: ExpirySchedule
    provisioning: Provisioning
    events: list[Event] = field(default_factory=list)
    """Everything the parts emitted, in order."""
    requeued: int = 0
    """How often Delivery handed a message back to be sealed again."""

    def publish(self, directory: InMemoryDirectory) -> None:
        """List this device in the directory: each fetch hands out a bundle with a fresh one-time
        prekey, and the device's certificate."""
        directory.publish(
            self.account_id, self.device_id, lambda: (self.bundle().to_bytes(), self.certificate.encode())
        )

    def bundle(self) -> PreKeyBundle:
        """This device's prekey bundle with a one-time prekey, as the directory would hand it out."""
        one_time = self.unused_prekeys.pop(0)
        spk = self.signed_prekey
        return PreKeyBundle(
            self.identity.public,
            spk.key_id,
            spk.keypair.public,
            spk.signature,
            one_time.key_id,
            one_time.keypair.public,
        )

    def emitted(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def direct(self, peer: Device, timer_seconds: int = 0) -> Conversation:
        """The direct conversation with ``peer`` (created, with the timer, if there is none)."""
        existing = self.store.conversations.find_with_peer(peer.account_id)
        if existing:
            return existing[0]
        return self.store.conversations.create(
            ConversationKind.DIRECT,
            peer_account_id=peer.account_id,
            title=peer.account_id,
            timer_seconds=timer_seconds,
        )

    async def close(self) -> None:
        await self.tasks.close()
        self.expiry.close()


class Bench:
    """The loop, organisation and clock the devices of one test share; ``close`` it when done."""

    def __init__(
        self,
        root: Path,
        clock: Clock | None = None,
        random: RandomSource = nacl.utils.random,
        receipt_delays: ReceiptDelays = BENCH_RECEIPTS,
    ):
        self.root = root
        self.receipt_delays = receipt_delays
        self.clock: Clock = clock if clock is not None else FakeClock(NOW)
        self.random = random
        self.trust_root = IdentityKeyPair.generate(random)
        """The organisation's enrolment authority key: it signs the device certificates."""
        self.organisation = Organisation(authority=(self.trust_root.public, b""))
        """The root that signs the config each device imports (naming ``trust_root``)."""
        self.log = BenchLog()
        """The organisation's key log: each device the bench makes is in it, unless told not."""
        self.config = self.organisation.write(
            root / "organisation" / "enclave.toml",
            self.organisation.config(
                relay_urls=RELAY.urls,
                relay_pins=RELAY.pins,
                authority_urls=(AUTHORITY_URL,),
                authority_pins=RELAY.pins,
                log_key=self.log.public,
                mandatory="",
                recommended="",
            ),
        )
        self._runner = asyncio.Runner()
        self.loop = self._runner.get_loop()
        self._routed: dict[int, int] = {}
        """How far each sender's offered envelopes have been routed (``route``)."""
        self.devices: list[Device] = []

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the bench's loop (background tasks started earlier run too)."""
        return self._runner.run(coroutine)

    def until(self, condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
        """Run the loop until ``condition`` holds; fail after ``timeout`` seconds, naming ``what``."""

        async def waiting() -> None:
            deadline = self.loop.time() + timeout
            while not condition():
                if self.loop.time() > deadline:
                    raise AssertionError(f"not within {timeout} s: {what}")
                await asyncio.sleep(POLL_SECONDS)

        self.run(waiting())

    def idle(self, rounds: int = 20) -> None:
        """Let every callback that is ready now run (and what those make ready, ``rounds`` deep)."""

        async def yielding() -> None:
            for _ in range(rounds):
                await asyncio.sleep(0)

        self.run(yielding())

    def certify(
        self, account_id: str, device_id: int, identity_key: bytes, seconds: float
    ) -> DeviceCertificate:
        return DeviceCertificate.issue(
            self.trust_root,
            account_id=account_id,
            device_id=device_id,
            identity_key=identity_key,
            expires_at=int(self.clock() + seconds),
        )

    def device(
        self,
        account_id: str,
        device_id: int = 1,
        *,
        state: TransportState = TransportState.ONLINE,
        one_time_prekeys: int = 4,
        certificate_seconds: float = CERTIFICATE_SECONDS,
        directory: InMemoryDirectory | None = None,
        logged: bool = True,
        log: BenchLog | None = None,
    ) -> Device:
        """A newly enrolled device (a new identity even if the account and device id were seen before).

        ``directory``: where its ``Sessions`` fetch colleagues' prekey bundles (else offline).
        ``log``: the key log this device reads, if not the bench's (a relay showing it another);
        ``logged``: whether its certificate is added to that log, as a relay adds it.
        """
        profile = self.root / f"{account_id}-{device_id}-{len(self.devices)}"
        store = Store.create(profile, passphrase(), clock=self.clock, random=self.random)
        identity = IdentityKeyPair.generate(self.random)
        certificate = self.certify(account_id, device_id, identity.public, certificate_seconds)
        if logged:
            (log or self.log).add(certificate, int(self.clock()))
        signed = prekeys.new_signed_prekey(identity, self.random)
        one_time = prekeys.new_one_time_prekeys(1, one_time_prekeys, self.random)
        enrolment = Enrolment(account_id, device_id, identity, certificate, signed, one_time)
        device = self._wire(enrolment, store, InMemoryTransport(state), directory, log or self.log)
        device.provisioning.import_config(self.config)
        with store.transaction():
            device.credentials.save_enrolment(identity, certificate, RelaySettings(RELAY))
            prekeys.save(store, signed, one_time)
        self.devices.append(device)
        return device

    def reopen(self, device: Device, *, state: TransportState = TransportState.ONLINE) -> Device:
        """The same device after a restart: its store closed and opened again, its parts made anew."""
        self.run(device.close())
        device.store.close()
        store = Store.open(device.store.profile_dir, passphrase(), clock=self.clock, random=self.random)
        enrolment = Enrolment(
            device.account_id,
            device.device_id,
            device.identity,
            device.certificate,
            device.signed_prekey,
            device.unused_prekeys,
        )
        again = self._wire(enrolment, store, InMemoryTransport(state), log=device.log)
        self.devices[self.devices.index(device)] = again
        return again

    def _wire(
        self,
        enrolment: Enrolment,
        store: Store,
        transport: InMemoryTransport,
        directory: InMemoryDirectory | None = None,
        log: BenchLog | None = None,
    ) -> Device:
        """The parts in ``Client.build``'s order, with ``Delivery`` over ``transport`` and
        ``Transparency`` reading ``log`` (the bench's by default).

        ``Sending`` is given the transport where ``Client.build`` gives it the relay link
        (which is also its Delivery's transport there): of the link it reads only the
        state, to seal a disappearing message only while the transport is online, and
        uploads files, which these tests do not send.
        """
        events: list[Event] = []
        tasks = Tasks(self.loop)
        emitter = Emitter(events.append)
        relay = RelayLink()
        provisioning = Provisioning(
            store, system_config=self.root / "no-system" / "enclave.toml", clock=self.clock
        )
        credentials = Credentials(store, self.clock, authority=provisioning.authority)
        rules = provisioning.rules
        contacts = Contacts(store, relay=relay, rules=rules)
        transparency = Transparency(
            store,
            credentials=credentials,
            relay=log or self.log,
            emitter=emitter,
            tasks=tasks,
            clock=self.clock,
            trust=provisioning.transparency,
        )
        sessions = Sessions(
            store,
            credentials=credentials,
            relay=directory or relay,  # type: ignore[arg-type]  # of the link: only its directory
            contacts=contacts,
            transparency=transparency,
            emitter=emitter,
            clock=self.clock,
            random=self.random,
        )
        device: Device | None = None

        def requeued() -> None:
            if device is not None:
                device.requeued += 1
                tasks.spawn(device.sending.seal_pending())

        delivery = Delivery(
            store,
            transport=transport,
            sessions=sessions,
            emitter=emitter,
            tasks=tasks,
            clock=self.clock,
            on_requeued=requeued,
        )
        receipts = Receipts(
            store,
            credentials=credentials,
            sessions=sessions,
            delivery=delivery,
            tasks=tasks,
            clock=self.clock,
            random=self.random,
            rules=rules,
            delays=self.receipt_delays,
        )
        receipts.arm()
        groups = Groups(
            store, credentials=credentials, transparency=transparency, clock=self.clock, random=self.random
        )
        sending = Sending(
            store,
            credentials=credentials,
            sessions=sessions,
            transparency=transparency,
            relay=relay,  # files: an unstarted link is offline, so an upload waits
            delivery=delivery,
            emitter=emitter,
            clock=self.clock,
            random=self.random,
            rules=rules,
            groups=groups,
        )
        device = Device(
            account_id=enrolment.account_id,
            device_id=enrolment.device_id,
            identity=enrolment.identity,
            certificate=enrolment.certificate,
            store=store,
            signed_prekey=enrolment.signed_prekey,
            unused_prekeys=list(enrolment.one_time_prekeys),
            transport=transport,
            log=log or self.log,
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
                clock=self.clock,
                rules=rules,
            ),
            groups=GroupAdmin(
                store, groups=groups, sending=sending, credentials=credentials, emitter=emitter, rules=rules
            ),
            group_state=groups,
            conversations=Conversations(
                store,
                credentials=credentials,
                contacts=contacts,
                sessions=sessions,
                transparency=transparency,
                sending=sending,
                receipts=receipts,
                emitter=emitter,
                clock=self.clock,
                random=self.random,
                rules=rules,
            ),
            verification=Verification(store, credentials=credentials, sessions=sessions, sending=sending),
            expiry=ExpirySchedule(store, emitter=emitter, tasks=tasks, clock=self.clock),
            provisioning=provisioning,
            events=events,
        )
        return device

    def deliver(self, sender: Device, recipient: Device, *, receipts: bool = True) -> list[Envelope]:
        """Seal the sender's pending receipts (due or not; ``receipts=False``: only the due ones), flush
        its outbox and hand what its transport stored to the recipient, in order.

        Returns the envelopes handed over. The sender's transport must be online.
        """
        before = len(sender.transport.stored)
        sender.receipts.seal_due(math.inf if receipts else None)
        sender.delivery.kick()
        self.until(lambda: sender.store.outbox.next_attempt() is None, f"{sender.account_id}'s outbox left")
        envelopes = sender.transport.stored[before:]
        for envelope in envelopes:
            self.run(recipient.receiving.receive(envelope, recipient.transport))
        return envelopes

    def route(self, sender: Device, devices: list[Device], *, receipts: bool = True) -> dict[int, int]:
        """As ``deliver``, but each envelope the sender's transport stored goes to the one of ``devices``
        it was for, as the relay's mailboxes do (one left for another device stays undelivered);
        how many each device id got. Each envelope is routed once: from where the last ``route`` of
        this sender stopped."""
        before = self._routed.get(id(sender), 0)
        sender.receipts.seal_due(math.inf if receipts else None)
        sender.delivery.kick()
        self.until(lambda: sender.store.outbox.next_attempt() is None, f"{sender.account_id}'s outbox left")
        by_id = {device.device_id: device for device in devices}
        got: dict[int, int] = {}
        for offered in sender.transport.offered[before:]:
            device = by_id.get(offered.recipient_device)
            if offered.answer is SendOutcome.STORED and device is not None:
                self.run(device.receiving.receive(offered.envelope, device.transport))
                got[device.device_id] = got.get(device.device_id, 0) + 1
        self._routed[id(sender)] = len(sender.transport.offered)
        return got

    def close(self) -> None:
        try:
            for device in self.devices:
                self.run(device.close())
                device.store.close()
        finally:
            self._runner.close()


def introduce(a: Device, b: Device) -> None:
    """Each device knows the other as a contact, and the key its device showed (trusted on first use)."""
    for here, there in ((a, b), (b, a)):
        here.store.contacts.upsert(there.account_id, there.account_id.title())
        here.store.contacts.record_device_key(there.account_id, there.device_id, there.identity.public)


def open_session(
    initiator: Device, responder: Device, random: RandomSource = nacl.utils.random, *, answered: bool = True
) -> None:
    """Start a session from ``initiator`` with ``responder``'s bundle, with the real X3DH.

    ``answered``: the responder has accepted the first message and replied, so both hold
    the session and spent the one-time prekey; otherwise only the initiator holds it and
    what it seals next is a prekey message naming that one-time prekey.
    """
    session = initiate_session(initiator.identity, responder.bundle(), random)
    if answered:
        first = PreKeyMessage.parse(session.encrypt(b"hello").body)
        taken = responder.store.prekeys.take_one_time(first.one_time_prekey_id)
        one_time = OneTimePreKey(taken.key_id, DHKeyPair.from_private(taken.private_key))
        answer, plaintext = accept_session(
            responder.identity, first, responder.signed_prekey, one_time, random
        )
        if plaintext != b"hello" or session.decrypt(answer.encrypt(b"welcome"), random) != b"welcome":
            raise AssertionError("session set-up failed")
        _save(responder, initiator, answer)
    _save(initiator, responder, session)


def _save(here: Device, there: Device, session: Session) -> None:
    here.store.sessions.put(there.account_id, there.device_id, session.to_bytes())
