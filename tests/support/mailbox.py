"""What a relay on SQLite holds, read from its own database file (read-only): what it would still
hand to a device, and the devices it registered."""

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


def registered(relay: RelayProcess, account_id: str) -> list[tuple[int, bytes]]:
    """The device id and kept certificate of each device the relay registered for ``account_id``."""
    uri = f"file:{relay.data_dir / 'relay.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        query = "SELECT device_id, certificate FROM devices WHERE account_id = ? ORDER BY device_id"
        rows = db.execute(query, (account_id,)).fetchall()
    return [(int(device_id), bytes(certificate)) for device_id, certificate in rows]
