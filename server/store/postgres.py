"""The PostgreSQL backend: several relay processes share one schema of one database.

The tables and their meaning are the SQLite backend's (server/store/sqlite.py); what
differs is what several processes writing at once need:

- ``enqueue`` takes a transaction-scoped advisory lock on the recipient's mailbox before
  it counts the mailbox against the quota, so two relays cannot both squeeze in the last
  envelope. The lock also numbers a mailbox's envelopes (one above its highest) distinctly
  and in the order they commit, whichever relay stores them.
- ``take_bundles`` deletes a one-time prekey with ``FOR UPDATE SKIP LOCKED``: every key
  goes to at most one caller, and concurrent callers take different keys, not turns.
- Appending to the key log locks its table, so leaves are numbered without a gap and no
  two share a number, whichever relay or ``enclave-admin`` appends.
- Wake-ups travel by ``NOTIFY`` on a channel named after the schema, sent inside the
  enqueue transaction, so a relay is woken only for an envelope that was committed. Each
  store ``LISTEN``s on a connection of its own (outside the pool) and hears its own
  notifications too: every wake-up, local or remote, takes that one path. The payload is
  the device id and nothing else. If that connection is lost, the store reconnects and
  then wakes every device that has mail, since notifications sent meanwhile are gone.

Deleting a row in PostgreSQL does not erase its bytes at once: they stay in the table's
pages until vacuum reclaims and new rows overwrite them, and in the write-ahead log
until its segments are recycled. So the mailbox keeps nothing in clear: each row is
sealed under an hourly key that every relay destroys once no row needs it, and names its
mailbox, envelope id and expiry only by tags under that key (server/store/sealing.py);
``drop_expired`` reseals older rows under the current key first. Every relay sharing the
schema must start from the same ``mailbox.key`` (docs/ADMIN.md §6).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import BinaryIO

import asyncpg

from app.protocol.frames import MAX_DEVICES_PER_ACCOUNT
from app.protocol.lifetime import EXPIRY_BUCKET_SECONDS, whole_day
from server.store.attachmentrows import AttachmentHeader
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
from server.store.sealing import SEAL_OVERHEAD, EpochKey, MailboxKeys, Opened

log = logging.getLogger(__name__)


SCHEMA_VERSION = 7
SCHEMA_BEFORE_KEY_LOG = 2
SCHEMA_BEFORE_MAILBOX_ORDER = 3
SCHEMA_BEFORE_SEALED_MAILBOX = 4
SCHEMA_BEFORE_DELIVERY_KEYS = 5
SCHEMA_BEFORE_SEALED_ATTACHMENTS = 6
UPGRADABLE = (
    SCHEMA_BEFORE_KEY_LOG,
    SCHEMA_BEFORE_MAILBOX_ORDER,
    SCHEMA_BEFORE_SEALED_MAILBOX,
    SCHEMA_BEFORE_DELIVERY_KEYS,
    SCHEMA_BEFORE_SEALED_ATTACHMENTS,
)
DELIVERY_KEYS_TABLE = """
CREATE TABLE delivery_keys (
    device_id BIGINT PRIMARY KEY REFERENCES devices(device_id),
    key_hash BYTEA NOT NULL
);
"""
"""SHA-256 of each device's delivery key: what an unidentified ``DELIVER`` must match (server/relay.py)."""
_APPEND = "INSERT INTO key_log (leaf, entry) VALUES ((SELECT COALESCE(MAX(leaf) + 1, 0) FROM key_log), $1)"
KEY_LOG_TABLE = "CREATE TABLE key_log (leaf BIGINT PRIMARY KEY CHECK (leaf >= 0), entry BYTEA NOT NULL);"
_BACKFILL = "SELECT certificate, account_id, device_id, revoked FROM devices ORDER BY device_id"
PLAIN_MAILBOX_TABLE = """
CREATE TABLE mailbox (
    device_id BIGINT NOT NULL,
    sequence BIGINT NOT NULL,
    envelope_id BYTEA NOT NULL,
    blob BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, sequence),
    UNIQUE (device_id, envelope_id)
);
CREATE INDEX mailbox_expiry ON mailbox(expires_at);
"""
"""The mailbox of schema 4: numbered per mailbox, in clear."""
MAILBOX_TABLE = """
CREATE TABLE mailbox (
    mailbox_tag BYTEA NOT NULL,
    sequence BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    envelope_tag BYTEA NOT NULL,
    expiry_tag BYTEA NOT NULL,
    sealed BYTEA NOT NULL,
    PRIMARY KEY (mailbox_tag, sequence)
);
CREATE INDEX mailbox_envelope ON mailbox(envelope_tag);
CREATE INDEX mailbox_expiry ON mailbox(expiry_tag);
CREATE INDEX mailbox_epoch ON mailbox(epoch);
"""
"""Every row sealed under its epoch's key, its mailbox, envelope id and expiry only tags under that
key (server/store/sealing.py). A mailbox's envelopes are numbered within it, one above its
highest: no relay-wide sequence orders one mailbox's envelopes against another's, and nothing
counts what a mailbox received once it is empty."""
_NEXT_SEQUENCE = "SELECT COALESCE(MAX(sequence), 0) + 1 FROM mailbox WHERE mailbox_tag = ANY($1::BYTEA[])"
_INSERT_ROW = (
    "INSERT INTO mailbox (mailbox_tag, sequence, epoch, envelope_tag, expiry_tag, sealed)"
    " VALUES ($1, $2, $3, $4, $5, $6)"
)
EXPIRY_HORIZON_DAYS = 800
"""How many days back ``drop_expired`` looks for expiry tags (further back, only a reseal finds them)."""
_NUMBER_MAILBOXES_APART = (
    "ALTER TABLE mailbox RENAME TO mailbox_schema_3",
    "DROP INDEX mailbox_device",
    "DROP INDEX mailbox_expiry",
    "ALTER TABLE mailbox_schema_3 RENAME CONSTRAINT mailbox_pkey TO mailbox_schema_3_pkey",
    "ALTER TABLE mailbox_schema_3 RENAME CONSTRAINT mailbox_device_id_envelope_id_key"
    " TO mailbox_schema_3_key",
    PLAIN_MAILBOX_TABLE,
    "INSERT INTO mailbox (device_id, sequence, envelope_id, blob, expires_at)"
    " SELECT device_id, ROW_NUMBER() OVER (PARTITION BY device_id ORDER BY sequence),"
    " envelope_id, blob, expires_at FROM mailbox_schema_3",
    "DROP TABLE mailbox_schema_3",
)
"""Schema 3 to 4: each mailbox's envelopes renumbered 1..n in their old order."""
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
COMMAND_TIMEOUT_SECONDS = 30.0
MAX_CHANNEL_BYTES = 63
"""PostgreSQL's identifier limit (NAMEDATALEN - 1), which channel names obey."""
RECONNECT_FIRST_DELAY_SECONDS = 0.1
RECONNECT_MAX_DELAY_SECONDS = 10.0

ATTACHMENT_TABLES = """
CREATE TABLE attachments (
    attachment_tag BYTEA PRIMARY KEY,
    epoch BIGINT NOT NULL,
    expiry_tag BYTEA NOT NULL,
    sealed BYTEA NOT NULL
);
CREATE INDEX attachments_expiry ON attachments(expiry_tag);
CREATE INDEX attachments_epoch ON attachments(epoch);
CREATE TABLE attachment_chunks (
    handle BYTEA NOT NULL,
    chunk INTEGER NOT NULL,
    sealed BYTEA NOT NULL,
    PRIMARY KEY (handle, chunk)
);
"""
"""Schema 7: a sealed header per attachment, found by tags under its epoch's key, and its chunks
sealed under a key of its own that only the header holds (server/store/attachmentrows.py)."""
_INSERT_ATTACHMENT = (
    "INSERT INTO attachments (attachment_tag, epoch, expiry_tag, sealed) VALUES ($1, $2, $3, $4)"
)
_INSERT_CHUNK = "INSERT INTO attachment_chunks (handle, chunk, sealed) VALUES ($1, $2, $3)"
SCHEMA = f"""
{KEY_LOG_TABLE}
CREATE TABLE schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE accounts (
    account_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    department TEXT NOT NULL,
    state TEXT NOT NULL,
    search_key TEXT NOT NULL
);
CREATE TABLE devices (
    device_id BIGINT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(account_id),
    identity_key BYTEA NOT NULL UNIQUE,
    signed_prekey_id BIGINT NOT NULL,
    signed_prekey BYTEA NOT NULL,
    signed_prekey_signature BYTEA NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    certificate BYTEA NOT NULL
);
CREATE INDEX devices_account ON devices(account_id);
CREATE TABLE one_time_prekeys (
    device_id BIGINT NOT NULL,
    key_id BIGINT NOT NULL,
    public BYTEA NOT NULL,
    PRIMARY KEY (device_id, key_id)
);
{MAILBOX_TABLE}
{ATTACHMENT_TABLES}
{DELIVERY_KEYS_TABLE}
"""

_SELECT_DEVICES = (
    "SELECT device_id, account_id, identity_key, signed_prekey_id, signed_prekey, signed_prekey_signature,"
    " revoked, certificate FROM devices"
)
_ACTIVE_DEVICES_OF_ACCOUNT = (
    _SELECT_DEVICES + " d WHERE account_id = $1 AND NOT revoked"  # noqa: S608 - constant text only
    " AND (SELECT state FROM accounts a WHERE a.account_id = d.account_id) = 'active' ORDER BY device_id"
)
_TAKE_PREKEY = (
    "DELETE FROM one_time_prekeys WHERE device_id = $1 AND key_id = (SELECT key_id FROM one_time_prekeys"
    " WHERE device_id = $1 ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING key_id, public"
)
"""The device's lowest one-time prekey; a key another transaction is taking is skipped, not waited for."""
_INSERT_PREKEYS = (
    "INSERT INTO one_time_prekeys (device_id, key_id, public)"
    " SELECT $1, key_id, public FROM unnest($2::BIGINT[], $3::BYTEA[]) AS keys(key_id, public)"
    " ON CONFLICT DO NOTHING"
)
_COUNT_PREKEYS = "SELECT COUNT(*) FROM one_time_prekeys WHERE device_id = $1"
_REVOKE_DEVICES = (
    "UPDATE devices SET revoked = TRUE WHERE device_id = ANY($1::BIGINT[]) AND NOT revoked"
    " RETURNING account_id, device_id"
)
_DELETE_PREKEYS = "DELETE FROM one_time_prekeys WHERE device_id = ANY($1::BIGINT[])"
_DELETE_DELIVERY_KEYS = "DELETE FROM delivery_keys WHERE device_id = ANY($1::BIGINT[])"
_DELETE_MAILBOXES = "DELETE FROM mailbox WHERE mailbox_tag = ANY($1::BYTEA[])"

_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
"""What asyncpg raises when the database refuses a statement or cannot be reached."""


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def wake_channel(schema: str) -> str:
    """The NOTIFY channel of the relays sharing ``schema``: lowercase, within 63 bytes."""
    channel = "enclave_wake_" + schema.lower()
    if len(channel.encode("utf-8")) > MAX_CHANNEL_BYTES:
        channel = "enclave_wake_" + hashlib.sha256(schema.encode("utf-8")).hexdigest()[:32]
    return channel


def _device(row: asyncpg.Record) -> Device:
    return Device(
        row["device_id"],
        row["account_id"],
        bytes(row["identity_key"]),
        row["signed_prekey_id"],
        bytes(row["signed_prekey"]),
        bytes(row["signed_prekey_signature"]),
        row["revoked"],
        bytes(row["certificate"]),
    )


def _account(row: asyncpg.Record) -> Account:
    return Account(row["account_id"], row["display_name"], row["department"], AccountState(row["state"]))


def _affected(status: str) -> int:
    """The row count of a command tag such as ``DELETE 3`` or ``UPDATE 1``."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresStore(RelayStore):
    def __init__(self, dsn: str, schema: str, keys: MailboxKeys) -> None:
        """``keys``: the chain of mailbox keys in this relay's data folder (server/store/sealing.py)."""
        self._dsn = dsn
        self._keys = keys
        self._schema = schema
        self._server_settings = {"search_path": quote_identifier(schema)}
        self._channel = wake_channel(schema)
        self._mailbox_lock_prefix = f"enclave:{schema}:mailbox:"
        self._pool: asyncpg.Pool | None = None
        self._subscribers: list[WakeUp] = []
        self._listener: asyncpg.Connection | None = None
        self._listener_lost: asyncio.Event | None = None
        self._keep_listening_task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StoreError("the store is not open")
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                yield connection
        except asyncpg.UniqueViolationError as e:
            raise DuplicateError(str(e)) from e
        except _FAILURES as e:
            raise StoreError(f"the relay database failed: {e}") from e

    async def open(self) -> None:
        self._keys.create_if_missing()
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=POOL_MIN_SIZE,
                max_size=POOL_MAX_SIZE,
                command_timeout=COMMAND_TIMEOUT_SECONDS,
                server_settings=self._server_settings,
            )
        except (*_FAILURES, ValueError) as e:
            raise StoreError(f"cannot connect to the relay's PostgreSQL database: {e}") from e
        try:
            await self._create_or_check_schema()
        except StoreError:
            await self._pool.close()
            self._pool = None
            raise

    async def _create_or_check_schema(self) -> None:
        """Make the schema and its tables if they are missing, else check their version.

        Relays starting at once on a fresh database serialise here on an advisory lock,
        so only the first one creates anything.
        """
        schema = quote_identifier(self._schema)
        async with self._transaction() as db:
            await db.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"enclave:{self._schema}"
            )
            await db.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await db.execute(f"SET LOCAL search_path TO {schema}")
            if await db.fetchval("SELECT to_regclass($1)", f"{schema}.schema_version") is None:
                await db.execute(SCHEMA)
                await db.execute("INSERT INTO schema_version VALUES ($1)", SCHEMA_VERSION)
                return
            version = await db.fetchval("SELECT MAX(version) FROM schema_version")
            if version in UPGRADABLE:
                if version == SCHEMA_BEFORE_KEY_LOG:
                    await db.execute(KEY_LOG_TABLE)
                    rows = await db.fetch(_BACKFILL)
                    for entry in backfill([tuple(row) for row in rows], int(time.time())):
                        await _append(db, entry)
                if version <= SCHEMA_BEFORE_MAILBOX_ORDER:
                    for statement in _NUMBER_MAILBOXES_APART:
                        await db.execute(statement)
                if version <= SCHEMA_BEFORE_SEALED_MAILBOX:
                    await self._seal_plain_mailbox(db)
                if version <= SCHEMA_BEFORE_DELIVERY_KEYS:
                    await db.execute(DELIVERY_KEYS_TABLE)  # schema 5 to 6
                if version <= SCHEMA_BEFORE_SEALED_ATTACHMENTS:
                    await self._seal_plain_attachments(db)
                await db.execute("INSERT INTO schema_version VALUES ($1)", SCHEMA_VERSION)
                return
        if version != SCHEMA_VERSION:
            raise StoreError(schema_refusal(version, SCHEMA_VERSION))

    async def _seal_plain_mailbox(self, db: asyncpg.Connection) -> None:
        """Schema 4 to 5: every waiting envelope sealed under the current key; the clear table dropped
        (its files go with it; what its rows left in the WAL is what schema 4 left)."""
        key = self._keys.current()
        await db.execute("ALTER TABLE mailbox RENAME TO mailbox_schema_4")
        await db.execute("ALTER INDEX mailbox_expiry RENAME TO mailbox_schema_4_expiry")
        await db.execute(
            "ALTER TABLE mailbox_schema_4 RENAME CONSTRAINT mailbox_pkey TO mailbox_schema_4_pkey"
        )
        await db.execute(MAILBOX_TABLE)
        rows = await db.fetch(
            "SELECT device_id, sequence, envelope_id, blob, expires_at FROM mailbox_schema_4"
        )
        for row in rows:
            await db.execute(
                _INSERT_ROW,
                *_row(
                    key,
                    row["sequence"],
                    Opened(
                        row["device_id"], bytes(row["envelope_id"]), row["expires_at"], bytes(row["blob"])
                    ),
                ),
            )
        await db.execute("DROP TABLE mailbox_schema_4")

    async def _seal_plain_attachments(self, db: asyncpg.Connection) -> None:
        """Schema 6 to 7: every attachment sealed, its blob its one chunk; the clear table dropped."""
        key = self._keys.current()
        await db.execute("ALTER TABLE attachments RENAME TO attachments_schema_6")
        await db.execute("ALTER INDEX attachments_expiry RENAME TO attachments_schema_6_expiry")
        await db.execute(
            "ALTER TABLE attachments_schema_6 RENAME CONSTRAINT attachments_pkey TO attachments_schema_6_pkey"
        )
        await db.execute(ATTACHMENT_TABLES)
        for row in await db.fetch("SELECT attachment_id, blob, expires_at FROM attachments_schema_6"):
            blob = bytes(row["blob"])
            header = AttachmentHeader.new(row["attachment_id"], row["expires_at"]).with_size(len(blob))
            await db.execute(_INSERT_CHUNK, header.handle, 0, header.seal_chunk(0, blob))
            await db.execute(_INSERT_ATTACHMENT, *_attachment_row(key, header))
        await db.execute("DROP TABLE attachments_schema_6")

    def _epochs(self) -> list[EpochKey]:
        """The keys a row may be under, oldest first (``MailboxKeys.current`` seals new ones)."""
        return self._keys.kept()

    def _mailbox_tags(self, device_ids: Sequence[int]) -> list[bytes]:
        return [key.mailbox_tag(device_id) for key in self._epochs() for device_id in device_ids]

    async def close(self) -> None:
        if self._keep_listening_task is not None:
            self._keep_listening_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keep_listening_task
            self._keep_listening_task = None
        if self._listener is not None:
            with contextlib.suppress(*_FAILURES):
                await self._listener.close()
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def create_account(
        self, account_id: str, display_name: str, department: str, *, admin_entry: bytes
    ) -> Account:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO accounts (account_id, display_name, department, state, search_key)"
                " VALUES ($1, $2, $3, $4, $5)",
                account_id,
                display_name,
                department,
                AccountState.ACTIVE.value,
                directory_search_key(account_id, display_name, department),
            )
            await _append(db, admin_entry)
        return Account(account_id, display_name, department, AccountState.ACTIVE)

    async def get_account(self, account_id: str) -> Account | None:
        async with self._transaction() as db:
            row = await db.fetchrow(
                "SELECT account_id, display_name, department, state FROM accounts WHERE account_id = $1",
                account_id,
            )
        return _account(row) if row else None

    async def account_ids(self) -> list[str]:
        async with self._transaction() as db:
            return [row["account_id"] for row in await db.fetch("SELECT account_id FROM accounts")]

    async def set_account_state(self, account_id: str, state: AccountState, *, admin_entry: bytes) -> bool:
        async with self._transaction() as db:
            if await db.fetchval("SELECT 1 FROM accounts WHERE account_id = $1", account_id) is None:
                return False
            await _append(db, admin_entry)
            changed = _affected(
                await db.execute(
                    "UPDATE accounts SET state = $1 WHERE account_id = $2", state.value, account_id
                )
            )
            if changed and state == AccountState.REVOKED:
                devices = [
                    row["device_id"]
                    for row in await db.fetch(
                        "SELECT device_id FROM devices WHERE account_id = $1", account_id
                    )
                ]
                await _revoke(db, devices, self._mailbox_tags(devices))
        return bool(changed)

    async def search_directory(self, query: str, limit: int) -> list[Account]:
        async with self._transaction() as db:
            rows = await db.fetch(
                "SELECT account_id, display_name, department, state FROM accounts"
                " WHERE state = 'active' AND strpos(search_key, $1) > 0"
                ' ORDER BY display_name COLLATE "C", account_id LIMIT $2',
                query.casefold(),
                limit,
            )
        return [_account(row) for row in rows]

    async def register(self, new: NewDevice) -> bool:
        async with self._transaction() as db:
            # FOR UPDATE: a revocation of the account (which updates its row) waits for this
            # registration, or this one sees the account revoked; and registrations on one
            # account take turns, so two cannot both count one device short of the limit.
            state = await db.fetchval(
                "SELECT state FROM accounts WHERE account_id = $1 FOR UPDATE", new.account_id
            )
            if state is None:
                raise AccountUnknownError(f"this relay has no account {new.account_id!r}")
            if state != AccountState.ACTIVE.value:
                raise AccountInactiveError(f"the account {new.account_id!r} is not active")
            row = await db.fetchrow(_SELECT_DEVICES + " WHERE device_id = $1", new.device_id)
            if row is not None:
                registered = registered_again(_device(row), new)
                await _replace_prekeys(db, new)
                return registered
            held = await db.fetchval(
                "SELECT COUNT(*) FROM devices WHERE account_id = $1 AND NOT revoked", new.account_id
            )
            if held >= MAX_DEVICES_PER_ACCOUNT:
                raise TooManyDevicesError(f"the account {new.account_id!r} has {held} devices")
            # ON CONFLICT DO NOTHING, then a look at who holds the id: the device id may be
            # another account's, registered meanwhile, which this account's lock does not stop.
            spk = new.signed_prekey
            inserted = await db.fetchval(
                "INSERT INTO devices (device_id, account_id, identity_key, signed_prekey_id, signed_prekey,"
                " signed_prekey_signature, certificate) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT DO NOTHING RETURNING device_id",
                new.device_id,
                new.account_id,
                new.identity_key,
                spk.key_id,
                spk.public,
                spk.signature,
                new.certificate,
            )
            if inserted is None:
                row = await db.fetchrow(_SELECT_DEVICES + " WHERE device_id = $1", new.device_id)
                if row is None:
                    raise DuplicateError("this identity key is another device's")
                registered = registered_again(_device(row), new)
                await _replace_prekeys(db, new)
                return registered
            await _insert_prekeys(db, new.device_id, list(new.one_time_prekeys))
            await _append(db, device_added(new.registered_at, new.certificate))
            return True

    async def set_certificate(self, device_id: int, certificate: bytes) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE devices SET certificate = $1 WHERE device_id = $2", certificate, device_id
            )

    async def get_device(self, device_id: int) -> Device | None:
        async with self._transaction() as db:
            row = await db.fetchrow(_SELECT_DEVICES + " WHERE device_id = $1", device_id)
        return _device(row) if row else None

    async def list_devices(self, account_id: str | None = None) -> list[Device]:
        async with self._transaction() as db:
            if account_id is None:
                rows = await db.fetch(_SELECT_DEVICES + " ORDER BY device_id")
            else:
                rows = await db.fetch(
                    _SELECT_DEVICES + " WHERE account_id = $1 ORDER BY device_id", account_id
                )
        return [_device(row) for row in rows]

    async def revoke_device(self, device_id: int, *, admin_entry: bytes) -> bool:
        async with self._transaction() as db:
            revoked = await db.fetchval("SELECT revoked FROM devices WHERE device_id = $1", device_id)
            if revoked is None or revoked:
                return False
            await _append(db, admin_entry)
            return await _revoke(db, [device_id], self._mailbox_tags([device_id])) > 0

    async def set_signed_prekey(self, device_id: int, signed_prekey: SignedPreKey) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE devices SET signed_prekey_id = $1, signed_prekey = $2, signed_prekey_signature = $3"
                " WHERE device_id = $4",
                signed_prekey.key_id,
                signed_prekey.public,
                signed_prekey.signature,
                device_id,
            )

    async def set_delivery_key(self, device_id: int, key_hash: bytes) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO delivery_keys VALUES ($1, $2)"
                " ON CONFLICT (device_id) DO UPDATE SET key_hash = excluded.key_hash",
                device_id,
                key_hash,
            )

    async def delivery_key(self, device_id: int) -> bytes | None:
        async with self._transaction() as db:
            key_hash = await db.fetchval("SELECT key_hash FROM delivery_keys WHERE device_id = $1", device_id)
        return bytes(key_hash) if key_hash is not None else None

    async def add_one_time_prekeys(self, device_id: int, keys: list[OneTimePreKey]) -> int:
        async with self._transaction() as db:
            await _insert_prekeys(db, device_id, keys)
            count: int = await db.fetchval(_COUNT_PREKEYS, device_id)
        return count

    async def count_one_time_prekeys(self, device_id: int) -> int:
        async with self._transaction() as db:
            count: int = await db.fetchval(_COUNT_PREKEYS, device_id)
        return count

    async def take_bundles(
        self, account_id: str, *, one_time_limit: int = MAX_DEVICES_PER_ACCOUNT
    ) -> list[tuple[Device, OneTimePreKey | None]]:
        bundles: list[tuple[Device, OneTimePreKey | None]] = []
        async with self._transaction() as db:
            rows = await db.fetch(_ACTIVE_DEVICES_OF_ACCOUNT, account_id)
            for index, row in enumerate(rows):
                device = _device(row)
                if index >= one_time_limit:
                    bundles.append((device, None))
                    continue
                taken = await db.fetchrow(_TAKE_PREKEY, device.device_id)
                one_time = OneTimePreKey(taken["key_id"], bytes(taken["public"])) if taken else None
                bundles.append((device, one_time))
        return bundles

    async def enqueue(
        self, device_id: int, envelope_id: bytes, blob: bytes, expires_at: int, quota: Quota
    ) -> None:
        async with self._transaction() as db:
            # A statement of its own: the count below must see what committed while we waited.
            await db.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                self._mailbox_lock_prefix + str(device_id),
            )
            # The share lock makes a revocation wait for this transaction, so its mailbox
            # delete sees the envelope; a revocation that came first is seen here.
            live = await db.fetchval(
                "SELECT 1 FROM devices WHERE device_id = $1 AND NOT revoked FOR SHARE", device_id
            )
            if live is None:
                raise DeviceGoneError("that device does not exist or was revoked")
            keys = self._epochs()
            tags = [key.mailbox_tag(device_id) for key in keys]
            repeated = await db.fetchval(
                "SELECT 1 FROM mailbox WHERE envelope_tag = ANY($1::BYTEA[])",
                [key.envelope_tag(device_id, envelope_id) for key in keys],
            )
            if repeated is not None:
                raise DuplicateError("the recipient's mailbox holds this envelope id already")
            count, size = await db.fetchrow(
                "SELECT COUNT(*), COALESCE(SUM(octet_length(sealed)), 0) FROM mailbox"
                " WHERE mailbox_tag = ANY($1::BYTEA[])",
                tags,
            )
            if count + 1 > quota.max_envelopes or size - count * SEAL_OVERHEAD + len(blob) > quota.max_bytes:
                raise MailboxFullError("the recipient's mailbox is full; try again after they have connected")
            # Drawn under the mailbox's lock, which is held until commit: numbers commit in order.
            sequence = await db.fetchval(_NEXT_SEQUENCE, tags)
            stored = Opened(device_id, envelope_id, expires_at, blob)
            await db.execute(_INSERT_ROW, *_row(self._keys.current(), sequence, stored))
            await db.execute("SELECT pg_notify($1, $2)", self._channel, str(device_id))

    async def pending(self, device_id: int, after: int, now: int, limit: int) -> list[QueuedEnvelope]:
        """Rows are opened here, so an expired one not swept yet is left out after reading; reading
        goes on past it until ``limit`` envelopes or the mailbox's end."""
        keys = {key.epoch: key for key in self._epochs()}
        tags = {key.mailbox_tag(device_id): key for key in keys.values()}
        pending: list[QueuedEnvelope] = []
        async with self._transaction() as db:
            while len(pending) < limit:
                wanted = limit - len(pending)
                rows = await db.fetch(
                    "SELECT mailbox_tag, sequence, sealed FROM mailbox WHERE mailbox_tag = ANY($1::BYTEA[])"
                    " AND sequence > $2 ORDER BY sequence LIMIT $3",
                    list(tags),
                    after,
                    wanted,
                )
                for row in rows:
                    tag = bytes(row["mailbox_tag"])
                    opened = tags[tag].open(tag=tag, sealed=bytes(row["sealed"]))
                    after = row["sequence"]
                    if opened.expires_at > now:
                        pending.append(QueuedEnvelope(after, opened.envelope_id, opened.envelope))
                if len(rows) < wanted:
                    break
        return pending

    async def acknowledge(self, device_id: int, envelope_ids: list[bytes]) -> int:
        keys = self._epochs()
        async with self._transaction() as db:
            return _affected(
                await db.execute(
                    "DELETE FROM mailbox WHERE envelope_tag = ANY($1::BYTEA[])",
                    [
                        key.envelope_tag(device_id, envelope_id)
                        for key in keys
                        for envelope_id in envelope_ids
                    ],
                )
            )

    async def drop_expired(self, now: int) -> int:
        """Reseal every row of an older epoch under the current key (dropping the expired ones), forget
        the keys no row needs, then delete what has expired under the keys kept."""
        keys = self._epochs()
        current = self._keys.current()
        by_epoch = {key.epoch: key for key in keys}
        unreadable = 0
        async with self._transaction() as db:
            envelopes = 0
            old = await db.fetch(
                "SELECT mailbox_tag, sequence, epoch, sealed FROM mailbox WHERE epoch < $1 FOR UPDATE",
                current.epoch,
            )
            for row in old:
                tag = bytes(row["mailbox_tag"])
                opened = _open(by_epoch, row)
                if opened is None:
                    unreadable += 1
                    continue
                await db.execute(
                    "DELETE FROM mailbox WHERE mailbox_tag = $1 AND sequence = $2", tag, row["sequence"]
                )
                if opened.expires_at <= now:
                    envelopes += 1
                    continue
                await db.execute(
                    _INSERT_ROW,
                    *_row(current, row["sequence"], opened),
                )
            due = [
                key.expiry_tag(day)
                for key in keys
                for day in range(
                    whole_day(now) - EXPIRY_HORIZON_DAYS * EXPIRY_BUCKET_SECONDS,
                    whole_day(now) + 1,
                    EXPIRY_BUCKET_SECONDS,
                )
            ]
            due += [key.expiry_tag(whole_day(now) + EXPIRY_BUCKET_SECONDS) for key in keys]
            candidates = await db.fetch(
                "SELECT mailbox_tag, sequence, epoch, sealed FROM mailbox"
                " WHERE expiry_tag = ANY($1::BYTEA[])",
                due,
            )
            for row in candidates:
                tag = bytes(row["mailbox_tag"])
                opened = _open(by_epoch, row)
                if opened is not None and opened.expires_at <= now:
                    await db.execute(
                        "DELETE FROM mailbox WHERE mailbox_tag = $1 AND sequence = $2", tag, row["sequence"]
                    )
                    envelopes += 1
            attachments, unreadable_attachments = await self._drop_attachments(db, now, due)
        unreadable += unreadable_attachments
        if unreadable:
            log.warning(
                "%d mailbox and attachment rows do not open with this relay's mailbox.key, left as they are;"
                " every relay on this database must have the same one (docs/ADMIN.md section 6)",
                unreadable,
            )
        # One epoch of slack: a relay whose clock is a little behind may still write under it.
        self._keys.forget_before(current.epoch - 1)
        return envelopes + attachments

    async def put_attachment(self, attachment_id: str, spool: BinaryIO, expires_at: int) -> int:
        """The spool is read off the event loop, a chunk at a time, inside the one transaction."""
        header = AttachmentHeader.new(attachment_id, expires_at)
        await asyncio.to_thread(spool.seek, 0)
        async with self._transaction() as db:
            taken = await db.fetchval(
                "SELECT 1 FROM attachments WHERE attachment_tag = ANY($1::BYTEA[])",
                [key.attachment_tag(attachment_id) for key in self._epochs()],
            )
            if taken is not None:
                raise DuplicateError("that attachment id is taken")
            size = index = 0
            while chunk := await asyncio.to_thread(spool.read, ATTACHMENT_CHUNK_BYTES):
                await db.execute(_INSERT_CHUNK, header.handle, index, header.seal_chunk(index, chunk))
                size += len(chunk)
                index += 1
            await db.execute(
                _INSERT_ATTACHMENT, *_attachment_row(self._keys.current(), header.with_size(size))
            )
        return size

    async def get_attachment(self, attachment_id: str, now: int) -> StoredAttachment | None:
        keys = {key.epoch: key for key in self._epochs()}
        async with self._transaction() as db:
            row = await db.fetchrow(
                "SELECT attachment_tag, epoch, sealed FROM attachments"
                " WHERE attachment_tag = ANY($1::BYTEA[])",
                [key.attachment_tag(attachment_id) for key in keys.values()],
            )
        header = _open_attachment(keys, row) if row is not None else None
        if header is None or header.expires_at <= now:
            return None

        async def fetch(index: int) -> bytes | None:
            async with self._transaction() as db:
                sealed = await db.fetchval(
                    "SELECT sealed FROM attachment_chunks WHERE handle = $1 AND chunk = $2",
                    header.handle,
                    index,
                )
            return header.open_chunk(index, bytes(sealed)) if sealed is not None else None

        return StoredAttachment(header.size, read_chunks(header.size, fetch))

    async def _drop_attachments(self, db: asyncpg.Connection, now: int, due: list[bytes]) -> tuple[int, int]:
        """Reseal the headers of older epochs under the current key and delete every expired
        attachment with its chunks; (how many went, how many headers no kept key opens)."""
        keys = self._epochs()
        current = self._keys.current()
        by_epoch = {key.epoch: key for key in keys}
        dropped = unreadable = 0
        old = await db.fetch(
            "SELECT attachment_tag, epoch, sealed FROM attachments WHERE epoch < $1 FOR UPDATE", current.epoch
        )
        for row in old:
            header = _open_attachment(by_epoch, row)
            if header is None:
                unreadable += 1
                continue
            await db.execute("DELETE FROM attachments WHERE attachment_tag = $1", row["attachment_tag"])
            if header.expires_at <= now:
                await db.execute("DELETE FROM attachment_chunks WHERE handle = $1", header.handle)
                dropped += 1
                continue
            await db.execute(_INSERT_ATTACHMENT, *_attachment_row(current, header))
        for row in await db.fetch(
            "SELECT attachment_tag, epoch, sealed FROM attachments WHERE expiry_tag = ANY($1::BYTEA[])", due
        ):
            header = _open_attachment(by_epoch, row)
            if header is not None and header.expires_at <= now:
                await db.execute("DELETE FROM attachments WHERE attachment_tag = $1", row["attachment_tag"])
                await db.execute("DELETE FROM attachment_chunks WHERE handle = $1", header.handle)
                dropped += 1
        return dropped, unreadable

    async def log_size(self) -> int:
        async with self._transaction() as db:
            return int(await db.fetchval("SELECT COUNT(*) FROM key_log"))

    async def log_entries(self, start: int, count: int) -> list[bytes]:
        async with self._transaction() as db:
            rows = await db.fetch(
                "SELECT entry FROM key_log WHERE leaf >= $1 AND leaf < $2 ORDER BY leaf", start, start + count
            )
        return [bytes(row["entry"]) for row in rows]

    async def append_admin_entry(self, admin_entry: bytes) -> None:
        async with self._transaction() as db:
            await _append(db, admin_entry)

    async def statistics(self) -> dict[str, int]:
        async with self._transaction() as db:
            row = await db.fetchrow(
                "SELECT"
                " (SELECT COUNT(*) FROM accounts) AS accounts,"
                " (SELECT COUNT(*) FROM accounts WHERE state = 'active') AS active_accounts,"
                " (SELECT COUNT(*) FROM devices WHERE NOT revoked) AS devices,"
                " (SELECT COUNT(*) FROM devices WHERE revoked) AS revoked_devices,"
                " (SELECT COUNT(*) FROM mailbox) AS queued_envelopes,"
                " (SELECT COUNT(*) FROM attachments) AS attachments,"
                " (SELECT COUNT(*) FROM one_time_prekeys) AS one_time_prekeys"
            )
        return {name: int(value) for name, value in row.items()}

    async def subscribe(self, wake_up: WakeUp) -> None:
        if self._pool is None:
            raise StoreError("the store is not open")
        self._subscribers.append(wake_up)
        if self._listener is None:
            await self._listen()
            self._keep_listening_task = asyncio.create_task(self._keep_listening())

    async def _listen(self) -> None:
        """Open the listening connection; ``_listener_lost`` is set when it goes away."""
        lost = asyncio.Event()
        try:
            listener = await asyncpg.connect(self._dsn, server_settings=self._server_settings)
            listener.add_termination_listener(lambda _connection: lost.set())
            await listener.add_listener(self._channel, self._on_notification)
        except (*_FAILURES, ValueError) as e:
            raise StoreError(f"cannot listen for wake-ups on the relay's PostgreSQL database: {e}") from e
        self._listener, self._listener_lost = listener, lost

    async def _keep_listening(self) -> None:
        """Listen again whenever the connection drops, then wake everyone who has mail."""
        while self._listener_lost is not None:
            await self._listener_lost.wait()
            log.warning("the wake-up connection to PostgreSQL was lost; reconnecting")
            delay = RECONNECT_FIRST_DELAY_SECONDS
            while True:
                try:
                    await self._listen()
                    break
                except StoreError:
                    await asyncio.sleep(delay)
                    delay = min(2 * delay, RECONNECT_MAX_DELAY_SECONDS)
            try:
                async with self._transaction() as db:
                    tags = {
                        bytes(row[0]) for row in await db.fetch("SELECT DISTINCT mailbox_tag FROM mailbox")
                    }
                    devices = [row[0] for row in await db.fetch("SELECT device_id FROM devices")]
            except StoreError:
                log.exception(
                    "could not list mailboxes after reconnecting; their devices wake on the next send"
                )
                continue
            keys = self._epochs()
            await self._wake([d for d in devices if any(key.mailbox_tag(d) in tags for key in keys)])

    async def _on_notification(
        self, connection: asyncpg.Connection, pid: int, channel: str, untrusted_payload: str
    ) -> None:
        """Any session of the database may notify; a payload that is not a device id is ignored."""
        try:
            device_id = int(untrusted_payload)
        except ValueError:
            log.debug("ignored a wake-up that is not a device id")
            return
        await self._wake([device_id])

    async def _wake(self, device_ids: Sequence[int]) -> None:
        for device_id in device_ids:
            for wake_up in self._subscribers:
                result = wake_up(device_id)
                if result is not None:
                    await result


async def _replace_prekeys(db: asyncpg.Connection, new: NewDevice) -> None:
    """The device's signed and one-time prekeys become ``new``'s (``register`` of the same device)."""
    spk = new.signed_prekey
    await db.execute(
        "UPDATE devices SET signed_prekey_id = $1, signed_prekey = $2, signed_prekey_signature = $3"
        " WHERE device_id = $4",
        spk.key_id,
        spk.public,
        spk.signature,
        new.device_id,
    )
    await db.execute("DELETE FROM one_time_prekeys WHERE device_id = $1", new.device_id)
    await db.execute("DELETE FROM delivery_keys WHERE device_id = $1", new.device_id)
    await _insert_prekeys(db, new.device_id, list(new.one_time_prekeys))


async def _insert_prekeys(db: asyncpg.Connection, device_id: int, keys: list[OneTimePreKey]) -> None:
    if keys:
        await db.execute(_INSERT_PREKEYS, device_id, [k.key_id for k in keys], [k.public for k in keys])


def _open(keys: dict[int, EpochKey], row: asyncpg.Record) -> Opened | None:
    """The envelope in a mailbox row, or None if no key kept opens it (another relay's chain)."""
    key = keys.get(row["epoch"])
    if key is None:
        return None
    try:
        return key.open(tag=bytes(row["mailbox_tag"]), sealed=bytes(row["sealed"]))
    except StoreError:
        return None


def _day_tag(key: EpochKey, expires_at: int) -> bytes:
    """The tag of the day boundary at or after ``expires_at``: what ``drop_expired`` finds it by."""
    return key.expiry_tag(whole_day(expires_at - 1) + EXPIRY_BUCKET_SECONDS)


def _attachment_row(key: EpochKey, header: AttachmentHeader) -> tuple[bytes, int, bytes, bytes]:
    """The columns of ``_INSERT_ATTACHMENT`` for ``header`` sealed under ``key``."""
    tag, sealed = header.seal(key)
    return tag, key.epoch, _day_tag(key, header.expires_at), sealed


def _open_attachment(keys: dict[int, EpochKey], row: asyncpg.Record) -> AttachmentHeader | None:
    """The header in an attachment row, or None if no key kept opens it (another relay's chain)."""
    key = keys.get(row["epoch"])
    if key is None:
        return None
    try:
        return AttachmentHeader.open(key, tag=bytes(row["attachment_tag"]), sealed=bytes(row["sealed"]))
    except StoreError:
        return None


def _row(key: EpochKey, sequence: int, envelope: Opened) -> tuple[bytes, int, int, bytes, bytes, bytes]:
    """The columns of ``_INSERT_ROW`` for ``envelope`` sealed under ``key``; the expiry's tag is of
    the day boundary at or after it, so ``drop_expired`` finds it by day."""
    return (
        key.mailbox_tag(envelope.device_id),
        sequence,
        key.epoch,
        key.envelope_tag(envelope.device_id, envelope.envelope_id),
        _day_tag(key, envelope.expires_at),
        key.seal(
            device_id=envelope.device_id,
            envelope_id=envelope.envelope_id,
            expires_at=envelope.expires_at,
            envelope=envelope.envelope,
        ),
    )


async def _revoke(db: asyncpg.Connection, device_ids: list[int], mailbox_tags: list[bytes]) -> int:
    """Mark the devices revoked (each in the key log) and delete their prekeys and their mailboxes
    (``mailbox_tags``: theirs under every key kept); how many devices were not revoked before."""
    revoked = await db.fetch(_REVOKE_DEVICES, device_ids)
    await db.execute(_DELETE_PREKEYS, device_ids)
    await db.execute(_DELETE_DELIVERY_KEYS, device_ids)
    await db.execute(_DELETE_MAILBOXES, mailbox_tags)
    now = int(time.time())
    for row in sorted(revoked, key=lambda row: row["device_id"]):
        await _append(db, device_revoked(now, row["account_id"], row["device_id"]))
    return len(revoked)


async def _append(db: asyncpg.Connection, entry: bytes) -> None:
    """Append ``entry`` as the key log's next leaf, in the caller's transaction; the table lock makes
    appenders take turns, so leaves have no gap and no two share a number."""
    await db.execute("LOCK TABLE key_log IN EXCLUSIVE MODE")
    await db.execute(
        _APPEND,
        entry,
    )
