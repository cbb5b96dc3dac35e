"""Sending: a message is stored pending, then sealed for every device of its conversation.

The message and its *unsealed* mark are stored in one transaction. ``seal_pending``
takes unsealed messages strictly in order: it makes sure there is a session with each
recipient device (fetching prekey bundles if not), uploads a file's blob, and in one
transaction encrypts the message for every device, puts the envelopes in the outbox,
saves the advanced sessions and drops the mark. A message whose session, upload or
certificate needs the relay simply waits (offline compose); the messages behind it in
the same conversation wait with it, so they leave in order.

A disappearing message is sealed only while the transport is online, and its countdown
on this device starts when the relay has taken it (``Delivery``), never while it waits
here. Its envelope gets the expiry every envelope gets (``envelope_expiry``): the timer
travels sealed, so the relay cannot tell it from any other envelope.

The policy is checked before a message is stored (``_check_policy``, ``PolicyRules.check_file``):
secret chats only, verified keys for the conversation's label, and for a file whether files
are allowed, its size and its type. A refused message leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import io
import logging
import mimetypes
import os
from collections.abc import Sequence
from pathlib import Path

from app.base.errors import OfflineError, RelayRefusedError
from app.crypto.blob import encrypt_blob
from app.crypto.primitives import RandomSource
from app.protocol.content import MESSAGE_ID_BYTES, Content, FileMessage, MessageHeader, TextMessage
from app.protocol.lifetime import envelope_expiry
from app.services.clock import Clock
from app.services.credentials import Credentials
from app.services.delivery import Delivery
from app.services.errors import (
    FileAccessError,
    GroupError,
    IdentityChangedError,
    LogForkedError,
    NoDeviceError,
    NotEnrolledError,
    PolicyRefusedError,
    SecretChatError,
    VerificationRequiredError,
)
from app.services.events import Emitter, MessageHeld, MessageStatusChanged, Problem
from app.services.groups import Groups
from app.services.keylog import Transparency
from app.services.rules import RulesSource
from app.services.sessions import Sessions
from app.sync.link import RelayLink
from app.sync.transport import TransportState
from storage.errors import NotFoundError
from storage.records import (
    OUTGOING,
    Attachment,
    Conversation,
    ConversationKind,
    Message,
    MessageStatus,
    NewMessage,
    Trust,
)
from storage.store import Store

log = logging.getLogger(__name__)

UNSEALED_BATCH = 500


class Sending:
    """Storing, sealing and queueing what this device sends."""

    def __init__(
        self,
        store: Store,
        *,
        credentials: Credentials,
        sessions: Sessions,
        transparency: Transparency,
        relay: RelayLink,
        delivery: Delivery,
        emitter: Emitter,
        clock: Clock,
        random: RandomSource,
        rules: RulesSource,
        groups: Groups,
    ) -> None:
        """``relay`` takes the files (uploads); the envelopes go through ``delivery``; ``groups``
        says whom a group message goes to."""
        self._store = store
        self._groups = groups
        self._credentials = credentials
        self._sessions = sessions
        self._transparency = transparency
        self._relay = relay
        self._delivery = delivery
        self._emitter = emitter
        self._clock = clock
        self._random = random
        self._rules = rules
        self._lock = asyncio.Lock()
        self._held: set[int] = set()
        """Messages already reported as waiting for a key to be accepted (reported once)."""

    async def send_text(self, conversation_id: int, text: str) -> Message:
        conversation = self.sendable(conversation_id)
        self._check_policy(conversation)
        TextMessage(self._header(conversation, bytes(MESSAGE_ID_BYTES), 0, conversation.timer_seconds), text)
        with self._store.transaction():
            message = self._add(conversation, text)
            sealed = self._seal_at_once(message, conversation)
        if sealed:
            self._delivery.kick()
        else:
            await self.seal_pending()
        return self._store.messages.get(message.id)

    async def send_file(self, conversation_id: int, path: Path, caption: str = "") -> Message:
        conversation = self.sendable(conversation_id)
        self._check_policy(conversation)
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        try:
            with path.open("rb") as source:
                rules = self._rules()
                rules.check_file(size=os.fstat(source.fileno()).st_size, mime_type=mime)
                with self._store.transaction():
                    message = self._add(conversation, caption)
                    # The limit again while reading: a file that grows after the check is refused too.
                    self._store.attachments.add(
                        message.id, source, name=path.name, mime_type=mime, limit=rules.attachment_max_bytes
                    )
        except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
            raise FileAccessError(f"cannot read {path}: {e.strerror}") from e
        await self.seal_pending()
        return self._store.messages.get(message.id)

    async def forward(self, message_id: int, conversation_id: int) -> Message:
        """Send a copy of a message (and its file) to another conversation; never out of a secret chat."""
        original = self._store.messages.get(message_id)
        if self._store.conversations.get(original.conversation_id).kind is ConversationKind.SECRET:
            raise SecretChatError("messages of a secret chat cannot be forwarded")
        conversation = self.sendable(conversation_id)
        self._check_policy(conversation)
        files = self._store.attachments.of_message(message_id)
        for file in files:
            self._rules().check_file(size=file.size, mime_type=file.mime_type)
        with self._store.transaction():
            copy = self._add(conversation, original.body)
            for file in files:
                source = io.BytesIO(b"".join(self._store.attachments.read(file.id)))
                self._store.attachments.add(copy.id, source, name=file.name, mime_type=file.mime_type)
        await self.seal_pending()
        return self._store.messages.get(copy.id)

    def sendable(self, conversation_id: int) -> Conversation:
        """The conversation, if this device may send in it now."""
        if self._credentials.account is None:
            raise NotEnrolledError("enrol this device first")
        self._transparency.check_not_forked()
        conversation = self._store.conversations.get(conversation_id)
        if conversation.group_id is not None:
            if self._credentials.account.account_id not in self._groups.members(conversation.group_id):
                raise GroupError("this account is no longer a member of that group")
            return conversation
        peer = conversation.peer_account_id
        if peer is not None and self._sessions.blocked(peer, conversation.peer_device):
            raise IdentityChangedError(peer)
        return conversation

    def _recipients(self, conversation: Conversation) -> list[tuple[str, int | None]]:
        """(account, its one device or None for all) for each account a message of the conversation goes
        to: the peer, or every other member of the group as this device's state of it says."""
        if conversation.group_id is None:
            assert conversation.peer_account_id is not None
            return [(conversation.peer_account_id, conversation.peer_device)]
        me = self._credentials.account.account_id if self._credentials.account else None
        return [(m, None) for m in sorted(self._groups.members(conversation.group_id)) if m != me]

    def _known_devices(self, conversation: Conversation) -> list[tuple[str, int]]:
        """The devices with a session a message of the conversation goes to."""
        return [
            (account, device_id)
            for account, device in self._recipients(conversation)
            for device_id in self._sessions.devices(account, device)
        ]

    async def _devices(self, conversation: Conversation) -> list[tuple[str, int]]:
        """Every device a message of the conversation goes to, sessions made where there are none.

        In a direct conversation a changed key holds the message (``IdentityChangedError``); in a
        group, a member whose key changed, or who has no device, is passed over (``reach``).
        """
        recipients = self._recipients(conversation)
        if conversation.group_id is None:
            [(peer, device)] = recipients
            devices = await self._sessions.ensure(peer, device)
            if self._sessions.blocked(peer, device):
                raise IdentityChangedError(peer)
            return [(peer, d) for d in devices]
        return await self.reach([account for account, _ in recipients])

    def _check_policy(self, conversation: Conversation) -> None:
        """Whether the policy lets a message be written in ``conversation`` (a ``PolicyRefusedError`` if not).

        Secret chats only covers writing in a normal conversation as well as starting one, or a
        conversation made before the rule would keep it open. Verified keys: every device the
        message would be sealed for (every member's, in a group) must carry the user's verified
        mark for its current key;
        with no session yet there is no key the user could have verified, so that is refused too.
        """
        rules = self._rules()
        if conversation.kind is not ConversationKind.SECRET:
            rules.check_direct()
        if not rules.requires_verification(conversation.classification):
            return
        label = rules.label_of(conversation.classification)
        allowed = f"conversations labelled {label} send to verified keys only"
        for peer, peer_device in self._recipients(conversation):
            devices = self._sessions.devices(peer, peer_device)
            if not devices:
                raise VerificationRequiredError(
                    "verified_keys_required", allowed, f"no key of {peer} is known yet", account_id=peer
                )
            for device_id in devices:
                device = self._store.contacts.device(peer, device_id)
                if device is None or device.trust is not Trust.VERIFIED:
                    raise VerificationRequiredError(
                        "verified_keys_required",
                        allowed,
                        f"compare safety numbers with {peer} and mark the key verified first",
                        account_id=peer,
                    )

    def send_control(self, conversation: Conversation, content: Content) -> None:
        """Queue a control message for every device the conversation reaches that has a session."""
        expires_at = envelope_expiry(self._clock())
        with self._store.transaction():
            for account, device_id in self._known_devices(conversation):
                self._sessions.seal(account, device_id, content, expires_at, message_id=None)
        self._delivery.kick()

    async def reach(self, accounts: list[str]) -> list[tuple[str, int]]:
        """Every device of each account, sessions made where there are none (``OfflineError`` if the
        relay is needed and cannot be reached). An account with no device is passed over; so is a
        device whose key changed, and the user is told (``Problem``): that member will not get what
        is sent now even once the key is accepted, so that one member holds no one else back."""
        found: list[tuple[str, int]] = []
        for account in accounts:
            try:
                devices = await self._sessions.ensure(account, None)
            except NoDeviceError:
                log.info("a group member has no device to send to")
                continue
            kept = [(account, d) for d in devices if not self._sessions.blocked(account, d)]
            if len(kept) < len(devices):
                self._emitter.emit(
                    Problem(
                        f"A group message was not sent to a device of {account}, whose key changed: "
                        f"compare safety numbers with {account} and accept the new key"
                    )
                )
            found += kept
        return found

    def queue(self, targets: list[tuple[str, int]], contents: Sequence[Content]) -> None:
        """Seal ``contents`` for each of ``targets`` (from ``reach``) into the outbox, in one transaction:
        a group's change to its members, its whole log to a new one."""
        expires_at = envelope_expiry(self._clock())
        with self._store.transaction():
            for account, device_id in targets:
                for content in contents:
                    self._sessions.seal(account, device_id, content, expires_at, message_id=None)
        self._delivery.kick()

    async def seal_pending(self) -> None:
        """Encrypt unsealed messages into the outbox, in order; what needs the relay waits for it."""
        async with self._lock:
            waiting: set[int] = set()
            for message_id in self._store.unsealed.list(UNSEALED_BATCH):
                try:
                    message = self._store.messages.get(message_id)
                except NotFoundError:
                    continue  # deleted while an earlier message was awaiting the relay
                conversation = self._store.conversations.get(message.conversation_id)
                if conversation.id in waiting:
                    continue
                try:
                    await self._seal_one(message, conversation)
                except IdentityChangedError as e:
                    waiting.add(conversation.id)
                    self._report_held(message, e.account_id)
                except (OfflineError, LogForkedError) as e:
                    log.debug("a message waits: %s", type(e).__name__)
                    waiting.add(conversation.id)
                except (NoDeviceError, RelayRefusedError) as e:
                    log.info("a message cannot be sent (%s)", type(e).__name__)
                    self._fail(message, conversation)
                except PolicyRefusedError as e:
                    # The policy changed while the message waited (a newer config arrived).
                    log.info("a waiting message is refused by the policy now in force")
                    self._fail(message, conversation)
                    self._emitter.emit(Problem(f"A message waiting to be sent was not sent: {e}"))
        self._delivery.kick()

    def _fail(self, message: Message, conversation: Conversation) -> None:
        with self._store.transaction():
            self._store.unsealed.remove(message.id)
            self._store.messages.set_status(message.id, MessageStatus.FAILED)
        self._emitter.emit(MessageStatusChanged(message.id, conversation.id, MessageStatus.FAILED))

    def _report_held(self, message: Message, account_id: str) -> None:
        if message.id not in self._held:
            self._held.add(message.id)
            self._emitter.emit(MessageHeld(message.id, message.conversation_id, account_id))

    def _add(self, conversation: Conversation, body: str) -> Message:
        """Store an outgoing message as pending and unsealed (inside the caller's transaction).

        Its timer is the conversation's, or the nearest the policy allows where the
        conversation's timer is outside the range (set before the range was).
        """
        secret = conversation.kind is ConversationKind.SECRET
        message = self._store.messages.add(
            NewMessage(
                conversation_id=conversation.id,
                message_id=self._random(MESSAGE_ID_BYTES),
                body=body,
                status=MessageStatus.PENDING,
                sent_at=self._clock(),
                expires_at=None,
                expire_after=self._rules().nearest_timer(conversation.timer_seconds, secret=secret),
            )
        )
        self._store.unsealed.add(message.id)
        return message

    def _header(
        self, conversation: Conversation, message_id: bytes, sent_at: int, expire_after: int
    ) -> MessageHeader:
        return MessageHeader(
            message_id,
            sent_at,
            expire_after,
            group_id=conversation.group_id,
            secret_id=conversation.secret_id,
            log_head=self._transparency.head_note(),
        )

    def _seal_at_once(self, message: Message, conversation: Conversation) -> bool:
        """Seal a new text in the transaction that stores it, when nothing has to wait (one commit).

        Only when it is the one unsealed message (nothing earlier may be overtaken), it
        may be sealed now (``_may_seal``), and every device it goes to has a session.
        """
        if self._store.unsealed.count() != 1 or not self._may_seal(message):
            return False
        recipients = self._recipients(conversation)
        devices = self._known_devices(conversation)
        if {account for account, _ in devices} != {account for account, _ in recipients}:
            return False  # someone has no session yet: seal_pending makes it
        if any(self._sessions.blocked(account, device_id) for account, device_id in devices):
            return False  # a changed key: seal_pending passes it over and says so (``reach``)
        header = self._header(
            conversation, message.message_id, self._sent_at_millis(message), message.expire_after
        )
        self._seal_ready(message, devices, TextMessage(header, message.body))
        return True

    def _sent_at_millis(self, message: Message) -> int:
        """The header's send time: for a disappearing message the moment it is sealed (it is sealed
        only online, so that is when it leaves), from which the recipient drops one that arrives
        after its timer; the relay, keeping every envelope alike, cannot (PROTOCOL section 9)."""
        return int((self._clock() if message.expire_after else message.sent_at) * 1000)

    def _may_seal(self, message: Message) -> bool:
        """A valid certificate, a key log that has not forked, and for a disappearing message a
        transport that is online."""
        if not self._credentials.certificate_valid() or self._transparency.forked() is not None:
            return False
        return not message.expire_after or self._delivery.online

    async def _seal_one(self, message: Message, conversation: Conversation) -> None:
        """Seal a waiting message, checked again against the policy in force now: it was checked
        when written, but a newer config may have arrived since (``PolicyRefusedError``)."""
        self._transparency.check_not_forked()
        if not self._may_seal(message):
            raise OfflineError("this message is sealed once the relay is reachable with a fresh certificate")
        devices = await self._devices(conversation)
        if not devices and conversation.group_id is None:
            raise NoDeviceError("the colleague has no device to send to")
        self._check_policy(conversation)
        files = self._store.attachments.of_message(message.id)
        for file in files:
            self._rules().check_file(size=file.size, mime_type=file.mime_type)
        header = self._header(
            conversation, message.message_id, self._sent_at_millis(message), message.expire_after
        )
        content: Content
        if files:
            content = await self._upload(header, files[0], message, self._delivery_of(devices))
        else:
            content = TextMessage(header, message.body)
        if self._store.messages.find(message.conversation_id, OUTGOING, message.message_id) is None:
            return  # deleted while the upload or the key fetch was awaited
        with self._store.transaction():
            self._seal_ready(message, devices, content)

    def _seal_ready(self, message: Message, devices: list[tuple[str, int]], content: Content) -> None:
        """Encrypt for every device into the outbox and drop the unsealed mark (inside a transaction)."""
        expires_at = envelope_expiry(self._clock())
        for account, device_id in devices:
            self._sessions.seal(account, device_id, content, expires_at, message_id=message.id)
        self._store.unsealed.remove(message.id)
        self._held.discard(message.id)

    def _delivery_of(self, devices: list[tuple[str, int]]) -> tuple[int, bytes] | None:
        """A recipient device and the delivery key it gave us, if one did: what lets an upload for
        it name no uploader, as its envelope's DELIVER names no sender."""
        for account, device_id in devices:
            key = self._store.contacts.delivery_key(account, device_id)
            if key is not None:
                return device_id, key
        return None

    async def _upload(
        self, header: MessageHeader, file: Attachment, message: Message, delivery: tuple[int, bytes] | None
    ) -> FileMessage:
        """Encrypt the file with a fresh key and put it on the relay (for its retention, whatever the
        timer: the relay must not learn the timer from the upload), showing ``delivery``'s key if
        there is one (``RelayLink.upload``)."""
        token = self._credentials.upload_token
        if self._relay.state != TransportState.ONLINE or not token:
            raise OfflineError("files are uploaded once the relay has accepted this device")
        plaintext = b"".join(self._store.attachments.read(file.id))
        blob, key, digest = encrypt_blob(plaintext, self._random)
        attachment_id = await self._relay.upload(blob, token, delivery)
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
