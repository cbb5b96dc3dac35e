"""The seam between the engine and the ways to reach devices (DESIGN.md, ``app/sync``).

A transport carries sealed envelopes to devices and brings envelopes in; the parts of
the engine that deliver and receive know nothing else about it. The relay link
(``link.RelayLink``) is the first implementation; the LAN transport of secret chats is
the second, beside it, with no change to the parts above.

What a transport promises:

- ``send`` answers only once the other side holds the envelope durably (``STORED``), or
  says why not: the device is gone for good (``GONE``), the other side is busy and the
  envelope should wait (``BUSY``), or it was refused for good (``REFUSED``). It raises
  ``OfflineError`` when it cannot reach the other side; then nothing is known, and the
  envelope is sent again later (the receiver drops a repeat by its envelope id).
- Arriving envelopes go to the ``EnvelopeReceiver`` one at a time, in the order they
  came; the receiver calls ``ack`` on the transport that brought the envelope once it
  has stored it. An envelope that is never acked comes again.
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from app.protocol.envelope import Envelope


class TransportState(Enum):
    OFFLINE = "offline"
    """Not connected; a reconnection is scheduled (``reason`` says what failed)."""
    CONNECTING = "connecting"
    ONLINE = "online"
    REFUSED = "refused"
    """The other side will not serve this device; the transport has stopped for good."""
    STOPPED = "stopped"


class SendOutcome(Enum):
    STORED = "stored"
    """The other side holds the envelope; it is its job now."""
    GONE = "gone"
    """The recipient device no longer exists (revoked): its session is of no more use."""
    BUSY = "busy"
    """Not now (a full mailbox, a rate limit): try again later, and let nothing overtake it."""
    REFUSED = "refused"
    """Refused for good (expired, malformed, too large): sending it again would not help."""
    KEY_REFUSED = "key refused"
    """The recipient's delivery key was not taken (the device has another now, or is gone): forget
    it and send the envelope again without one."""


class Transport(Protocol):
    """A way to reach devices."""

    @property
    def state(self) -> TransportState: ...

    @property
    def reason(self) -> str:
        """Why the transport is offline or refused, in words a user can act on ("" otherwise)."""
        ...

    async def send(
        self, recipient_device: int, envelope: Envelope, delivery_key: bytes | None = None
    ) -> SendOutcome:
        """``delivery_key``: the recipient device's, if known; a transport that can use it sends
        without naming this device (the relay's unidentified path)."""
        ...

    async def ack(self, envelope_id: bytes) -> None:
        """The envelope is stored: the other side may forget it (a lost ack means a redelivery)."""
        ...

    async def wait_online(self, timeout: float) -> bool: ...


class EnvelopeReceiver(Protocol):
    """Where a transport hands what arrives and what happens to it."""

    async def on_envelope(self, envelope: Envelope, source: Transport) -> None: ...

    def on_state(self, source: Transport, state: TransportState, reason: str) -> None: ...
