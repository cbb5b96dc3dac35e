"""Receiving: a pushed envelope is opened in memory, stored in one transaction, then acked.

The envelope is unsealed, decrypted and parsed; a file's blob is downloaded and
checked; then one transaction stores the message, the session (with the base key of a
first message X3DH ran for), the used one-time prekey's removal, the envelope id (so a
redelivery is dropped) and the pending delivery receipt (sealed after its random delay,
``app.services.receipts``). Only then is the envelope
acked. Anything that fails before the commit leaves the store untouched, and the relay
redelivers.

What arrives is never refused for the policy (that would lose what a colleague wrote), but
its timers are brought into this device's range (``app.services.rules``), and a
conversation a peer starts gets the policy's default timer and label, as one started here.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re

from app.base.errors import (
    CryptoError,
    DuplicateMessageError,
    EnvelopeIdMismatchError,
    OfflineError,
    RemoteProtocolError,
    StorageError,
    TransportError,
)
from app.base.limits import MAX_FILENAME_BYTES
from app.crypto.blob import blob_size, decrypt_blob
from app.crypto.certificate import DeviceCertificate
from app.crypto.sealed import unseal
from app.protocol.content import (
    Content,
    FileMessage,
    GroupChanges,
    Receipt,
    ReceiptType,
    TextMessage,
    TimerChange,
    parse_content,
)
from app.protocol.envelope import Envelope
from app.protocol.groupchange import GroupChange
from app.protocol.lifetime import ENVELOPE_LIFETIME_SECONDS
from app.services import sessions
from app.services.clock import Clock
from app.services.contacts import Contacts
from app.services.credentials import Credentials
from app.services.delivery import Delivery
from app.services.errors import AuthorityUnknownError, LogForkedError, UnloggedKeyError
from app.services.events import (
    ConversationStarted,
    Emitter,
    Event,
    GroupChangeIgnored,
    MessageArrived,
    MessageStatusChanged,
    MessageUnreadable,
    Problem,
    TimerChanged,
)
from app.services.groups import Groups
from app.services.keylog import Transparency
from app.services.receipts import Receipts
from app.services.rules import RulesSource
from app.services.sessions import Sessions
from app.services.tasks import Tasks
from app.sync.link import RelayLink
from app.sync.transport import Transport
from storage.records import (
    OUTGOING,
    Conversation,
    ConversationKind,
    MessageStatus,
    NewMessage,
)
from storage.store import Store

log = logging.getLogger(__name__)

CERTIFICATE_GRACE_SECONDS = ENVELOPE_LIFETIME_SECONDS
"""A sender's certificate is checked as of this long ago: an envelope may wait that long for
its recipient, and the certificate only had to be valid when the envelope was sealed."""
FETCH_AGAIN_SECONDS = 5.0
"""After the store failed to keep an arriving message, reconnect this much later to get it again."""
PREVIEW_CHARACTERS = 120
UNAVAILABLE_SUFFIX = " (no longer available on the server)"
ATTACHMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What a relay attachment id looks like; anything else never goes into a URL."""
SEEN_ENVELOPE_SECONDS = ENVELOPE_LIFETIME_SECONDS + 2 * 24 * 3600
"""How long an envelope id is remembered: past the longest an envelope waits at the relay (its
lifetime, rounded up to a day there) with a day to spare. A redelivery after that is still
refused by its session (its message key is spent), only later in the work."""


def unavailable_name(filename: str) -> str:
    """The name an empty stand-in gets for a file the relay no longer had, within the name limit."""
    room = MAX_FILENAME_BYTES - len(UNAVAILABLE_SUFFIX.encode("utf-8"))
    return filename.encode("utf-8")[:room].decode("utf-8", errors="ignore") + UNAVAILABLE_SUFFIX


class Receiving:
    """Opening, storing and acknowledging what a transport brings."""

    def __init__(
        self,
        store: Store,
        *,
        credentials: Credentials,
        transparency: Transparency,
        sessions: Sessions,
        contacts: Contacts,
        relay: RelayLink,
        delivery: Delivery,
        receipts: Receipts,
        groups: Groups,
        emitter: Emitter,
        tasks: Tasks,
        clock: Clock,
        rules: RulesSource,
    ) -> None:
        """``relay`` serves the files (downloads) and is asked to push again after a failure."""
        self._groups = groups
        self._store = store
        self._credentials = credentials
        self._transparency = transparency
        self._sessions = sessions
        self._contacts = contacts
        self._relay = relay
        self._delivery = delivery
        self._receipts = receipts
        self._emitter = emitter
        self._tasks = tasks
        self._clock = clock
        self._rules = rules

    def forget_old_envelope_ids(self) -> int:
        """Forget the ids of envelopes taken longer ago than any envelope can wait (how many): the
        store keeps no record of when messages came beyond what it needs."""
        return self._store.seen.prune(self._clock() - SEEN_ENVELOPE_SECONDS)

    async def receive(self, envelope: Envelope, source: Transport) -> None:
        """Open, store and then ack one envelope; anything before the commit leaves no trace.

        A message already read (a replay under a new envelope id) is acked and dropped with
        nothing written; one that cannot be opened is dropped with its envelope id kept, and
        the user is told (``MessageUnreadable``).
        """
        if self._credentials.identity is None or self._credentials.relay is None:
            return
        try:
            trust_root = self._credentials.trust_root()
        except AuthorityUnknownError:
            return  # no config in force: nothing can be checked, so the envelope waits at the relay
        if self._store.seen.contains(envelope.envelope_id):
            await source.ack(envelope.envelope_id)
            return
        sender: DeviceCertificate | None = None
        try:
            unsealed = unseal(
                recipient=self._credentials.identity,
                untrusted=envelope.sealed,
                envelope_id=envelope.envelope_id,
                trust_root=trust_root,
                now=int(self._clock()) - CERTIFICATE_GRACE_SECONDS,
            )
            sender = unsealed.sender
            if not await self._logged(sender):
                return
            opened = self._sessions.open(sender, unsealed.message)
            content = parse_content(opened.plaintext)
        except (UnloggedKeyError, RemoteProtocolError, CryptoError) as e:
            await self._refuse(envelope, source, sender, e)
            return
        sender = unsealed.sender
        plaintext_file = None
        changes: list[GroupChange] = []
        if isinstance(content, GroupChanges):
            try:
                changes, refused = await self._groups.verify(content)
            except (OfflineError, LogForkedError) as e:
                log.info("group changes wait for the key log (%s)", type(e).__name__)
                return
            self._emitter.emit(*refused)
            opened = self._sessions.open(sender, unsealed.message)
        if isinstance(content, FileMessage):
            plaintext_file = await self._download(content)
            # The download awaited: the stored session may have moved on (a receipt was
            # sealed with it meanwhile), so decrypt again from what is stored now.
            opened = self._sessions.open(sender, unsealed.message)
        try:
            events = self._store_received(
                envelope,
                sender,
                opened,
                content,
                plaintext_file,
                delivery_key=unsealed.delivery_key,
                changes=changes,
            )
        except StorageError as e:
            self._emitter.emit(Problem(f"An arriving message could not be stored: {e}"))
            self._tasks.spawn(self._fetch_again())
            raise
        self._emitter.emit(*events)
        self._delivery.kick()
        await source.ack(envelope.envelope_id)
        head = content.header.log_head if isinstance(content, TextMessage | FileMessage) else None
        if isinstance(content, TimerChange):
            head = content.log_head
        if head is not None:
            self._tasks.spawn(self._compare(head))

    async def _logged(self, sender: DeviceCertificate) -> bool:
        """Whether the sender's key may be used: one this device knew already and the log has not
        revoked since, or one the key log binds to the sender's device (``UnloggedKeyError`` if
        the log does not, or revokes it). False leaves the envelope at the relay: the log could
        not be read now, or it forked.

        The revocation check is what stops a revoked device that kept its contacts' delivery keys:
        its DELIVER names no sender, so the relay cannot refuse it, but its recipients do."""
        known = self._store.contacts.device(sender.account_id, sender.device_id)
        if known is not None and known.identity_key == sender.identity_key:
            if self._transparency.revoked(sender.account_id, sender.device_id):
                raise UnloggedKeyError(sender.account_id, sender.device_id)
            return True
        try:
            await self._transparency.require(sender.account_id, sender.device_id, sender.identity_key)
        except LogForkedError:
            return False
        except TransportError as e:
            log.info("a new colleague key waits for the key log (%s)", type(e).__name__)
            self._tasks.spawn(self._fetch_again())
            return False
        return True

    async def _refuse(
        self,
        envelope: Envelope,
        source: Transport,
        sender: DeviceCertificate | None,
        error: UnloggedKeyError | RemoteProtocolError | CryptoError,
    ) -> None:
        """Ack an envelope that will never open. A message read before, under a new envelope id (a
        replay), and bytes sealed for another envelope id are dropped with nothing written; the
        rest keep their envelope id, so a redelivery is dropped at once. The user is told of all
        but the replay of a message already shown."""
        if isinstance(error, DuplicateMessageError):
            log.info("dropped a message this device has already read")
            await source.ack(envelope.envelope_id)
            return
        if isinstance(error, EnvelopeIdMismatchError):
            log.warning("dropped an envelope whose id is not the one sealed inside it")
            self._emitter.emit(MessageUnreadable(error.account_id, error.device_id, str(error)))
            await source.ack(envelope.envelope_id)
            return
        if isinstance(error, UnloggedKeyError):
            log.warning("dropped an envelope from a device the key log does not hold")
            self._emitter.emit(Problem(f"A message was refused: {error}"))
        else:
            log.warning("dropped an envelope that cannot be opened (%s)", type(error).__name__)
            named = (None, None) if sender is None else (sender.account_id, sender.device_id)
            self._emitter.emit(MessageUnreadable(*named, str(error)))
        await self._drop(envelope, source)

    async def _drop(self, envelope: Envelope, source: Transport) -> None:
        self._store.seen.add(envelope.envelope_id)
        await source.ack(envelope.envelope_id)

    async def _compare(self, untrusted_head: bytes) -> None:
        """Check the key log head a colleague's message carried; a fork is told by ``Transparency``."""
        try:
            await self._transparency.compare(untrusted_head)
        except LogForkedError:
            return
        except (TransportError, RemoteProtocolError, CryptoError) as e:
            log.info("a colleague's key log head could not be checked (%s)", type(e).__name__)

    async def _fetch_again(self) -> None:
        """Reconnect after a while so the relay pushes again what could not be stored."""
        await asyncio.sleep(FETCH_AGAIN_SECONDS)
        await self._relay.renew()

    def _store_received(
        self,
        envelope: Envelope,
        sender: DeviceCertificate,
        opened: sessions.Opened,
        content: Content,
        plaintext_file: bytes | None,
        *,
        delivery_key: bytes,
        changes: list[GroupChange],
    ) -> list[Event]:
        """The receive transaction: message, session, used prekey, envelope id, receipt, and the
        sender device's delivery key (what lets us answer it unidentified); for group changes, the
        ``changes`` of it that verified."""
        events: list[Event] = []
        with self._store.transaction():
            self._store.seen.add(envelope.envelope_id)
            note = self._sessions.keep(sender, opened)
            if note is not None:
                events.append(note)
            if delivery_key != self._store.contacts.delivery_key(sender.account_id, sender.device_id):
                self._store.contacts.set_delivery_key(sender.account_id, sender.device_id, delivery_key)
            events += self._groups.keep(changes) if changes else self._apply(content, sender, plaintext_file)
        return events

    async def _download(self, content: FileMessage) -> bytes | None:
        """The file's plaintext; None if the relay no longer has it. Offline: the envelope waits."""
        attachment_id = content.attachment_id.decode("ascii", errors="replace")
        if not ATTACHMENT_ID.fullmatch(attachment_id):
            log.warning("a file message names an attachment id the relay never makes")
            return None
        try:
            untrusted_blob = await self._relay.download(attachment_id, blob_size(content.size))
            if untrusted_blob is None:
                return None
            return decrypt_blob(untrusted_blob, key=content.key, digest=content.digest, size=content.size)
        except (CryptoError, RemoteProtocolError):
            log.warning(
                "a downloaded attachment is not the one its message names; it is shown as unavailable"
            )
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
            secret = conversation.kind is ConversationKind.SECRET
            timer = self._rules().nearest_timer(content.timer_seconds, secret=secret)
            if conversation.timer_seconds != timer:
                self._store.conversations.set_timer(conversation.id, timer)
                events.append(TimerChanged(conversation.id, timer, by_peer=True))
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
        if self._store.messages.find(conversation.id, sender.account_id, header.message_id) is not None:
            return events
        if header.expire_after and self._clock() >= header.sent_at / 1000 + header.expire_after:
            return events  # it disappeared on the sender's side before it came (PROTOCOL section 9)
        body = content.text if isinstance(content, TextMessage) else content.caption
        secret = conversation.kind is ConversationKind.SECRET
        message = self._store.messages.add(
            NewMessage(
                conversation_id=conversation.id,
                message_id=header.message_id,
                body=body,
                status=MessageStatus.DELIVERED,
                sent_at=header.sent_at / 1000,
                sender=sender.account_id,
                sender_device=sender.device_id,
                received_at=self._clock(),
                expire_after=self._rules().arriving_timer(header.expire_after, secret=secret),
            )
        )
        if isinstance(content, FileMessage):
            name = content.filename if file is not None else unavailable_name(content.filename)
            self._store.attachments.add(
                message.id, io.BytesIO(file or b""), name=name, mime_type=content.mime_type
            )
        # The delivery receipt waits for its random delay (app.services.receipts).
        self._receipts.record(message.id, ReceiptType.DELIVERED, sender.account_id, sender.device_id)
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
            return self._group_conversation(sender, group_id)
        rules = self._rules()
        if secret_id is None:
            existing = self._store.conversations.find_with_peer(sender.account_id)
            if existing:
                return existing[0], []
            created = self._store.conversations.create(
                ConversationKind.DIRECT,
                peer_account_id=sender.account_id,
                title=self._contacts.get(sender.account_id).display_name,
                timer_seconds=rules.timer_default,
                classification=rules.classification_default,
            )
            return created, [ConversationStarted(created)]
        secret = self._store.conversations.find_secret(secret_id)
        if secret is not None:
            if (secret.peer_account_id, secret.peer_device) != (sender.account_id, sender.device_id):
                log.warning("dropped a secret chat message from a device outside that chat")
                return None, []
            return secret, []
        created = self._store.conversations.create(
            ConversationKind.SECRET,
            peer_account_id=sender.account_id,
            title=self._contacts.get(sender.account_id).display_name,
            timer_seconds=rules.nearest_timer(timer, secret=True),
            classification=rules.classification_default,
            secret_id=secret_id,
            peer_device=sender.device_id,
        )
        return created, [ConversationStarted(created)]

    def _group_conversation(
        self, sender: DeviceCertificate, group_id: bytes
    ) -> tuple[Conversation | None, list[Event]]:
        """The group's conversation, if the sender is a member of it as this device's state says."""
        conversation = self._groups.conversation(group_id)
        if conversation is None or sender.account_id not in self._groups.members(group_id):
            log.warning("dropped a group message from outside the group as this device knows it")
            return None, [GroupChangeIgnored(group_id, sender.account_id, "a message from a non-member")]
        return conversation, []

    def _apply_receipt(self, receipt: Receipt, sender: DeviceCertificate) -> list[Event]:
        status = MessageStatus.READ if receipt.receipt_type == ReceiptType.READ else MessageStatus.DELIVERED
        events: list[Event] = []
        conversations = [
            c
            for kind in (ConversationKind.DIRECT, ConversationKind.SECRET)
            for c in self._store.conversations.find_with_peer(sender.account_id, kind)
        ]
        for message_id in receipt.message_ids:
            for conversation in conversations:
                message = self._store.messages.find(conversation.id, OUTGOING, message_id)
                if message is not None and self._store.messages.set_status(
                    message.id, status, at=receipt.timestamp / 1000
                ):
                    events.append(MessageStatusChanged(message.id, conversation.id, status))
        return events + self._apply_member_receipt(receipt, status, sender)

    def _apply_member_receipt(
        self, receipt: Receipt, status: MessageStatus, sender: DeviceCertificate
    ) -> list[Event]:
        """A group member's receipt: counted per member (``member_receipts``); the message itself is
        delivered at the first member's, and read once every other member has read it."""
        events: list[Event] = []
        conversations = self._store.conversations
        groups = conversations.groups_with_member(sender.account_id)
        at = receipt.timestamp / 1000
        for message_id in receipt.message_ids:
            for conversation in groups:
                message = self._store.messages.find(conversation.id, OUTGOING, message_id)
                if message is None or not self._store.member_receipts.record(
                    message.id, sender.account_id, status, at
                ):
                    continue
                others = len(self._store.conversations.members(conversation.id)) - 1
                _, read = self._store.member_receipts.counts(message.id)
                overall = MessageStatus.READ if read >= others else MessageStatus.DELIVERED
                self._store.messages.set_status(message.id, overall, at=at)
                current = self._store.messages.get(message.id).status
                events.append(MessageStatusChanged(message.id, conversation.id, current))
        return events
