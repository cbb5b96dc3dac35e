"""Choose the relay's storage backend from its config."""

from __future__ import annotations

from server.config import ServerConfig
from server.store.base import RelayStore
from server.store.sqlite import SQLiteStore


def make_store(config: ServerConfig) -> RelayStore:
    if config.backend == "postgres":
        from server.store.postgres import PostgresStore  # noqa: PLC0415 - asyncpg only when asked for
        from server.store.sealing import MAILBOX_KEY_FILE, MailboxKeys  # noqa: PLC0415 - with it

        keys = MailboxKeys(config.data_dir / MAILBOX_KEY_FILE)
        return PostgresStore(config.postgres_dsn, config.postgres_schema, keys)
    return SQLiteStore(config.database_path)
