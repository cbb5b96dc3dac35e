"""Conversations (direct, group, secret), their members, timer and classification label.

A secret chat always has a timer (also a CHECK in the schema), and its kind never
changes: whether its messages enter the search index is decided from it when they are
stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from app.base.limits import MAX_TIMER_SECONDS
from storage.attachments import AttachmentRepository
from storage.database import Database
from storage.errors import InvalidTransitionError, NotFoundError
from storage.records import Conversation, ConversationKind

Clock = Callable[[], float]


def _conversation(row: Sequence[Any]) -> Conversation:
    return Conversation(row[0], ConversationKind(row[1]), *row[2:])


def _check_timer(kind: ConversationKind, timer_seconds: int) -> None:
    if not 0 <= timer_seconds <= MAX_TIMER_SECONDS:
        raise ValueError(f"a timer is 0..{MAX_TIMER_SECONDS} seconds")
    if kind is ConversationKind.SECRET and timer_seconds == 0:
        raise InvalidTransitionError("a secret chat always has a disappearing-message timer")


class ConversationRepository:
    def __init__(self, db: Database, attachments: AttachmentRepository, *, clock: Clock) -> None:
        self._db = db
        self._attachments = attachments
        self._clock = clock

    def create(
        self,
        kind: ConversationKind,
        *,
        peer_account_id: str | None = None,
        group_id: bytes | None = None,
        title: str = "",
        timer_seconds: int = 0,
        classification: str = "",
    ) -> Conversation:
        """A new conversation: direct and secret ones name a peer, a group names its group id."""
        if (kind is ConversationKind.GROUP) != (group_id is not None) or (group_id is None) == (
            peer_account_id is None
        ):
            raise ValueError("a group conversation needs a group id; a direct or secret one a peer")
        _check_timer(kind, timer_seconds)
        with self._db.transaction():
            row = self._db.one(
                """INSERT INTO conversations (kind, peer_account_id, group_id, title, timer_seconds,
                        classification, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    RETURNING id, kind, peer_account_id, group_id, title, timer_seconds, classification,
                        created_at""",
                (kind.value, peer_account_id, group_id, title, timer_seconds, classification, self._clock()),
            )
        if row is None:
            raise NotFoundError("the conversation was not recorded")
        return _conversation(row)

    def get(self, id: int) -> Conversation:
        row = self._db.one(
            """SELECT id, kind, peer_account_id, group_id, title, timer_seconds, classification, created_at
                FROM conversations WHERE id = ?""",
            (id,),
        )
        if row is None:
            raise NotFoundError(f"conversation {id} does not exist")
        return _conversation(row)

    def find_with_peer(
        self, peer_account_id: str, kind: ConversationKind = ConversationKind.DIRECT
    ) -> list[Conversation]:
        rows = self._db.all(
            """SELECT id, kind, peer_account_id, group_id, title, timer_seconds, classification, created_at
                FROM conversations WHERE peer_account_id = ? AND kind = ? ORDER BY id""",
            (peer_account_id, kind.value),
        )
        return [_conversation(row) for row in rows]

    def find_group(self, group_id: bytes) -> Conversation | None:
        row = self._db.one(
            """SELECT id, kind, peer_account_id, group_id, title, timer_seconds, classification, created_at
                FROM conversations WHERE group_id = ?""",
            (group_id,),
        )
        return None if row is None else _conversation(row)

    def list(self) -> list[Conversation]:
        return [
            _conversation(row)
            for row in self._db.all(
                """SELECT id, kind, peer_account_id, group_id, title, timer_seconds, classification,
                    created_at FROM conversations ORDER BY id"""
            )
        ]

    def set_timer(self, id: int, timer_seconds: int) -> Conversation:
        """Change the disappearing-message timer for messages stored from now on."""
        with self._db.transaction():
            _check_timer(self.get(id).kind, timer_seconds)
            self._db.execute("UPDATE conversations SET timer_seconds = ? WHERE id = ?", (timer_seconds, id))
            return self.get(id)

    def set_classification(self, id: int, label: str) -> Conversation:
        with self._db.transaction():
            self.get(id)
            self._db.execute("UPDATE conversations SET classification = ? WHERE id = ?", (label, id))
            return self.get(id)

    def set_members(self, id: int, account_ids: Iterable[str]) -> None:
        with self._db.transaction():
            self.get(id)
            self._db.execute("DELETE FROM conversation_members WHERE conversation_id = ?", (id,))
            self._db.executemany(
                "INSERT INTO conversation_members (conversation_id, account_id) VALUES (?, ?)",
                [(id, account) for account in sorted(set(account_ids))],
            )

    def members(self, id: int) -> list[str]:
        rows = self._db.all(
            "SELECT account_id FROM conversation_members WHERE conversation_id = ? ORDER BY account_id", (id,)
        )
        return [row[0] for row in rows]

    def delete(self, id: int) -> None:
        """Delete a conversation with all its messages, search entries and attachment files."""
        with self._db.transaction():
            self._attachments.remove_files_on_commit(
                "message_id IN (SELECT id FROM messages WHERE conversation_id = ?)", (id,)
            )
            if self._db.execute("DELETE FROM conversations WHERE id = ?", (id,)).rowcount != 1:
                raise NotFoundError(f"conversation {id} does not exist")
