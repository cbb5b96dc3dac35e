"""The state one open profile's core shares, and the helpers every part of it uses.

``Engine`` (core.py) is built from parts, one module per job: ``Sending``
(outgoing.py: store, seal, queue), ``Delivery`` (delivery.py: the outbox to the relay),
``Receiving`` (incoming.py: envelopes in, stored, acked). They share this state and
call one another through ``self``; only ``Engine`` combines them all.

Everything here runs on the core's worker loop, the store's own thread. A coroutine
yields only at network waits, and never between loading a ratchet session and saving
it, so two coroutines can never advance the same session from the same state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine

from app.base.errors import (
    OfflineError,
    RelayRefusedError,
)
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import RandomSource
from app.protocol.frames import (
    DirectoryLookup,
    DirectoryResults,
    FrameType,
    Response,
    Status,
)
from app.services.events import Event, Listener, MessagesExpired
from app.services.settings import (
    CERTIFICATE,
    load_relay,
)
from app.sync.link import RelayLink
from app.sync.machine import Backoff
from storage.errors import NotFoundError
from storage.records import (
    Identity,
)
from storage.store import Store
from storage.sweeper import ExpirySweeper

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class EngineState:
    """The fields of an open profile's core and the helpers its parts share."""

    def __init__(
        self,
        store: Store,
        *,
        listener: Listener,
        clock: Clock,
        random: RandomSource,
        backoff: Backoff | None = None,
    ) -> None:
        self.store = store
        self._listener = listener
        self._clock = clock
        self._random = random
        self._backoff = backoff
        self._loop = asyncio.get_running_loop()
        record = store.identity.load()
        self.account: Identity | None = record
        self._identity = IdentityKeyPair.from_seed(record.seed) if record else None
        self._relay = load_relay(store)
        saved = store.settings.get(CERTIFICATE)
        self._certificate = DeviceCertificate.parse(bytes.fromhex(saved)) if saved else None
        self._upload_token = b""
        self.link: RelayLink | None = None
        self._seal_lock = asyncio.Lock()
        self._flush_task: asyncio.Task[None] | None = None
        self._flush_wanted = False
        self._refilling = False
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._retry_handle: asyncio.TimerHandle | None = None
        self._renew_handle: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._sweeper = ExpirySweeper(store, self._schedule_sweep)

    def _emit(self, *events: Event) -> None:
        for event in events:
            try:
                self._listener(event)
            except Exception:
                log.exception("an event listener failed")

    async def _request(self, frame_type: FrameType, body: bytes, *, refuse: bool = True) -> Response:
        if self.link is None:
            raise OfflineError("this device is not enrolled with a relay")
        response = await self.link.request(frame_type, body)
        if refuse and response.status != Status.OK:
            raise RelayRefusedError(response.status.name, response.reason)
        return response

    def _millis(self) -> int:
        return int(self._clock() * 1000)

    def _in_background(self, coroutine: Coroutine[None, None, None]) -> None:
        """Run a coroutine nobody awaits; a failure is logged, never lost."""
        task = self._loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a background task failed", exc_info=task.exception())

    def _ensure_contact(self, account_id: str) -> None:
        """A sender we had not added yet becomes a contact, named by account id until looked up."""
        try:
            self.store.contacts.get(account_id)
        except NotFoundError:
            self.store.contacts.upsert(account_id, account_id)
            self._in_background(self._learn_name(account_id))

    async def _learn_name(self, account_id: str) -> None:
        """Ask the directory for a new contact's name and department (best effort)."""
        try:
            response = await self._request(FrameType.DIRECTORY_LOOKUP, DirectoryLookup(account_id).encode())
        except (OfflineError, RelayRefusedError) as e:
            log.debug("a contact keeps its account id as name (%s)", type(e).__name__)
            return
        for entry in DirectoryResults.parse(response.body).entries:
            if entry.account_id == account_id:
                with self.store.transaction():
                    self.store.contacts.upsert(account_id, entry.display_name, entry.department)
                    self.store.conversations.rename_peer(account_id, entry.display_name)

    def _schedule_sweep(self, at: float | None) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        if at is not None:
            self._sweep_handle = self._loop.call_later(max(0.0, at - self._clock()), self._sweep)

    def _sweep(self) -> None:
        self._sweep_handle = None
        deleted = self._sweeper.fire()
        if deleted:
            self._emit(MessagesExpired(tuple(deleted)))
