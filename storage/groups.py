"""The groups' changes this device holds, and each member's receipt of a group message.

A group's state is never stored: it is resolved from its changes (app/protocol/groupstate.py),
which are kept as their bytes, verified before they are added. Storage does not parse them
(it may not import app.protocol); the service that does is app/services/groups.py.

A member receipt says that one member's device told us it got (or read) one of our group
messages: the "read by 41 of 57" of a group message counts these rows. It goes with its
message.
"""

from __future__ import annotations

from collections.abc import Callable

from storage.database import Database
from storage.records import MessageStatus

Clock = Callable[[], float]

GROUP_ID_BYTES = 16
CHANGE_ID_BYTES = 32
"""As app/protocol/groupchange.py's, which storage may not import."""


class GroupChangeRepository:
    def __init__(self, db: Database, *, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def add(self, group_id: bytes, change_id: bytes, body: bytes) -> bool:
        """Keep a verified change; False if it was kept already."""
        if len(group_id) != GROUP_ID_BYTES or len(change_id) != CHANGE_ID_BYTES:
            raise ValueError("a group id is 16 bytes and a change id 32")
        with self._db.transaction():
            cursor = self._db.execute(
                """INSERT OR IGNORE INTO group_changes (change_id, group_id, body, received_at)
                    VALUES (?, ?, ?, ?)""",
                (change_id, group_id, body, self._clock()),
            )
        return cursor.rowcount == 1

    def of_group(self, group_id: bytes) -> list[bytes]:
        """Every kept change of the group, in the order they came."""
        rows = self._db.all("SELECT body FROM group_changes WHERE group_id = ? ORDER BY id", (group_id,))
        return [bytes(row[0]) for row in rows]


class MemberReceiptRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, message: int, account_id: str, status: MessageStatus, at: float) -> bool:
        """One member's receipt of a message (read supersedes delivered, never the reverse);
        whether it changed anything."""
        if status not in (MessageStatus.DELIVERED, MessageStatus.READ):
            raise ValueError("a member receipt is delivered or read")
        with self._db.transaction():
            cursor = self._db.execute(
                """INSERT INTO member_receipts (message, account_id, status, at) VALUES (?, ?, ?, ?)
                    ON CONFLICT (message, account_id) DO UPDATE SET status = excluded.status, at = excluded.at
                    WHERE member_receipts.status = 'delivered' AND excluded.status = 'read'""",
                (message, account_id, status.value, at),
            )
        return cursor.rowcount == 1

    def counts(self, message: int) -> tuple[int, int]:
        """(members who got it, members who read it) of one message; reading counts as getting."""
        row = self._db.one(
            "SELECT count(*), coalesce(sum(status = 'read'), 0) FROM member_receipts WHERE message = ?",
            (message,),
        )
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def of_message(self, message: int) -> dict[str, MessageStatus]:
        rows = self._db.all("SELECT account_id, status FROM member_receipts WHERE message = ?", (message,))
        return {str(account): MessageStatus(status) for account, status in rows}
