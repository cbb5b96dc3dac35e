"""What this device checked of the organisation's key log: the head it accepted last with its
tree's frontier, the bindings the entries up to it replayed to, and any fork it caught.

The checks are app/protocol/logview.py's; this repository keeps their outcome in the
encrypted store, so a restart resumes from the head it had instead of trusting whatever
the relay shows next, and a colleague's key is looked up here, not asked of the relay (a
look-up would tell the relay who is about to write to whom). A fork, once caught, stays on
record with both heads: it is evidence for security, and sending stays stopped while the
config in force names that log's key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from storage.database import Database

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class KeptHead:
    log_key: bytes
    note: bytes
    frontier: bytes
    checked_at: float


@dataclass(frozen=True, slots=True)
class LoggedBinding:
    """A device's identity key as the log states it (``app.protocol.logentry.Binding``'s fields)."""

    account_id: str
    device_id: int
    identity_key: bytes
    added: int
    added_at: int
    revoked: int | None = None
    revoked_at: int | None = None


@dataclass(frozen=True, slots=True)
class LogFork:
    log_key: bytes
    found_at: float
    reason: str
    kept_note: bytes | None
    """The head this device had accepted (None if it had none yet)."""
    other_note: bytes
    """The head, or the answer, that cannot follow it."""


class KeyLogRepository:
    def __init__(self, db: Database, *, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def head(self) -> KeptHead | None:
        row = self._db.one("SELECT log_key, note, frontier, checked_at FROM key_log_head WHERE id = 1")
        return None if row is None else KeptHead(*row)

    def keep_head(self, log_key: bytes, note: bytes, frontier: bytes) -> None:
        """The head now accepted; call in the transaction that stored the bindings it replayed to."""
        with self._db.transaction():
            self._db.execute(
                """INSERT INTO key_log_head (id, log_key, note, frontier, checked_at) VALUES (1, ?, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET log_key = excluded.log_key, note = excluded.note,
                    frontier = excluded.frontier, checked_at = excluded.checked_at""",
                (log_key, note, frontier, self._clock()),
            )

    def start_over(self) -> None:
        """Forget the head and the bindings (the config names another log); forks stay on record."""
        with self._db.transaction():
            self._db.execute("DELETE FROM key_log_head")
            self._db.execute("DELETE FROM key_log_bindings")

    def binding(self, account_id: str, device_id: int) -> LoggedBinding | None:
        row = self._db.one(
            "SELECT account_id, device_id, identity_key, added, added_at, revoked, revoked_at"
            " FROM key_log_bindings WHERE account_id = ? AND device_id = ?",
            (account_id, device_id),
        )
        return None if row is None else LoggedBinding(*row)

    def bindings_of(self, account_id: str) -> list[LoggedBinding]:
        rows = self._db.all(
            "SELECT account_id, device_id, identity_key, added, added_at, revoked, revoked_at"
            " FROM key_log_bindings WHERE account_id = ? ORDER BY added",
            (account_id,),
        )
        return [LoggedBinding(*row) for row in rows]

    def has_key(self, identity_key: bytes) -> bool:
        found = self._db.one("SELECT 1 FROM key_log_bindings WHERE identity_key = ?", (identity_key,))
        return found is not None

    def put(self, binding: LoggedBinding) -> None:
        with self._db.transaction():
            self._db.execute(
                """INSERT INTO key_log_bindings
                    (account_id, device_id, identity_key, added, added_at, revoked, revoked_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (account_id, device_id) DO UPDATE SET identity_key = excluded.identity_key,
                    added = excluded.added, added_at = excluded.added_at, revoked = excluded.revoked,
                    revoked_at = excluded.revoked_at""",
                (
                    binding.account_id,
                    binding.device_id,
                    binding.identity_key,
                    binding.added,
                    binding.added_at,
                    binding.revoked,
                    binding.revoked_at,
                ),
            )

    def record_fork(self, log_key: bytes, reason: str, kept_note: bytes | None, other_note: bytes) -> None:
        with self._db.transaction():
            self._db.execute(
                """INSERT INTO key_log_forks (log_key, found_at, reason, kept_note, other_note)
                    VALUES (?, ?, ?, ?, ?)""",
                (log_key, self._clock(), reason, kept_note, other_note),
            )

    def fork(self, log_key: bytes) -> LogFork | None:
        """The first fork caught in the log of ``log_key``, if any."""
        row = self._db.one(
            """SELECT log_key, found_at, reason, kept_note, other_note FROM key_log_forks
                WHERE log_key = ? ORDER BY id LIMIT 1""",
            (log_key,),
        )
        return None if row is None else LogFork(*row)
