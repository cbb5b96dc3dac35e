"""Sending: a message is stored pending, then sealed for every device of its conversation.

The message and its *unsealed* mark are stored in one transaction. ``_seal_pending``
takes unsealed messages strictly in order: it makes sure there is a session with each
recipient device (fetching prekey bundles if not), uploads a file's blob, and in one
transaction encrypts the message for every device, puts the envelopes in the outbox,
saves the advanced sessions and drops the mark. A message whose session, upload or
certificate needs the relay simply waits (offline compose); the messages behind it in
the same conversation wait with it, so they leave in order.
"""

from __future__ import annotations

import io
import logging
import mimetypes
from pathlib import Path

from app.base.errors import (
    CryptoError,
    OfflineError,
    RelayRefusedError,
)
from app.crypto.blob import encrypt_blob
from app.crypto.keys import PreKeyBundle
from app.crypto.session import Session, initiate_session
from app.protocol.content import (
    MESSAGE_ID_BYTES,
    Content,
    FileMessage,
    MessageHeader,
    TextMessage,
)
from app.protocol.frames import (
    Bundles,
    FetchBundles,
    FrameType,
    Status,
)
from app.services import sessions
from app.services.errors import (
    FileAccessError,
    IdentityChangedError,
    NoDeviceError,
    NotEnrolledError,
    SecretChatError,
)
from app.services.events import (
    Event,
    MessageStatusChanged,
)
from app.services.state import EngineState
from app.sync.link import LinkState
from storage.records import (
    OUTGOING,
    Attachment,
    Conversation,
    ConversationKind,
    Message,
    MessageStatus,
    NewMessage,
)

log = logging.getLogger(__name__)

CONTROL_ENVELOPE_SECONDS = 14 * 24 * 3600
"""How long the relay may keep a receipt or timer change (it caps this at its retention)."""
MESSAGE_ENVELOPE_SECONDS = 30 * 24 * 3600
"""How long it may keep a message without a timer (likewise capped)."""
UNSEALED_BATCH = 500


class Sending(EngineState):
    """Storing, sealing and queueing what this device sends."""

    async def send_text(self, conversation_id: int, text: str) -> Message:
        conversation = self._sendable(conversation_id)
        TextMessage(self._header(conversation, bytes(MESSAGE_ID_BYTES), 0), text)
        with self.store.transaction():
            message = self._add_outgoing(conversation, text)
            sealed = self._seal_at_once(message, conversation)
        if sealed:
            self._kick_flush()
        else:
            await self._seal_pending()
        return self.store.messages.get(message.id)

    def _seal_at_once(self, message: Message, conversation: Conversation) -> bool:
        """Seal a new text in the transaction that stores it, when nothing has to wait (one commit).

        Only when it is the one unsealed message (nothing earlier may be overtaken), the
        certificate is valid, and every device it goes to already has a session.
        """
        peer = conversation.peer_account_id
        if peer is None or self.store.unsealed.count() != 1 or not self._certificate_valid():
            return False
        devices = self.store.sessions.devices(peer)
        if conversation.peer_device is not None:
            devices = [d for d in devices if d == conversation.peer_device]
        if not devices:
            return False
        header = self._header(conversation, message.message_id, int(message.sent_at * 1000))
        self._seal_ready(message, peer, devices, TextMessage(header, message.body))
        return True

    def _certificate_valid(self) -> bool:
        return self._certificate is not None and self._certificate.expires_at > self._clock()

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
        try:
            with self.store.transaction():
                message = self._add_outgoing(conversation, body)
                if path is not None:
                    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                    with path.open("rb") as source:
                        self.store.attachments.add(message.id, source, name=path.name, mime_type=mime)
        except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
            raise FileAccessError(f"cannot read {path}: {e.strerror}") from e
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
                    log.info("a message cannot be sent (%s)", type(e).__name__)
                    with self.store.transaction():
                        self.store.unsealed.remove(message.id)
                        self.store.messages.set_status(message.id, MessageStatus.FAILED)
                    self._emit(MessageStatusChanged(message.id, conversation.id, MessageStatus.FAILED))
        self._kick_flush()

    async def _seal_one(self, message: Message, conversation: Conversation) -> None:
        peer = conversation.peer_account_id
        if peer is None:
            raise NoDeviceError("group conversations arrive with a later version")
        if not self._certificate_valid():
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
        if self.store.messages.find(message.conversation_id, OUTGOING, message.message_id) is None:
            return  # deleted, or its timer ran out, while the upload or the key fetch was awaited
        with self.store.transaction():
            self._seal_ready(message, peer, devices, content)

    def _seal_ready(self, message: Message, peer: str, devices: list[int], content: Content) -> None:
        """Encrypt for every device into the outbox and drop the unsealed mark (inside a transaction)."""
        expires_at = int(message.expires_at or self._clock() + MESSAGE_ENVELOPE_SECONDS) + 1
        for device_id in devices:
            self._queue(peer, device_id, content, expires_at, message_id=message.id)
        self.store.unsealed.remove(message.id)

    async def _upload(self, header: MessageHeader, file: Attachment, message: Message) -> FileMessage:
        """Encrypt the file with a fresh key and put it on the relay until the message would disappear."""
        if self.link is None or self.link.state != LinkState.ONLINE or not self._upload_token:
            raise OfflineError("files are uploaded once the relay has accepted this device")
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
                if self.store.sessions.get(account_id, device.device_id) is not None:
                    continue
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
