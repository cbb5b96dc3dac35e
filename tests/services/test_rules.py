"""The policy's rules, each enforced by the part that owns its action, with real stores: a refused
call raises a ``PolicyRefusedError`` naming its key and leaves the store as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from app.base.errors import PolicyError
from app.protocol.content import TimerChange
from app.services.errors import (
    DirectChatNotAllowedError,
    DirectoryNotAllowedError,
    FileNotAllowedError,
    PolicyRefusedError,
    TimerNotAllowedError,
    VerificationRequiredError,
)
from app.services.events import ConversationStarted, MessageArrived, TimerChanged
from app.services.rules import type_permitted
from storage.records import MessageStatus
from storage.store import Store
from tests.support.devices import Bench, Device, introduce, open_session

HOUR, DAY = 3600, 24 * 3600
TABLES = (
    "conversations",
    "messages",
    "attachments",
    "outbox",
    "unsealed",
    "sessions",
    "contacts",
    "settings",
)


def _state(store: Store) -> str:
    """A digest of what a refused call must not change: conversations, messages, files, outbox,
    sessions, contacts and settings (the user's policy values among them), and the files on disk."""
    rows = [sorted(map(repr, store._db.all(f"SELECT * FROM {table}"))) for table in TABLES]
    files = sorted(p.name for p in store.profile_dir.rglob("*") if p.is_file())
    return hashlib.sha256(repr((rows, files)).encode()).hexdigest()


def _policy(device: Device, **values: object) -> None:
    """Set policy values as the user (no config is in force, so none is mandatory), in the order given."""
    for key, value in values.items():
        device.provisioning.set_user(key, value)


@pytest.fixture
def bob(bench: Bench, alice: Device) -> Device:
    bob = bench.device("bob")
    introduce(alice, bob)
    open_session(alice, bob)
    return bob


def test_a_timer_outside_the_range_is_refused_and_changes_nothing(
    bench: Bench, alice: Device, bob: Device
) -> None:
    """Test that setting a timer below the minimum (off included) or above the maximum, or starting a
    secret chat with one, is refused naming the key and the range, while a timer inside it is set."""
    _policy(alice, timer_default_seconds=HOUR, timer_minimum_seconds=HOUR, timer_maximum_seconds=DAY)
    conversation = alice.direct(bob, timer_seconds=2 * HOUR)
    before = _state(alice.store)
    for seconds, key in (
        (0, "timer_minimum_seconds"),
        (60, "timer_minimum_seconds"),
        (DAY + 1, "timer_maximum_seconds"),
    ):
        with pytest.raises(TimerNotAllowedError) as refused:
            bench.run(alice.conversations.set_timer(conversation.id, seconds))
        assert refused.value.key == key and f"from {HOUR} s to {DAY} s" in str(refused.value)
        with pytest.raises(TimerNotAllowedError):
            bench.run(alice.conversations.start_secret("bob", seconds or 1))
        assert _state(alice.store) == before
    assert alice.emitted(TimerChanged) == []
    assert bench.run(alice.conversations.set_timer(conversation.id, HOUR)).timer_seconds == HOUR


def test_a_new_conversation_starts_with_the_default_timer_and_label(
    bench: Bench, alice: Device, bob: Device
) -> None:
    """Test that a conversation started here, and one a peer starts, get the policy's default timer and
    label."""
    _policy(
        alice,
        timer_default_seconds=HOUR,
        classification_labels=["OFFICIAL"],
        classification_default="OFFICIAL",
    )
    _policy(
        bob,
        timer_default_seconds=DAY,
        classification_labels=["SENSITIVE"],
        classification_default="SENSITIVE",
    )
    started = alice.conversations.start("bob")
    assert (started.timer_seconds, started.classification) == (HOUR, "OFFICIAL")
    bench.run(alice.sending.send_text(started.id, "hello"))
    bench.deliver(alice, bob)
    [event] = bob.emitted(ConversationStarted)
    assert (event.conversation.timer_seconds, event.conversation.classification) == (DAY, "SENSITIVE")
    [arrived] = bob.emitted(MessageArrived)
    assert arrived.message.expire_after == HOUR, "the message keeps the timer it was sent with"


def test_a_peer_timer_outside_the_range_becomes_the_nearest_allowed(
    bench: Bench, alice: Device, bob: Device
) -> None:
    """Test that a peer's timer change outside this device's range is applied as the nearest allowed
    value (and said so in the event), and that arriving messages are kept no longer than the maximum,
    a message without a timer getting the minimum, a shorter one keeping its own."""
    _policy(bob, timer_default_seconds=2 * HOUR, timer_minimum_seconds=HOUR, timer_maximum_seconds=DAY)
    conversation = alice.direct(bob)
    for sent, applied in ((60, HOUR), (7 * DAY, DAY), (2 * HOUR, 2 * HOUR)):
        alice.sending.send_control(conversation, TimerChange(sent, 0))
        bench.deliver(alice, bob)
        assert bob.events[-1] == TimerChanged(bob.store.conversations.list()[0].id, applied, by_peer=True)
        assert bob.store.conversations.list()[0].timer_seconds == applied
    for timer, kept in ((0, HOUR), (7 * DAY, DAY), (60, 60)):
        alice.store.conversations.set_timer(conversation.id, timer)
        bench.run(alice.sending.send_text(conversation.id, f"timer {timer}"))
        bench.deliver(alice, bob)
        assert bob.emitted(MessageArrived)[-1].message.expire_after == kept


def test_secret_chats_only_refuses_normal_conversations(bench: Bench, alice: Device, bob: Device) -> None:
    """Test that where only secret chats are allowed, a normal conversation can neither be started nor
    written in (one from before the rule included), and a secret chat still can."""
    existing = alice.direct(bob)
    _policy(alice, secret_chats_only=True)
    before = _state(alice.store)
    with pytest.raises(DirectChatNotAllowedError) as refused:
        alice.conversations.start("bob")
    assert refused.value.key == "secret_chats_only" and "only secret chats" in str(refused.value)
    with pytest.raises(DirectChatNotAllowedError):
        bench.run(alice.sending.send_text(existing.id, "hello"))
    assert _state(alice.store) == before
    secret = bench.run(alice.conversations.start_secret("bob", HOUR))
    assert bench.run(alice.sending.send_text(secret.id, "hello")).status is MessageStatus.PENDING


def test_no_read_receipt_where_the_policy_forbids_them(bench: Bench, alice: Device, bob: Device) -> None:
    """Test that with read receipts not allowed, reading marks messages read here and sends no read
    receipt, while the delivery receipt still goes back (it says the message arrived, not that it was
    read)."""
    _policy(bob, read_receipts_allowed=False)
    mine = bench.run(alice.sending.send_text(alice.direct(bob).id, "read me"))
    bench.deliver(alice, bob)
    [arrived] = bob.emitted(MessageArrived)
    assert bob.store.pending_receipts.count() == 1, "the delivery receipt"
    bench.deliver(bob, alice)
    assert alice.store.messages.get(mine.id).status is MessageStatus.DELIVERED

    assert bob.conversations.mark_read(arrived.conversation.id) == 1
    assert bob.store.messages.get(arrived.message.id).status is MessageStatus.READ
    assert bob.store.outbox.next_attempt() is None
    assert alice.store.messages.get(mine.id).status is MessageStatus.DELIVERED


def test_a_forbidden_file_is_refused_before_anything_is_written(
    bench: Bench, alice: Device, bob: Device, tmp_path: Path
) -> None:
    """Test that a file is refused where files are not allowed, when it is larger than the limit or of a
    type not permitted, and forwarding one likewise, with nothing stored; an allowed file is stored."""
    conversation = alice.direct(bob)
    text, pdf = tmp_path / "notes.txt", tmp_path / "report.pdf"
    text.write_bytes(b"0123456789")
    pdf.write_bytes(b"%PDF-1.7")
    _policy(alice, attachment_types=["text/plain", "image/*"])
    sent = bench.run(alice.sending.send_file(conversation.id, text))
    assert [f.name for f in alice.store.attachments.of_message(sent.id)] == ["notes.txt"]

    cases = [
        ({"attachment_max_bytes": 9}, text, "attachment_max_bytes", "at most 9 bytes"),
        ({"attachment_max_bytes": 10, "attachment_types": ["image/*"]}, pdf, "attachment_types", "image/*"),
        ({"attachments_allowed": False}, text, "attachments_allowed", "no files"),
    ]
    for values, path, key, allowed in cases:
        _policy(alice, **values)
        before = _state(alice.store)
        with pytest.raises(FileNotAllowedError) as refused:
            bench.run(alice.sending.send_file(conversation.id, path))
        assert refused.value.key == key and allowed in str(refused.value)
        with pytest.raises(FileNotAllowedError):
            bench.run(alice.sending.forward(sent.id, conversation.id))
        assert _state(alice.store) == before, key


def test_a_directory_lookup_is_refused_and_local_contacts_still_work(bench: Bench, alice: Device) -> None:
    """Test that where the policy forbids directory look-ups a search is refused (before the relay is
    asked), while the contact list can still be read and added to."""
    _policy(alice, directory_lookup_allowed=False)
    with pytest.raises(DirectoryNotAllowedError) as refused:
        bench.run(alice.contacts.lookup("bob"))
    assert refused.value.key == "directory_lookup_allowed"
    alice.contacts.add("carol", "Carol Clark")
    assert [c.account_id for c in alice.contacts.list()] == ["carol"]


def test_sending_needs_verified_keys_where_the_label_requires_them(bench: Bench, alice: Device) -> None:
    """Test that in a conversation whose label requires verified keys (the default label here, also for
    a conversation made before labels), a message is refused until the peer's key is marked verified,
    also when no key of the peer is known yet, and that other labels are not held back."""
    bob = bench.device("bob")
    introduce(alice, bob)
    old = alice.direct(bob)
    _policy(
        alice,
        classification_labels=["OFFICIAL", "OFFICIAL-SENSITIVE"],
        classification_default="OFFICIAL-SENSITIVE",
        verified_keys_required=["OFFICIAL-SENSITIVE"],
    )
    before = _state(alice.store)
    with pytest.raises(VerificationRequiredError, match="no key of bob is known yet") as refused:
        bench.run(alice.sending.send_text(old.id, "hello"))
    assert refused.value.key == "verified_keys_required" and refused.value.account_id == "bob"
    open_session(alice, bob)
    before = _state(alice.store)
    with pytest.raises(VerificationRequiredError, match="compare safety numbers with bob"):
        bench.run(alice.sending.send_text(old.id, "hello"))
    assert _state(alice.store) == before
    other = alice.store.conversations.set_classification(old.id, "OFFICIAL")
    assert bench.run(alice.sending.send_text(other.id, "not held")).status is MessageStatus.PENDING
    alice.store.conversations.set_classification(old.id, "OFFICIAL-SENSITIVE")

    alice.verification.mark_verified("bob", bob.device_id)
    assert bench.run(alice.sending.send_text(old.id, "verified")).status is MessageStatus.PENDING


def test_every_refusal_is_a_policy_error_naming_its_rule() -> None:
    """Test that the refusals share one root under PolicyError and type matching honours type/*."""
    assert issubclass(PolicyRefusedError, PolicyError)
    assert type_permitted("image/png", ("image/*",)) and type_permitted("Text/Plain", ("text/plain",))
    assert not type_permitted("application/pdf", ("image/*", "text/plain"))
    assert type_permitted("application/x-anything", ("*/*",))
