"""Conversations and what is in them: opening one, reading, searching, timers, receipts, deleting.

The policy decides here whether a normal conversation may be started (secret chats only),
which timers a user may choose (the range) and which a new conversation starts with (the
default timer and label), and whether reading a message tells its sender (read receipts
allowed, and the user's own setting). Each is checked before anything is stored or sent.
"""

from __future__ import annotations

from pathlib import Path

from app.base.errors import OfflineError, StorageError
from app.crypto.primitives import RandomSource
from app.protocol.content import SECRET_ID_BYTES, ReceiptType, TimerChange
from app.services.clock import Clock, millis
from app.services.contacts import Contacts
from app.services.credentials import Credentials
from app.services.errors import FileAccessError, GroupError, SecretChatError
from app.services.events import Emitter, MessageStatusChanged, TimerChanged
from app.services.keylog import Transparency
from app.services.outgoing import Sending
from app.services.receipts import Receipts
from app.services.rules import RulesSource
from app.services.sessions import Sessions
from app.services.settings import READ_RECEIPTS, read_receipts_enabled
from app.services.types import ConversationSummary
from storage.records import (
    Attachment,
    Conversation,
    ConversationKind,
    Message,
    MessageStatus,
    Page,
    PageCursor,
)
from storage.store import Store


class Conversations:
    def __init__(
        self,
        store: Store,
        *,
        credentials: Credentials,
        contacts: Contacts,
        sessions: Sessions,
        transparency: Transparency,
        sending: Sending,
        receipts: Receipts,
        emitter: Emitter,
        clock: Clock,
        random: RandomSource,
        rules: RulesSource,
    ) -> None:
        self._store = store
        self._credentials = credentials
        self._contacts = contacts
        self._sessions = sessions
        self._transparency = transparency
        self._sending = sending
        self._receipts = receipts
        self._emitter = emitter
        self._clock = clock
        self._random = random
        self._rules = rules

    def start(self, account_id: str) -> Conversation:
        """The direct conversation with a colleague, created on first use with the policy's default
        timer and label; refused where the policy allows secret chats only."""
        rules = self._rules()
        rules.check_direct()
        contact = self._contacts.get(account_id)
        existing = self._store.conversations.find_with_peer(account_id)
        if existing:
            return existing[0]
        return self._store.conversations.create(
            ConversationKind.DIRECT,
            peer_account_id=account_id,
            title=contact.display_name,
            timer_seconds=rules.timer_default,
            classification=rules.classification_default,
        )

    async def start_secret(self, account_id: str, timer_seconds: int) -> Conversation:
        """A secret chat with one device of the colleague; it lives on this device only."""
        contact = self._contacts.get(account_id)
        if timer_seconds <= 0:
            raise SecretChatError("a secret chat needs a disappearing-message timer")
        rules = self._rules()
        rules.check_timer(timer_seconds)
        announcement = TimerChange(
            timer_seconds,
            millis(self._clock),
            secret_id=self._random(SECRET_ID_BYTES),
            log_head=self._transparency.head_note(),
        )
        devices = await self._sessions.ensure(account_id, None)
        conversation = self._store.conversations.create(
            ConversationKind.SECRET,
            peer_account_id=account_id,
            title=contact.display_name,
            timer_seconds=timer_seconds,
            classification=rules.classification_default,
            secret_id=announcement.secret_id,
            peer_device=devices[0],
        )
        self._sending.send_control(conversation, announcement)
        return conversation

    def summaries(self) -> list[ConversationSummary]:
        return [
            ConversationSummary(
                c,
                len(self._store.messages.unread(c.id)),
                c.peer_account_id is not None and self._sessions.blocked(c.peer_account_id, c.peer_device),
            )
            for c in self._store.conversations.list()
        ]

    def history(self, conversation_id: int, before: PageCursor | None = None, limit: int = 50) -> Page:
        self._store.conversations.get(conversation_id)
        return self._store.messages.page(conversation_id, before=before, limit=limit)

    def attachments(self, message_id: int) -> list[Attachment]:
        return self._store.attachments.of_message(message_id)

    def search(self, text: str, conversation_id: int | None = None) -> list[Message]:
        return self._store.messages.search(text, conversation_id=conversation_id)

    def pending(self) -> list[Message]:
        """Outgoing messages still waiting for the relay (the UI marks them as waiting)."""
        return self._store.messages.waiting()

    def delete_messages(self, ids: list[int]) -> list[int]:
        """Delete messages on this device, with their files and every trace of their words."""
        return self._store.delete_messages(ids)

    def save_attachment(self, attachment_id: int, dest: Path) -> int:
        """Decrypt a received or sent file to ``dest``; refused for secret chats."""
        attachment = self._store.attachments.get(attachment_id)
        message = self._store.messages.get(attachment.message_id)
        if self._store.conversations.get(message.conversation_id).kind is ConversationKind.SECRET:
            raise SecretChatError("files of a secret chat cannot be saved outside it")
        try:
            return self._store.attachments.export(attachment_id, dest)
        except StorageError:
            raise
        except OSError as e:
            raise FileAccessError(f"cannot save to {dest}: {e.strerror}") from e

    def mark_read(self, conversation_id: int) -> int:
        """Mark every unread message read, start their countdowns, and tell the sender if the policy
        (``read_receipts_allowed``) and the user's setting allow; delivery receipts are not read
        receipts and go out whatever these say (``Receiving``)."""
        conversation = self._store.conversations.get(conversation_id)
        unread = self._store.messages.unread(conversation_id)
        if not unread:
            return 0
        now = self._clock()
        with self._store.transaction():
            for message in unread:
                self._store.messages.set_status(message.id, MessageStatus.READ, at=now)
                if message.expire_after:
                    self._store.messages.set_expiry(message.id, now + message.expire_after)
                    self._receipts.hasten(message.id, now + message.expire_after)
            tell = self._rules().read_receipts_allowed and read_receipts_enabled(self._store)
            if tell and self._credentials.certificate is not None:
                for message in unread:
                    if self._sessions.has(message.sender, message.sender_device):
                        self._receipts.record(
                            message.id,
                            ReceiptType.READ,
                            message.sender,
                            message.sender_device,
                            before=now + message.expire_after if message.expire_after else None,
                        )
        self._emitter.emit(*(MessageStatusChanged(m.id, conversation.id, MessageStatus.READ) for m in unread))
        return len(unread)

    def set_read_receipts(self, enabled: bool) -> None:
        self._store.settings.set(READ_RECEIPTS, "on" if enabled else "off")

    async def set_timer(self, conversation_id: int, timer_seconds: int) -> Conversation:
        """Change the conversation's timer for both sides (an encrypted control message tells the peer);
        a timer outside the policy's range is refused."""
        self._rules().check_timer(timer_seconds)
        conversation = self._sending.sendable(conversation_id)
        peer = conversation.peer_account_id
        if peer is None:
            raise GroupError("a group's timer is changed by a group change (set_group_timer)")
        change = TimerChange(
            timer_seconds,
            millis(self._clock),
            secret_id=conversation.secret_id,
            log_head=self._transparency.head_note(),
        )
        await self._sessions.ensure(peer, conversation.peer_device)
        if not self._credentials.certificate_valid():
            raise OfflineError("connect to the relay before changing a timer")
        with self._store.transaction():
            updated = self._store.conversations.set_timer(conversation_id, timer_seconds)
            self._sending.send_control(updated, change)
        self._emitter.emit(TimerChanged(conversation_id, timer_seconds, by_peer=False))
        return updated
