"""Delivery: the outbox goes out over the transport oldest first, and the answers are settled.

An envelope leaves the outbox only when the transport says the other side stored it
(or refused it for good). It goes with the recipient device's delivery key when that device
has told us one (every envelope it seals does), so the relay's unidentified path takes it
without learning who sent it; only an envelope to a device that never wrote to us names its
sender (docs/PROTOCOL.md section 14); a busy answer (mailbox full, rate limit) stops the flush so
that nothing overtakes what is waiting. A message becomes *sent* when the first of its
copies (one per recipient device) is stored, and only then does its disappearing timer
start on this device: a message that has not left is never swept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from app.base.errors import OfflineError
from app.protocol.envelope import Envelope
from app.services.clock import Clock
from app.services.events import Emitter, MessageStatusChanged
from app.services.sessions import Sessions
from app.services.tasks import Tasks
from app.sync.transport import SendOutcome, Transport, TransportState
from storage.records import MessageStatus, OutboxEntry
from storage.store import Store

log = logging.getLogger(__name__)

FLUSH_BATCH = 64
"""Envelopes sent before their answers are awaited (and settled in one transaction)."""
RETRY_SECONDS = 15.0
"""When the other side is busy (mailbox full, rate limit), try the outbox again after this."""
DRAIN_POLL_SECONDS = 0.02


class Delivery:
    """Sends the outbox over one transport and settles what it answers."""

    def __init__(
        self,
        store: Store,
        *,
        transport: Transport,
        sessions: Sessions,
        emitter: Emitter,
        tasks: Tasks,
        clock: Clock,
        on_requeued: Callable[[], None],
    ) -> None:
        """``on_requeued``: a message went back to be sealed again (its device was revoked)."""
        self._store = store
        self._transport = transport
        self._sessions = sessions
        self._emitter = emitter
        self._tasks = tasks
        self._clock = clock
        self._on_requeued = on_requeued
        self._retry = tasks.alarm()
        self._flushing: asyncio.Task[None] | None = None
        self._wanted = False

    @property
    def online(self) -> bool:
        """Whether what is sealed now can leave now (the transport is connected)."""
        return self._transport.state == TransportState.ONLINE

    def kick(self) -> None:
        """Something was queued, or the transport came back: send what is due."""
        self._wanted = True
        if self._flushing is None or self._flushing.done():
            self._flushing = self._tasks.spawn(self._flush(), name="outbox")

    async def drained(self, timeout: float) -> bool:
        """Wait until the outbox and the unsealed queue are empty; False if not within ``timeout``.

        For a face about to close: what is still queued then leaves with the next connection.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._store.outbox.next_attempt() is not None or self._store.unsealed.count():
            if loop.time() >= deadline or self._transport.state != TransportState.ONLINE:
                return False
            self.kick()
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        return True

    async def _flush(self) -> None:
        try:
            while self._wanted:
                self._wanted = False
                await self._flush_once()
        except OfflineError:
            log.debug("the outbox waits for the transport")
            if self.online:
                # The transport is up but one way through it failed (the relay's unidentified
                # socket dropped mid-send): no reconnection will kick us, so try again later.
                self._retry.set(RETRY_SECONDS, self.kick)

    async def _flush_once(self) -> None:
        """Send due envelopes in batches: every envelope of a batch goes out at once, in order.

        The relay answers one connection's requests in the order they came, so pipelining
        keeps the order; the batch's answers are settled in one transaction. A busy answer
        stops the flush until ``RETRY_SECONDS`` have passed; an envelope stored but whose
        answer was lost is sent again later, which the relay and the recipient both drop
        as a repeat of its envelope id.
        """
        while self._transport.state == TransportState.ONLINE:
            entries = self._store.outbox.due(float("inf"), FLUSH_BATCH)
            if not entries:
                return
            answers = await asyncio.gather(
                *(
                    self._transport.send(
                        e.recipient_device,
                        Envelope.parse(e.envelope),
                        self._store.contacts.delivery_key(e.recipient, e.recipient_device),
                    )
                    for e in entries
                ),
                return_exceptions=True,
            )
            settled: list[tuple[OutboxEntry, SendOutcome]] = []
            failure: BaseException | None = None
            busy = False
            for entry, answer in zip(entries, answers, strict=True):
                if isinstance(answer, BaseException):
                    failure = answer
                    break
                if answer is SendOutcome.BUSY:
                    busy = True
                    break
                if answer is SendOutcome.KEY_REFUSED:
                    # Stays queued; the next round sends it on the device's connection, which
                    # names this device, until the colleague's next envelope brings its new key.
                    self._store.contacts.set_delivery_key(entry.recipient, entry.recipient_device, None)
                    continue
                settled.append((entry, answer))
            self._settle(settled)
            if busy:
                self._retry.set(RETRY_SECONDS, self.kick)
                return
            if failure is not None:
                raise failure

    def _settle(self, answered: list[tuple[OutboxEntry, SendOutcome]]) -> None:
        """Act on answers about envelopes that will not be sent again, in one transaction."""
        changed: list[tuple[int, MessageStatus]] = []
        requeued = False
        sent: set[int] = set()
        with self._store.transaction():
            for entry, outcome in answered:
                status, again = self._settle_one(entry, outcome, sent)
                requeued = requeued or again
                if status is not None and entry.message_id is not None:
                    changed.append((entry.message_id, status))
        if requeued:
            log.info("sealing a message again for the colleague's current devices")
            self._on_requeued()
        for message_id, status in changed:
            message = self._store.messages.get(message_id)
            self._emitter.emit(MessageStatusChanged(message.id, message.conversation_id, status))

    def _settle_one(
        self, entry: OutboxEntry, outcome: SendOutcome, sent: set[int]
    ) -> tuple[MessageStatus | None, bool]:
        """(the message's new status if it changed, whether to seal it again).

        The message's own status is the durable record of whether a copy left: the first
        copy stored makes it *sent* (and starts its countdown); when its last copy is
        settled with none stored, it is *failed*, or sealed again if its device was gone.
        ``sent``: the messages already stored once in this transaction, whose other copies
        (a group's, say) change nothing more.
        """
        self._store.outbox.remove(entry.id)
        if outcome is SendOutcome.GONE:
            log.info("a colleague's device was revoked; dropping its session")
            self._sessions.forget(entry.recipient, entry.recipient_device)
        if entry.message_id is None:
            return None, False
        if outcome is SendOutcome.STORED:
            first = entry.message_id not in sent
            sent.add(entry.message_id)
            if not first or not self._store.messages.set_status(entry.message_id, MessageStatus.SENT):
                return None, False
            self._start_countdown(entry.message_id)
            return MessageStatus.SENT, False
        left = self._store.messages.get(entry.message_id).status is not MessageStatus.PENDING
        if left or self._store.outbox.pending_for(entry.message_id):
            return None, False
        if outcome is SendOutcome.GONE:
            self._store.unsealed.add(entry.message_id)
            return None, True
        self._store.messages.set_status(entry.message_id, MessageStatus.FAILED)
        return MessageStatus.FAILED, False

    def _start_countdown(self, message_id: int) -> None:
        """A disappearing message starts to disappear on this device once it has left it."""
        message = self._store.messages.get(message_id)
        if message.expire_after and message.expires_at is None:
            self._store.messages.set_expiry(message_id, self._clock() + message.expire_after)
