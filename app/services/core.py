"""The core: every use case of the messenger, run on the worker thread's asyncio loop.

The faces never call this directly; they go through ``facade.Enclave``, which runs each
call here on the worker loop. ``Engine`` adds to its parts (state.py, outgoing.py,
delivery.py, incoming.py; DESIGN.md, "How a message travels") the profile's lifecycle,
enrolment, the link's listener, contacts and conversations, reading, timers, trust,
expiry and prekeys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from app.base.errors import (
    CryptoError,
    OfflineError,
    StorageError,
)
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.safety import SafetyNumber
from app.protocol.content import (
    SECRET_ID_BYTES,
    Receipt,
    ReceiptType,
    TimerChange,
)
from app.protocol.envelope import Envelope
from app.protocol.frames import (
    Authenticated,
    DirectoryEntry,
    DirectoryLookup,
    DirectoryResults,
    Enrol,
    FrameType,
    Notice,
    NoticeKind,
    UploadPreKeys,
)
from app.services import prekeys, sessions
from app.services.errors import (
    AlreadyEnrolledError,
    FileAccessError,
    NoDeviceError,
    NotEnrolledError,
    SecretChatError,
)
from app.services.events import (
    ConnectionChanged,
    MessageStatusChanged,
    TimerChanged,
)
from app.services.incoming import Receiving
from app.services.outgoing import CONTROL_ENVELOPE_SECONDS
from app.services.settings import (
    CERTIFICATE,
    READ_RECEIPTS,
    RelaySettings,
    read_receipts_enabled,
    save_relay,
)
from app.sync.link import LinkState, RelayAddress, RelayLink, enrol
from storage.records import (
    Attachment,
    Contact,
    Conversation,
    ConversationKind,
    Identity,
    Message,
    MessageStatus,
    Page,
    PageCursor,
    Trust,
)

log = logging.getLogger(__name__)

FLUSH_POLL_SECONDS = 0.02
RENEW_AT_FRACTION = 0.75
"""Reconnect for a fresh certificate when this much of the current one's lifetime has passed."""


@dataclass(frozen=True, slots=True)
class SafetyNumberView:
    account_id: str
    device_id: int
    digits: str
    """60 digits; compare them with the colleague's, in person or by phone."""
    qr_payload: bytes
    trust: Trust


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    conversation: Conversation
    unread: int
    blocked: bool
    """A key changed: sending waits until the user accepts it."""


class Engine(Receiving):
    """All use cases over one open profile; create it on the worker loop, then ``start`` it."""

    def start(self) -> None:
        """Connect to the relay if this profile is enrolled (offline use works either way)."""
        if self._identity is None or self._relay is None or self.account is None or self.link is not None:
            return
        identity = self._identity
        self.link = RelayLink(
            self._relay.address,
            device_id=self.account.device_id,
            signer=lambda context, message: identity.sign(context=context, message=message),
            listener=self,
            backoff=self._backoff,
        )
        self.link.start()

    async def close(self) -> None:
        if self.link is not None:
            await self.link.stop()
        for handle in (self._sweep_handle, self._retry_handle, self._renew_handle):
            if handle is not None:
                handle.cancel()
        if self._flush_task is not None:
            self._flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OfflineError):
                await self._flush_task
        self._sweeper.close()
        self.store.close()

    async def enrol(self, relay_url: str, pin: str, code: str) -> Identity:
        """Register this device with the relay using a one-time code from IT, then connect."""
        if self.account is not None:
            raise AlreadyEnrolledError("this profile is already enrolled")
        identity = IdentityKeyPair.generate(self._random)
        signed = prekeys.new_signed_prekey(identity, self._random)
        one_time = prekeys.new_one_time_prekeys(1, prekeys.ENROL_ONE_TIME_PREKEYS, self._random)
        address = RelayAddress(relay_url, pin)
        enrolled = await enrol(
            address,
            Enrol(code.strip(), identity.public, prekeys.upload_form(signed), prekeys.uploads(one_time)),
        )
        certificate = DeviceCertificate.parse(enrolled.certificate)
        certificate.verify(trust_root=enrolled.certificate_issuer, now=int(self._clock()))
        if certificate.identity_key != identity.public or certificate.device_id != enrolled.device_id:
            raise CryptoError("the relay's certificate does not name this device's key")
        with self.store.transaction():
            self.account = self.store.identity.save(enrolled.account_id, enrolled.device_id, identity.seed)
            prekeys.save(self.store, signed, one_time)
            self._relay = RelaySettings(address, enrolled.certificate_issuer)
            save_relay(self.store, self._relay)
            self.store.settings.set(CERTIFICATE, enrolled.certificate.hex())
        self._identity, self._certificate = identity, certificate
        log.info("enrolled this device")
        self.start()
        return self.account

    async def on_online(self, authenticated: Authenticated) -> None:
        self._certificate = DeviceCertificate.parse(authenticated.certificate)
        self._upload_token = authenticated.upload_token
        self.store.settings.set(CERTIFICATE, authenticated.certificate.hex())
        if self._renew_handle is not None:
            self._renew_handle.cancel()
        lifetime = self._certificate.expires_at - self._clock()
        self._renew_handle = self._loop.call_later(
            max(0.0, lifetime * RENEW_AT_FRACTION), lambda: self._in_background(self._renew())
        )
        await self._seal_pending()
        self._kick_flush()

    async def _renew(self) -> None:
        """Authenticate again before the certificate runs out, so sealing never has to wait for it."""
        if self.link is not None:
            log.info("renewing this device's certificate")
            await self.link.renew()

    async def on_push(self, envelope: Envelope) -> None:
        await self._receive(envelope)

    async def on_notice(self, notice: Notice) -> None:
        if notice.kind == NoticeKind.PREKEYS_LOW:
            await self._refill_prekeys()

    def on_state(self, state: LinkState, reason: str) -> None:
        self._emit(ConnectionChanged(state.value, reason))

    async def lookup(self, query: str) -> list[DirectoryEntry]:
        response = await self._request(FrameType.DIRECTORY_LOOKUP, DirectoryLookup(query).encode())
        return list(DirectoryResults.parse(response.body).entries)

    def add_contact(self, account_id: str, display_name: str, department: str = "") -> Contact:
        return self.store.contacts.upsert(account_id, display_name, department)

    def contacts(self) -> list[Contact]:
        return self.store.contacts.list()

    def start_conversation(self, account_id: str) -> Conversation:
        """The direct conversation with a colleague, created on first use."""
        contact = self.store.contacts.get(account_id)
        existing = self.store.conversations.find_with_peer(account_id)
        if existing:
            return existing[0]
        return self.store.conversations.create(
            ConversationKind.DIRECT, peer_account_id=account_id, title=contact.display_name
        )

    async def start_secret_chat(self, account_id: str, timer_seconds: int) -> Conversation:
        """A secret chat with one device of the colleague; it lives on this device only."""
        contact = self.store.contacts.get(account_id)
        if timer_seconds <= 0:
            raise SecretChatError("a secret chat needs a disappearing-message timer")
        announcement = TimerChange(timer_seconds, self._millis(), secret_id=self._random(SECRET_ID_BYTES))
        devices = await self._ensure_sessions(account_id, None)
        conversation = self.store.conversations.create(
            ConversationKind.SECRET,
            peer_account_id=account_id,
            title=contact.display_name,
            timer_seconds=timer_seconds,
            secret_id=announcement.secret_id,
            peer_device=devices[0],
        )
        self._send_control(conversation, announcement)
        return conversation

    def conversations(self) -> list[ConversationSummary]:
        return [
            ConversationSummary(
                c,
                len(self.store.messages.unread(c.id)),
                c.peer_account_id is not None
                and sessions.blocked(self.store, c.peer_account_id, c.peer_device),
            )
            for c in self.store.conversations.list()
        ]

    def history(self, conversation_id: int, before: PageCursor | None = None, limit: int = 50) -> Page:
        self.store.conversations.get(conversation_id)
        return self.store.messages.page(conversation_id, before=before, limit=limit)

    def attachments(self, message_id: int) -> list[Attachment]:
        return self.store.attachments.of_message(message_id)

    def search(self, text: str, conversation_id: int | None = None) -> list[Message]:
        return self.store.messages.search(text, conversation_id=conversation_id)

    def pending(self) -> list[Message]:
        """Outgoing messages still waiting for the relay (the UI marks them as waiting)."""
        return self.store.messages.waiting()

    def delete_messages(self, ids: list[int]) -> list[int]:
        """Delete messages on this device, with their files and every trace of their words."""
        return self.store.delete_messages(ids)

    def save_attachment(self, attachment_id: int, dest: Path) -> int:
        """Decrypt a received or sent file to ``dest``; refused for secret chats."""
        attachment = self.store.attachments.get(attachment_id)
        message = self.store.messages.get(attachment.message_id)
        if self.store.conversations.get(message.conversation_id).kind is ConversationKind.SECRET:
            raise SecretChatError("files of a secret chat cannot be saved outside it")
        try:
            return self.store.attachments.export(attachment_id, dest)
        except StorageError:
            raise
        except OSError as e:
            raise FileAccessError(f"cannot save to {dest}: {e.strerror}") from e

    def mark_read(self, conversation_id: int) -> int:
        """Mark every unread message read, start their countdowns, and tell the sender if policy allows."""
        conversation = self.store.conversations.get(conversation_id)
        unread = self.store.messages.unread(conversation_id)
        if not unread:
            return 0
        now = self._clock()
        by_device: dict[tuple[str, int], list[bytes]] = {}
        with self.store.transaction():
            for message in unread:
                self.store.messages.set_status(message.id, MessageStatus.READ, at=now)
                if message.expire_after:
                    self.store.messages.set_expiry(message.id, now + message.expire_after)
                by_device.setdefault((message.sender, message.sender_device), []).append(message.message_id)
            if read_receipts_enabled(self.store):
                for (account_id, device_id), ids in by_device.items():
                    if self.store.sessions.get(account_id, device_id) is None or self._certificate is None:
                        continue
                    for start in range(0, len(ids), 512):
                        receipt = Receipt(ReceiptType.READ, int(now * 1000), tuple(ids[start : start + 512]))
                        self._queue(
                            account_id,
                            device_id,
                            receipt,
                            int(now) + CONTROL_ENVELOPE_SECONDS,
                            message_id=None,
                        )
        self._emit(*(MessageStatusChanged(m.id, conversation.id, MessageStatus.READ) for m in unread))
        self._kick_flush()
        return len(unread)

    async def flush(self, timeout: float) -> bool:
        """Wait until everything queued has left for the relay; False if it has not within ``timeout``.

        For a face about to close (the CLI after a timer change or a read receipt):
        what is still queued then simply leaves with the next connection.
        """
        deadline = self._loop.time() + timeout
        while self.store.outbox.next_attempt() is not None or self.store.unsealed.count():
            if self._loop.time() >= deadline or self.link is None or self.link.state != LinkState.ONLINE:
                return False
            self._kick_flush()
            await asyncio.sleep(FLUSH_POLL_SECONDS)
        return True

    def set_read_receipts(self, enabled: bool) -> None:
        self.store.settings.set(READ_RECEIPTS, "on" if enabled else "off")

    async def set_timer(self, conversation_id: int, timer_seconds: int) -> Conversation:
        """Change the conversation's timer for both sides (an encrypted control message tells the peer)."""
        conversation = self._sendable(conversation_id)
        peer = conversation.peer_account_id
        if peer is None:
            raise NoDeviceError("group conversations arrive with a later version")
        change = TimerChange(timer_seconds, self._millis(), secret_id=conversation.secret_id)
        await self._ensure_sessions(peer, conversation.peer_device)
        if not self._certificate_valid():
            raise OfflineError("connect to the relay before changing a timer")
        with self.store.transaction():
            updated = self.store.conversations.set_timer(conversation_id, timer_seconds)
            self._send_control(updated, change)
        self._emit(TimerChanged(conversation_id, timer_seconds, by_peer=False))
        return updated

    def safety_numbers(self, account_id: str) -> list[SafetyNumberView]:
        """One per device of the colleague that this device can reach or must decide about."""
        if self.account is None or self._identity is None:
            raise NotEnrolledError("enrol this device first")
        return [
            SafetyNumberView(
                account_id,
                device.device_id,
                (
                    number := SafetyNumber.compute(
                        local_identity=self._identity.public,
                        local_id=self.account.account_id,
                        remote_identity=device.identity_key,
                        remote_id=account_id,
                    )
                ).digits,
                number.qr_payload(),
                device.trust,
            )
            for device in self.store.contacts.devices(account_id)
            if device.trust is Trust.CHANGED or self.store.sessions.get(account_id, device.device_id)
        ]

    def mark_verified(self, account_id: str, device_id: int) -> None:
        """The user compared the safety number of this device's current key."""
        device = self.store.contacts.device(account_id, device_id)
        if device is None:
            raise NoDeviceError(f"no known device {device_id} of {account_id}")
        self.store.contacts.mark_verified(account_id, device_id, device.identity_key)

    async def accept_key_change(self, account_id: str) -> None:
        """The user accepts the new keys of a contact; waiting messages leave."""
        with self.store.transaction():
            for device in self.store.contacts.devices(account_id):
                if device.trust is Trust.CHANGED:
                    self.store.contacts.accept_changed_key(account_id, device.device_id)
        await self._seal_pending()

    async def _refill_prekeys(self) -> None:
        if self._refilling:
            return
        self._refilling = True
        try:
            first = prekeys.next_one_time_id(self.store)
            fresh = prekeys.new_one_time_prekeys(first, prekeys.REFILL_ONE_TIME_PREKEYS, self._random)
            prekeys.save(self.store, None, fresh)
            await self._request(
                FrameType.UPLOAD_PREKEYS, UploadPreKeys(None, prekeys.uploads(fresh)).encode()
            )
            log.info("uploaded %d one-time prekeys", len(fresh))
        finally:
            self._refilling = False
