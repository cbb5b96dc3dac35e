"""In-memory stand-ins for the relay in unit tests of the engine's parts: a transport, a directory.

They stand in for the relay in unit tests only; the relay itself, with its sockets, pin
checks and mailboxes, is tested by the integration tests (tests/services/test_link.py,
tests/server). Like h11's in-memory ``ConnectionPair``, ``InMemoryTransport`` is a real
object keeping the promise of ``app.sync.transport.Transport``, not a mock: it records
every envelope offered, answers each call with the outcome the test chose (``STORED``
unless told otherwise) or raises ``OfflineError`` as a dropped link does, and records
acks. ``InMemoryDirectory`` hands out prekey bundles as the relay's directory does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from app.base.errors import OfflineError
from app.protocol.envelope import Envelope
from app.protocol.frames import Bundles, DeviceBundle, FetchBundles, FrameType, Response, Status
from app.sync.transport import SendOutcome, TransportState

Answer = SendOutcome | OfflineError


@dataclass(frozen=True, slots=True)
class Offered:
    """One call of ``send``: where the envelope was to go and what the transport answered."""

    recipient_device: int
    envelope: Envelope
    answer: Answer
    delivery_key: bytes | None = None
    """The recipient's delivery key it was offered with: None names the sender (a relay's SEND)."""


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

    async def send(
        self, recipient_device: int, envelope: Envelope, delivery_key: bytes | None = None
    ) -> SendOutcome:
        if self._state is not TransportState.ONLINE:
            raise OfflineError("the in-memory transport is offline")
        answer = self._answers.popleft() if self._answers else SendOutcome.STORED
        self.offered.append(Offered(recipient_device, envelope, answer, delivery_key))
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


class InMemoryDirectory:
    """The relay's prekey directory for unit tests: it hands out the bundles of devices it was given.

    Like ``InMemoryTransport`` it stands in for the relay in unit tests only (the relay's
    directory is tested by the integration tests). It answers ``FETCH_BUNDLES``, the one
    request ``Sessions`` makes, and can be offline, or hold its answers until the test
    lets them go, to show what happens while a part awaits it. Other requests are offline.
    """

    def __init__(self, *, online: bool = True) -> None:
        self.online = online
        self._bundles: dict[str, dict[int, Callable[[], tuple[bytes, bytes]]]] = {}
        self._open = asyncio.Event()
        self._open.set()
        self.asked: list[str] = []
        """The account ids bundles were fetched for, in order."""

    def publish(self, account_id: str, device_id: int, bundle: Callable[[], tuple[bytes, bytes]]) -> None:
        """Hand out ``bundle()`` (a fresh bundle each time, and a certificate) for this device from now on."""
        self._bundles.setdefault(account_id, {})[device_id] = bundle

    def hold(self) -> None:
        """Keep the next answers until ``release``."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def request(self, frame_type: FrameType, body: bytes, timeout: float = 30.0) -> Response:
        if not self.online or frame_type != FrameType.FETCH_BUNDLES:
            raise OfflineError("the in-memory directory is offline")
        account_id = FetchBundles.parse(body).account_id
        self.asked.append(account_id)
        await self._open.wait()
        devices = self._bundles.get(account_id)
        if not devices:
            return Response(Status.NOT_FOUND, "no such account")
        bundles = tuple(DeviceBundle(device_id, *make()) for device_id, make in sorted(devices.items()))
        return Response(Status.OK, "", Bundles(bundles).encode())
