"""What a relay on SQLite would still hand to a device, read from its own database file (read-only)."""

from __future__ import annotations

import contextlib
import sqlite3
import time

from tests.support.relay import RelayProcess


def deliverable(relay: RelayProcess, device_id: int) -> int:
    """How many envelopes wait for ``device_id`` and have not expired."""
    uri = f"file:{relay.data_dir / 'relay.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        query = "SELECT count(*) FROM mailbox WHERE device_id = ? AND expires_at > ?"
        row = db.execute(query, (device_id, int(time.time()))).fetchone()
    return int(row[0])
