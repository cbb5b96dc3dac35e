"""The sealing queue: message id order, removal, and entries that go with their messages."""

from __future__ import annotations

import pytest

from storage.errors import NotFoundError
from storage.records import Conversation, MessageStatus, NewMessage
from storage.store import Store
from tests.storage.harness import FakeClock


def _outgoing(store: Store, conversation: Conversation, text: str, expires_at: float | None = None) -> int:
    new = NewMessage(
        conversation.id, text.encode(), text, MessageStatus.PENDING, sent_at=1, expires_at=expires_at
    )
    return store.messages.add(new).id


def test_queue_lists_message_ids_in_ascending_order(store: Store, direct: Conversation) -> None:
    """Test that queued messages come back by message id, whatever order they were queued in."""
    first, second, third = (_outgoing(store, direct, text) for text in ("one", "two", "three"))
    for message_id in (third, first, second):
        store.unsealed.add(message_id)
    assert store.unsealed.list() == [first, second, third]
    assert store.unsealed.list(limit=2) == [first, second]
    assert store.unsealed.count() == 3


def test_remove_contains_and_queuing_twice(store: Store, direct: Conversation) -> None:
    """Test that queuing a message twice keeps one entry, and removing it reports whether it was there."""
    message_id = _outgoing(store, direct, "draft")
    store.unsealed.add(message_id)
    store.unsealed.add(message_id)
    assert store.unsealed.count() == 1 and store.unsealed.contains(message_id)
    assert store.unsealed.remove(message_id)
    assert not store.unsealed.remove(message_id)
    assert not store.unsealed.contains(message_id)
    assert store.unsealed.list() == [] and store.unsealed.count() == 0


def test_only_stored_outgoing_messages_are_queued(store: Store, direct: Conversation) -> None:
    """Test that an unknown message is NotFoundError and a received one is ValueError."""
    with pytest.raises(NotFoundError):
        store.unsealed.add(999)
    received = store.messages.add(
        NewMessage(direct.id, b"in", "hello", MessageStatus.DELIVERED, sent_at=1, sender="alice@ministry")
    )
    with pytest.raises(ValueError, match="outgoing"):
        store.unsealed.add(received.id)
    assert store.unsealed.count() == 0


def test_entry_goes_with_a_deleted_message(store: Store, direct: Conversation) -> None:
    """Test that deleting a message, or its whole conversation, removes its queue entry."""
    deleted, kept = _outgoing(store, direct, "deleted"), _outgoing(store, direct, "kept")
    store.unsealed.add(deleted)
    store.unsealed.add(kept)
    assert store.delete_messages([deleted]) == [deleted]
    assert store.unsealed.list() == [kept]
    store.delete_conversation(direct.id)
    assert store.unsealed.count() == 0


def test_entry_goes_with_an_expired_message(store: Store, direct: Conversation, clock: FakeClock) -> None:
    """Test that the sweep of an expired message removes its queue entry and leaves the others."""
    expiring = _outgoing(store, direct, "expiring", expires_at=clock() + 60)
    kept = _outgoing(store, direct, "kept")
    store.unsealed.add(expiring)
    store.unsealed.add(kept)
    clock.advance(60)
    assert store.sweep() == [expiring]
    assert store.unsealed.list() == [kept]


def test_queuing_joins_the_callers_transaction(store: Store, direct: Conversation) -> None:
    """Test that a message and its queue entry written in one transaction roll back together."""
    with pytest.raises(RuntimeError, match="crash"), store.transaction():
        store.unsealed.add(_outgoing(store, direct, "draft"))
        assert store.unsealed.count() == 1
        raise RuntimeError("crash before commit")
    assert store.unsealed.count() == 0
    assert store.messages.count() == 0
