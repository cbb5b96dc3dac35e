"""Envelope ids already stored, so a redelivered envelope is dropped instead of shown twice."""

from __future__ import annotations

from collections.abc import Callable

from storage.database import Database

Clock = Callable[[], float]

MAX_ENVELOPE_ID_BYTES = 64


class SeenEnvelopeRepository:
    def __init__(self, db: Database, *, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def add(self, envelope_id: bytes) -> bool:
        """Record an envelope id; False if it was already recorded (a duplicate to drop)."""
        if not 0 < len(envelope_id) <= MAX_ENVELOPE_ID_BYTES:
            raise ValueError("envelope id length out of range")
        with self._db.transaction():
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO seen_envelopes (envelope_id, seen_at) VALUES (?, ?)",
                (envelope_id, self._clock()),
            )
        return cursor.rowcount == 1

    def contains(self, envelope_id: bytes) -> bool:
        return self._db.one("SELECT 1 FROM seen_envelopes WHERE envelope_id = ?", (envelope_id,)) is not None

    def prune(self, seen_before: float) -> int:
        """Forget ids older than the server's retention: it can no longer redeliver them."""
        with self._db.transaction():
            return self._db.execute("DELETE FROM seen_envelopes WHERE seen_at < ?", (seen_before,)).rowcount
