"""The core: every use case of the messenger, run on the worker thread's asyncio loop.

The faces never call this directly; they go through ``facade.Enclave``, which runs each
call here on the worker loop. Everything in this module therefore runs on one thread,
the store's own; a coroutine only yields at network waits, and never between loading a
ratchet session and saving it (see ``_seal_ready`` and ``_receive``), so two coroutines
can never advance the same session from the same state.

How a message travels here (DESIGN.md, "How a message travels"):

- Send: the message is stored *pending* and queued as *unsealed* in one transaction.
  ``_seal_pending`` then takes unsealed messages strictly in order: it makes sure there
  is a session with each recipient device (fetching prekey bundles if not), uploads a
  file's blob, and in one transaction encrypts the message for every device, puts the
  envelopes in the outbox, saves the advanced sessions and drops the unsealed mark.
  ``_flush`` sends the outbox, oldest first, and marks the message *sent* when the relay
  has stored every copy. A message whose session or upload needs the relay simply waits
  (offline compose); those behind it in the same conversation wait with it.
- Receive: a pushed envelope is unsealed, decrypted and parsed in memory; a file's blob
  is downloaded and checked; then one transaction stores the message, the session, the
  used one-time prekey's removal, the envelope id (so a redelivery is dropped) and the
  delivery receipt's envelope. Only then is the envelope acked. Anything that fails
  before the commit leaves the store untouched, and the relay redelivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import mimetypes
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path

from app.base.errors import (
    CryptoError,
    DuplicateMessageError,
    OfflineError,
    RelayRefusedError,
    RemoteProtocolError,
)
from app.crypto.blob import decrypt_blob, encrypt_blob
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair, PreKeyBundle
from app.crypto.primitives import RandomSource
from app.crypto.safety import SafetyNumber
from app.crypto.sealed import unseal
from app.crypto.session import Session, initiate_session
from app.protocol.content import (
    MESSAGE_ID_BYTES,
    SECRET_ID_BYTES,
    Content,
    FileMessage,
    MessageHeader,
    Receipt,
    ReceiptType,
    TextMessage,
    TimerChange,
    parse_content,
)
from app.protocol.envelope import Envelope
from app.protocol.frames import (
    Ack,
    Authenticated,
    Bundles,
    DirectoryEntry,
    DirectoryLookup,
    DirectoryResults,
    Enrol,
    FetchBundles,
    FrameType,
    Notice,
    NoticeKind,
    Response,
    Send,
    Status,
    UploadPreKeys,
)
from app.services import prekeys, sessions
from app.services.errors import (
    AlreadyEnrolledError,
    IdentityChangedError,
    NoDeviceError,
    NotEnrolledError,
    SecretChatError,
)
from app.services.events import (
    ConnectionChanged,
    ConversationStarted,
    Event,
    Listener,
    MessageArrived,
    MessagesExpired,
    MessageStatusChanged,
    TimerChanged,
)
from app.services.settings import (
    CERTIFICATE,
    READ_RECEIPTS,
    RelaySettings,
    load_relay,
    read_receipts_enabled,
    save_relay,
)
from app.sync.link import LinkState, RelayAddress, RelayLink, enrol
from app.sync.machine import Backoff
from storage.errors import NotFoundError
from storage.records import (
    OUTGOING,
    Attachment,
    Contact,
    Conversation,
    ConversationKind,
    Identity,
    Message,
    MessageStatus,
    NewMessage,
    OutboxEntry,
    Page,
    PageCursor,
    Trust,
)
from storage.store import Store
from storage.sweeper import ExpirySweeper

log = logging.getLogger(__name__)

Clock = Callable[[], float]

CONTROL_ENVELOPE_SECONDS = 14 * 24 * 3600
"""How long the relay may keep a receipt or timer change (it caps this at its retention)."""
MESSAGE_ENVELOPE_SECONDS = 30 * 24 * 3600
"""How long it may keep a message without a timer (likewise capped)."""
CERTIFICATE_GRACE_SECONDS = MESSAGE_ENVELOPE_SECONDS
"""A sender's certificate is checked as of this long ago: an envelope may wait that long for
its recipient, and the certificate only had to be valid when the envelope was sealed."""
RETRY_SECONDS = 15.0
RENEW_AT_FRACTION = 0.75
"""Reconnect for a fresh certificate when this much of the current one's lifetime has passed."""
"""When the relay is busy (mailbox full, rate limit), try the outbox again after this."""
PREVIEW_CHARACTERS = 120
UNSEALED_BATCH = 500


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


@dataclass(slots=True)
class _Target:
    account_id: str
    device_id: int


class Engine:
    """All use cases over one open profile; create on the worker loop with ``Engine.start``."""

    def __init__(
        self,
        store: Store,
        *,
        listener: Listener,
        clock: Clock,
        random: RandomSource,
        backoff: Backoff | None = None,
    ) -> None:
        self.store = store
        self._listener = listener
        self._clock = clock
        self._random = random
        self._backoff = backoff
        self._loop = asyncio.get_running_loop()
        record = store.identity.load()
        self.account: Identity | None = record
        self._identity = IdentityKeyPair.from_seed(record.seed) if record else None
        self._relay = load_relay(store)
        saved = store.settings.get(CERTIFICATE)
        self._certificate = DeviceCertificate.parse(bytes.fromhex(saved)) if saved else None
        self._upload_token = b""
        self.link: RelayLink | None = None
        self._seal_lock = asyncio.Lock()
        self._flush_task: asyncio.Task[None] | None = None
        self._flush_wanted = False
        self._refilling = False
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._retry_handle: asyncio.TimerHandle | None = None
        self._renew_handle: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._sweeper = ExpirySweeper(store, self._schedule_sweep)

    # Lifecycle.

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

    def _emit(self, *events: Event) -> None:
        for event in events:
            try:
                self._listener(event)
            except Exception:
                log.exception("an event listener failed")

    # Enrolment.

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

    # The link's listener.

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

    # Directory, contacts, conversations.

    async def lookup(self, query: str) -> list[DirectoryEntry]:
        response = await self._request(FrameType.DIRECTORY_LOOKUP, DirectoryLookup(query).encode())
        return list(DirectoryResults.parse(response.body).entries)

    def add_contact(self, account_id: str, display_name: str, department: str = "") -> Contact:
        return self.store.contacts.upsert(account_id, display_name, department)

    def contacts(self) -> list[Contact]:
        return self.store.contacts.list()

    def start_conversation(self, account_id: str) -> Conversation:
        """The direct conversation with a colleague, created on first use."""
        contact = self._contact(account_id)
        existing = self.store.conversations.find_with_peer(account_id)
        if existing:
            return existing[0]
        return self.store.conversations.create(
            ConversationKind.DIRECT, peer_account_id=account_id, title=contact.display_name
        )

    async def start_secret_chat(self, account_id: str, timer_seconds: int) -> Conversation:
        """A secret chat with one device of the colleague; it lives on this device only."""
        contact = self._contact(account_id)
        if timer_seconds <= 0:
            raise SecretChatError("a secret chat needs a disappearing-message timer")
        devices = await self._ensure_sessions(account_id, None)
        conversation = self.store.conversations.create(
            ConversationKind.SECRET,
            peer_account_id=account_id,
            title=contact.display_name,
            timer_seconds=timer_seconds,
            secret_id=self._random(SECRET_ID_BYTES),
            peer_device=devices[0],
        )
        self._send_control(
            conversation, TimerChange(timer_seconds, self._millis(), secret_id=conversation.secret_id)
        )
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
        return [
            m
            for c in self.store.conversations.list()
            for m in self.store.messages.page(c.id, limit=500).messages
            if m.outgoing and m.status is MessageStatus.PENDING
        ]

    # Sending.

    async def send_text(self, conversation_id: int, text: str) -> Message:
        conversation = self._sendable(conversation_id)
        TextMessage(self._header(conversation, bytes(MESSAGE_ID_BYTES), 0), text)
        message = self._store_outgoing(conversation, text, None)
        await self._seal_pending()
        return self.store.messages.get(message.id)

    async def send_file(self, conversation_id: int, path: Path, caption: str = "") -> Message:
        conversation = self._sendable(conversation_id)
        message = self._store_outgoing(conversation, caption, path)
        await self._seal_pending()
        return self.store.messages.get(message.id)

    async def forward(self, message_id: int, conversation_id: int) -> Message:
        """Send a copy of a message (and its file) to another conversation; never out of a secret chat."""
        original = self.store.messages.get(message_id)
        if self.store.conversations.get(original.conversation_id).kind is ConversationKind.SECRET:
            raise SecretChatError("messages of a secret chat cannot be forwarded")
        conversation = self._sendable(conversation_id)
        files = self.store.attachments.of_message(message_id)
        with self.store.transaction():
            copy = self._add_outgoing(conversation, original.body)
            for file in files:
                source = io.BytesIO(b"".join(self.store.attachments.read(file.id)))
                self.store.attachments.add(copy.id, source, name=file.name, mime_type=file.mime_type)
        await self._seal_pending()
        return self.store.messages.get(copy.id)

    def delete_messages(self, ids: list[int]) -> list[int]:
        """Delete messages on this device, with their files and every trace of their words."""
        return self.store.delete_messages(ids)

    def save_attachment(self, attachment_id: int, dest: Path) -> int:
        """Decrypt a received or sent file to ``dest``; refused for secret chats."""
        attachment = self.store.attachments.get(attachment_id)
        message = self.store.messages.get(attachment.message_id)
        if self.store.conversations.get(message.conversation_id).kind is ConversationKind.SECRET:
            raise SecretChatError("files of a secret chat cannot be saved outside it")
        return self.store.attachments.export(attachment_id, dest)

    def _sendable(self, conversation_id: int) -> Conversation:
        if self.account is None:
            raise NotEnrolledError("enrol this device first")
        conversation = self.store.conversations.get(conversation_id)
        if conversation.peer_account_id is None:
            raise NoDeviceError("group conversations arrive with a later version")
        if sessions.blocked(self.store, conversation.peer_account_id, conversation.peer_device):
            raise IdentityChangedError(conversation.peer_account_id)
        return conversation

    def _store_outgoing(self, conversation: Conversation, body: str, path: Path | None) -> Message:
        with self.store.transaction():
            message = self._add_outgoing(conversation, body)
            if path is not None:
                mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                with path.open("rb") as source:
                    self.store.attachments.add(message.id, source, name=path.name, mime_type=mime)
        return message

    def _add_outgoing(self, conversation: Conversation, body: str) -> Message:
        now = self._clock()
        timer = conversation.timer_seconds
        message = self.store.messages.add(
            NewMessage(
                conversation_id=conversation.id,
                message_id=self._random(MESSAGE_ID_BYTES),
                body=body,
                status=MessageStatus.PENDING,
                sent_at=now,
                expires_at=now + timer if timer else None,
                expire_after=timer,
            )
        )
        self.store.unsealed.add(message.id)
        return message

    def _header(self, conversation: Conversation, message_id: bytes, sent_at: int) -> MessageHeader:
        return MessageHeader(
            message_id, sent_at, conversation.timer_seconds, secret_id=conversation.secret_id
        )

    async def _seal_pending(self) -> None:
        """Encrypt unsealed messages into the outbox, in order; what needs the relay waits for it."""
        async with self._seal_lock:
            waiting: set[int] = set()
            for message_id in self.store.unsealed.list(UNSEALED_BATCH):
                message = self.store.messages.get(message_id)
                conversation = self.store.conversations.get(message.conversation_id)
                if conversation.id in waiting:
                    continue
                try:
                    await self._seal_one(message, conversation)
                except (OfflineError, IdentityChangedError) as e:
                    log.debug("a message waits: %s", type(e).__name__)
                    waiting.add(conversation.id)
                except (NoDeviceError, RelayRefusedError) as e:
                    log.info("a message cannot be sent: %s", e)
                    with self.store.transaction():
                        self.store.unsealed.remove(message.id)
                        self.store.messages.set_status(message.id, MessageStatus.FAILED)
                    self._emit(MessageStatusChanged(message.id, conversation.id, MessageStatus.FAILED))
        self._kick_flush()

    async def _seal_one(self, message: Message, conversation: Conversation) -> None:
        peer = conversation.peer_account_id
        if peer is None:
            raise NoDeviceError("group conversations arrive with a later version")
        if self._certificate is None or self._certificate.expires_at <= self._clock():
            raise OfflineError("this device needs a fresh certificate from the relay")
        devices = await self._ensure_sessions(peer, conversation.peer_device)
        if sessions.blocked(self.store, peer, conversation.peer_device):
            raise IdentityChangedError(peer)
        header = self._header(conversation, message.message_id, int(message.sent_at * 1000))
        files = self.store.attachments.of_message(message.id)
        content: Content
        if files:
            content = await self._upload(header, files[0], message)
        else:
            content = TextMessage(header, message.body)
        expires_at = int(message.expires_at or self._clock() + MESSAGE_ENVELOPE_SECONDS) + 1
        with self.store.transaction():
            for device_id in devices:
                self._queue(peer, device_id, content, expires_at, message_id=message.id)
            self.store.unsealed.remove(message.id)

    async def _upload(self, header: MessageHeader, file: Attachment, message: Message) -> FileMessage:
        """Encrypt the file with a fresh key and put it on the relay until the message would disappear."""
        if self.link is None:
            raise OfflineError("not connected to the relay")
        plaintext = b"".join(self.store.attachments.read(file.id))
        blob, key, digest = encrypt_blob(plaintext, self._random)
        until = int(message.expires_at) + 1 if message.expires_at else None
        attachment_id = await self.link.upload(blob, self._upload_token, until)
        return FileMessage(
            header,
            attachment_id.encode("ascii"),
            key,
            digest,
            len(plaintext),
            file.name,
            file.mime_type,
            message.body,
        )

    def _queue(
        self, account_id: str, device_id: int, content: Content, expires_at: int, *, message_id: int | None
    ) -> None:
        """Encrypt for one device with its stored session and put the envelope in the outbox.

        Synchronous on purpose: the session is loaded, advanced and saved with no await
        in between. Call inside a transaction.
        """
        if self._identity is None or self._certificate is None:
            raise OfflineError("this device has no certificate from the relay yet")
        state = self.store.sessions.get(account_id, device_id)
        if state is None:
            raise NoDeviceError(f"no session with {account_id}'s device {device_id}")
        session = Session.from_bytes(state)
        envelope = sessions.seal_for(
            identity=self._identity,
            certificate=self._certificate,
            session=session,
            content=content,
            expires_at=expires_at,
            random=self._random,
        )
        self.store.outbox.enqueue(account_id, device_id, envelope, message_id=message_id)
        self.store.sessions.put(account_id, device_id, session.to_bytes())

    def _send_control(self, conversation: Conversation, content: Content) -> None:
        """Queue a control message for every device the conversation reaches that has a session."""
        peer = conversation.peer_account_id
        if peer is None:
            return
        devices = (
            [conversation.peer_device] if conversation.peer_device else self.store.sessions.devices(peer)
        )
        expires_at = int(self._clock()) + CONTROL_ENVELOPE_SECONDS
        with self.store.transaction():
            for device_id in devices:
                if self.store.sessions.get(peer, device_id) is not None:
                    self._queue(peer, device_id, content, expires_at, message_id=None)
        self._kick_flush()

    async def _ensure_sessions(self, account_id: str, device_id: int | None) -> list[int]:
        """The devices to encrypt for, fetching prekey bundles for a colleague with no session yet."""
        known = self.store.sessions.devices(account_id)
        if device_id is not None:
            known = [d for d in known if d == device_id]
        if known:
            return known
        if self._identity is None:
            raise NotEnrolledError("enrol this device first")
        response = await self._request(
            FrameType.FETCH_BUNDLES, FetchBundles(account_id).encode(), refuse=False
        )
        if response.status == Status.NOT_FOUND:
            raise NoDeviceError(f"{account_id} has no active device")
        if response.status != Status.OK:
            raise RelayRefusedError(response.status.name, response.reason)
        changed: list[Event] = []
        with self.store.transaction():
            self._ensure_contact(account_id)
            for device in Bundles.parse(response.body).devices:
                bundle = PreKeyBundle.from_bytes(device.bundle)
                try:
                    session = initiate_session(self._identity, bundle, self._random)
                except CryptoError:
                    log.warning("the relay handed out a prekey bundle with a bad signature")
                    continue
                note = sessions.note_device(self.store, account_id, device.device_id, bundle.identity_key)
                if note is not None:
                    changed.append(note)
                self.store.sessions.put(account_id, device.device_id, session.to_bytes())
        self._emit(*changed)
        found = self.store.sessions.devices(account_id)
        if device_id is not None:
            found = [d for d in found if d == device_id]
        if not found:
            raise NoDeviceError(f"{account_id} has no device this chat can reach")
        return found

    # The outbox.

    def _kick_flush(self) -> None:
        self._flush_wanted = True
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = self._loop.create_task(self._flush(), name="outbox")

    async def _flush(self) -> None:
        try:
            while self._flush_wanted:
                self._flush_wanted = False
                await self._flush_once()
        except OfflineError:
            log.debug("the outbox waits for the relay")

    async def _flush_once(self) -> None:
        while self.link is not None and self.link.state == LinkState.ONLINE:
            entries = self.store.outbox.due(float("inf"))
            if not entries:
                return
            for entry in entries:
                envelope = Envelope.parse(entry.envelope)
                response = await self._request(
                    FrameType.SEND, Send(entry.recipient_device, envelope).encode(), refuse=False
                )
                if not self._settle(entry, response):
                    self._retry_later()
                    return

    def _settle(self, entry: OutboxEntry, response: Response) -> bool:
        """Act on the relay's answer to one envelope; False when the rest must wait (keeps the order)."""
        if response.status in (Status.MAILBOX_FULL, Status.RATE_LIMITED, Status.INTERNAL_ERROR):
            log.info("the relay is busy (%s); the outbox waits", response.status.name)
            return False
        delivered, gone = response.status == Status.OK, response.status == Status.NOT_FOUND
        status, reseal = None, False
        with self.store.transaction():
            self.store.outbox.remove(entry.id)
            if gone:
                # The device's key stays on record: a device that appears later for the same
                # colleague is then recognised as a replacement and must be accepted.
                log.info("a colleague's device was revoked; dropping its session")
                self.store.sessions.delete(entry.recipient, entry.recipient_device)
            elif not delivered:
                log.warning("the relay refused an envelope: %s", response.status.name)
            if entry.message_id is not None and not self.store.outbox.pending_for(entry.message_id):
                # Devices that took a copy keep their sessions: none left means none took it.
                reached = delivered or bool(self.store.sessions.devices(entry.recipient))
                if gone and not reached:
                    self.store.unsealed.add(entry.message_id)
                    reseal = True
                else:
                    status = MessageStatus.SENT if reached else MessageStatus.FAILED
                    if not self.store.messages.set_status(entry.message_id, status):
                        status = None
        if reseal:
            log.info("sealing a message again for the colleague's current devices")
            self._in_background(self._seal_pending())
        if status is not None and entry.message_id is not None:
            message = self.store.messages.get(entry.message_id)
            self._emit(MessageStatusChanged(message.id, message.conversation_id, status))
        return True

    def _in_background(self, coroutine: Coroutine[None, None, None]) -> None:
        task = self._loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _retry_later(self) -> None:
        if self._retry_handle is not None:
            self._retry_handle.cancel()
        self._retry_handle = self._loop.call_later(RETRY_SECONDS, self._kick_flush)

    # Receiving.

    async def _receive(self, envelope: Envelope) -> None:
        if self._identity is None or self._relay is None:
            return
        if self.store.seen.contains(envelope.envelope_id):
            await self._ack(envelope)
            return
        try:
            unsealed = unseal(
                recipient=self._identity,
                untrusted=envelope.sealed,
                trust_root=self._relay.trust_root,
                now=int(self._clock()) - CERTIFICATE_GRACE_SECONDS,
            )
            opened = sessions.open_message(
                self.store, self._identity, unsealed.sender, unsealed.message, self._random
            )
            content = parse_content(opened.plaintext)
        except (RemoteProtocolError, CryptoError) as e:
            if not isinstance(e, DuplicateMessageError):
                log.warning("dropped an envelope that cannot be opened (%s)", type(e).__name__)
            self.store.seen.add(envelope.envelope_id)
            await self._ack(envelope)
            return
        sender = unsealed.sender
        plaintext_file = await self._download(content) if isinstance(content, FileMessage) else None
        events: list[Event] = []
        with self.store.transaction():
            self.store.seen.add(envelope.envelope_id)
            self._ensure_contact(sender.account_id)
            note = sessions.note_device(self.store, sender.account_id, sender.device_id, sender.identity_key)
            if note is not None:
                events.append(note)
            self.store.sessions.put(sender.account_id, sender.device_id, opened.session.to_bytes())
            if opened.one_time_prekey_id is not None:
                self.store.prekeys.take_one_time(opened.one_time_prekey_id)
            events += self._apply(content, sender, plaintext_file)
        await self._ack(envelope)
        self._emit(*events)
        self._kick_flush()

    async def _download(self, content: FileMessage) -> bytes | None:
        """The file's plaintext; None if the relay no longer has it. Offline: the envelope waits."""
        if self.link is None:
            raise OfflineError("not connected")
        untrusted_blob = await self.link.download(content.attachment_id.decode("ascii", errors="replace"))
        if untrusted_blob is None:
            return None
        try:
            return decrypt_blob(untrusted_blob, key=content.key, digest=content.digest)
        except CryptoError:
            log.warning("a downloaded attachment did not match its digest; it is shown as unavailable")
            return None

    def _apply(self, content: Content, sender: DeviceCertificate, file: bytes | None) -> list[Event]:
        """Store what a decrypted content means; runs inside the receive transaction."""
        if isinstance(content, TextMessage | FileMessage):
            return self._store_incoming(content, sender, file)
        if isinstance(content, Receipt):
            return self._apply_receipt(content, sender)
        if isinstance(content, TimerChange):
            conversation, events = self._conversation_for(
                sender, content.group_id, content.secret_id, content.timer_seconds
            )
            if conversation is None:
                return events
            if conversation.timer_seconds != content.timer_seconds:
                self.store.conversations.set_timer(conversation.id, content.timer_seconds)
                events.append(TimerChanged(conversation.id, content.timer_seconds, by_peer=True))
            return events
        # A KeyUpdate (reset) arrives in the new session it asks for, which has already
        # replaced the old one; nothing else is left to do.
        return []

    def _store_incoming(
        self, content: TextMessage | FileMessage, sender: DeviceCertificate, file: bytes | None
    ) -> list[Event]:
        header = content.header
        conversation, events = self._conversation_for(
            sender, header.group_id, header.secret_id, header.expire_after
        )
        if conversation is None:
            return events
        if self.store.messages.find(conversation.id, sender.account_id, header.message_id) is not None:
            return events
        body = content.text if isinstance(content, TextMessage) else content.caption
        message = self.store.messages.add(
            NewMessage(
                conversation_id=conversation.id,
                message_id=header.message_id,
                body=body,
                status=MessageStatus.DELIVERED,
                sent_at=header.sent_at / 1000,
                sender=sender.account_id,
                sender_device=sender.device_id,
                received_at=self._clock(),
                expire_after=header.expire_after,
            )
        )
        if isinstance(content, FileMessage):
            if file is None:
                name = content.filename + " (no longer available on the server)"
                self.store.attachments.add(
                    message.id, io.BytesIO(b""), name=name, mime_type=content.mime_type
                )
            else:
                self.store.attachments.add(
                    message.id, io.BytesIO(file), name=content.filename, mime_type=content.mime_type
                )
        receipt = Receipt(ReceiptType.DELIVERED, self._millis(), (header.message_id,))
        self._queue(
            sender.account_id,
            sender.device_id,
            receipt,
            int(self._clock()) + CONTROL_ENVELOPE_SECONDS,
            message_id=None,
        )
        secret = conversation.kind is ConversationKind.SECRET
        preview = (
            None
            if secret
            else (body or (content.filename if isinstance(content, FileMessage) else ""))[:PREVIEW_CHARACTERS]
        )
        events.append(MessageArrived(message, conversation, preview))
        return events

    def _conversation_for(
        self, sender: DeviceCertificate, group_id: bytes | None, secret_id: bytes | None, timer: int
    ) -> tuple[Conversation | None, list[Event]]:
        """The conversation a content belongs to, opened if the peer started it."""
        if group_id is not None:
            log.info("dropped a group message: groups arrive with a later version")
            return None, []
        if secret_id is None:
            existing = self.store.conversations.find_with_peer(sender.account_id)
            if existing:
                return existing[0], []
            created = self.store.conversations.create(
                ConversationKind.DIRECT,
                peer_account_id=sender.account_id,
                title=self.store.contacts.get(sender.account_id).display_name,
            )
            return created, [ConversationStarted(created)]
        secret = self.store.conversations.find_secret(secret_id)
        if secret is not None:
            if (secret.peer_account_id, secret.peer_device) != (sender.account_id, sender.device_id):
                log.warning("dropped a secret chat message from a device outside that chat")
                return None, []
            return secret, []
        created = self.store.conversations.create(
            ConversationKind.SECRET,
            peer_account_id=sender.account_id,
            title=self.store.contacts.get(sender.account_id).display_name,
            timer_seconds=timer,
            secret_id=secret_id,
            peer_device=sender.device_id,
        )
        return created, [ConversationStarted(created)]

    def _apply_receipt(self, receipt: Receipt, sender: DeviceCertificate) -> list[Event]:
        status = MessageStatus.READ if receipt.receipt_type == ReceiptType.READ else MessageStatus.DELIVERED
        events: list[Event] = []
        conversations = [
            c
            for kind in (ConversationKind.DIRECT, ConversationKind.SECRET)
            for c in self.store.conversations.find_with_peer(sender.account_id, kind)
        ]
        for message_id in receipt.message_ids:
            for conversation in conversations:
                message = self.store.messages.find(conversation.id, OUTGOING, message_id)
                if message is not None and self.store.messages.set_status(
                    message.id, status, at=receipt.timestamp / 1000
                ):
                    events.append(MessageStatusChanged(message.id, conversation.id, status))
        return events

    def _ensure_contact(self, account_id: str) -> None:
        """A sender we had not added yet becomes a contact, named by account id until looked up."""
        try:
            self.store.contacts.get(account_id)
        except NotFoundError:
            self.store.contacts.upsert(account_id, account_id)

    def _contact(self, account_id: str) -> Contact:
        return self.store.contacts.get(account_id)

    async def _ack(self, envelope: Envelope) -> None:
        await self._request(FrameType.ACK, Ack((envelope.envelope_id,)).encode())

    # Reading, timers, trust.

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

    def set_read_receipts(self, enabled: bool) -> None:
        self.store.settings.set(READ_RECEIPTS, "on" if enabled else "off")

    async def set_timer(self, conversation_id: int, timer_seconds: int) -> Conversation:
        """Change the conversation's timer for both sides (an encrypted control message tells the peer)."""
        conversation = self._sendable(conversation_id)
        peer = conversation.peer_account_id
        if peer is None:
            raise NoDeviceError("group conversations arrive with a later version")
        await self._ensure_sessions(peer, conversation.peer_device)
        if self._certificate is None:
            raise OfflineError("connect to the relay once before changing a timer")
        updated = self.store.conversations.set_timer(conversation_id, timer_seconds)
        change = TimerChange(timer_seconds, self._millis(), secret_id=conversation.secret_id)
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

    # Expiry and prekeys.

    def _schedule_sweep(self, at: float | None) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        if at is not None:
            self._sweep_handle = self._loop.call_later(max(0.0, at - self._clock()), self._sweep)

    def _sweep(self) -> None:
        self._sweep_handle = None
        deleted = self._sweeper.fire()
        if deleted:
            self._emit(MessagesExpired(tuple(deleted)))

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

    async def _request(self, frame_type: FrameType, body: bytes, *, refuse: bool = True) -> Response:
        if self.link is None:
            raise OfflineError("this device is not enrolled with a relay")
        response = await self.link.request(frame_type, body)
        if refuse and response.status != Status.OK:
            raise RelayRefusedError(response.status.name, response.reason)
        return response

    def _millis(self) -> int:
        return int(self._clock() * 1000)
