"""Messages: storing, status, paging of history, full-text search, deletion and expiry.

History is paged by keyset on ``(sent_at, id)`` through the ``messages_history`` index,
so reading the newest page costs the same with ten thousand messages or a million; no
query here uses OFFSET. Search runs on the FTS5 index inside the encrypted database,
which never contains secret chats (their rows are stored with ``indexed = 0``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from app.base.limits import MAX_TIMER_SECONDS
from storage.attachments import AttachmentRepository
from storage.database import Database
from storage.errors import InvalidTransitionError, NotFoundError
from storage.records import ConversationKind, Message, MessageStatus, NewMessage, Page, PageCursor

log = logging.getLogger(__name__)

ExpiryListener = Callable[[float], None]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


_STATUS_RANK = {
    MessageStatus.PENDING: 0,
    MessageStatus.SENT: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.READ: 3,
}


def _message(row: Sequence[Any]) -> Message:
    return Message(
        id=row[0],
        conversation_id=row[1],
        sender=row[2],
        sender_device=row[3],
        message_id=row[4],
        body=row[5],
        status=MessageStatus(row[6]),
        sent_at=row[7],
        received_at=row[8],
        read_at=row[9],
        expires_at=row[10],
        expire_after=row[11],
    )


def fts_query(text: str) -> str | None:
    """The user's words as an FTS5 query: every word must appear, the last one as a prefix.

    Each word is quoted, so FTS5 operators typed by the user are searched for, not obeyed.
    """
    words = text.split()
    if not words:
        return None
    quoted = ['"' + word.replace('"', '""') + '"' for word in words]
    quoted[-1] += "*"
    return " ".join(quoted)


class MessageRepository:
    def __init__(self, db: Database, attachments: AttachmentRepository) -> None:
        self._db = db
        self._attachments = attachments
        self.expiry_listener: ExpiryListener | None = None
        """Told, after commit, of every expiry time written (the sweeper re-arms its timer)."""
        self.search_index_dirty = False
        """Indexed messages were deleted since the search index was last optimized."""

    def add(self, new: NewMessage) -> Message:
        """Store one message; returns it with its store id."""
        with self._db.transaction():
            cursor = self._db.execute(
                """INSERT INTO messages (conversation_id, sender, sender_device, message_id, body, status,
                        sent_at, received_at, expires_at, expire_after, indexed)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    RETURNING id, conversation_id, sender, sender_device, message_id, body, status,
                        sent_at, received_at, read_at, expires_at, expire_after""",
                self._row(new, self._indexed(new.conversation_id)),
            )
            message = _message(cursor.fetchone())
            self._note_expiry(new.expires_at)
        return message

    def add_many(self, news: Iterable[NewMessage]) -> int:
        """Store many messages in one transaction (importing history); returns how many."""
        indexed: dict[int, int] = {}
        earliest: float | None = None
        rows = []
        with self._db.transaction():
            for new in news:
                if new.conversation_id not in indexed:
                    indexed[new.conversation_id] = self._indexed(new.conversation_id)
                rows.append(self._row(new, indexed[new.conversation_id]))
                if new.expires_at is not None and (earliest is None or new.expires_at < earliest):
                    earliest = new.expires_at
            self._db.executemany(
                """INSERT INTO messages (conversation_id, sender, sender_device, message_id, body, status,
                        sent_at, received_at, expires_at, expire_after, indexed)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                rows,
            )
            self._note_expiry(earliest)
        return len(rows)

    @staticmethod
    def _row(new: NewMessage, indexed: int) -> tuple[Any, ...]:
        if not 0 <= new.expire_after <= MAX_TIMER_SECONDS:
            raise ValueError(f"a message's timer is 0..{MAX_TIMER_SECONDS} seconds")
        return (
            new.conversation_id,
            new.sender,
            new.sender_device,
            new.message_id,
            new.body,
            MessageStatus(new.status).value,
            new.sent_at,
            new.received_at,
            new.expires_at,
            new.expire_after,
            indexed,
        )

    def _indexed(self, conversation_id: int) -> int:
        kind = self._db.scalar("SELECT kind FROM conversations WHERE id = ?", (conversation_id,))
        if kind is None:
            raise NotFoundError(f"conversation {conversation_id} does not exist")
        return 0 if kind == ConversationKind.SECRET else 1

    def get(self, id: int) -> Message:
        row = self._db.one(
            """SELECT id, conversation_id, sender, sender_device, message_id, body, status, sent_at,
                    received_at, read_at, expires_at, expire_after
                FROM messages WHERE id = ?""",
            (id,),
        )
        if row is None:
            raise NotFoundError(f"message {id} does not exist (it may have expired)")
        return _message(row)

    def find(self, conversation_id: int, sender: str, message_id: bytes) -> Message | None:
        """The message a sender's protocol id names in a conversation (for receipts)."""
        row = self._db.one(
            """SELECT id, conversation_id, sender, sender_device, message_id, body, status, sent_at,
                    received_at, read_at, expires_at, expire_after
                FROM messages WHERE conversation_id = ? AND sender = ? AND message_id = ?""",
            (conversation_id, sender, message_id),
        )
        return None if row is None else _message(row)

    def page(
        self, conversation_id: int, *, before: PageCursor | None = None, limit: int = DEFAULT_PAGE_SIZE
    ) -> Page:
        """Up to ``limit`` messages older than ``before`` (the newest ones when it is None)."""
        if not 0 < limit <= MAX_PAGE_SIZE:
            raise ValueError(f"page size must be 1..{MAX_PAGE_SIZE}")
        if before is None:
            rows = self._db.all(
                """SELECT id, conversation_id, sender, sender_device, message_id, body, status, sent_at,
                    received_at, read_at, expires_at, expire_after
                    FROM messages WHERE conversation_id = ?
                    ORDER BY sent_at DESC, id DESC LIMIT ?""",
                (conversation_id, limit + 1),
            )
        else:
            rows = self._db.all(
                """SELECT id, conversation_id, sender, sender_device, message_id, body, status, sent_at,
                    received_at, read_at, expires_at, expire_after
                    FROM messages WHERE conversation_id = ? AND (sent_at, id) < (?, ?)
                    ORDER BY sent_at DESC, id DESC LIMIT ?""",
                (conversation_id, before.sent_at, before.id, limit + 1),
            )
        messages = tuple(_message(row) for row in rows[:limit])
        older = PageCursor(messages[-1].sent_at, messages[-1].id) if len(rows) > limit else None
        return Page(messages, older)

    def unread(self, conversation_id: int) -> list[Message]:
        """Received messages not yet read, oldest first: what marking the conversation read covers.

        The sender is compared with ``''`` (``OUTGOING``) written out, so that the partial
        index ``messages_unread`` applies and a long read history is not scanned.
        """
        rows = self._db.all(
            """SELECT id, conversation_id, sender, sender_device, message_id, body, status, sent_at,
                received_at, read_at, expires_at, expire_after
                FROM messages WHERE conversation_id = ? AND sender <> '' AND read_at IS NULL
                ORDER BY sent_at, id""",
            (conversation_id,),
        )
        return [_message(row) for row in rows]

    def waiting(self) -> list[Message]:
        """Messages this device wrote that the relay has not taken yet (pending), oldest first."""
        rows = self._db.all(
            """SELECT id, conversation_id, sender, sender_device, message_id, body, status, sent_at,
                received_at, read_at, expires_at, expire_after
                FROM messages WHERE status = 'pending' AND sender = ''
                ORDER BY sent_at, id""",
        )
        return [_message(row) for row in rows]

    def search(
        self,
        text: str,
        *,
        conversation_id: int | None = None,
        before_id: int | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[Message]:
        """Messages containing every word of ``text``, newest first; secret chats are never found.

        Page further back by passing the last result's ``id`` as ``before_id``.
        """
        query = fts_query(text)
        if query is None:
            return []
        if not 0 < limit <= MAX_PAGE_SIZE:
            raise ValueError(f"page size must be 1..{MAX_PAGE_SIZE}")
        rows = self._db.all(
            """SELECT m.id, m.conversation_id, m.sender, m.sender_device, m.message_id, m.body, m.status,
                    m.sent_at, m.received_at, m.read_at, m.expires_at, m.expire_after
                FROM messages_fts JOIN messages AS m ON m.id = messages_fts.rowid
                WHERE messages_fts MATCH ? AND messages_fts.rowid < ? AND (? IS NULL OR m.conversation_id = ?)
                ORDER BY messages_fts.rowid DESC LIMIT ?""",
            (
                query,
                before_id if before_id is not None else 2**63 - 1,
                conversation_id,
                conversation_id,
                limit,
            ),
        )
        return [_message(row) for row in rows]

    def set_status(self, id: int, status: MessageStatus, *, at: float | None = None) -> bool:
        """Move a message forward (pending → sent → delivered → read, pending ⇄ failed).

        A receipt that arrives late (delivered after read) changes nothing and returns
        False; a move that can never happen (read → failed) is an ``InvalidTransitionError``.
        ``at`` is recorded as ``read_at`` when the status becomes read.
        """
        with self._db.transaction():
            current = MessageStatus(self.get(id).status)
            if status == current:
                return False
            failing = MessageStatus.FAILED in (status, current)
            if failing and MessageStatus.PENDING not in (status, current):
                raise InvalidTransitionError(f"a message cannot go from {current} to {status}")
            if not failing and _STATUS_RANK[status] < _STATUS_RANK[current]:
                return False
            read_at = at if status == MessageStatus.READ else None
            self._db.execute(
                "UPDATE messages SET status = ?, read_at = coalesce(?, read_at) WHERE id = ?",
                (status.value, read_at, id),
            )
        return True

    def set_expiry(self, id: int, expires_at: float | None) -> None:
        """Start (or clear) a message's disappearing timer, e.g. when it is first read."""
        with self._db.transaction():
            cursor = self._db.execute("UPDATE messages SET expires_at = ? WHERE id = ?", (expires_at, id))
            if cursor.rowcount != 1:
                raise NotFoundError(f"message {id} does not exist (it may have expired)")
            self._note_expiry(expires_at)

    def delete(self, ids: Iterable[int]) -> list[int]:
        """Delete messages with their search entries and attachment files; returns the ids deleted.

        Call ``Store.scrub()`` afterwards (``Store.delete_messages`` does) so that no
        trace of their words stays in the search index or the WAL.
        """
        wanted = sorted(set(ids))
        if not wanted:
            return []
        chosen = (json.dumps(wanted),)
        with self._db.transaction():
            self._attachments.remove_files_on_commit("message_id IN (SELECT value FROM json_each(?))", chosen)
            rows = self._db.all(
                "DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?)) RETURNING id, indexed",
                chosen,
            )
        return self._deleted(rows)

    def delete_due(self, now: float) -> list[int]:
        """Delete every message whose expiry is at or before ``now``; returns their ids."""
        with self._db.transaction():
            self._attachments.remove_files_on_commit(
                "message_id IN (SELECT id FROM messages WHERE expires_at <= ?)", (now,)
            )
            rows = self._db.all("DELETE FROM messages WHERE expires_at <= ? RETURNING id, indexed", (now,))
        return self._deleted(rows)

    def _deleted(self, rows: list[tuple[Any, ...]]) -> list[int]:
        if any(indexed for _, indexed in rows):
            self.search_index_dirty = True
        return sorted(message_id for message_id, _ in rows)

    def next_expiry(self) -> float | None:
        """The earliest expiry of any stored message (from the expiry index), or None."""
        value: float | None = self._db.scalar(
            "SELECT min(expires_at) FROM messages WHERE expires_at IS NOT NULL"
        )
        return value

    def count(self, conversation_id: int | None = None) -> int:
        if conversation_id is None:
            total: int = self._db.scalar("SELECT count(*) FROM messages")
        else:
            total = self._db.scalar(
                "SELECT count(*) FROM messages WHERE conversation_id = ?", (conversation_id,)
            )
        return total

    def optimize_search_index(self) -> None:
        """Merge the search index into one segment, dropping every trace of deleted entries.

        FTS5's secure-delete mode removes a deleted row's terms from the index leaves at
        once, but a term that opened a leaf page stays in the ``messages_fts_idx`` b-tree
        as that page's separator until its segment is rewritten. tests/storage/
        test_raw_bytes.py shows both halves on the raw file; only this rewrite clears it.
        """
        with self._db.transaction():
            self._db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')")
        self.search_index_dirty = False

    def _note_expiry(self, expires_at: float | None) -> None:
        listener = self.expiry_listener
        if expires_at is not None and listener is not None:
            self._db.after_commit(lambda: listener(expires_at))
