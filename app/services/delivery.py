"""Delivery: the outbox goes to the relay oldest first, and the relay's answers are settled.

An envelope leaves the outbox only when the relay has stored it (or refused it for
good); a busy relay (mailbox full, rate limit) stops the flush so that nothing
overtakes what is waiting. A message becomes *sent* when every copy has left.
"""

from __future__ import annotations

import asyncio
import logging

from app.base.errors import (
    OfflineError,
)
from app.protocol.envelope import Envelope
from app.protocol.frames import (
    FrameType,
    Response,
    Send,
    Status,
)
from app.services.events import (
    MessageStatusChanged,
)
from app.services.outgoing import Sending
from app.sync.link import LinkState
from storage.records import (
    MessageStatus,
    OutboxEntry,
)

log = logging.getLogger(__name__)

FLUSH_BATCH = 64
"""Envelopes sent before their answers are awaited (and settled in one transaction)."""
BUSY = frozenset({Status.MAILBOX_FULL, Status.RATE_LIMITED, Status.INTERNAL_ERROR})
RETRY_SECONDS = 15.0
"""When the relay is busy (mailbox full, rate limit), try the outbox again after this."""


class Delivery(Sending):
    """Sending the outbox to the relay and settling its answers."""

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
        """Send due envelopes in batches: every SEND of a batch goes out at once, in order.

        The relay answers one connection's requests in the order they came, so pipelining
        keeps the order; the batch's answers are settled in one transaction. A busy answer
        (mailbox full, rate limit) stops the flush until ``RETRY_SECONDS`` have passed; an
        envelope the relay stored but whose answer was lost is sent again later, which the
        relay and the recipient both drop as a repeat of its envelope id.
        """
        while self.link is not None and self.link.state == LinkState.ONLINE:
            entries = self.store.outbox.due(float("inf"), FLUSH_BATCH)
            if not entries:
                return
            answers = await asyncio.gather(
                *(
                    self._request(
                        FrameType.SEND,
                        Send(entry.recipient_device, Envelope.parse(entry.envelope)).encode(),
                        refuse=False,
                    )
                    for entry in entries
                ),
                return_exceptions=True,
            )
            settled: list[tuple[OutboxEntry, Response]] = []
            failure: BaseException | None = None
            for entry, answer in zip(entries, answers, strict=True):
                if isinstance(answer, BaseException):
                    failure = answer
                    break
                if answer.status in BUSY:
                    log.info("the relay is busy (%s); the outbox waits", answer.status.name)
                    failure = answer
                    break
                settled.append((entry, answer))
            self._settle(settled)
            if isinstance(failure, Response):
                self._retry_later()
                return
            if failure is not None:
                raise failure

    def _settle(self, answered: list[tuple[OutboxEntry, Response]]) -> None:
        """Act on the relay's answers to envelopes it will not be asked about again, in one transaction."""
        changed: list[tuple[int, MessageStatus]] = []
        reseal = False
        with self.store.transaction():
            for entry, response in answered:
                status, again = self._settle_one(entry, response)
                reseal = reseal or again
                if status is not None and entry.message_id is not None:
                    changed.append((entry.message_id, status))
        if reseal:
            log.info("sealing a message again for the colleague's current devices")
            self._in_background(self._seal_pending())
        for message_id, status in changed:
            message = self.store.messages.get(message_id)
            self._emit(MessageStatusChanged(message.id, message.conversation_id, status))

    def _settle_one(self, entry: OutboxEntry, response: Response) -> tuple[MessageStatus | None, bool]:
        """(the message's new status if it changed, whether to seal it again)."""
        delivered, gone = response.status == Status.OK, response.status == Status.NOT_FOUND
        self.store.outbox.remove(entry.id)
        if gone:
            # The device's key stays on record: a device that appears later for the same
            # colleague is then recognised as a replacement and must be accepted.
            log.info("a colleague's device was revoked; dropping its session")
            self.store.sessions.delete(entry.recipient, entry.recipient_device)
        elif not delivered:
            log.warning("the relay refused an envelope: %s", response.status.name)
        if entry.message_id is None or self.store.outbox.pending_for(entry.message_id):
            return None, False
        # Devices that took a copy keep their sessions: none left means none took it.
        reached = delivered or bool(self.store.sessions.devices(entry.recipient))
        if gone and not reached:
            self.store.unsealed.add(entry.message_id)
            return None, True
        status = MessageStatus.SENT if reached else MessageStatus.FAILED
        return (status if self.store.messages.set_status(entry.message_id, status) else None), False

    def _retry_later(self) -> None:
        if self._retry_handle is not None:
            self._retry_handle.cancel()
        self._retry_handle = self._loop.call_later(RETRY_SECONDS, self._kick_flush)
