"""Our own device: its identity key seed and its one-time prekeys (private halves, by id).

Signed prekeys, which rotate, are in ``storage.signedprekeys``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from app.base.limits import KEY_BYTES
from storage.database import Database
from storage.errors import NotFoundError
from storage.records import Identity, PreKey, PreKeyKind

Clock = Callable[[], float]


def _prekey(row: Sequence[Any]) -> PreKey:
    return PreKey(PreKeyKind(row[0]), row[1], row[2], row[3], row[4])


class IdentityRepository:
    def __init__(self, db: Database, *, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def save(self, account_id: str, device_id: int, seed: bytes) -> Identity:
        """Record this device's identity (once: enrolment happens once per profile)."""
        if len(seed) != KEY_BYTES:
            raise ValueError("an identity seed is 32 bytes")
        with self._db.transaction():
            if self._db.scalar("SELECT count(*) FROM identity"):
                raise ValueError("this profile already has an identity")
            identity = Identity(account_id, device_id, seed, self._clock())
            self._db.execute(
                "INSERT INTO identity (id, account_id, device_id, seed, created_at) VALUES (1, ?, ?, ?, ?)",
                (account_id, device_id, seed, identity.created_at),
            )
        return identity

    def load(self) -> Identity | None:
        row = self._db.one("SELECT account_id, device_id, seed, created_at FROM identity WHERE id = 1")
        return None if row is None else Identity(row[0], row[1], row[2], row[3])


class PreKeyRepository:
    def __init__(self, db: Database, *, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def add_one_time(self, keys: Iterable[tuple[int, bytes]]) -> None:
        with self._db.transaction():
            self._insert(PreKeyKind.ONE_TIME, [(key_id, private, None) for key_id, private in keys])

    def _insert(self, kind: PreKeyKind, rows: list[tuple[int, bytes, bytes | None]]) -> None:
        now = self._clock()
        self._db.executemany(
            "INSERT INTO prekeys (kind, key_id, private_key, signature, created_at) VALUES (?, ?, ?, ?, ?)",
            [(kind.value, key_id, private, signature, now) for key_id, private, signature in rows],
        )

    def get(self, kind: PreKeyKind, key_id: int) -> PreKey:
        row = self._db.one(
            """SELECT kind, key_id, private_key, signature, created_at
                FROM prekeys WHERE kind = ? AND key_id = ?""",
            (kind.value, key_id),
        )
        if row is None:
            raise NotFoundError(f"no {kind.value} prekey {key_id}")
        return _prekey(row)

    def take_one_time(self, key_id: int) -> PreKey:
        """Return a one-time prekey and delete it: it is used for exactly one session."""
        with self._db.transaction():
            prekey = self.get(PreKeyKind.ONE_TIME, key_id)
            self._db.execute(
                "DELETE FROM prekeys WHERE kind = ? AND key_id = ?", (PreKeyKind.ONE_TIME.value, key_id)
            )
        return prekey

    def list(self, kind: PreKeyKind) -> list[PreKey]:
        rows = self._db.all(
            """SELECT kind, key_id, private_key, signature, created_at
                FROM prekeys WHERE kind = ? ORDER BY key_id""",
            (kind.value,),
        )
        return [_prekey(row) for row in rows]
