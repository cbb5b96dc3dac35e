"""Conversations (direct, group, secret), their members, timer and classification label.

A secret chat always has a timer (also a CHECK in the schema), and its kind never
changes: whether its messages enter the search index is decided from it when they are
stored. It also always has a secret id, the 16 bytes both devices name it by in the
protocol, and may be bound to one peer device; other kinds have neither (also triggers
in the schema, as ALTER TABLE could not add a CHECK).
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

SECRET_ID_BYTES = 16
"""As ``app.protocol.content.SECRET_ID_BYTES``, which storage may not import."""


def _conversation(row: Sequence[Any]) -> Conversation:
    return Conversation(row[0], ConversationKind(row[1]), *row[2:])


def _check_timer(kind: ConversationKind, timer_seconds: int) -> None:
    if not 0 <= timer_seconds <= MAX_TIMER_SECONDS:
        raise ValueError(f"a timer is 0..{MAX_TIMER_SECONDS} seconds")
    if kind is ConversationKind.SECRET and timer_seconds == 0:
        raise InvalidTransitionError("a secret chat always has a disappearing-message timer")


def _check_secret(kind: ConversationKind, secret_id: bytes | None, peer_device: int | None) -> None:
    if kind is ConversationKind.SECRET:
        if secret_id is None or len(secret_id) != SECRET_ID_BYTES:
            raise ValueError(f"a secret chat needs a {SECRET_ID_BYTES}-byte secret id")
    elif secret_id is not None or peer_device is not None:
        raise ValueError("only a secret chat has a secret id or a peer device")


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
        secret_id: bytes | None = None,
        peer_device: int | None = None,
    ) -> Conversation:
        """A new conversation: direct and secret ones name a peer, a group names its group id.

        A secret chat also names its secret id and, usually, the one peer device it is bound to.
        """
        if (kind is ConversationKind.GROUP) != (group_id is not None) or (group_id is None) == (
            peer_account_id is None
        ):
            raise ValueError("a group conversation needs a group id; a direct or secret one a peer")
        _check_secret(kind, secret_id, peer_device)
        _check_timer(kind, timer_seconds)
        with self._db.transaction():
            row = self._db.one(
                """INSERT INTO conversations (kind, peer_account_id, group_id, title, timer_seconds,
                        classification, created_at, secret_id, peer_device)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    RETURNING id, kind, peer_account_id, group_id, title, timer_seconds, classification,
                        created_at, secret_id, peer_device""",
                (
                    kind.value,
                    peer_account_id,
                    group_id,
                    title,
                    timer_seconds,
                    classification,
                    self._clock(),
                    secret_id,
                    peer_device,
                ),
            )
        if row is None:
            raise NotFoundError("the conversation was not recorded")
        return _conversation(row)

    def get(self, id: int) -> Conversation:
        row = self._db.one(
            """SELECT id, kind, peer_account_id, group_id, title, timer_seconds, classification, created_at,
                    secret_id, peer_device
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
            """SELECT id, kind, peer_account_id, group_id, title, timer_seconds, classification, created_at,
                    secret_id, peer_device
                FROM conversations WHERE peer_account_id = ? AND kind = ? ORDER BY id""",
            (peer_account_id, kind.value),
        )
        return [_conversation(row) for row in rows]

    def find_group(self, group_id: bytes) -> Conversation | None:
        row = self._db.one(
            """SELECT id, kind, peer_account_id, group_id, title, timer_seconds, classification, created_at,
                    secret_id, peer_device
                FROM conversations WHERE group_id = ?""",
            (group_id,),
        )
        return None if row is None else _conversation(row)

    def find_secret(self, secret_id: bytes) -> Conversation | None:
        """The secret chat a received message's secret id names, if this device has it."""
        row = self._db.one(
            """SELECT id, kind, peer_account_id, group_id, title, timer_seconds, classification, created_at,
                    secret_id, peer_device
                FROM conversations WHERE secret_id = ?""",
            (secret_id,),
        )
        return None if row is None else _conversation(row)

    def list(self) -> list[Conversation]:
        return [
            _conversation(row)
            for row in self._db.all(
                """SELECT id, kind, peer_account_id, group_id, title, timer_seconds, classification,
                    created_at, secret_id, peer_device FROM conversations ORDER BY id"""
            )
        ]

    def set_timer(self, id: int, timer_seconds: int) -> Conversation:
        """Change the disappearing-message timer for messages stored from now on."""
        with self._db.transaction():
            _check_timer(self.get(id).kind, timer_seconds)
            self._db.execute("UPDATE conversations SET timer_seconds = ? WHERE id = ?", (timer_seconds, id))
            return self.get(id)

    def set_title(self, id: int, title: str) -> Conversation:
        """A group's name as its state says (a direct conversation follows its peer: ``rename_peer``)."""
        with self._db.transaction():
            self.get(id)
            self._db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, id))
            return self.get(id)

    def set_classification(self, id: int, label: str) -> Conversation:
        with self._db.transaction():
            self.get(id)
            self._db.execute("UPDATE conversations SET classification = ? WHERE id = ?", (label, id))
            return self.get(id)

    def rename_peer(self, peer_account_id: str, title: str) -> int:
        """Give every conversation with this peer a new title (the colleague's name); how many changed."""
        with self._db.transaction():
            return self._db.execute(
                "UPDATE conversations SET title = ? WHERE peer_account_id = ? AND title <> ?",
                (title, peer_account_id, title),
            ).rowcount

    def set_members(self, id: int, account_ids: Iterable[str]) -> None:
        with self._db.transaction():
            self.get(id)
            self._db.execute("DELETE FROM conversation_members WHERE conversation_id = ?", (id,))
            self._db.executemany(
                "INSERT INTO conversation_members (conversation_id, account_id) VALUES (?, ?)",
                [(id, account) for account in sorted(set(account_ids))],
            )

    def groups_with_member(self, account_id: str) -> list[Conversation]:
        """The group conversations whose members (as last set) include ``account_id``."""
        rows = self._db.all(
            """SELECT c.id, c.kind, c.peer_account_id, c.group_id, c.title, c.timer_seconds, c.classification,
                    c.created_at, c.secret_id, c.peer_device
                FROM conversations c JOIN conversation_members m ON m.conversation_id = c.id
                WHERE c.kind = 'group' AND m.account_id = ? ORDER BY c.id""",
            (account_id,),
        )
        return [_conversation(row) for row in rows]

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
