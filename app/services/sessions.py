"""Sessions with colleagues' devices: opening what arrives, sealing what leaves, noting their keys.

Everything here works on state loaded from the store and hands back what to save; the
caller writes it in the same transaction as the message it belongs to, so a crash never
leaves a ratchet advanced for a message that was not stored (or the reverse).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.base.errors import CertificateError, DecryptionError
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import NO_ONE_TIME_PREKEY, DHKeyPair, IdentityKeyPair, OneTimePreKey
from app.crypto.primitives import RandomSource
from app.crypto.sealed import seal
from app.crypto.session import MessageKind, PreKeyMessage, Session, SessionMessage, accept_session
from app.protocol.content import Content, encode_content
from app.protocol.envelope import Envelope
from app.services import prekeys
from app.services.events import KeyChanged
from storage.errors import NotFoundError
from storage.records import PreKeyKind, Trust
from storage.store import Store


@dataclass(frozen=True, slots=True)
class Opened:
    """A session message decrypted, with what must be saved if it is kept."""

    session: Session
    plaintext: bytes
    one_time_prekey_id: int | None
    """A one-time prekey this message used up (delete it with the message)."""


def open_message(
    store: Store,
    identity: IdentityKeyPair,
    sender: DeviceCertificate,
    message: SessionMessage,
    random: RandomSource,
) -> Opened:
    """Decrypt with the stored session, or start the session a prekey message asks for."""
    state = store.sessions.get(sender.account_id, sender.device_id)
    if state is not None:
        session = Session.from_bytes(state)
        try:
            return Opened(session, session.decrypt(message, random), None)
        except DecryptionError:
            if message.kind != MessageKind.PREKEY:
                raise
    if message.kind != MessageKind.PREKEY:
        raise DecryptionError("no session with this device, and the message does not start one")
    initial = PreKeyMessage.parse(message.body)
    if initial.identity_key != sender.identity_key:
        raise CertificateError("the prekey message's identity key is not the one its certificate names")
    try:
        signed = prekeys.signed_prekey(store, initial.signed_prekey_id)
    except NotFoundError as e:
        raise DecryptionError("the message names a signed prekey this device does not have") from e
    one_time = None
    if initial.one_time_prekey_id != NO_ONE_TIME_PREKEY:
        try:
            record = store.prekeys.get(PreKeyKind.ONE_TIME, initial.one_time_prekey_id)
            one_time = OneTimePreKey(record.key_id, DHKeyPair.from_private(record.private_key))
        except NotFoundError:
            one_time = None
    session, plaintext = accept_session(identity, initial, signed, one_time, random)
    return Opened(session, plaintext, one_time.key_id if one_time else None)


def seal_for(
    *,
    identity: IdentityKeyPair,
    certificate: DeviceCertificate,
    session: Session,
    content: Content,
    expires_at: int,
    random: RandomSource,
) -> bytes:
    """An encoded envelope carrying ``content`` for the session's device (advances ``session``)."""
    sealed = seal(
        sender=identity,
        certificate=certificate,
        recipient_identity=session.remote_identity,
        message=session.encrypt(encode_content(content)),
        random=random,
    )
    return Envelope.create(sealed=sealed, expires_at=expires_at, random=random).encode()


def note_device(store: Store, account_id: str, device_id: int, identity_key: bytes) -> KeyChanged | None:
    """Record the key a contact's device presented; a KeyChanged if the user must look at it.

    A key differs from the one this device had: changed. A device never seen before for a
    contact whose other devices we knew (a reinstall): changed too, so the user compares
    safety numbers before anything is sent to it.
    """
    before = store.contacts.device(account_id, device_id)
    if before is not None and before.identity_key == identity_key:
        return None  # the common case, on every message received: nothing to record
    others = [d for d in store.contacts.devices(account_id) if d.device_id != device_id]
    replaces = max(others, key=lambda d: d.updated_at).identity_key if before is None and others else None
    after = store.contacts.record_device_key(account_id, device_id, identity_key, replaces=replaces)
    changed = after.trust is Trust.CHANGED and (before is None or before.trust is not Trust.CHANGED)
    return KeyChanged(account_id, device_id) if changed else None


def blocked(store: Store, account_id: str, device_id: int | None = None) -> bool:
    """Whether sending to the contact (or one device of it) waits for the user to accept a new key."""
    return any(
        d.trust is Trust.CHANGED
        for d in store.contacts.devices(account_id)
        if device_id is None or d.device_id == device_id
    )
