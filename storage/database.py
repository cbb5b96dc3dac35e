"""One SQLCipher connection: keying, validation, pragmas, transactions and error mapping.

Keying: the 256-bit key is given raw (``PRAGMA key = "x'…'"``), so opening runs no
PBKDF2; SQLCipher derives only its HMAC key (two iterations). SQLCipher 4 defaults:
AES-256-CBC, HMAC-SHA512 per page, 4096-byte pages, a random salt in the first 16 bytes.

Pragmas, and why:

- ``secure_delete = ON``: deleted rows and freed pages are overwritten with zeros, so
  an expired message leaves no text in free space.
- ``journal_mode = WAL`` with ``synchronous = FULL``: every commit is fsynced before the
  store says it is done, so a received message the client acknowledged survives a
  power loss (docs/STORAGE.md has the cost measured against NORMAL).
- ``temp_store = MEMORY``: no temporary file ever holds a sorted copy of messages.
- ``cipher_memory_security = OFF``: SQLCipher would zero and ``mlock`` every allocation.
  bench/storage.py measured it at several times the cost of the encrypted store without
  it (numbers in docs/STORAGE.md), and it buys little here: every message's plaintext
  also lives in Python ``str`` objects, Qt models and the decrypted page cache, which no
  pragma can wipe. Note that SQLCipher applies it process-wide and, once on, keeps it on.
- ``cache_size``: the page cache holds decrypted pages; 16 MiB keeps the indexes and
  the newest pages of a large history decrypted once.

Threads: a ``Database`` belongs to the thread that opened it. Every call checks the
thread and raises ``WrongThreadError`` from any other, so sharing it is loud, not silent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlcipher3 import dbapi2 as sqlcipher

from app.base.errors import StorageError
from storage.errors import (
    DatabaseCorruptError,
    NotAnEnclaveDatabaseError,
    ProfileFileError,
    StoreFullError,
    WrongThreadError,
)
from storage.fileio import open_private_new

log = logging.getLogger(__name__)

APPLICATION_ID = 0x456E436C
"""``PRAGMA application_id`` of every Enclave store ("EnCl")."""

SQLITE_HEADER = b"SQLite format 3\x00"
MEMORY_SECURITY = False
SYNCHRONOUS = "FULL"
CACHE_SIZE_KIB = 16 * 1024
BUSY_TIMEOUT_MS = 5000

Params = Sequence[Any]

_SQLITE_PERM = 3
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26


class Database:
    """The store's single connection. Writes go through ``transaction()``."""

    def __init__(self, connection: sqlcipher.Connection, path: Path, *, encrypted: bool) -> None:
        self._conn = connection
        self.path = path
        self.encrypted = encrypted
        self._owner = threading.get_ident()
        self._depth = 0
        self._on_commit: list[Callable[[], None]] = []
        self._on_rollback: list[Callable[[], None]] = []

    @classmethod
    def create(
        cls, path: Path, raw_key: bytes | None, *, memory_security: bool = MEMORY_SECURITY
    ) -> Database:
        """Create a new, empty, keyed database file at ``path`` (which must not exist)."""
        os.close(open_private_new(path))  # 0600 from the start; SQLite gives the WAL the same mode
        db = cls._connect(path, raw_key, memory_security)
        try:
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db._configure()
        except BaseException:
            db.close()
            raise
        return db

    @classmethod
    def open(cls, path: Path, raw_key: bytes | None, *, memory_security: bool = MEMORY_SECURITY) -> Database:
        """Open an existing store; anything that is not one is refused before a byte is written."""
        try:
            with path.open("rb") as f:
                untrusted_start = f.read(len(SQLITE_HEADER))
        except FileNotFoundError as e:
            raise NotAnEnclaveDatabaseError("its database file is missing") from e
        except OSError as e:
            raise ProfileFileError.from_os(path, e) from e
        if raw_key is not None and untrusted_start == SQLITE_HEADER:
            raise NotAnEnclaveDatabaseError("its database is not encrypted")
        if raw_key is None and untrusted_start != SQLITE_HEADER:
            raise NotAnEnclaveDatabaseError("its database is encrypted but the profile says it is not")
        db = cls._connect(path, raw_key, memory_security)
        try:
            db._validate()
            db._configure()
        except BaseException:
            db.close()
            raise
        return db

    @classmethod
    def _connect(cls, path: Path, raw_key: bytes | None, memory_security: bool) -> Database:
        conn = sqlcipher.connect(str(path), isolation_level=None, check_same_thread=True)
        db = cls(conn, path, encrypted=raw_key is not None)
        try:
            if raw_key is not None:
                db.execute(f"PRAGMA cipher_memory_security = {'ON' if memory_security else 'OFF'}")
                db.execute(f"PRAGMA key = \"x'{raw_key.hex()}'\"")
        except BaseException:
            db.close()
            raise
        return db

    def _validate(self) -> None:
        """First read: under a wrong key or on a foreign file SQLite says "not a database"."""
        try:
            self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            (application_id,) = self._conn.execute("PRAGMA application_id").fetchone()
            (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        except sqlcipher.DatabaseError as e:
            outside = _outside_cause(e, self.path)
            if outside is not None:
                raise outside from e
            raise NotAnEnclaveDatabaseError("its database cannot be read with this profile's key") from e
        if application_id != APPLICATION_ID or version < 1:
            raise NotAnEnclaveDatabaseError("its database belongs to another program")

    def _configure(self) -> None:
        self.execute("PRAGMA journal_mode = WAL")
        for pragma in (
            f"synchronous = {SYNCHRONOUS}",
            "secure_delete = ON",
            "foreign_keys = ON",
            "temp_store = MEMORY",
            "trusted_schema = OFF",
            f"cache_size = -{CACHE_SIZE_KIB}",
            f"busy_timeout = {BUSY_TIMEOUT_MS}",
        ):
            self.execute(f"PRAGMA {pragma}")

    # Statements.

    def execute(self, sql: str, params: Params = ()) -> sqlcipher.Cursor:
        self._check_thread()
        try:
            return self._conn.execute(sql, params)
        except sqlcipher.ProgrammingError:
            raise
        except sqlcipher.DatabaseError as e:
            raise _mapped(e, self.path) from e

    def executemany(self, sql: str, rows: Iterable[Params]) -> sqlcipher.Cursor:
        self._check_thread()
        try:
            return self._conn.executemany(sql, rows)
        except sqlcipher.ProgrammingError:
            raise
        except sqlcipher.DatabaseError as e:
            raise _mapped(e, self.path) from e

    def one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return list(self.execute(sql, params).fetchall())

    def scalar(self, sql: str, params: Params = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else row[0]

    # Transactions.

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; nested uses become savepoints of the outermost one.

        Work registered with ``after_commit`` runs once the outermost transaction has
        committed; ``after_rollback`` work runs if the part that registered it rolls back.
        """
        self._check_thread()
        depth = self._depth
        savepoint = f"sp{depth}"
        commit_mark, rollback_mark = len(self._on_commit), len(self._on_rollback)
        self.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {savepoint}")
        self._depth += 1
        try:
            yield
            if depth > 0:
                self.execute(f"RELEASE {savepoint}")
        except BaseException:
            self._depth = depth
            self._undo(savepoint if depth > 0 else None, commit_mark, rollback_mark)
            raise
        self._depth = depth
        if depth > 0:
            return
        try:
            self.execute("COMMIT")
        except BaseException:
            self._undo(None, commit_mark, rollback_mark)
            raise
        done, self._on_commit, self._on_rollback = self._on_commit, [], []
        for work in done:
            work()

    def _undo(self, savepoint: str | None, commit_mark: int, rollback_mark: int) -> None:
        if savepoint is None:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        else:
            self._conn.execute(f"ROLLBACK TO {savepoint}")
            self._conn.execute(f"RELEASE {savepoint}")
        undo = self._on_rollback[rollback_mark:]
        del self._on_rollback[rollback_mark:]
        del self._on_commit[commit_mark:]
        for work in reversed(undo):
            work()

    def after_commit(self, work: Callable[[], None]) -> None:
        """Run ``work`` after the current transaction commits (needs an open transaction)."""
        if self._depth == 0:
            raise RuntimeError("after_commit needs an open transaction")
        self._on_commit.append(work)

    def after_rollback(self, work: Callable[[], None]) -> None:
        """Run ``work`` if the current transaction (or savepoint) rolls back."""
        if self._depth == 0:
            raise RuntimeError("after_rollback needs an open transaction")
        self._on_rollback.append(work)

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    # Maintenance.

    def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it to zero bytes."""
        self.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def close(self) -> None:
        self._check_thread()
        self._conn.close()

    def _check_thread(self) -> None:
        if threading.get_ident() != self._owner:
            raise WrongThreadError()


def _outside_cause(error: sqlcipher.DatabaseError, path: Path) -> ProfileFileError | None:
    """A failure of the disk or its permissions, not of the data or the key; else None."""
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    if code == _SQLITE_FULL:
        return StoreFullError(path)
    if code == _SQLITE_READONLY:
        return ProfileFileError("write to", path, "read-only file system or no write permission")
    if code == _SQLITE_CANTOPEN:
        return ProfileFileError("open", path, "it, or its -wal/-shm file beside it, cannot be opened")
    if code == _SQLITE_PERM:
        return ProfileFileError("open", path, "permission denied")
    if code == _SQLITE_IOERR:
        return ProfileFileError("read or write", path, "input/output error (a failing or full disk)")
    return None


def _mapped(error: sqlcipher.DatabaseError, path: Path) -> StorageError:
    """The store's error for a SQLite failure; the SQL text never reaches the message."""
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    outside = _outside_cause(error, path)
    if outside is not None:
        return outside
    if code == _SQLITE_CORRUPT:
        return DatabaseCorruptError()
    if code == _SQLITE_NOTADB:
        return NotAnEnclaveDatabaseError("its database can no longer be read")
    name = getattr(error, "sqlite_errorname", type(error).__name__)
    return StorageError(f"The message store failed ({name}). Restart Enclave; if it persists, contact IT.")
