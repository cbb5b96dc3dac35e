"""Real relay stores for tests: a SQLite file, or a PostgreSQL schema of the test's own.

The stores are coroutine-based and PostgreSQL pools belong to one event loop, so tests
get stores that are not open yet and open them inside the one ``asyncio.run`` they make
(``run_with``). No pytest-asyncio.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from server.config import load_config
from server.store.base import RelayStore
from server.store.postgres import PostgresStore, quote_identifier
from server.store.sealing import MAILBOX_KEY_FILE, MailboxKeys
from server.store.sqlite import SQLiteStore

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
CONNECT_TIMEOUT_SECONDS = 5
SCHEMA_1 = [
    "CREATE TABLE accounts (account_id TEXT PRIMARY KEY, display_name TEXT NOT NULL,"
    " department TEXT NOT NULL, state TEXT NOT NULL, search_key TEXT NOT NULL)",
    "CREATE TABLE enrolment_codes (code_hash BYTEA PRIMARY KEY,"
    " account_id TEXT NOT NULL REFERENCES accounts(account_id), expires_at BIGINT NOT NULL,"
    " spent BOOLEAN NOT NULL DEFAULT FALSE)",
    "CREATE TABLE devices (device_id BIGINT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES"
    " accounts(account_id), identity_key BYTEA NOT NULL UNIQUE, signed_prekey_id BIGINT NOT NULL,"
    " signed_prekey BYTEA NOT NULL, signed_prekey_signature BYTEA NOT NULL,"
    " revoked BOOLEAN NOT NULL DEFAULT FALSE)",
]
"""Tables of a relay database of schema 1, from before issue 12: the codes the relay issued,
and devices whose certificates it signed (no certificate column). In SQL both backends take;
the SQLite backend's version is ``PRAGMA user_version``, the PostgreSQL one's a
``schema_version`` row."""

SQLITE_PLAIN_ATTACHMENTS = [
    "DROP TABLE attachment_chunks",
    "DROP TABLE attachments",
    "CREATE TABLE attachments (attachment_id TEXT PRIMARY KEY, blob BLOB NOT NULL,"
    " expires_at INTEGER NOT NULL)",
    "CREATE INDEX attachments_expiry ON attachments(expires_at)",
]
POSTGRES_PLAIN_ATTACHMENTS = [
    "DROP TABLE attachment_chunks",
    "DROP TABLE attachments",
    "CREATE TABLE attachments (attachment_id TEXT PRIMARY KEY, blob BYTEA NOT NULL,"
    " expires_at BIGINT NOT NULL)",
    "CREATE INDEX attachments_expiry ON attachments(expires_at)",
]
"""The attachments table of every schema before SQLite 6 and PostgreSQL 7: one row, in clear, per blob."""
SQLITE_SCHEMA_3_MAILBOX = [
    *SQLITE_PLAIN_ATTACHMENTS,
    "DROP TABLE delivery_keys",
    "DROP TABLE mailbox",
    "CREATE TABLE mailbox (sequence INTEGER PRIMARY KEY AUTOINCREMENT, device_id INTEGER NOT NULL,"
    " envelope_id BLOB NOT NULL, blob BLOB NOT NULL, expires_at INTEGER NOT NULL,"
    " UNIQUE (device_id, envelope_id))",
    "CREATE INDEX mailbox_device ON mailbox(device_id, sequence)",
    "CREATE INDEX mailbox_expiry ON mailbox(expires_at)",
    "PRAGMA user_version = 3",
]
POSTGRES_SCHEMA_3_MAILBOX = [
    *POSTGRES_PLAIN_ATTACHMENTS,
    "DROP TABLE delivery_keys",
    "DROP TABLE mailbox",
    "CREATE TABLE mailbox (sequence BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " device_id BIGINT NOT NULL, envelope_id BYTEA NOT NULL, blob BYTEA NOT NULL,"
    " expires_at BIGINT NOT NULL, UNIQUE (device_id, envelope_id))",
    "CREATE INDEX mailbox_device ON mailbox(device_id, sequence)",
    "CREATE INDEX mailbox_expiry ON mailbox(expires_at)",
    "UPDATE schema_version SET version = 3",
]
"""A schema-4 database turned back into schema 3 (empty mailboxes): one relay-wide sequence."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Waiting:
    """A waiting envelope as a seizure of the relay's database and data folder reads it."""

    device_id: int
    sequence: int
    envelope_id: bytes
    blob: bytes
    expires_at: int


class StoreBackend(ABC):
    """One backend's database for one test: new stores on it, and raw SQL behind their back."""

    name: str

    @abstractmethod
    async def waiting(self) -> list[Waiting]:
        """Every mailbox row, read behind the store's back (on PostgreSQL opened with the key file)."""

    @abstractmethod
    def new_store(self) -> RelayStore:
        """A store on this test's database, not yet open (a second one is a second relay process)."""

    @abstractmethod
    async def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one statement directly on the database (``$1``-style parameters), committed."""

    @abstractmethod
    async def columns(self, table: str) -> list[str]:
        """The names of ``table``'s columns, in their order."""

    @abstractmethod
    async def _create_schema_1(self) -> None:
        """Create ``SCHEMA_1``'s tables, marked as schema 1, in this test's empty database."""

    async def write_schema_1(self) -> None:
        """Make this test's database one that a relay of schema 1 left: an account and its device."""
        await self._create_schema_1()
        await self.sql("INSERT INTO accounts VALUES ('old.user', 'Old User', 'Tests', 'active', 'old.user')")
        await self.sql(
            "INSERT INTO devices VALUES (1, 'old.user', $1, 1, $2, $3, FALSE)",
            bytes(32),
            bytes(32),
            bytes(64),
        )

    async def write_schema_3_mailbox(self) -> None:
        """Turn this test's database (of the current schema, mailboxes empty) into one of schema 3,
        whose mailbox rows share one relay-wide ``sequence`` (insert rows without it)."""
        downgrade = SQLITE_SCHEMA_3_MAILBOX if self.name == "sqlite" else POSTGRES_SCHEMA_3_MAILBOX
        for statement in downgrade:
            await self.sql(statement)

    async def write_plain_attachments(self) -> None:
        """Turn this test's database (of the current schema, no attachments) into one of the schema
        before (SQLite 5, PostgreSQL 6), whose attachments are rows in clear (insert them)."""
        if self.name == "sqlite":
            for statement in [*SQLITE_PLAIN_ATTACHMENTS, "PRAGMA user_version = 5"]:
                await self.sql(statement)
        else:
            for statement in [*POSTGRES_PLAIN_ATTACHMENTS, "UPDATE schema_version SET version = 6"]:
                await self.sql(statement)

    @abstractmethod
    async def tables(self) -> list[str]:
        """The names of the relay's tables in this database, sorted."""

    async def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, each table's rows in one order: equal snapshots taken
        before and after an operation show that it changed nothing in the database."""
        return {
            table: sorted(await self.sql(f"SELECT * FROM {table}"), key=repr) for table in await self.tables()
        }


class SQLiteBackend(StoreBackend):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def new_store(self) -> RelayStore:
        return SQLiteStore(self.path)

    async def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.path)
        try:
            with db:
                return db.execute(re.sub(r"\$(\d+)", r"?\1", statement), args).fetchall()
        finally:
            db.close()

    async def columns(self, table: str) -> list[str]:
        return [row[1] for row in await self.sql("SELECT * FROM pragma_table_info($1)", table)]

    async def waiting(self) -> list[Waiting]:
        rows = await self.sql("SELECT device_id, sequence, envelope_id, blob, expires_at FROM mailbox")
        return [Waiting(row[0], row[1], bytes(row[2]), bytes(row[3]), row[4]) for row in rows]

    async def _create_schema_1(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path)
        try:
            with db:
                for statement in SCHEMA_1:
                    db.execute(statement)
            db.execute("PRAGMA user_version = 1")
        finally:
            db.close()

    async def tables(self) -> list[str]:
        rows = await self.sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
        return [row[0] for row in rows]


class PostgresBackend(StoreBackend):
    name = "postgres"

    def __init__(self, dsn: str, schema: str, key_file: Path) -> None:
        """``key_file``: the relays' mailbox key file (one copy, as every relay of a deployment has)."""
        self.dsn = dsn
        self.schema = schema
        self.key_file = key_file

    def new_store(self) -> RelayStore:
        return PostgresStore(self.dsn, self.schema, MailboxKeys(self.key_file))

    async def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(
            self.dsn, timeout=CONNECT_TIMEOUT_SECONDS, server_settings={"search_path": self.schema}
        )
        try:
            return [tuple(row) for row in await connection.fetch(statement, *args)]
        finally:
            await connection.close()

    async def columns(self, table: str) -> list[str]:
        rows = await self.sql(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            self.schema,
            table,
        )
        return [row[0] for row in rows]

    async def waiting(self) -> list[Waiting]:
        keys = {key.epoch: key for key in MailboxKeys(self.key_file).kept()}
        waiting = []
        for tag, sequence, epoch, sealed in await self.sql(
            "SELECT mailbox_tag, sequence, epoch, sealed FROM mailbox"
        ):
            opened = keys[epoch].open(tag=bytes(tag), sealed=bytes(sealed))
            waiting.append(
                Waiting(opened.device_id, sequence, opened.envelope_id, opened.envelope, opened.expires_at)
            )
        return waiting

    async def _create_schema_1(self) -> None:
        connection = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            async with connection.transaction():
                await connection.execute(f"CREATE SCHEMA {quote_identifier(self.schema)}")
                await connection.execute(f"SET LOCAL search_path TO {quote_identifier(self.schema)}")
                await connection.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                await connection.execute("INSERT INTO schema_version VALUES (1)")
                for statement in SCHEMA_1:
                    await connection.execute(statement)
        finally:
            await connection.close()

    async def tables(self) -> list[str]:
        rows = await self.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name",
            self.schema,
        )
        return [row[0] for row in rows]


def database_of(data_dir: Path) -> StoreBackend:
    """The database of the relay whose data folder is ``data_dir``, as its server.toml names it."""
    config = load_config(data_dir)
    if config.backend == "postgres":
        return PostgresBackend(config.postgres_dsn, config.postgres_schema, data_dir / MAILBOX_KEY_FILE)
    return SQLiteBackend(config.database_path)


async def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it answers."""
    try:
        connection = await asyncpg.connect(POSTGRES_DSN, timeout=CONNECT_TIMEOUT_SECONDS)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        return f"PostgreSQL is not reachable at {POSTGRES_DSN}: {e}"
    await connection.close()
    return None


async def drop_schema(schema: str) -> None:
    connection = await asyncpg.connect(POSTGRES_DSN, timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        await connection.execute(f"DROP SCHEMA IF EXISTS {quote_identifier(schema)} CASCADE")
    finally:
        await connection.close()


def run_with(store: RelayStore, body: Callable[[RelayStore], Awaitable[T]]) -> T:
    """Open ``store``, run ``body`` on it, close it: all in one event loop."""

    async def main() -> T:
        await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())
