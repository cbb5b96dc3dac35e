"""Messages: keyset paging, search without secret chats, status rules, transactions across repositories."""

from __future__ import annotations

import threading

import pytest

from app.base.limits import MAX_TIMER_SECONDS
from storage.errors import InvalidTransitionError, NotFoundError, WrongThreadError
from storage.messages import fts_query
from storage.records import Conversation, ConversationKind, MessageStatus, NewMessage, PageCursor
from storage.store import Store
from tests.storage.harness import FakeClock


def _add(store: Store, conversation: Conversation, n: int, text: str = "note {i}") -> list[int]:
    return [
        store.messages.add(
            NewMessage(
                conversation.id, f"id{i}".encode(), text.format(i=i), MessageStatus.SENT, sent_at=i // 3
            )
        ).id
        for i in range(n)
    ]


def test_pages_walk_history_newest_first_without_gaps(store: Store, direct: Conversation) -> None:
    """Test that keyset pages cover every message once, newest first, even with equal timestamps."""
    ids = _add(store, direct, 103)
    seen: list[int] = []
    cursor: PageCursor | None = None
    while True:
        page = store.messages.page(direct.id, before=cursor, limit=10)
        seen.extend(m.id for m in page.messages)
        if page.older is None:
            break
        cursor = page.older
    assert seen == sorted(ids, key=lambda i: ((i - 1) // 3, i), reverse=True)
    assert len(set(seen)) == 103


def test_history_page_uses_the_index_and_no_offset(store: Store) -> None:
    """Test that reading an older page is an index range search, not a scan or a sort."""
    plan = store._db.all(
        """EXPLAIN QUERY PLAN SELECT id, body FROM messages
            WHERE conversation_id = ? AND (sent_at, id) < (?, ?)
            ORDER BY sent_at DESC, id DESC LIMIT ?""",
        (1, 10.0, 5, 50),
    )
    details = " ".join(row[3] for row in plan)
    assert "USING INDEX messages_history" in details
    assert "SCAN" not in details and "TEMP B-TREE" not in details


def test_search_finds_words_but_never_secret_chats(store: Store, direct: Conversation) -> None:
    """Test that search finds a word in a direct chat and nothing from a secret chat with the same word."""
    secret = store.conversations.create(
        ConversationKind.SECRET, peer_account_id="bob@ministry", timer_seconds=30, secret_id=b"\x05" * 16
    )
    store.messages.add(NewMessage(direct.id, b"a", "Budget meeting moved", MessageStatus.SENT, sent_at=1))
    store.messages.add(NewMessage(secret.id, b"b", "budget leak details", MessageStatus.SENT, sent_at=2))
    found = store.messages.search("budget")
    assert [m.conversation_id for m in found] == [direct.id]
    assert store.messages.search("leak") == []
    assert [m.body for m in store.messages.search("budg")] == ["Budget meeting moved"], (
        "last word is a prefix"
    )


def test_search_pages_by_id_and_filters_by_conversation(store: Store, direct: Conversation) -> None:
    """Test that search results page newest first by id and can be limited to one conversation."""
    other = store.conversations.create(ConversationKind.DIRECT, peer_account_id="zoe@ministry")
    ids = _add(store, direct, 30, "tender {i}")
    _add(store, other, 5, "tender other {i}")
    first = store.messages.search("tender", conversation_id=direct.id, limit=20)
    rest = store.messages.search("tender", conversation_id=direct.id, limit=20, before_id=first[-1].id)
    assert [m.id for m in first + rest] == sorted(ids, reverse=True)
    assert len(store.messages.search("tender", limit=100)) == 35


def test_search_treats_operators_as_words(store: Store, direct: Conversation) -> None:
    """Test that FTS5 syntax typed by a user is searched for literally and never raises."""
    store.messages.add(NewMessage(direct.id, b"q", 'say "NEAR" OR not', MessageStatus.SENT, sent_at=1))
    assert fts_query('a "b') == '"a" """b"*'
    assert len(store.messages.search('"NEAR" OR')) == 1
    assert store.messages.search("body:* AND (") == []
    assert store.messages.search("   ") == []


def test_status_moves_forward_only(store: Store, direct: Conversation, clock: FakeClock) -> None:
    """Test that status goes pending→sent→delivered→read, ignores late receipts and refuses read→failed."""
    message = store.messages.add(NewMessage(direct.id, b"s", "hi", MessageStatus.PENDING, sent_at=1))
    assert store.messages.set_status(message.id, MessageStatus.SENT)
    assert store.messages.set_status(message.id, MessageStatus.READ, at=clock())
    assert not store.messages.set_status(message.id, MessageStatus.DELIVERED), (
        "a late receipt changes nothing"
    )
    got = store.messages.get(message.id)
    assert got.status is MessageStatus.READ and got.read_at == clock()
    with pytest.raises(InvalidTransitionError):
        store.messages.set_status(message.id, MessageStatus.FAILED)
    retry = store.messages.add(NewMessage(direct.id, b"r", "hi", MessageStatus.PENDING, sent_at=2))
    assert store.messages.set_status(retry.id, MessageStatus.FAILED)
    assert store.messages.set_status(retry.id, MessageStatus.PENDING)


def test_receive_commits_message_state_and_envelope_id_together(store: Store, direct: Conversation) -> None:
    """Test that message, ratchet state and seen envelope id are stored in one transaction, or none is."""
    with pytest.raises(RuntimeError, match="crash"), store.transaction():
        store.messages.add(
            NewMessage(direct.id, b"in", "incoming", MessageStatus.DELIVERED, sent_at=1, sender="a")
        )
        store.sessions.put("alice@ministry", 1, b"state-2")
        assert store.seen.add(b"envelope-1")
        raise RuntimeError("crash before commit")
    assert store.messages.count() == 0
    assert store.sessions.get("alice@ministry", 1) is None
    assert not store.seen.contains(b"envelope-1")
    with store.transaction():
        store.messages.add(
            NewMessage(direct.id, b"in", "incoming", MessageStatus.DELIVERED, sent_at=1, sender="a")
        )
        store.sessions.put("alice@ministry", 1, b"state-2")
        assert store.seen.add(b"envelope-1")
    assert store.messages.count() == 1 and store.sessions.get("alice@ministry", 1) == b"state-2"
    assert not store.seen.add(b"envelope-1"), "a redelivered envelope is recognised"


def test_send_commits_message_state_and_outbox_together(store: Store, direct: Conversation) -> None:
    """Test that a failure inside a nested step rolls back only that step when the caller handles it."""
    with store.transaction():
        message = store.messages.add(
            NewMessage(direct.id, b"out", "outgoing", MessageStatus.PENDING, sent_at=1)
        )
        store.sessions.put("alice@ministry", 1, b"state-3")
        store.outbox.enqueue("alice@ministry", 1, b"sealed", message_id=message.id)
        with pytest.raises(NotFoundError), store.transaction():
            store.outbox.enqueue("alice@ministry", 2, b"sealed-2", message_id=message.id)
            store.messages.get(10_000)
    assert store.outbox.pending_for(message.id) == 1
    assert store.sessions.get("alice@ministry", 1) == b"state-3"


def test_message_needs_an_existing_conversation(store: Store) -> None:
    """Test that a message for an unknown conversation is refused with NotFoundError."""
    with pytest.raises(NotFoundError):
        store.messages.add(NewMessage(999, b"x", "x", MessageStatus.SENT, sent_at=1))


def test_store_refuses_other_threads(store: Store) -> None:
    """Test that using the store from another thread raises WrongThreadError instead of sharing silently."""
    errors: list[BaseException] = []

    def use() -> None:
        try:
            store.messages.count()
        except BaseException as e:
            errors.append(e)

    worker = threading.Thread(target=use)
    worker.start()
    worker.join()
    assert len(errors) == 1 and isinstance(errors[0], WrongThreadError)


def test_find_by_protocol_id(store: Store, direct: Conversation) -> None:
    """Test that a message is found by its sender's protocol id, as receipts name it."""
    stored = store.messages.add(NewMessage(direct.id, b"pid", "x", MessageStatus.SENT, sent_at=1))
    assert store.messages.find(direct.id, "", b"pid") == stored
    assert store.messages.find(direct.id, "alice@ministry", b"pid") is None


def test_expire_after_round_trips_through_every_read(store: Store, direct: Conversation) -> None:
    """Test that the timer a message carries is written by add and add_many and read back everywhere."""
    added = store.messages.add(
        NewMessage(direct.id, b"a", "timed walrus", MessageStatus.SENT, sent_at=1, expire_after=30)
    )
    assert added.expire_after == 30
    assert store.messages.add_many(
        [
            NewMessage(direct.id, b"b", "timed walrus", MessageStatus.SENT, sent_at=2, expire_after=3600),
            NewMessage(direct.id, b"c", "plain walrus", MessageStatus.SENT, sent_at=3),
        ]
    )
    assert store.messages.get(added.id) == added
    assert store.messages.find(direct.id, "", b"b").expire_after == 3600  # type: ignore[union-attr]
    assert [m.expire_after for m in store.messages.page(direct.id).messages] == [0, 3600, 30]
    assert [m.expire_after for m in store.messages.page(direct.id, limit=1).messages] == [0]
    older = store.messages.page(direct.id, before=PageCursor(3, 3)).messages
    assert [m.expire_after for m in older] == [3600, 30]
    assert [m.expire_after for m in store.messages.search("walrus")] == [0, 3600, 30]


@pytest.mark.parametrize("expire_after", [-1, MAX_TIMER_SECONDS + 1])
def test_a_timer_out_of_range_is_refused(store: Store, direct: Conversation, expire_after: int) -> None:
    """Test that a negative or over-long message timer is a ValueError from add and add_many alike."""
    new = NewMessage(direct.id, b"t", "x", MessageStatus.SENT, sent_at=1, expire_after=expire_after)
    with pytest.raises(ValueError, match="timer"):
        store.messages.add(new)
    with pytest.raises(ValueError, match="timer"):
        store.messages.add_many([new])
    assert store.messages.count() == 0


def test_unread_lists_received_messages_not_yet_read_oldest_first(
    store: Store, direct: Conversation, clock: FakeClock
) -> None:
    """Test that unread() skips our own and already read messages and orders by (sent_at, id)."""
    other = store.conversations.create(ConversationKind.DIRECT, peer_account_id="zoe@ministry")

    def received(conversation: Conversation, protocol_id: bytes, sent_at: float) -> int:
        new = NewMessage(
            conversation.id, protocol_id, "in", MessageStatus.DELIVERED, sent_at=sent_at, sender="alice"
        )
        return store.messages.add(new).id

    late = received(direct, b"late", 5)
    first = received(direct, b"first", 1)
    same_time = received(direct, b"same", 1)
    already_read = received(direct, b"read", 2)
    store.messages.set_status(already_read, MessageStatus.READ, at=clock())
    received(other, b"elsewhere", 1)
    ours = store.messages.add(NewMessage(direct.id, b"ours", "out", MessageStatus.SENT, sent_at=3))
    assert ours.read_at is None
    assert [m.id for m in store.messages.unread(direct.id)] == [first, same_time, late]
    store.messages.set_status(first, MessageStatus.READ, at=clock())
    assert [m.id for m in store.messages.unread(direct.id)] == [same_time, late]
    assert store.messages.unread(999) == []


def test_unread_uses_its_partial_index(store: Store) -> None:
    """Test that the unread query searches the messages_unread index instead of scanning read history."""
    plan = store._db.all(
        """EXPLAIN QUERY PLAN SELECT id FROM messages
            WHERE conversation_id = ? AND sender <> '' AND read_at IS NULL ORDER BY sent_at, id""",
        (1,),
    )
    details = " ".join(row[3] for row in plan)
    assert "USING INDEX messages_unread" in details
    assert "TEMP B-TREE" not in details


def test_waiting_lists_our_pending_messages_through_its_index(store: Store, direct: Conversation) -> None:
    """Test that waiting() returns only our own pending messages, oldest first, without a scan."""
    later = store.messages.add(NewMessage(direct.id, b"b", "later", MessageStatus.PENDING, sent_at=2))
    earlier = store.messages.add(NewMessage(direct.id, b"a", "earlier", MessageStatus.PENDING, sent_at=1))
    store.messages.add(NewMessage(direct.id, b"c", "left", MessageStatus.SENT, sent_at=0))
    store.messages.add(
        NewMessage(direct.id, b"d", "theirs", MessageStatus.PENDING, sent_at=0, sender="alice")
    )
    assert [m.id for m in store.messages.waiting()] == [earlier.id, later.id]
    store.messages.set_status(earlier.id, MessageStatus.SENT)
    assert [m.id for m in store.messages.waiting()] == [later.id]
    plan = store._db.all(
        """EXPLAIN QUERY PLAN SELECT id FROM messages
            WHERE status = 'pending' AND sender = '' ORDER BY sent_at, id"""
    )
    assert "INDEX messages_waiting" in " ".join(row[3] for row in plan)
