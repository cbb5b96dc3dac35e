"""An in-memory ``Transport`` for unit tests of the engine's parts: it keeps what it is sent.

It stands in for the relay in unit tests only; the relay itself, with its sockets, pin
checks and mailboxes, is tested by the integration tests (tests/services/test_link.py,
tests/server). Like h11's in-memory ``ConnectionPair``, it is a real object keeping the
promise of ``app.sync.transport.Transport``, not a mock: it records every envelope
offered, answers each call with the outcome the test chose (``STORED`` unless told
otherwise) or raises ``OfflineError`` as a dropped link does, and records acks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from app.base.errors import OfflineError
from app.protocol.envelope import Envelope
from app.sync.transport import SendOutcome, TransportState

Answer = SendOutcome | OfflineError


@dataclass(frozen=True, slots=True)
class Offered:
    """One call of ``send``: where the envelope was to go and what the transport answered."""

    recipient_device: int
    envelope: Envelope
    answer: Answer


class InMemoryTransport:
    """A transport whose other side is the test: chosen answers, recorded envelopes and acks."""

    def __init__(
        self,
        state: TransportState = TransportState.ONLINE,
        *,
        on_ack: Callable[[bytes], None] | None = None,
    ) -> None:
        """``on_ack`` is called with each acked envelope id, before it is recorded (a probe)."""
        self._state = state
        self._reason = ""
        self._answers: deque[Answer] = deque()
        self._online = asyncio.Event()
        if state is TransportState.ONLINE:
            self._online.set()
        self._on_ack = on_ack
        self.offered: list[Offered] = []
        """Every ``send`` call, in the order they came."""
        self.acked: list[bytes] = []

    @property
    def state(self) -> TransportState:
        return self._state

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def stored(self) -> list[Envelope]:
        """The envelopes this transport answered ``STORED`` for, in order."""
        return [o.envelope for o in self.offered if o.answer is SendOutcome.STORED]

    def answer(self, *answers: Answer) -> None:
        """Answer the next calls of ``send`` with these, one per call, then ``STORED`` again."""
        self._answers.extend(answers)

    def go_offline(self, reason: str = "the test cut the link") -> None:
        self._state, self._reason = TransportState.OFFLINE, reason
        self._online.clear()

    def go_online(self) -> None:
        self._state, self._reason = TransportState.ONLINE, ""
        self._online.set()

    async def send(self, recipient_device: int, envelope: Envelope) -> SendOutcome:
        if self._state is not TransportState.ONLINE:
            raise OfflineError("the in-memory transport is offline")
        answer = self._answers.popleft() if self._answers else SendOutcome.STORED
        self.offered.append(Offered(recipient_device, envelope, answer))
        if isinstance(answer, OfflineError):
            raise answer
        return answer

    async def ack(self, envelope_id: bytes) -> None:
        if self._state is not TransportState.ONLINE:
            raise OfflineError("the in-memory transport is offline")
        if self._on_ack is not None:
            self._on_ack(envelope_id)
        self.acked.append(envelope_id)

    async def wait_online(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._online.wait()
        return self._online.is_set()
