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
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from server.config import load_config
from server.store.base import RelayStore
from server.store.postgres import PostgresStore, quote_identifier
from server.store.sqlite import SQLiteStore

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
CONNECT_TIMEOUT_SECONDS = 5

T = TypeVar("T")


class StoreBackend(ABC):
    """One backend's database for one test: new stores on it, and raw SQL behind their back."""

    name: str

    @abstractmethod
    def new_store(self) -> RelayStore:
        """A store on this test's database, not yet open (a second one is a second relay process)."""

    @abstractmethod
    async def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one statement directly on the database (``$1``-style parameters), committed."""

    @abstractmethod
    async def columns(self, table: str) -> list[str]:
        """The names of ``table``'s columns, in their order."""


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


class PostgresBackend(StoreBackend):
    name = "postgres"

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema

    def new_store(self) -> RelayStore:
        return PostgresStore(self.dsn, self.schema)

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


def database_of(data_dir: Path) -> StoreBackend:
    """The database of the relay whose data folder is ``data_dir``, as its server.toml names it."""
    config = load_config(data_dir)
    if config.backend == "postgres":
        return PostgresBackend(config.postgres_dsn, config.postgres_schema)
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
