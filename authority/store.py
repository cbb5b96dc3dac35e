"""The authority's SQLite file: enrolment codes and device records, nothing else.

A code is stored as two derivations of it (app/protocol/enrolment.py), never as
itself: ``code_id`` to find it, ``code_key`` to check a device's proof. So a copy of this
file lets no one enrol, though it lets its holder forge proofs for codes not yet spent,
which is why the file stays with the authority key. A device record is a device id the
authority drew, the account of the code that enrolled it with the name and department the
admin gave the code (its certificates carry them), its identity key (one key is one device)
and whether it is revoked. Device ids are global, as the relay keys devices by id
alone, and random, so that an id does not tell how many devices enrolled before it.

WAL, so the admin tool writes while the authority serves; ``secure_delete`` so a
spent code's row leaves no readable bytes in free pages. Every write that must be
all-or-nothing is one ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from app.base.errors import EnclaveError

STORE_FILE = "authority.sqlite3"
SCHEMA_VERSION = 3
SCHEMA_BEFORE_NAMES = 2
"""Codes and devices without a display name and department; upgraded in place (empty names)."""
SCHEMA_BEFORE_ASSIGNED_IDS = 1
"""Devices keyed by (account, device id the device chose); never deployed, so never migrated."""
BUSY_MILLISECONDS = 5000
MAX_DEVICE_ID = 2**31 - 1
"""Device ids are 1..2^31-1: the relay keeps them in a signed 32-bit PostgreSQL integer."""
DEVICE_ID_DRAWS = 8
"""Draws of a fresh id before giving up; a collision is one in 2^31 per device enrolled."""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS codes (
    code_id BLOB PRIMARY KEY,
    code_key BLOB NOT NULL,
    account_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    spent_at INTEGER,
    display_name TEXT NOT NULL DEFAULT '',
    department TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS devices (
    device_id INTEGER PRIMARY KEY CHECK (device_id BETWEEN 1 AND {MAX_DEVICE_ID}),
    account_id TEXT NOT NULL,
    identity_key BLOB NOT NULL UNIQUE,
    revoked INTEGER NOT NULL DEFAULT 0,
    certified_at INTEGER NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    department TEXT NOT NULL DEFAULT ''
);
"""

_ADD_NAMES = """
ALTER TABLE codes ADD COLUMN display_name TEXT NOT NULL DEFAULT '';
ALTER TABLE codes ADD COLUMN department TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN display_name TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN department TEXT NOT NULL DEFAULT '';
"""


class StoreError(EnclaveError):
    """The authority's database cannot be opened or is of another schema."""


@dataclass(frozen=True, slots=True)
class Code:
    code_key: bytes
    account_id: str
    expires_at: int
    spent_at: int | None
    display_name: str = ""
    department: str = ""


@dataclass(frozen=True, slots=True)
class Device:
    account_id: str
    device_id: int
    identity_key: bytes
    revoked: bool
    display_name: str = ""
    department: str = ""


@dataclass(frozen=True, slots=True)
class Added:
    """``spend_and_add`` spent the code and recorded this device of the code's account."""

    account_id: str
    device_id: int
    display_name: str = ""
    department: str = ""


class NotAdded(Enum):
    """Why ``spend_and_add`` changed nothing."""

    CODE_GONE = "code gone"
    """The code was spent or expired meanwhile (another request, or the clock)."""
    KEY_RECORDED = "key recorded"
    """The identity key is a device already: one identity key is one device."""


class AuthorityStore:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @classmethod
    def open(cls, data_dir: Path) -> AuthorityStore:
        """Open (making it on first use) ``authority.sqlite3`` in ``data_dir``."""
        path = data_dir / STORE_FILE
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_MILLISECONDS / 1000)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_BEFORE_NAMES, SCHEMA_VERSION):  # a refused file stays as it was
                db.close()
                raise StoreError(_refused_schema(path, version))
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA secure_delete=ON")
            db.execute("PRAGMA foreign_keys=ON")
            if version == SCHEMA_BEFORE_NAMES:
                db.executescript(
                    f"BEGIN IMMEDIATE; {_ADD_NAMES} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
                )
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise StoreError(f"cannot open {path}: {e}") from e
        path.chmod(0o600)
        return cls(db)

    def close(self) -> None:
        self._db.close()

    def add_code(
        self,
        *,
        code_id: bytes,
        code_key: bytes,
        account_id: str,
        expires_at: int,
        display_name: str = "",
        department: str = "",
    ) -> None:
        self._db.execute(
            "INSERT INTO codes (code_id, code_key, account_id, expires_at, display_name, department)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (code_id, code_key, account_id, expires_at, display_name, department),
        )

    def code(self, code_id: bytes) -> Code | None:
        row = self._db.execute(
            "SELECT code_key, account_id, expires_at, spent_at, display_name, department FROM codes"
            " WHERE code_id = ?",
            (code_id,),
        ).fetchone()
        return None if row is None else Code(*row)

    def device(self, account_id: str, device_id: int) -> Device | None:
        """The device with this id, if it is ``account_id``'s (ids are global; accounts are checked)."""
        row = self._db.execute(
            "SELECT identity_key, revoked, display_name, department FROM devices"
            " WHERE device_id = ? AND account_id = ?",
            (device_id, account_id),
        ).fetchone()
        return None if row is None else Device(account_id, device_id, row[0], bool(row[1]), row[2], row[3])

    def key_recorded(self, identity_key: bytes) -> bool:
        """Whether a device (of any account, revoked or not) has this identity key."""
        row = self._db.execute("SELECT 1 FROM devices WHERE identity_key = ?", (identity_key,)).fetchone()
        return row is not None

    def spend_and_add(
        self, *, code_id: bytes, identity_key: bytes, now: int, new_device_id: Callable[[], int]
    ) -> Added | NotAdded:
        """Spend the code and record a new device of its account, in one transaction, or change nothing.

        The caller has checked the code and the proofs; this checks again, inside the
        transaction, what another request could have changed meanwhile. The device's id is
        the first of ``new_device_id``'s draws that no device has.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            spent = self._db.execute(
                "UPDATE codes SET spent_at = ? WHERE code_id = ? AND spent_at IS NULL AND expires_at > ?",
                (now, code_id, now),
            ).rowcount
            if spent != 1:
                self._db.execute("ROLLBACK")
                return NotAdded.CODE_GONE
            if self.key_recorded(identity_key):
                self._db.execute("ROLLBACK")
                return NotAdded.KEY_RECORDED
            account_id, display_name, department = self._db.execute(
                "SELECT account_id, display_name, department FROM codes WHERE code_id = ?", (code_id,)
            ).fetchone()
            device_id = self._free_device_id(new_device_id)
            self._db.execute(
                "INSERT INTO devices (device_id, account_id, identity_key, certified_at, display_name,"
                " department) VALUES (?, ?, ?, ?, ?, ?)",
                (device_id, account_id, identity_key, now, display_name, department),
            )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return Added(account_id, device_id, display_name, department)

    def _free_device_id(self, new_device_id: Callable[[], int]) -> int:
        for _ in range(DEVICE_ID_DRAWS):
            device_id = new_device_id()
            if not 1 <= device_id <= MAX_DEVICE_ID:
                raise ValueError(f"a device id must be in 1..{MAX_DEVICE_ID}, not {device_id}")
            taken = self._db.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)).fetchone()
            if taken is None:
                return device_id
        raise StoreError(
            f"{DEVICE_ID_DRAWS} draws of a device id were all taken; the random source is broken"
        )

    def revoke(self, account_id: str, device_id: int) -> bool:
        """Mark the device revoked; False, changing nothing, if it is unknown or revoked already."""
        return (
            self._db.execute(
                "UPDATE devices SET revoked = 1 WHERE device_id = ? AND account_id = ? AND revoked = 0",
                (device_id, account_id),
            ).rowcount
            == 1
        )


def _refused_schema(path: Path, version: int) -> str:
    if version == SCHEMA_BEFORE_ASSIGNED_IDS:
        return (
            f"{path} is of schema {version}, which predates device ids assigned by the authority;"
            " this build does not convert it: stop the authority, move the file aside and start it again"
            " (the old file's unspent codes must then be issued again)"
        )
    return f"{path} is of schema {version}; this build reads {SCHEMA_VERSION}"
