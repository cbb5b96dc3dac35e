"""Receipts waiting for their random delay: recorded with what causes them, sealed when due.

A row names a stored message, the receipt's kind (``ReceiptType``'s value: 1 delivered, 2
read), the sender's device the receipt goes to and when it falls due. It is written in the
transaction that causes it (the receive transaction for a delivery receipt, marking read for
a read receipt) and removed in the transaction that seals its receipt, so a crash loses none
and never sends one twice.

A row goes with its message (foreign key, ``ON DELETE CASCADE``): a message deleted by the
user or with its conversation before its receipt left takes the row with it, and that receipt
never goes. A disappearing message's receipts are made due shortly before it expires
(app/services/receipts.py), so the sweep normally finds none left. The row names who wrote
to this device; a message that disappeared must leave nothing that does, and rows cannot
pile up for messages gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from storage.database import Database


@dataclass(frozen=True, slots=True)
class PendingReceipt:
    message: int
    """The message's row id in this store."""
    message_id: bytes
    """The message's protocol id, which the receipt names."""
    at: float
    """When it was delivered (received) or read here."""


class PendingReceiptRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, message: int, kind: int, account_id: str, device_id: int, due_at: float) -> bool:
        """Record a receipt to send at ``due_at``; False if one of that kind waits already."""
        with self._db.transaction():
            cursor = self._db.execute(
                """INSERT OR IGNORE INTO pending_receipts (message, kind, account_id, device_id, due_at)
                    VALUES (?, ?, ?, ?, ?)""",
                (message, kind, account_id, device_id, due_at),
            )
        return cursor.rowcount == 1

    def hasten(self, message: int, due_at: float) -> bool:
        """Make the message's waiting receipts due by ``due_at`` at the latest; whether any moved."""
        with self._db.transaction():
            cursor = self._db.execute(
                "UPDATE pending_receipts SET due_at = ? WHERE message = ? AND due_at > ?",
                (due_at, message, due_at),
            )
        return cursor.rowcount > 0

    def next_due(self) -> float | None:
        """The earliest due time of any waiting receipt (None: none waits)."""
        value: float | None = self._db.scalar("SELECT min(due_at) FROM pending_receipts")
        return value

    def due_devices(self, now: float) -> list[tuple[str, int, int]]:
        """(account, device, kind) of every device with a receipt of that kind due at ``now``."""
        rows = self._db.all(
            """SELECT account_id, device_id, kind FROM pending_receipts
                GROUP BY account_id, device_id, kind HAVING min(due_at) <= ?
                ORDER BY min(due_at)""",
            (now,),
        )
        return [(str(a), int(d), int(k)) for a, d, k in rows]

    def of_device(self, account_id: str, device_id: int, kind: int) -> list[PendingReceipt]:
        """Every waiting receipt of ``kind`` for the device, due or not, oldest first."""
        rows = self._db.all(
            """SELECT p.message, m.message_id,
                    coalesce(CASE p.kind WHEN 2 THEN m.read_at ELSE m.received_at END, p.due_at)
                FROM pending_receipts p JOIN messages m ON m.id = p.message
                WHERE p.account_id = ? AND p.device_id = ? AND p.kind = ?
                ORDER BY p.due_at, p.message""",
            (account_id, device_id, kind),
        )
        return [PendingReceipt(int(m), bytes(i), float(at)) for m, i, at in rows]

    def remove(self, messages: Iterable[int], kind: int) -> int:
        """Drop the receipts of ``kind`` for these messages (sealed, or never to be); how many."""
        removed = 0
        with self._db.transaction():
            for message in messages:
                removed += self._db.execute(
                    "DELETE FROM pending_receipts WHERE message = ? AND kind = ?", (message, kind)
                ).rowcount
        return removed

    def count(self) -> int:
        total: int = self._db.scalar("SELECT count(*) FROM pending_receipts")
        return total
