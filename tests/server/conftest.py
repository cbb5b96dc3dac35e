"""Fixtures of the server's tests: every store test runs on a real SQLite file and on a real
PostgreSQL schema of its own, dropped afterwards (tests/server/stores.py); the end-to-end
tests start real relays on each backend (tests/server/relays.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.store.base import RelayStore
from server.store.sealing import MAILBOX_KEY_FILE
from tests.conftest import require
from tests.server.relays import RelayFactory, relays
from tests.server.stores import (
    POSTGRES_DSN,
    PostgresBackend,
    SQLiteBackend,
    StoreBackend,
    drop_schema,
    postgres_problem,
)


@pytest.fixture(scope="session")
def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used here, or None; probed once per test session."""
    return asyncio.run(postgres_problem())


def _postgres(unavailable: str | None, folder: Path) -> Iterator[PostgresBackend]:
    """A schema of the test's own; ``folder`` holds the mailbox key file, as a relay's data folder."""
    require(unavailable is None, unavailable or "")
    schema = "t_" + uuid.uuid4().hex[:12]
    yield PostgresBackend(POSTGRES_DSN, schema, folder / MAILBOX_KEY_FILE)
    asyncio.run(drop_schema(schema))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_unavailable: str | None
) -> Iterator[StoreBackend]:
    """Each backend in turn; PostgreSQL skips (or fails under CI=true) when it is not running."""
    if request.param == "sqlite":
        yield SQLiteBackend(tmp_path / "relay.sqlite3")
    else:
        yield from _postgres(postgres_unavailable, tmp_path)


@pytest.fixture
def postgres(postgres_unavailable: str | None, tmp_path: Path) -> Iterator[PostgresBackend]:
    """PostgreSQL only: for what several relay processes sharing one schema do."""
    yield from _postgres(postgres_unavailable, tmp_path)


@pytest.fixture
def store(backend: StoreBackend) -> RelayStore:
    """A new store on this test's database, not yet open: hand it to ``run_with``."""
    return backend.new_store()


@pytest.fixture(params=["sqlite", "postgres"])
def start_relay(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_unavailable: str | None
) -> Iterator[RelayFactory]:
    """Start relays on this backend: ``start_relay(**settings)``; all are stopped afterwards.

    A ``data_dir`` already configured is reused (a second process on the same database).
    PostgreSQL skips, or fails under CI=true, when it is not running.
    """
    if request.param == "postgres":
        require(postgres_unavailable is None, postgres_unavailable or "")
    yield from relays(tmp_path, request.param)


@pytest.fixture
def start_postgres_relay(tmp_path: Path, postgres_unavailable: str | None) -> Iterator[RelayFactory]:
    """``start_relay`` on PostgreSQL only: for several relay processes sharing one database."""
    require(postgres_unavailable is None, postgres_unavailable or "")
    yield from relays(tmp_path, "postgres")
