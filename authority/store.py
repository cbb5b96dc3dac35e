"""The authority's SQLite file: enrolment codes and device records, nothing else.

A code is stored as two derivations of it (app/protocol/enrolment.py), never as
itself: ``code_id`` to find it, ``code_key`` to check a device's proof. So a copy of this
file lets no one enrol, though it lets its holder forge proofs for codes not yet spent,
which is why the file stays with the authority key. A device record is the binding of
(account, device id) to one identity key, and whether it is revoked.

WAL, so the admin tool writes while the authority serves; ``secure_delete`` so a
spent code's row leaves no readable bytes in free pages. Every write that must be
all-or-nothing is one ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from app.base.errors import EnclaveError

STORE_FILE = "authority.sqlite3"
SCHEMA_VERSION = 1
BUSY_MILLISECONDS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS codes (
    code_id BLOB PRIMARY KEY,
    code_key BLOB NOT NULL,
    account_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    spent_at INTEGER
);
CREATE TABLE IF NOT EXISTS devices (
    account_id TEXT NOT NULL,
    device_id INTEGER NOT NULL,
    identity_key BLOB NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    certified_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, device_id)
);
"""


class StoreError(EnclaveError):
    """The authority's database cannot be opened or is of another schema."""


@dataclass(frozen=True, slots=True)
class Code:
    code_key: bytes
    account_id: str
    expires_at: int
    spent_at: int | None


@dataclass(frozen=True, slots=True)
class Device:
    account_id: str
    device_id: int
    identity_key: bytes
    revoked: bool


class Binding(Enum):
    """What ``spend_and_bind`` did."""

    BOUND = "bound"
    CODE_GONE = "code gone"
    """The code was spent or expired meanwhile (another request, or the clock)."""
    CONFLICT = "conflict"
    """The (account, device) is bound to another key, or revoked."""


class AuthorityStore:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @classmethod
    def open(cls, data_dir: Path) -> AuthorityStore:
        """Open (making it on first use) ``authority.sqlite3`` in ``data_dir``."""
        path = data_dir / STORE_FILE
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_MILLISECONDS / 1000)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA secure_delete=ON")
            db.execute("PRAGMA foreign_keys=ON")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                db.close()
                raise StoreError(f"{path} is of schema {version}; this build reads {SCHEMA_VERSION}")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise StoreError(f"cannot open {path}: {e}") from e
        path.chmod(0o600)
        return cls(db)

    def close(self) -> None:
        self._db.close()

    def add_code(self, *, code_id: bytes, code_key: bytes, account_id: str, expires_at: int) -> None:
        self._db.execute(
            "INSERT INTO codes (code_id, code_key, account_id, expires_at) VALUES (?, ?, ?, ?)",
            (code_id, code_key, account_id, expires_at),
        )

    def code(self, code_id: bytes) -> Code | None:
        row = self._db.execute(
            "SELECT code_key, account_id, expires_at, spent_at FROM codes WHERE code_id = ?", (code_id,)
        ).fetchone()
        return None if row is None else Code(row[0], row[1], row[2], row[3])

    def device(self, account_id: str, device_id: int) -> Device | None:
        row = self._db.execute(
            "SELECT identity_key, revoked FROM devices WHERE account_id = ? AND device_id = ?",
            (account_id, device_id),
        ).fetchone()
        return None if row is None else Device(account_id, device_id, row[0], bool(row[1]))

    def spend_and_bind(
        self, *, code_id: bytes, account_id: str, device_id: int, identity_key: bytes, now: int
    ) -> Binding:
        """Spend the code and record the device, in one transaction, or change nothing.

        The caller has checked the code and the proofs; this checks again, inside the
        transaction, what another request could have changed meanwhile.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            spent = self._db.execute(
                "UPDATE codes SET spent_at = ? WHERE code_id = ? AND account_id = ?"
                " AND spent_at IS NULL AND expires_at > ?",
                (now, code_id, account_id, now),
            ).rowcount
            if spent != 1:
                self._db.execute("ROLLBACK")
                return Binding.CODE_GONE
            existing = self.device(account_id, device_id)
            if existing is not None and (existing.identity_key != identity_key or existing.revoked):
                self._db.execute("ROLLBACK")
                return Binding.CONFLICT
            if existing is None:
                self._db.execute(
                    "INSERT INTO devices (account_id, device_id, identity_key, certified_at)"
                    " VALUES (?, ?, ?, ?)",
                    (account_id, device_id, identity_key, now),
                )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return Binding.BOUND

    def revoke(self, account_id: str, device_id: int) -> bool:
        """Mark the device revoked; False, changing nothing, if it is unknown or revoked already."""
        return (
            self._db.execute(
                "UPDATE devices SET revoked = 1 WHERE account_id = ? AND device_id = ? AND revoked = 0",
                (account_id, device_id),
            ).rowcount
            == 1
        )
