"""The sealing queue: outgoing messages stored but not yet sealed into outbox envelopes.

A message waits here when it cannot be encrypted as it is written: composed offline
before a session with the peer exists, or a file not yet uploaded. The engine seals the
queue strictly in message id order, removing each entry in the transaction that writes
its envelopes. An entry goes with its message when it is deleted or expires.
"""

from __future__ import annotations

from collections.abc import Callable

from storage.database import Database
from storage.errors import NotFoundError
from storage.records import OUTGOING

Clock = Callable[[], float]


class UnsealedRepository:
    def __init__(self, db: Database, *, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def add(self, message_id: int) -> None:
        """Queue a stored outgoing message; queuing it again changes nothing (it keeps its place)."""
        with self._db.transaction():
            sender = self._db.one("SELECT sender FROM messages WHERE id = ?", (message_id,))
            if sender is None:
                raise NotFoundError(f"message {message_id} does not exist (it may have expired)")
            if sender[0] != OUTGOING:
                raise ValueError("only an outgoing message waits to be sealed")
            self._db.execute(
                "INSERT OR IGNORE INTO unsealed (message_id, queued_at) VALUES (?, ?)",
                (message_id, self._clock()),
            )

    def remove(self, message_id: int) -> bool:
        """Drop a message once it is sealed; False if it was not queued."""
        with self._db.transaction():
            return self._db.execute("DELETE FROM unsealed WHERE message_id = ?", (message_id,)).rowcount == 1

    def contains(self, message_id: int) -> bool:
        return self._db.one("SELECT 1 FROM unsealed WHERE message_id = ?", (message_id,)) is not None

    def count(self) -> int:
        total: int = self._db.scalar("SELECT count(*) FROM unsealed")
        return total

    def list(self, limit: int = 100) -> list[int]:
        """The ids of queued messages in the order they must be sealed: ascending message id."""
        rows = self._db.all("SELECT message_id FROM unsealed ORDER BY message_id LIMIT ?", (limit,))
        return [row[0] for row in rows]
