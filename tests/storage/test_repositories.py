"""The smaller repositories: identity, prekeys, sessions, contacts' trust, conversations, outbox, seen ids."""

from __future__ import annotations

import pytest

from app.base.errors import StorageError
from storage.errors import InvalidTransitionError, NotFoundError
from storage.records import Conversation, ConversationKind, MessageStatus, NewMessage, PreKeyKind, Trust
from storage.store import Store
from tests.storage.harness import FakeClock

SECRET_ID = b"\x05" * 16


def test_identity_is_saved_once(store: Store) -> None:
    """Test that the device identity round-trips and cannot be replaced."""
    assert store.identity.load() is None
    store.identity.save("me@ministry", 2, b"\x07" * 32)
    loaded = store.identity.load()
    assert loaded is not None and (loaded.account_id, loaded.device_id, loaded.seed) == (
        "me@ministry",
        2,
        b"\x07" * 32,
    )
    with pytest.raises(ValueError, match="already"):
        store.identity.save("other@ministry", 1, b"\x08" * 32)


def test_one_time_prekey_is_used_once(store: Store) -> None:
    """Test that taking a one-time prekey returns it and deletes it."""
    store.prekeys.add_one_time([(1, b"\x01" * 32), (2, b"\x02" * 32)])
    assert store.prekeys.take_one_time(1).private_key == b"\x01" * 32
    with pytest.raises(NotFoundError):
        store.prekeys.take_one_time(1)
    assert [p.key_id for p in store.prekeys.list(PreKeyKind.ONE_TIME)] == [2]


def test_session_state_is_opaque_bytes_per_device(store: Store) -> None:
    """Test that ratchet state is stored and replaced per (account, device) and deleted per account."""
    store.sessions.put("j@ministry", 1, b"v1")
    store.sessions.put("j@ministry", 1, b"v2")
    store.sessions.put("j@ministry", 4, b"other")
    assert store.sessions.get("j@ministry", 1) == b"v2"
    assert store.sessions.devices("j@ministry") == [1, 4]
    assert store.sessions.delete("j@ministry") == 2
    assert store.sessions.get("j@ministry", 4) is None


def test_device_key_trust_states(store: Store) -> None:
    """Test unverified → verified, a changed key → changed (old key kept), and accepting it → unverified."""
    store.contacts.upsert("k@ministry", "Kay", "Foreign Office")
    first, second = b"\x01" * 32, b"\x02" * 32
    assert store.contacts.record_device_key("k@ministry", 1, first).trust is Trust.UNVERIFIED
    assert store.contacts.mark_verified("k@ministry", 1, first).trust is Trust.VERIFIED
    assert store.contacts.record_device_key("k@ministry", 1, first).trust is Trust.VERIFIED, (
        "same key: no change"
    )
    changed = store.contacts.record_device_key("k@ministry", 1, second)
    assert (changed.trust, changed.previous_identity_key) == (Trust.CHANGED, first)
    with pytest.raises(InvalidTransitionError):
        store.contacts.mark_verified("k@ministry", 1, second)
    accepted = store.contacts.accept_changed_key("k@ministry", 1)
    assert (accepted.trust, accepted.previous_identity_key) == (Trust.UNVERIFIED, None)
    with pytest.raises(InvalidTransitionError, match="changed since"):
        store.contacts.mark_verified("k@ministry", 1, first)


def test_device_of_unknown_contact_is_refused(store: Store) -> None:
    """Test that a device key for a contact never stored raises NotFoundError."""
    with pytest.raises(NotFoundError):
        store.contacts.record_device_key("nobody@ministry", 1, b"\x01" * 32)


def test_conversation_kinds_timer_and_label(store: Store) -> None:
    """Test that a secret chat needs a timer, groups are unique by id, and the label is kept."""
    with pytest.raises(InvalidTransitionError):
        store.conversations.create(ConversationKind.SECRET, peer_account_id="l@ministry", secret_id=SECRET_ID)
    secret = store.conversations.create(
        ConversationKind.SECRET, peer_account_id="l@ministry", timer_seconds=10, secret_id=SECRET_ID
    )
    with pytest.raises(InvalidTransitionError):
        store.conversations.set_timer(secret.id, 0)
    group = store.conversations.create(ConversationKind.GROUP, group_id=b"g1", title="Cabinet")
    store.conversations.set_members(group.id, ["a@m", "b@m", "a@m"])
    assert store.conversations.members(group.id) == ["a@m", "b@m"]
    assert store.conversations.find_group(b"g1") == group
    assert store.conversations.set_classification(group.id, "RESTRICTED").classification == "RESTRICTED"
    with pytest.raises(ValueError):
        store.conversations.create(ConversationKind.GROUP, peer_account_id="x@m")


def test_secret_chat_is_found_by_its_secret_id_with_its_peer_device(
    store: Store, direct: Conversation
) -> None:
    """Test that a secret chat keeps its secret id and peer device, and is found by that id alone."""
    secret = store.conversations.create(
        ConversationKind.SECRET,
        peer_account_id="alice@ministry",
        timer_seconds=30,
        secret_id=SECRET_ID,
        peer_device=4,
    )
    assert (secret.secret_id, secret.peer_device) == (SECRET_ID, 4)
    assert store.conversations.find_secret(SECRET_ID) == secret == store.conversations.get(secret.id)
    assert store.conversations.find_secret(b"\x06" * 16) is None
    assert store.conversations.find_with_peer("alice@ministry") == [direct]
    assert store.conversations.find_with_peer("alice@ministry", ConversationKind.SECRET) == [secret]
    assert store.conversations.list() == [direct, secret]
    assert (direct.secret_id, direct.peer_device) == (None, None)
    unbound = store.conversations.create(
        ConversationKind.SECRET, peer_account_id="bob@ministry", timer_seconds=30, secret_id=b"\x07" * 16
    )
    assert unbound.peer_device is None


@pytest.mark.parametrize(
    ("kind", "secret_id", "peer_device"),
    [
        (ConversationKind.SECRET, None, None),
        (ConversationKind.SECRET, None, 4),
        (ConversationKind.SECRET, b"\x05" * 15, 4),
        (ConversationKind.SECRET, b"\x05" * 17, None),
        (ConversationKind.DIRECT, SECRET_ID, None),
        (ConversationKind.DIRECT, None, 4),
        (ConversationKind.GROUP, SECRET_ID, None),
        (ConversationKind.GROUP, None, 4),
    ],
)
def test_only_a_secret_chat_has_a_secret_id_and_a_peer_device(
    store: Store, kind: ConversationKind, secret_id: bytes | None, peer_device: int | None
) -> None:
    """Test that a secret chat without a 16-byte secret id, or another kind with either field, is refused."""
    group = kind is ConversationKind.GROUP
    with pytest.raises(ValueError, match="secret id"):
        store.conversations.create(
            kind,
            peer_account_id=None if group else "n@ministry",
            group_id=b"g1" if group else None,
            timer_seconds=30,
            secret_id=secret_id,
            peer_device=peer_device,
        )
    assert store.conversations.list() == []


def test_the_schema_holds_the_secret_id_rules_without_the_repository(
    store: Store, direct: Conversation
) -> None:
    """Test that the unique index and the v4 triggers refuse what the repository's checks would refuse."""
    secret = store.conversations.create(
        ConversationKind.SECRET, peer_account_id="p@ministry", timer_seconds=30, secret_id=SECRET_ID
    )
    with pytest.raises(StorageError):
        store.conversations.create(
            ConversationKind.SECRET, peer_account_id="q@ministry", timer_seconds=30, secret_id=SECRET_ID
        )
    refused = [
        ("UPDATE conversations SET secret_id = NULL WHERE id = ?", (secret.id,)),
        ("UPDATE conversations SET secret_id = ? WHERE id = ?", (b"short", secret.id)),
        ("UPDATE conversations SET secret_id = ? WHERE id = ?", (b"\x06" * 16, direct.id)),
        ("UPDATE conversations SET peer_device = 1 WHERE id = ?", (direct.id,)),
        (
            """INSERT INTO conversations (kind, peer_account_id, timer_seconds, created_at)
                VALUES ('secret', 'r@ministry', 30, 1)""",
            (),
        ),
        (
            """INSERT INTO conversations (kind, peer_account_id, created_at, peer_device)
                VALUES ('direct', 'r@ministry', 1, 2)""",
            (),
        ),
    ]
    for sql, params in refused:
        with pytest.raises(StorageError), store.transaction():
            store._db.execute(sql, params)
    assert store.conversations.list() == [direct, secret]


def test_outbox_is_fifo_with_retries(store: Store, clock: FakeClock) -> None:
    """Test that due envelopes come oldest first, a postponed one waits, and removal is idempotent."""
    conversation = store.conversations.create(ConversationKind.DIRECT, peer_account_id="m@ministry")
    message = store.messages.add(NewMessage(conversation.id, b"o", "x", MessageStatus.PENDING, sent_at=1))
    first = store.outbox.enqueue("m@ministry", 1, b"e1", message_id=message.id)
    second = store.outbox.enqueue("m@ministry", 2, b"e2", message_id=message.id)
    receipt = store.outbox.enqueue("m@ministry", 1, b"r", message_id=None)
    assert [e.id for e in store.outbox.due(clock())] == [first, second, receipt]
    store.outbox.postpone(first, clock() + 30)
    assert [e.id for e in store.outbox.due(clock())] == [second, receipt]
    assert store.outbox.next_attempt() == clock()
    assert store.outbox.remove(second) and not store.outbox.remove(second)
    assert store.outbox.pending_for(message.id) == 1


def test_seen_envelope_ids_are_pruned_by_age(store: Store, clock: FakeClock) -> None:
    """Test that old envelope ids are forgotten and recent ones kept."""
    store.seen.add(b"old")
    clock.advance(3600)
    store.seen.add(b"new")
    assert store.seen.prune(clock() - 60) == 1
    assert not store.seen.contains(b"old") and store.seen.contains(b"new")


def test_settings(store: Store) -> None:
    """Test that settings are set, replaced, read with a default and deleted."""
    store.settings.set("lang", "fr")
    store.settings.set("lang", "de")
    assert store.settings.get("lang") == "de"
    store.settings.delete("lang")
    assert store.settings.get("lang", "en") == "en"


def test_rename_peer_retitles_every_conversation_with_that_colleague(store: Store) -> None:
    """Test that rename_peer changes the titles of one peer's conversations only, and counts them."""
    direct = store.conversations.create(ConversationKind.DIRECT, peer_account_id="dora", title="dora")
    secret = store.conversations.create(
        ConversationKind.SECRET,
        peer_account_id="dora",
        title="dora",
        timer_seconds=60,
        secret_id=b"\x01" * 16,
    )
    other = store.conversations.create(ConversationKind.DIRECT, peer_account_id="erik", title="erik")
    assert store.conversations.rename_peer("dora", "Dora Daniels") == 2
    assert [store.conversations.get(c.id).title for c in (direct, secret, other)] == [
        "Dora Daniels",
        "Dora Daniels",
        "erik",
    ]
    assert store.conversations.rename_peer("dora", "Dora Daniels") == 0
