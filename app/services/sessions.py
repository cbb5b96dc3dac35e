"""Sessions with colleagues' devices: opening what arrives, sealing what leaves, noting their keys.

The functions work on state loaded from the store and hand back what to save; the
``Sessions`` part writes it in the caller's transaction, the one that stores the
message it belongs to, so a crash never leaves a ratchet advanced for a message that
was not stored (or the reverse).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from app.base.errors import (
    CertificateError,
    CryptoError,
    DecryptionError,
    DuplicateMessageError,
    RelayRefusedError,
    RemoteProtocolError,
    SignedPreKeyGoneError,
)
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import NO_ONE_TIME_PREKEY, DHKeyPair, IdentityKeyPair, OneTimePreKey, PreKeyBundle
from app.crypto.primitives import RandomSource
from app.crypto.sealed import seal
from app.crypto.session import (
    MessageKind,
    PreKeyMessage,
    Session,
    SessionMessage,
    accept_session,
    initiate_session,
)
from app.protocol.content import Content, encode_content
from app.protocol.envelope import Envelope, new_envelope_id
from app.protocol.frames import Bundles, DeviceBundle, FetchBundles, FrameType, Status
from app.services import prekeys
from app.services.clock import Clock
from app.services.contacts import Contacts
from app.services.credentials import Credentials
from app.services.errors import NoDeviceError, NotEnrolledError, UnloggedKeyError
from app.services.events import Emitter, Event, KeyChanged, Problem
from app.services.keylog import Transparency
from app.sync.link import RelayLink
from storage.errors import NotFoundError
from storage.records import PreKeyKind, Trust
from storage.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Opened:
    """A session message decrypted, with what must be saved if it is kept."""

    session: Session
    plaintext: bytes
    one_time_prekey_id: int | None
    """A one-time prekey this message used up (delete it with the message)."""
    accepted: PreKeyMessage | None = None
    """The prekey message X3DH ran for: its base key is recorded with the session it made."""


def open_message(
    store: Store,
    identity: IdentityKeyPair,
    sender: DeviceCertificate,
    message: SessionMessage,
    random: RandomSource,
) -> Opened:
    """Decrypt with the stored session, or start the session a prekey message asks for.

    X3DH runs only for a base key (with the sender's identity key) this device never
    accepted: a prekey message of the stored session is that session's to decrypt (a replay
    is a ``DuplicateMessageError``), and one whose base key was accepted before, for a
    session since replaced or deleted, is a replay too. Nothing here writes to the store.
    """
    state = store.sessions.get(sender.account_id, sender.device_id)
    session = None if state is None else Session.from_bytes(state)
    if message.kind != MessageKind.PREKEY:
        if session is None:
            raise DecryptionError("no session with this device, and the message does not start one")
        return Opened(session, session.decrypt(message, random), None)
    initial = PreKeyMessage.parse(message.body)
    if initial.identity_key != sender.identity_key:
        raise CertificateError("the prekey message's identity key is not the one its certificate names")
    if session is not None and session.started_by(initial):
        return Opened(session, session.decrypt(message, random), None)
    if store.base_keys.contains(initial.identity_key, initial.base_key):
        raise DuplicateMessageError("a first message whose session this device accepted before")
    try:
        signed = prekeys.signed_prekey(store, initial.signed_prekey_id)
    except NotFoundError as e:
        raise SignedPreKeyGoneError("the message names a signed prekey this device does not have") from e
    one_time = None
    if initial.one_time_prekey_id != NO_ONE_TIME_PREKEY:
        try:
            record = store.prekeys.get(PreKeyKind.ONE_TIME, initial.one_time_prekey_id)
            one_time = OneTimePreKey(record.key_id, DHKeyPair.from_private(record.private_key))
        except NotFoundError:
            one_time = None
    session, plaintext = accept_session(identity, initial, signed, one_time, random)
    return Opened(session, plaintext, one_time.key_id if one_time else None, initial)


def seal_for(
    *,
    identity: IdentityKeyPair,
    certificate: DeviceCertificate,
    session: Session,
    content: Content,
    expires_at: int,
    random: RandomSource,
) -> bytes:
    """An encoded envelope carrying ``content`` for the session's device (advances ``session``).

    The envelope id is drawn first: the sealed layer binds it (docs/PROTOCOL.md, section 8).
    """
    envelope_id = new_envelope_id(random)
    sealed = seal(
        sender=identity,
        certificate=certificate,
        recipient_identity=session.remote_identity,
        envelope_id=envelope_id,
        delivery_key=identity.delivery_key,
        message=session.encrypt(encode_content(content)),
        random=random,
    )
    return Envelope(envelope_id=envelope_id, expires_at=expires_at, sealed=sealed).encode()


def note_device(
    store: Store, account_id: str, device_id: int, identity_key: bytes, *, siblings: Collection[int] = ()
) -> KeyChanged | None:
    """Record the key a contact's device presented; a KeyChanged if the user must look at it.

    A key differs from the one this device had: changed. A device never seen before for a
    contact whose other devices we knew (a reinstall): changed too, so the user compares
    safety numbers before anything is sent to it. ``siblings`` are devices that arrived
    with this one (one bundle fetch): they are the account's devices side by side, so
    none of them replaces another.
    """
    before = store.contacts.device(account_id, device_id)
    if before is not None and before.identity_key == identity_key:
        return None  # the common case, on every message received: nothing to record
    others = [
        d
        for d in store.contacts.devices(account_id)
        if d.device_id != device_id and d.device_id not in siblings
    ]
    replaces = max(others, key=lambda d: d.updated_at).identity_key if before is None and others else None
    after = store.contacts.record_device_key(account_id, device_id, identity_key, replaces=replaces)
    changed = after.trust is Trust.CHANGED and (before is None or before.trust is not Trust.CHANGED)
    return KeyChanged(account_id, device_id) if changed else None


def certified_bundle(
    device: DeviceBundle, account_id: str, *, trust_root: bytes, now: int
) -> tuple[PreKeyBundle, DeviceCertificate]:
    """A fetched device's prekey bundle, once its certificate is seen to be signed by
    ``trust_root``, unexpired, and to name ``account_id``, this device id and the bundle's
    identity key; ``CertificateError`` (or ``RemoteProtocolError`` for bytes that do not
    parse) otherwise. Without this a relay could hand out a key of its choosing for a
    colleague on first contact. The bundle's own signature is checked when the session is
    made from it (``initiate_session``). The certificate comes with it: it names the colleague.
    """
    bundle = PreKeyBundle.from_bytes(device.bundle)
    certificate = DeviceCertificate.parse(device.certificate)
    certificate.verify(trust_root=trust_root, now=now)
    named = (certificate.account_id, certificate.device_id, certificate.identity_key)
    if named != (account_id, device.device_id, bundle.identity_key):
        raise CertificateError(
            f"the certificate of {account_id}'s device {device.device_id} names another account or key"
        )
    return bundle, certificate


def blocked(store: Store, account_id: str, device_id: int | None = None) -> bool:
    """Whether sending to the contact (or one device of it) waits for the user to accept a new key."""
    return any(
        d.trust is Trust.CHANGED
        for d in store.contacts.devices(account_id)
        if device_id is None or d.device_id == device_id
    )


class Sessions:
    """The sessions this device holds with colleagues' devices, and the keys those devices showed."""

    def __init__(
        self,
        store: Store,
        *,
        credentials: Credentials,
        relay: RelayLink,
        contacts: Contacts,
        transparency: Transparency,
        emitter: Emitter,
        clock: Clock,
        random: RandomSource,
    ) -> None:
        self._store = store
        self._transparency = transparency
        self._clock = clock
        self._credentials = credentials
        self._relay = relay
        self._contacts = contacts
        self._emitter = emitter
        self._random = random

    def devices(self, account_id: str, device_id: int | None = None) -> list[int]:
        """The colleague's devices this device has a session with (only ``device_id``, if given)."""
        known = self._store.sessions.devices(account_id)
        return [d for d in known if device_id is None or d == device_id]

    def has(self, account_id: str, device_id: int) -> bool:
        return self._store.sessions.get(account_id, device_id) is not None

    def blocked(self, account_id: str, device_id: int | None = None) -> bool:
        return blocked(self._store, account_id, device_id)

    async def ensure(self, account_id: str, device_id: int | None) -> list[int]:
        """The devices to encrypt for, fetching prekey bundles for a colleague with no session yet."""
        known = self.devices(account_id, device_id)
        if known:
            return known
        _, identity = self._credentials.require()
        if self._credentials.relay is None:
            raise NotEnrolledError("enrol this device first")
        trust_root = self._credentials.trust_root()
        response = await self._relay.request(FrameType.FETCH_BUNDLES, FetchBundles(account_id).encode())
        if response.status == Status.NOT_FOUND:
            raise NoDeviceError(f"{account_id} has no active device")
        if response.status != Status.OK:
            raise RelayRefusedError(response.status.name, response.reason)
        fetched = [d for d in Bundles.parse(response.body).devices if not self.has(account_id, d.device_id)]
        certified = await self._certified(account_id, fetched, trust_root)
        # Devices first seen in this one fetch are the account's devices side by side; one
        # that appears beside a device seen before may be a reinstall (note_device).
        first_seen = {
            d.device_id for d in fetched if self._store.contacts.device(account_id, d.device_id) is None
        }
        changed: list[Event] = []
        with self._store.transaction():
            for _, _, certificate in certified:
                self._contacts.ensure(certificate)
            for fetched_id, bundle, _ in certified:
                if self.has(account_id, fetched_id):
                    continue
                try:
                    session = initiate_session(identity, bundle, self._random)
                except CryptoError as e:
                    log.warning("refused a prekey bundle the relay handed out (%s)", type(e).__name__)
                    continue
                note = note_device(
                    self._store, account_id, fetched_id, bundle.identity_key, siblings=first_seen
                )
                if note is not None:
                    changed.append(note)
                self._store.sessions.put(account_id, fetched_id, session.to_bytes())
        self._emitter.emit(*changed)
        found = self.devices(account_id, device_id)
        if not found:
            raise NoDeviceError(f"{account_id} has no device this chat can reach")
        return found

    async def _certified(
        self, account_id: str, fetched: list[DeviceBundle], trust_root: bytes
    ) -> list[tuple[int, PreKeyBundle, DeviceCertificate]]:
        """The fetched bundles whose certificate the authority signed for this account and whose
        key the key log binds to the device; each other one is refused (and told, for a key the
        log does not hold: someone registered a device the organisation cannot see)."""
        certified = []
        for device in fetched:
            try:
                bundle, certificate = certified_bundle(
                    device, account_id, trust_root=trust_root, now=int(self._clock())
                )
            except (CryptoError, RemoteProtocolError) as e:
                log.warning("refused a prekey bundle the relay handed out (%s)", type(e).__name__)
                continue
            try:
                await self._transparency.require(account_id, device.device_id, bundle.identity_key)
            except UnloggedKeyError as e:
                log.warning("refused a prekey bundle whose key the key log does not hold")
                self._emitter.emit(Problem(str(e)))
                continue
            certified.append((device.device_id, bundle, certificate))
        return certified

    def seal(
        self, account_id: str, device_id: int, content: Content, expires_at: int, *, message_id: int | None
    ) -> None:
        """Encrypt for one device with its stored session and put the envelope in the outbox.

        Synchronous on purpose: the session is loaded, advanced and saved with no await
        in between. Call inside a transaction.
        """
        identity, certificate = self._credentials.sealing_keys()
        state = self._store.sessions.get(account_id, device_id)
        if state is None:
            raise NoDeviceError(f"no session with {account_id}'s device {device_id}")
        session = Session.from_bytes(state)
        envelope = seal_for(
            identity=identity,
            certificate=certificate,
            session=session,
            content=content,
            expires_at=expires_at,
            random=self._random,
        )
        self._store.outbox.enqueue(account_id, device_id, envelope, message_id=message_id)
        self._store.sessions.put(account_id, device_id, session.to_bytes())

    def open(self, sender: DeviceCertificate, message: SessionMessage) -> Opened:
        """Decrypt in memory with the session as stored now; nothing is saved until ``keep``."""
        _, identity = self._credentials.require()
        return open_message(self._store, identity, sender, message, self._random)

    def keep(self, sender: DeviceCertificate, opened: Opened) -> KeyChanged | None:
        """Save what opening a message changed: the sender's key, the session, the base key X3DH
        ran for, the used prekey.

        Call inside the transaction that stores the message.
        """
        self._contacts.ensure(sender)
        note = note_device(self._store, sender.account_id, sender.device_id, sender.identity_key)
        self._store.sessions.put(sender.account_id, sender.device_id, opened.session.to_bytes())
        if opened.accepted is not None:
            self._store.base_keys.add(
                opened.accepted.identity_key,
                opened.accepted.base_key,
                signed_prekey_id=opened.accepted.signed_prekey_id,
            )
        if opened.one_time_prekey_id is not None:
            self._store.prekeys.take_one_time(opened.one_time_prekey_id)
        return note

    def forget(self, account_id: str, device_id: int) -> None:
        """The device was revoked: its session is of no more use.

        Its key stays on record, so a device that appears later for the same colleague is
        recognised as a replacement and must be accepted.
        """
        self._store.sessions.delete(account_id, device_id)
