"""The SQLite backend: one file in the data folder, WAL, for one relay process.

All statements run on one dedicated thread (SQLite connections are not shared across
threads), so the event loop never blocks on the disk. ``synchronous = FULL`` makes a
stored envelope survive power loss before the sender is told it was stored;
``secure_delete = ON`` and a truncating WAL checkpoint after each acknowledgement leave no
byte of a delivered envelope's id, recipient, expiry or content in the file, its free pages or
its WAL; the next sweep (every ``sweep_interval_seconds``) rebuilds the file, which also erases
the two-byte lengths that freed space keeps in its page (tests/server/test_seizure.py scans
the bytes of the file, its WAL and its shared-memory file).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, TypeVar

from app.protocol.frames import MAX_DEVICES_PER_ACCOUNT
from server.store.base import (
    ATTACHMENT_CHUNK_BYTES,
    Account,
    AccountInactiveError,
    AccountState,
    AccountUnknownError,
    Device,
    DeviceGoneError,
    DuplicateError,
    MailboxFullError,
    NewDevice,
    OneTimePreKey,
    QueuedEnvelope,
    Quota,
    RelayStore,
    SignedPreKey,
    StoredAttachment,
    StoreError,
    TooManyDevicesError,
    WakeUp,
    backfill,
    device_added,
    device_revoked,
    directory_search_key,
    read_chunks,
    registered_again,
    schema_refusal,
)

T = TypeVar("T")

SCHEMA_VERSION = 6
SCHEMA_BEFORE_KEY_LOG = 2
SCHEMA_BEFORE_MAILBOX_ORDER = 3
SCHEMA_BEFORE_DELIVERY_KEYS = 4
SCHEMA_BEFORE_CHUNKED_ATTACHMENTS = 5
UPGRADABLE = (
    SCHEMA_BEFORE_KEY_LOG,
    SCHEMA_BEFORE_MAILBOX_ORDER,
    SCHEMA_BEFORE_DELIVERY_KEYS,
    SCHEMA_BEFORE_CHUNKED_ATTACHMENTS,
)
_APPEND = "INSERT INTO key_log (leaf, entry) VALUES ((SELECT COALESCE(MAX(leaf) + 1, 0) FROM key_log), ?)"
KEY_LOG_TABLE = "CREATE TABLE key_log (leaf INTEGER PRIMARY KEY CHECK (leaf >= 0), entry BLOB NOT NULL);"
_BACKFILL = "SELECT certificate, account_id, device_id, revoked FROM devices ORDER BY rowid"
MAILBOX_TABLES = """
CREATE TABLE mailbox (
    device_id INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    envelope_id BLOB NOT NULL,
    blob BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, sequence),
    UNIQUE (device_id, envelope_id)
) WITHOUT ROWID;
CREATE INDEX mailbox_expiry ON mailbox(expires_at);
"""
"""A mailbox's envelopes are numbered within it, one above its highest (``_NEXT_SEQUENCE``), and the
table has no rowid: nothing in a row or its key orders one mailbox's envelopes against another's,
and nothing counts what a mailbox received once it is empty."""
_NEXT_SEQUENCE = "SELECT COALESCE(MAX(sequence), 0) + 1 FROM mailbox WHERE device_id = ?"
DELIVERY_KEYS_TABLE = """
CREATE TABLE delivery_keys (
    device_id INTEGER PRIMARY KEY REFERENCES devices(device_id),
    key_hash BLOB NOT NULL
);
"""
"""SHA-256 of each device's delivery key: what an unidentified ``DELIVER`` must match (server/relay.py)."""
ATTACHMENT_TABLES = """
CREATE TABLE attachments (
    attachment_id TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX attachments_expiry ON attachments(expires_at);
CREATE TABLE attachment_chunks (
    attachment_id TEXT NOT NULL REFERENCES attachments(attachment_id) ON DELETE CASCADE,
    chunk INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (attachment_id, chunk)
);
"""
"""An attachment's size and expiry, and its bytes in ``ATTACHMENT_CHUNK_BYTES`` pieces (schema 6)."""
SCHEMA = f"""
{KEY_LOG_TABLE}
CREATE TABLE accounts (
    account_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    department TEXT NOT NULL,
    state TEXT NOT NULL,
    search_key TEXT NOT NULL
);
CREATE TABLE devices (
    device_id INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(account_id),
    identity_key BLOB NOT NULL UNIQUE,
    signed_prekey_id INTEGER NOT NULL,
    signed_prekey BLOB NOT NULL,
    signed_prekey_signature BLOB NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    certificate BLOB NOT NULL
);
CREATE INDEX devices_account ON devices(account_id);
CREATE TABLE one_time_prekeys (
    device_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    public BLOB NOT NULL,
    PRIMARY KEY (device_id, key_id)
) WITHOUT ROWID;
{MAILBOX_TABLES}
{ATTACHMENT_TABLES}
{DELIVERY_KEYS_TABLE}
"""

_SELECT_DEVICES = (
    "SELECT device_id, account_id, identity_key, signed_prekey_id, signed_prekey, signed_prekey_signature,"
    " revoked, certificate FROM devices"
)
_DEVICE_BY_ID = _SELECT_DEVICES + " WHERE device_id = ?"
_ALL_DEVICES = _SELECT_DEVICES + " ORDER BY device_id"
_DEVICES_OF_ACCOUNT = _SELECT_DEVICES + " WHERE account_id = ? ORDER BY device_id"
_ACTIVE_DEVICES_OF_ACCOUNT = (
    _SELECT_DEVICES + " d WHERE account_id = ? AND revoked = 0"  # noqa: S608 - constant text only
    " AND (SELECT state FROM accounts a WHERE a.account_id = d.account_id) = 'active' ORDER BY device_id"
)


def _device(row: tuple) -> Device:
    return Device(
        row[0], row[1], bytes(row[2]), row[3], bytes(row[4]), bytes(row[5]), bool(row[6]), bytes(row[7])
    )


def _account(row: tuple) -> Account:
    return Account(row[0], row[1], row[2], AccountState(row[3]))


_SELECT_ACCOUNTS = "SELECT account_id, display_name, department, state FROM accounts"


class SQLiteStore(RelayStore):
    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-sqlite")
        self._db: sqlite3.Connection | None = None
        self._subscribers: list[WakeUp] = []
        self._freed = False
        """Envelopes were deleted since the last ``compact``: their pages still say how long they were."""

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._db is None:
                raise StoreError("the store is not open")
            try:
                with self._db:
                    return work(self._db)
            except sqlite3.IntegrityError as e:
                raise DuplicateError(str(e)) from e
            except sqlite3.DatabaseError as e:
                raise StoreError(f"the relay database failed: {e}") from e

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def open(self) -> None:
        def connect() -> None:
            self._path.touch(mode=0o600, exist_ok=True)
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA secure_delete = ON")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA busy_timeout = 5000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            elif version in UPGRADABLE:
                _upgrade(db, version)
            elif version != SCHEMA_VERSION:
                db.close()
                raise StoreError(schema_refusal(version, SCHEMA_VERSION))
            db.isolation_level = "DEFERRED"
            self._db = db

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, connect)
        except (sqlite3.DatabaseError, OSError) as e:
            raise StoreError(f"cannot open the relay database {self._path}: {e}") from e

    async def close(self) -> None:
        def disconnect() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, disconnect)
        self._executor.shutdown(wait=True)

    async def create_account(
        self, account_id: str, display_name: str, department: str, *, admin_entry: bytes
    ) -> Account:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO accounts VALUES (?, ?, ?, ?, ?)",
                (
                    account_id,
                    display_name,
                    department,
                    AccountState.ACTIVE.value,
                    directory_search_key(account_id, display_name, department),
                ),
            )
            _append(db, admin_entry)

        await self._run(work)
        return Account(account_id, display_name, department, AccountState.ACTIVE)

    async def get_account(self, account_id: str) -> Account | None:
        row = await self._run(
            lambda db: db.execute(_SELECT_ACCOUNTS + " WHERE account_id = ?", (account_id,)).fetchone()
        )
        return _account(row) if row else None

    async def account_ids(self) -> list[str]:
        rows = await self._run(lambda db: db.execute("SELECT account_id FROM accounts").fetchall())
        return [row[0] for row in rows]

    async def set_account_state(self, account_id: str, state: AccountState, *, admin_entry: bytes) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            if db.execute("SELECT 1 FROM accounts WHERE account_id = ?", (account_id,)).fetchone() is None:
                return False
            _append(db, admin_entry)
            changed = db.execute(
                "UPDATE accounts SET state = ? WHERE account_id = ?", (state.value, account_id)
            ).rowcount
            if changed and state == AccountState.REVOKED:
                for (device_id,) in db.execute(
                    "SELECT device_id FROM devices WHERE account_id = ?", (account_id,)
                ).fetchall():
                    _revoke(db, device_id)
            return bool(changed)

        return await self._run(work)

    async def search_directory(self, query: str, limit: int) -> list[Account]:
        rows = await self._run(
            lambda db: db.execute(
                _SELECT_ACCOUNTS + " WHERE state = 'active' AND instr(search_key, ?) > 0"
                " ORDER BY display_name LIMIT ?",
                (query.casefold(), limit),
            ).fetchall()
        )
        return [_account(row) for row in rows]

    async def register(self, new: NewDevice) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            state = db.execute(
                "SELECT state FROM accounts WHERE account_id = ?", (new.account_id,)
            ).fetchone()
            if state is None:
                raise AccountUnknownError(f"this relay has no account {new.account_id!r}")
            if state[0] != AccountState.ACTIVE.value:
                raise AccountInactiveError(f"the account {new.account_id!r} is not active")
            row = db.execute(_DEVICE_BY_ID, (new.device_id,)).fetchone()
            if row is not None:
                registered = registered_again(_device(row), new)
                _replace_prekeys(db, new)
                return registered
            (held,) = db.execute(
                "SELECT COUNT(*) FROM devices WHERE account_id = ? AND revoked = 0", (new.account_id,)
            ).fetchone()
            if held >= MAX_DEVICES_PER_ACCOUNT:
                raise TooManyDevicesError(f"the account {new.account_id!r} has {held} devices")
            spk = new.signed_prekey
            db.execute(
                "INSERT INTO devices (device_id, account_id, identity_key, signed_prekey_id, signed_prekey,"
                " signed_prekey_signature, certificate) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    new.device_id,
                    new.account_id,
                    new.identity_key,
                    spk.key_id,
                    spk.public,
                    spk.signature,
                    new.certificate,
                ),
            )
            db.executemany(
                "INSERT OR IGNORE INTO one_time_prekeys VALUES (?, ?, ?)",
                [(new.device_id, key.key_id, key.public) for key in new.one_time_prekeys],
            )
            _append(db, device_added(new.registered_at, new.certificate))
            return True

        return await self._run(work)

    async def set_certificate(self, device_id: int, certificate: bytes) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE devices SET certificate = ? WHERE device_id = ?", (certificate, device_id)
            )
        )

    async def get_device(self, device_id: int) -> Device | None:
        row = await self._run(lambda db: db.execute(_DEVICE_BY_ID, (device_id,)).fetchone())
        return _device(row) if row else None

    async def list_devices(self, account_id: str | None = None) -> list[Device]:
        def work(db: sqlite3.Connection) -> list[tuple]:
            if account_id is None:
                return db.execute(_ALL_DEVICES).fetchall()
            return db.execute(_DEVICES_OF_ACCOUNT, (account_id,)).fetchall()

        return [_device(row) for row in await self._run(work)]

    async def revoke_device(self, device_id: int, *, admin_entry: bytes) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT revoked FROM devices WHERE device_id = ?", (device_id,)).fetchone()
            if row is None or row[0]:
                return False
            _append(db, admin_entry)
            return _revoke(db, device_id)

        return await self._run(work)

    async def set_signed_prekey(self, device_id: int, signed_prekey: SignedPreKey) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE devices SET signed_prekey_id = ?, signed_prekey = ?, signed_prekey_signature = ?"
                " WHERE device_id = ?",
                (signed_prekey.key_id, signed_prekey.public, signed_prekey.signature, device_id),
            )
        )

    async def set_delivery_key(self, device_id: int, key_hash: bytes) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO delivery_keys VALUES (?, ?)"
                " ON CONFLICT (device_id) DO UPDATE SET key_hash = excluded.key_hash",
                (device_id, key_hash),
            )
        )

    async def delivery_key(self, device_id: int) -> bytes | None:
        def work(db: sqlite3.Connection) -> bytes | None:
            row = db.execute(
                "SELECT key_hash FROM delivery_keys WHERE device_id = ?", (device_id,)
            ).fetchone()
            return bytes(row[0]) if row is not None else None

        return await self._run(work)

    async def add_one_time_prekeys(self, device_id: int, keys: list[OneTimePreKey]) -> int:
        def work(db: sqlite3.Connection) -> int:
            db.executemany(
                "INSERT OR IGNORE INTO one_time_prekeys VALUES (?, ?, ?)",
                [(device_id, key.key_id, key.public) for key in keys],
            )
            return _count_prekeys(db, device_id)

        return await self._run(work)

    async def count_one_time_prekeys(self, device_id: int) -> int:
        return await self._run(lambda db: _count_prekeys(db, device_id))

    async def take_bundles(
        self, account_id: str, *, one_time_limit: int = MAX_DEVICES_PER_ACCOUNT
    ) -> list[tuple[Device, OneTimePreKey | None]]:
        def work(db: sqlite3.Connection) -> list[tuple[Device, OneTimePreKey | None]]:
            rows = db.execute(_ACTIVE_DEVICES_OF_ACCOUNT, (account_id,)).fetchall()
            bundles: list[tuple[Device, OneTimePreKey | None]] = []
            for index, row in enumerate(rows):
                device = _device(row)
                if index >= one_time_limit:
                    bundles.append((device, None))
                    continue
                taken = db.execute(
                    "DELETE FROM one_time_prekeys WHERE device_id = ?1 AND key_id = (SELECT MIN(key_id)"
                    " FROM one_time_prekeys WHERE device_id = ?1) RETURNING key_id, public",
                    (device.device_id,),
                ).fetchall()
                bundles.append((device, OneTimePreKey(taken[0][0], bytes(taken[0][1])) if taken else None))
            return bundles

        return await self._run(work)

    async def enqueue(
        self, device_id: int, envelope_id: bytes, blob: bytes, expires_at: int, quota: Quota
    ) -> None:
        def work(db: sqlite3.Connection) -> None:
            count, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(blob)), 0) FROM mailbox WHERE device_id = ?",
                (device_id,),
            ).fetchone()
            if count + 1 > quota.max_envelopes or size + len(blob) > quota.max_bytes:
                raise MailboxFullError("the recipient's mailbox is full; try again after they have connected")
            (sequence,) = db.execute(_NEXT_SEQUENCE, (device_id,)).fetchone()
            # One statement: a revocation either comes first (nothing is stored) or after
            # (its mailbox delete removes the envelope); never an envelope in a revoked mailbox.
            stored = db.execute(
                "INSERT INTO mailbox (device_id, sequence, envelope_id, blob, expires_at)"
                " SELECT ?, ?, ?, ?, ?"
                " WHERE EXISTS (SELECT 1 FROM devices WHERE device_id = ? AND revoked = 0)",
                (device_id, sequence, envelope_id, blob, expires_at, device_id),
            ).rowcount
            if not stored:
                raise DeviceGoneError("that device does not exist or was revoked")

        await self._run(work)
        for wake_up in self._subscribers:
            result = wake_up(device_id)
            if result is not None:
                await result

    async def pending(self, device_id: int, after: int, now: int, limit: int) -> list[QueuedEnvelope]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT sequence, envelope_id, blob FROM mailbox WHERE device_id = ? AND sequence > ?"
                " AND expires_at > ? ORDER BY sequence LIMIT ?",
                (device_id, after, now, limit),
            ).fetchall()
        )
        return [QueuedEnvelope(row[0], bytes(row[1]), bytes(row[2])) for row in rows]

    async def acknowledge(self, device_id: int, envelope_ids: list[bytes]) -> int:
        def work(db: sqlite3.Connection) -> int:
            return sum(
                db.execute(
                    "DELETE FROM mailbox WHERE device_id = ? AND envelope_id = ?", (device_id, envelope_id)
                ).rowcount
                for envelope_id in envelope_ids
            )

        deleted = await self._run(work)
        if deleted:
            self._freed = True
            await self.checkpoint()
        return deleted

    async def drop_expired(self, now: int) -> int:
        def work(db: sqlite3.Connection) -> int:
            envelopes = db.execute("DELETE FROM mailbox WHERE expires_at <= ?", (now,)).rowcount
            attachments = db.execute("DELETE FROM attachments WHERE expires_at <= ?", (now,)).rowcount
            return envelopes + attachments

        dropped = await self._run(work)
        if dropped or self._freed:
            await self.compact()
        else:
            await self.checkpoint()
        return dropped

    async def compact(self) -> None:
        """Rebuild the file (``VACUUM``) and truncate the WAL: ``secure_delete`` zeroes a deleted
        row, but its page keeps a free block's two-byte length, and a stale cell pointer, until
        the page is rebuilt; the sweep does this whenever envelopes went since the last one."""

        def work(db: sqlite3.Connection) -> None:
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

        await self._run(work)
        self._freed = False

    async def checkpoint(self) -> None:
        """Fold the WAL into the database and truncate it, so it keeps no deleted envelope: the WAL
        holds whole page images, the envelope's among them, until a checkpoint; ``secure_delete``
        has zeroed the row in the page it folds back."""

        await self._run(lambda db: db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())

    async def put_attachment(self, attachment_id: str, spool: BinaryIO, expires_at: int) -> int:
        """The spool is read on the store's thread, a chunk at a time, inside the one transaction."""

        def work(db: sqlite3.Connection) -> int:
            spool.seek(0)
            db.execute("INSERT INTO attachments VALUES (?, 0, ?)", (attachment_id, expires_at))
            size = 0
            for index, chunk in enumerate(iter(lambda: spool.read(ATTACHMENT_CHUNK_BYTES), b"")):
                db.execute("INSERT INTO attachment_chunks VALUES (?, ?, ?)", (attachment_id, index, chunk))
                size += len(chunk)
            db.execute("UPDATE attachments SET size = ? WHERE attachment_id = ?", (size, attachment_id))
            return size

        return await self._run(work)

    async def get_attachment(self, attachment_id: str, now: int) -> StoredAttachment | None:
        row = await self._run(
            lambda db: db.execute(
                "SELECT size FROM attachments WHERE attachment_id = ? AND expires_at > ?",
                (attachment_id, now),
            ).fetchone()
        )
        if row is None:
            return None

        async def fetch(index: int) -> bytes | None:
            found = await self._run(
                lambda db: db.execute(
                    "SELECT data FROM attachment_chunks WHERE attachment_id = ? AND chunk = ?",
                    (attachment_id, index),
                ).fetchone()
            )
            return bytes(found[0]) if found else None

        return StoredAttachment(row[0], read_chunks(row[0], fetch))

    async def log_size(self) -> int:
        return await self._run(lambda db: db.execute("SELECT COUNT(*) FROM key_log").fetchone()[0])

    async def log_entries(self, start: int, count: int) -> list[bytes]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT entry FROM key_log WHERE leaf >= ? AND leaf < ? ORDER BY leaf", (start, start + count)
            ).fetchall()
        )
        return [row[0] for row in rows]

    async def append_admin_entry(self, admin_entry: bytes) -> None:
        await self._run(lambda db: _append(db, admin_entry))

    async def statistics(self) -> dict[str, int]:
        def work(db: sqlite3.Connection) -> dict[str, int]:
            def one(sql: str) -> int:
                return int(db.execute(sql).fetchone()[0])

            return {
                "accounts": one("SELECT COUNT(*) FROM accounts"),
                "active_accounts": one("SELECT COUNT(*) FROM accounts WHERE state = 'active'"),
                "devices": one("SELECT COUNT(*) FROM devices WHERE revoked = 0"),
                "revoked_devices": one("SELECT COUNT(*) FROM devices WHERE revoked = 1"),
                "queued_envelopes": one("SELECT COUNT(*) FROM mailbox"),
                "attachments": one("SELECT COUNT(*) FROM attachments"),
                "one_time_prekeys": one("SELECT COUNT(*) FROM one_time_prekeys"),
            }

        return await self._run(work)

    async def subscribe(self, wake_up: WakeUp) -> None:
        self._subscribers.append(wake_up)


def _revoke(db: sqlite3.Connection, device_id: int) -> bool:
    changed = db.execute(
        "UPDATE devices SET revoked = 1 WHERE device_id = ? AND revoked = 0", (device_id,)
    ).rowcount
    db.execute("DELETE FROM one_time_prekeys WHERE device_id = ?", (device_id,))
    db.execute("DELETE FROM delivery_keys WHERE device_id = ?", (device_id,))
    db.execute("DELETE FROM mailbox WHERE device_id = ?", (device_id,))
    if changed:
        (account_id,) = db.execute(
            "SELECT account_id FROM devices WHERE device_id = ?", (device_id,)
        ).fetchone()
        _append(db, device_revoked(int(time.time()), account_id, device_id))
    return bool(changed)


def _append(db: sqlite3.Connection, entry: bytes) -> None:
    """Append ``entry`` as the key log's next leaf, in the caller's transaction."""
    db.execute(
        _APPEND,
        (entry,),
    )


def _upgrade(db: sqlite3.Connection, version: int) -> None:
    """Bring a database of an ``UPGRADABLE`` schema to ``SCHEMA_VERSION`` in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if version == SCHEMA_BEFORE_KEY_LOG:
            _add_key_log(db)
        if version <= SCHEMA_BEFORE_MAILBOX_ORDER:
            _number_mailboxes_apart(db)
        if version <= SCHEMA_BEFORE_DELIVERY_KEYS:
            db.execute(DELIVERY_KEYS_TABLE)  # schema 4 to 5
        if version <= SCHEMA_BEFORE_CHUNKED_ATTACHMENTS:
            _chunk_attachments(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _add_key_log(db: sqlite3.Connection) -> None:
    """Schema 2 to 3: the key log, holding every device registered so far."""
    db.execute(KEY_LOG_TABLE)
    for entry in backfill(db.execute(_BACKFILL).fetchall(), int(time.time())):
        _append(db, entry)


def _execute_each(db: sqlite3.Connection, statements: str) -> None:
    """Each ``;``-separated statement of ``statements`` inside the open transaction (``executescript``
    would commit it first)."""
    for statement in statements.split(";"):
        if statement.strip():
            db.execute(statement)


def _chunk_attachments(db: sqlite3.Connection) -> None:
    """Schema 5 to 6: each attachment's blob becomes its one chunk (``read_chunks`` takes a chunk of
    any size); the old table's pages are zeroed by ``secure_delete``."""
    db.execute("ALTER TABLE attachments RENAME TO attachments_schema_5")
    db.execute("DROP INDEX attachments_expiry")
    _execute_each(db, ATTACHMENT_TABLES)
    db.execute(
        "INSERT INTO attachments SELECT attachment_id, length(blob), expires_at FROM attachments_schema_5"
    )
    db.execute("INSERT INTO attachment_chunks SELECT attachment_id, 0, blob FROM attachments_schema_5")
    db.execute("DROP TABLE attachments_schema_5")


def _number_mailboxes_apart(db: sqlite3.Connection) -> None:
    """Schema 3 to 4: each mailbox's envelopes renumbered 1..n in their old order, and the one
    relay-wide sequence gone (the old table's pages are zeroed by ``secure_delete``)."""
    db.execute("ALTER TABLE mailbox RENAME TO mailbox_schema_3")
    db.execute("DROP INDEX mailbox_device")
    db.execute("DROP INDEX mailbox_expiry")
    _execute_each(db, MAILBOX_TABLES)
    db.execute(
        "INSERT INTO mailbox (device_id, sequence, envelope_id, blob, expires_at)"
        " SELECT device_id, ROW_NUMBER() OVER (PARTITION BY device_id ORDER BY sequence),"
        " envelope_id, blob, expires_at FROM mailbox_schema_3"
    )
    db.execute("DROP TABLE mailbox_schema_3")


def _replace_prekeys(db: sqlite3.Connection, new: NewDevice) -> None:
    """The device's signed and one-time prekeys become ``new``'s (``register`` of the same device)."""
    spk = new.signed_prekey
    db.execute(
        "UPDATE devices SET signed_prekey_id = ?, signed_prekey = ?, signed_prekey_signature = ?"
        " WHERE device_id = ?",
        (spk.key_id, spk.public, spk.signature, new.device_id),
    )
    db.execute("DELETE FROM one_time_prekeys WHERE device_id = ?", (new.device_id,))
    db.execute("DELETE FROM delivery_keys WHERE device_id = ?", (new.device_id,))
    db.executemany(
        "INSERT OR IGNORE INTO one_time_prekeys VALUES (?, ?, ?)",
        [(new.device_id, key.key_id, key.public) for key in new.one_time_prekeys],
    )


def _count_prekeys(db: sqlite3.Connection, device_id: int) -> int:
    return int(
        db.execute("SELECT COUNT(*) FROM one_time_prekeys WHERE device_id = ?", (device_id,)).fetchone()[0]
    )
