"""This device's prekeys: made here, private halves kept in the store, public halves uploaded.

One-time prekey ids grow from a counter in the settings, so a refill never reuses an
id the relay may still hand out.

The signed prekey rotates (docs/PROTOCOL.md, "Signed prekey rotation"). Every
``ROTATION_SECONDS`` a new one is made and kept unpublished, uploaded, and only when the
relay has acknowledged it does it become the current one; the one it replaces is
retired then, and kept ``GRACE_SECONDS`` more for first messages sealed to it before
that, then deleted. A failed upload changes nothing: the current key stays current and
the same new key is offered again at the next check, so the relay never holds a key
whose private half this device lacks, and an interrupted rotation leaves no orphan.
"""

from __future__ import annotations

import logging

from app.base.errors import TransportError
from app.crypto.keys import DHKeyPair, IdentityKeyPair, OneTimePreKey, SignedPreKey
from app.crypto.primitives import RandomSource
from app.protocol.frames import FrameType, SignedPreKeyUpload, UploadedPreKey, UploadPreKeys
from app.services.clock import Clock
from app.services.credentials import Credentials
from app.services.settings import NEXT_PREKEY_ID
from app.services.tasks import Tasks
from app.sync.link import RelayLink
from storage.records import SignedPreKeyRecord
from storage.store import Store

log = logging.getLogger(__name__)

ENROL_ONE_TIME_PREKEYS = 100
REFILL_ONE_TIME_PREKEYS = 100
SIGNED_PREKEY_ID = 1
"""The id of the signed prekey made at enrolment; each rotation takes the next."""

DAY_SECONDS = 24 * 3600
ROTATION_SECONDS = 7 * DAY_SECONDS
"""A current signed prekey older than this (since the relay acknowledged it) is replaced."""
GRACE_SECONDS = 31 * DAY_SECONDS
"""How long a retired signed prekey's private half is kept.

A first message names the signed prekey of the bundle its sender fetched, so it was
sealed no later than the moment that key was retired (the sender seals right after the
fetch). Its envelope expires 30 days after sealing at the latest (docs/PROTOCOL.md,
section 9; ``lifetime.ENVELOPE_LIFETIME_SECONDS``) and the relay keeps none longer than
its retention (30 days by default): 30 days covers every such message the relay can
still deliver, and one more day covers a sender's clock running ahead of ours.
"""
CHECK_SECONDS = 3600.0
"""How often the schedule looks at the clock. The loop's timers run on a monotonic clock
that stops while the machine sleeps, the injected clock does not: looking hourly keeps
rotation and deletion within an hour of due, whatever the machine did in between."""


def new_signed_prekey(identity: IdentityKeyPair, random: RandomSource) -> SignedPreKey:
    return SignedPreKey.generate(identity, SIGNED_PREKEY_ID, random)


def new_one_time_prekeys(first_id: int, count: int, random: RandomSource) -> list[OneTimePreKey]:
    return [OneTimePreKey.generate(first_id + i, random) for i in range(count)]


def upload_form(signed: SignedPreKey) -> SignedPreKeyUpload:
    return SignedPreKeyUpload(signed.key_id, signed.keypair.public, signed.signature)


def uploads(one_time: list[OneTimePreKey]) -> tuple[UploadedPreKey, ...]:
    return tuple(UploadedPreKey(k.key_id, k.keypair.public) for k in one_time)


def save(store: Store, signed: SignedPreKey | None, one_time: list[OneTimePreKey]) -> None:
    """Keep the private halves (join the caller's transaction) and advance the id counter.

    ``signed`` is the enrolment's, which the relay accepted with the enrolment: it is
    kept as published, the current one.
    """
    with store.transaction():
        if signed is not None:
            store.signed_prekeys.add(signed.key_id, signed.keypair.private, signed.signature, published=True)
        store.prekeys.add_one_time((k.key_id, k.keypair.private) for k in one_time)
        if one_time:
            store.settings.set(NEXT_PREKEY_ID, str(one_time[-1].key_id + 1))


def next_one_time_id(store: Store) -> int:
    return int(store.settings.get(NEXT_PREKEY_ID, "1") or "1")


def signed_prekey(store: Store, key_id: int) -> SignedPreKey:
    """The signed prekey with this id, current, unpublished or retired; ``NotFoundError`` if deleted."""
    return _loaded(store.signed_prekeys.get(key_id))


def _loaded(record: SignedPreKeyRecord) -> SignedPreKey:
    return SignedPreKey(record.key_id, DHKeyPair.from_private(record.private_key), record.signature)


def rotation_due(current: SignedPreKeyRecord | None, now: float) -> bool:
    """Whether the current signed prekey is old enough to replace (or there is none)."""
    published_at = None if current is None else current.published_at
    return published_at is None or now - published_at >= ROTATION_SECONDS


class PreKeys:
    """Keeps the relay stocked with one-time prekeys and rotates the signed prekey on schedule."""

    def __init__(
        self,
        store: Store,
        *,
        credentials: Credentials,
        relay: RelayLink,
        tasks: Tasks,
        clock: Clock,
        random: RandomSource,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        """``check_seconds``: how often the rotation schedule looks at the clock (tests shorten it)."""
        self._store = store
        self._credentials = credentials
        self._relay = relay
        self._tasks = tasks
        self._clock = clock
        self._random = random
        self._check_seconds = check_seconds
        self._checks = tasks.alarm()
        self._refilling = False
        self._rotating = False

    async def refill(self) -> None:
        """Make, keep and upload a fresh batch (the relay said it runs low); one batch at a time."""
        if self._refilling:
            return
        self._refilling = True
        try:
            fresh = new_one_time_prekeys(next_one_time_id(self._store), REFILL_ONE_TIME_PREKEYS, self._random)
            save(self._store, None, fresh)
            await self._relay.call(FrameType.UPLOAD_PREKEYS, UploadPreKeys(None, uploads(fresh)).encode())
            log.info("uploaded %d one-time prekeys", len(fresh))
        finally:
            self._refilling = False

    def online(self) -> None:
        """The relay authenticated this device: rotate now if due, then look again every check."""
        self._tasks.spawn(self.rotate(), name="signed-prekey-rotation")

    async def rotate(self) -> None:
        """Delete retired signed prekeys past their grace, replace the current one if it is due.

        One rotation at a time: a call while one runs returns at once. The next check is
        set first, so it comes however this one ends.
        """
        if self._rotating:
            return
        self._rotating = True
        self._checks.set(self._check_seconds, self.online)
        try:
            now = self._clock()
            deleted = self._store.delete_retired_signed_prekeys(before=now - GRACE_SECONDS)
            if deleted:
                log.info("deleted %d retired signed prekeys", len(deleted))
            if rotation_due(self._store.signed_prekeys.current(), now):
                await self._replace()
        finally:
            self._rotating = False

    async def _replace(self) -> None:
        """Upload a new signed prekey (the one made before, if its upload never got through)."""
        waiting = self._store.signed_prekeys.unpublished()
        if waiting is not None:
            fresh = _loaded(waiting)
        else:
            _, identity = self._credentials.require()
            fresh = SignedPreKey.generate(identity, self._store.signed_prekeys.next_id(), self._random)
            self._store.signed_prekeys.add(
                fresh.key_id, fresh.keypair.private, fresh.signature, published=False
            )
        try:
            await self._relay.call(FrameType.UPLOAD_PREKEYS, UploadPreKeys(upload_form(fresh), ()).encode())
        except TransportError as e:
            log.info("the new signed prekey was not uploaded (%s); the current one stays", type(e).__name__)
            return
        self._store.signed_prekeys.publish(fresh.key_id)
        log.info("rotated the signed prekey")
