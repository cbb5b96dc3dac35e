"""This device's prekeys: made here, private halves kept in the store, public halves uploaded.

One-time prekey ids grow from a counter in the settings, so a refill never reuses an
id the relay may still hand out.
"""

from __future__ import annotations

import logging

from app.crypto.keys import DHKeyPair, IdentityKeyPair, OneTimePreKey, SignedPreKey
from app.crypto.primitives import RandomSource
from app.protocol.frames import FrameType, SignedPreKeyUpload, UploadedPreKey, UploadPreKeys
from app.services.settings import NEXT_PREKEY_ID
from app.sync.link import RelayLink
from storage.records import PreKeyKind
from storage.store import Store

log = logging.getLogger(__name__)

ENROL_ONE_TIME_PREKEYS = 100
REFILL_ONE_TIME_PREKEYS = 100
SIGNED_PREKEY_ID = 1


def new_signed_prekey(identity: IdentityKeyPair, random: RandomSource) -> SignedPreKey:
    return SignedPreKey.generate(identity, SIGNED_PREKEY_ID, random)


def new_one_time_prekeys(first_id: int, count: int, random: RandomSource) -> list[OneTimePreKey]:
    return [OneTimePreKey.generate(first_id + i, random) for i in range(count)]


def upload_form(signed: SignedPreKey) -> SignedPreKeyUpload:
    return SignedPreKeyUpload(signed.key_id, signed.keypair.public, signed.signature)


def uploads(one_time: list[OneTimePreKey]) -> tuple[UploadedPreKey, ...]:
    return tuple(UploadedPreKey(k.key_id, k.keypair.public) for k in one_time)


def save(store: Store, signed: SignedPreKey | None, one_time: list[OneTimePreKey]) -> None:
    """Keep the private halves (join the caller's transaction) and advance the id counter."""
    with store.transaction():
        if signed is not None:
            store.prekeys.add_signed(signed.key_id, signed.keypair.private, signed.signature)
        store.prekeys.add_one_time((k.key_id, k.keypair.private) for k in one_time)
        if one_time:
            store.settings.set(NEXT_PREKEY_ID, str(one_time[-1].key_id + 1))


def next_one_time_id(store: Store) -> int:
    return int(store.settings.get(NEXT_PREKEY_ID, "1") or "1")


def signed_prekey(store: Store, key_id: int) -> SignedPreKey:
    record = store.prekeys.get(PreKeyKind.SIGNED, key_id)
    return SignedPreKey(key_id, DHKeyPair.from_private(record.private_key), record.signature or b"")


class PreKeys:
    """Keeps the relay stocked with this device's one-time prekeys."""

    def __init__(self, store: Store, *, relay: RelayLink, random: RandomSource) -> None:
        self._store = store
        self._relay = relay
        self._random = random
        self._refilling = False

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
