"""Ratchet sessions: opaque, versioned state bytes per (contact account, device).

The store never looks inside: app/crypto's ``Session.to_bytes()`` goes in and comes out.
"""

from __future__ import annotations

from collections.abc import Callable

from app.base.limits import MAX_SESSION_STATE_BYTES
from storage.database import Database

Clock = Callable[[], float]


class SessionRepository:
    def __init__(self, db: Database, *, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def put(self, account_id: str, device_id: int, state: bytes) -> None:
        """Save (or replace) a device's session state; join an open transaction to store it atomically."""
        if len(state) > MAX_SESSION_STATE_BYTES:
            raise ValueError("session state exceeds MAX_SESSION_STATE_BYTES")
        with self._db.transaction():
            self._db.execute(
                """INSERT INTO sessions (account_id, device_id, state, updated_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT (account_id, device_id) DO UPDATE SET state = excluded.state,
                    updated_at = excluded.updated_at""",
                (account_id, device_id, state, self._clock()),
            )

    def get(self, account_id: str, device_id: int) -> bytes | None:
        state: bytes | None = self._db.scalar(
            "SELECT state FROM sessions WHERE account_id = ? AND device_id = ?", (account_id, device_id)
        )
        return state

    def devices(self, account_id: str) -> list[int]:
        rows = self._db.all(
            "SELECT device_id FROM sessions WHERE account_id = ? ORDER BY device_id", (account_id,)
        )
        return [row[0] for row in rows]

    def delete(self, account_id: str, device_id: int | None = None) -> int:
        """Forget one device's session, or every session with ``account_id`` when ``device_id`` is None."""
        with self._db.transaction():
            cursor = self._db.execute(
                "DELETE FROM sessions WHERE account_id = ? AND (? IS NULL OR device_id = ?)",
                (account_id, device_id, device_id),
            )
        return cursor.rowcount
