"""Delivery: the outbox goes to the relay oldest first, and the relay's answers are settled.

An envelope leaves the outbox only when the relay has stored it (or refused it for
good); a busy relay (mailbox full, rate limit) stops the flush so that nothing
overtakes what is waiting. A message becomes *sent* when every copy has left.
"""

from __future__ import annotations

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

    def _retry_later(self) -> None:
        if self._retry_handle is not None:
            self._retry_handle.cancel()
        self._retry_handle = self._loop.call_later(RETRY_SECONDS, self._kick_flush)
