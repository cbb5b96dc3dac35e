"""Client settings as text values by key (the services encode richer values themselves)."""

from __future__ import annotations

from storage.database import Database


class SettingsRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, key: str, default: str | None = None) -> str | None:
        value: str | None = self._db.scalar("SELECT value FROM settings WHERE key = ?", (key,))
        return default if value is None else value

    def set(self, key: str, value: str) -> None:
        with self._db.transaction():
            self._db.execute(
                """INSERT INTO settings (key, value)
                    VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value""",
                (key, value),
            )

    def delete(self, key: str) -> None:
        with self._db.transaction():
            self._db.execute("DELETE FROM settings WHERE key = ?", (key,))
