"""This device's signed prekeys by id, through their life: made, published, retired, deleted.

A new signed prekey is *made* (kept here before it is uploaded, so the relay never hands
out a key whose private half this device lacks), *published* once the relay acknowledged
it (it is then the *current* one, and the one before it is *retired* in the same
transaction), and deleted some time after its retirement. Of the keys not retired there
is at most one published and one not yet published; a unique index holds that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from app.base.limits import KEY_BYTES, SIGNATURE_BYTES
from storage.database import Database
from storage.errors import NotFoundError
from storage.records import SignedPreKeyRecord

Clock = Callable[[], float]

_SELECT = "SELECT key_id, private_key, signature, created_at, published_at, retired_at FROM signed_prekeys"


def _record(row: Sequence[Any]) -> SignedPreKeyRecord:
    return SignedPreKeyRecord(row[0], row[1], row[2], row[3], row[4], row[5])


class SignedPreKeyRepository:
    def __init__(self, db: Database, *, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def add(
        self, key_id: int, private_key: bytes, signature: bytes, *, published: bool
    ) -> SignedPreKeyRecord:
        """Keep a new signed prekey; ``published``: the relay already acknowledged it (enrolment).

        A published one becomes the current one, so only the first may be added so: later
        ones are added unpublished and published with ``publish``.
        """
        if len(private_key) != KEY_BYTES or len(signature) != SIGNATURE_BYTES:
            raise ValueError("a signed prekey is a 32-byte private key and a 64-byte signature")
        now = self._clock()
        with self._db.transaction():
            self._db.execute(
                """INSERT INTO signed_prekeys (key_id, private_key, signature, created_at, published_at)
                    VALUES (?, ?, ?, ?, ?)""",
                (key_id, private_key, signature, now, now if published else None),
            )
        return self.get(key_id)

    def get(self, key_id: int) -> SignedPreKeyRecord:
        """The key with this id, whatever its state; ``NotFoundError`` if never made or deleted."""
        row = self._db.one(_SELECT + " WHERE key_id = ?", (key_id,))
        if row is None:
            raise NotFoundError(f"no signed prekey {key_id}")
        return _record(row)

    def current(self) -> SignedPreKeyRecord | None:
        """The key the relay hands out now (as far as this device knows)."""
        row = self._db.one(_SELECT + " WHERE published_at IS NOT NULL AND retired_at IS NULL")
        return None if row is None else _record(row)

    def unpublished(self) -> SignedPreKeyRecord | None:
        """A key made whose upload the relay has not acknowledged (failed, or cut off)."""
        row = self._db.one(_SELECT + " WHERE published_at IS NULL")
        return None if row is None else _record(row)

    def next_id(self) -> int:
        """One above every id made so far: the current key is never deleted, so ids only grow."""
        highest: int | None = self._db.scalar("SELECT max(key_id) FROM signed_prekeys")
        return 1 if highest is None else highest + 1

    def publish(self, key_id: int) -> None:
        """The relay acknowledged this key: it becomes the current one, the current one retires."""
        now = self._clock()
        with self._db.transaction():
            if self.get(key_id).published_at is not None:
                raise ValueError(f"signed prekey {key_id} is already published")
            self._db.execute(
                """UPDATE signed_prekeys SET retired_at = ?
                    WHERE published_at IS NOT NULL AND retired_at IS NULL""",
                (now,),
            )
            self._db.execute("UPDATE signed_prekeys SET published_at = ? WHERE key_id = ?", (now, key_id))

    def delete_retired(self, *, before: float) -> list[int]:
        """Delete every key retired before ``before``; their ids.

        Call it through ``Store.delete_retired_signed_prekeys``, which also checkpoints the
        WAL, so no older copy of a deleted private key stays on disk.
        """
        with self._db.transaction():
            rows = self._db.all(
                "SELECT key_id FROM signed_prekeys WHERE retired_at IS NOT NULL AND retired_at < ?", (before,)
            )
            self._db.execute(
                "DELETE FROM signed_prekeys WHERE retired_at IS NOT NULL AND retired_at < ?", (before,)
            )
        return [row[0] for row in rows]
