"""The outbox: sealed envelopes waiting for the server, oldest first.

An entry is written in the same transaction as its message and the advanced ratchet
state, and removed only once the server has stored the envelope. Entries of a message
go with it when it is deleted or expires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from app.base.limits import MAX_ENVELOPE_BYTES
from storage.database import Database
from storage.errors import NotFoundError
from storage.records import OutboxEntry

Clock = Callable[[], float]


def _entry(row: Sequence[Any]) -> OutboxEntry:
    return OutboxEntry(*row)


class OutboxRepository:
    def __init__(self, db: Database, *, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def enqueue(
        self, recipient: str, recipient_device: int, envelope: bytes, *, message_id: int | None
    ) -> int:
        """Queue a sealed envelope (``message_id`` None for control messages such as receipts)."""
        if len(envelope) > MAX_ENVELOPE_BYTES:
            raise ValueError("envelope exceeds MAX_ENVELOPE_BYTES")
        now = self._clock()
        with self._db.transaction():
            cursor = self._db.execute(
                """INSERT INTO outbox (message_id, recipient, recipient_device, envelope, created_at,
                        next_attempt_at)
                    VALUES (?, ?, ?, ?, ?, ?)""",
                (message_id, recipient, recipient_device, envelope, now, now),
            )
        entry_id: int = cursor.lastrowid
        return entry_id

    def due(self, now: float, limit: int = 100) -> list[OutboxEntry]:
        """Entries whose next attempt is due, oldest first."""
        rows = self._db.all(
            """SELECT id, message_id, recipient, recipient_device, envelope, created_at, attempts,
                next_attempt_at
                FROM outbox WHERE next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?""",
            (now, limit),
        )
        return [_entry(row) for row in rows]

    def postpone(self, entry_id: int, next_attempt_at: float) -> None:
        """Record a failed attempt and when to try again."""
        with self._db.transaction():
            cursor = self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?",
                (next_attempt_at, entry_id),
            )
            if cursor.rowcount != 1:
                raise NotFoundError(f"outbox entry {entry_id} does not exist")

    def remove(self, entry_id: int) -> bool:
        """Drop an entry the server has stored; False if it was already gone."""
        with self._db.transaction():
            return self._db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,)).rowcount == 1

    def pending_for(self, message_id: int) -> int:
        """How many envelopes of a message still wait (zero: every device's copy left)."""
        count: int = self._db.scalar("SELECT count(*) FROM outbox WHERE message_id = ?", (message_id,))
        return count

    def next_attempt(self) -> float | None:
        value: float | None = self._db.scalar("SELECT min(next_attempt_at) FROM outbox")
        return value
