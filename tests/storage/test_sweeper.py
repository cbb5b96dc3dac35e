"""Disappearing messages: the sweeper's alarm, what a sweep removes, the start-up sweep."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from storage.keys import Passphrase
from storage.records import Conversation, ConversationKind, MessageStatus, NewMessage
from storage.store import ATTACHMENTS_NAME, Store
from storage.sweeper import ExpirySweeper
from tests.storage.harness import FakeClock


class Alarm:
    """What the caller's event loop would do: remember when to call ``fire``."""

    def __init__(self) -> None:
        self.calls: list[float | None] = []

    def __call__(self, at: float | None) -> None:
        self.calls.append(at)

    @property
    def at(self) -> float | None:
        return self.calls[-1] if self.calls else None


def _expiring(store: Store, conversation: Conversation, clock: FakeClock, seconds: float, text: str) -> int:
    message = store.messages.add(
        NewMessage(
            conversation.id,
            text.encode(),
            text,
            MessageStatus.SENT,
            sent_at=clock(),
            expires_at=clock() + seconds,
        )
    )
    return message.id


def test_alarm_follows_the_earliest_expiry(store: Store, direct: Conversation, clock: FakeClock) -> None:
    """Test that the alarm follows the earliest expiry, moves earlier for a new message, clears when none."""
    alarm = Alarm()
    sweeper = ExpirySweeper(store, alarm)
    assert alarm.calls == [None]
    late = _expiring(store, direct, clock, 300, "late")
    assert alarm.at == clock() + 300
    early = _expiring(store, direct, clock, 60, "early")
    assert alarm.at == clock() + 60
    middle = _expiring(store, direct, clock, 120, "middle")
    assert alarm.at == clock() + 60, "a later expiry does not move the alarm"
    clock.advance(60)
    assert sweeper.fire() == [early]
    assert alarm.at == clock() + 60
    clock.advance(240)
    assert sorted(sweeper.fire()) == sorted([late, middle])
    assert alarm.at is None


def test_rolled_back_expiry_does_not_move_the_alarm(
    store: Store, direct: Conversation, clock: FakeClock
) -> None:
    """Test that an expiry written in a transaction that rolls back never reaches the alarm."""
    alarm = Alarm()
    ExpirySweeper(store, alarm)
    with pytest.raises(RuntimeError), store.transaction():
        _expiring(store, direct, clock, 10, "never")
        raise RuntimeError("abort")
    assert alarm.calls == [None]


def test_early_alarm_sweeps_nothing_and_rearms(store: Store, direct: Conversation, clock: FakeClock) -> None:
    """Test that an alarm that fires a little early deletes nothing and is set again for the same time."""
    alarm = Alarm()
    sweeper = ExpirySweeper(store, alarm)
    _expiring(store, direct, clock, 60, "soon")
    clock.advance(59.9)
    assert sweeper.fire() == []
    assert alarm.at == clock() + 0.1 == pytest.approx(store.next_expiry())
    sweeper.close()
    assert alarm.at is None


def test_sweep_removes_rows_search_entries_and_attachment_files(
    store: Store, direct: Conversation, clock: FakeClock, profile: Path
) -> None:
    """Test that an expired message is gone from history and search, with its attachment file and key."""
    doomed = _expiring(store, direct, clock, 30, "pelican")
    kept = store.messages.add(
        NewMessage(direct.id, b"k", "pelican kept", MessageStatus.SENT, sent_at=clock())
    )
    attachment = store.attachments.add(doomed, io.BytesIO(b"p" * 100_000), name="p.bin", mime_type="x/y")
    assert len(list((profile / ATTACHMENTS_NAME).iterdir())) == 1
    clock.advance(30)
    assert store.sweep() == [doomed]
    assert [m.id for m in store.messages.search("pelican")] == [kept.id]
    assert [m.id for m in store.messages.page(direct.id).messages] == [kept.id]
    assert list((profile / ATTACHMENTS_NAME).iterdir()) == []
    with pytest.raises(Exception, match="does not exist"):
        store.attachments.get(attachment.id)


def test_expired_outbox_entries_go_with_their_message(
    store: Store, direct: Conversation, clock: FakeClock
) -> None:
    """Test that a message that expires before it was sent leaves no envelope in the outbox."""
    doomed = _expiring(store, direct, clock, 5, "unsent")
    store.outbox.enqueue("alice@ministry", 1, b"sealed", message_id=doomed)
    clock.advance(5)
    store.sweep()
    assert store.outbox.due(clock.now + 1) == []


def test_a_swept_message_takes_its_pending_receipt(
    store: Store, direct: Conversation, clock: FakeClock
) -> None:
    """Test that sweeping a message removes its pending receipt row, and only its."""
    doomed = _expiring(store, direct, clock, 5, "doomed")
    kept = _expiring(store, direct, clock, 500, "kept")
    for message in (doomed, kept):
        assert store.pending_receipts.add(message, 2, "alice@ministry", 1, clock() + 30)
    clock.advance(5)
    assert store.sweep() == [doomed]
    assert store.pending_receipts.count() == 1
    assert [p.message for p in store.pending_receipts.of_device("alice@ministry", 1, 2)] == [kept]


def test_a_deleted_message_takes_its_pending_receipt(
    store: Store, direct: Conversation, clock: FakeClock
) -> None:
    """Test that deleting a message (the user's choice) removes its pending receipts of both kinds."""
    doomed = _expiring(store, direct, clock, 500, "doomed")
    kept = _expiring(store, direct, clock, 500, "kept")
    for message in (doomed, kept):
        for kind in (1, 2):
            assert store.pending_receipts.add(message, kind, "alice@ministry", 1, clock() + 30)
    assert store.delete_messages([doomed]) == [doomed]
    assert store.pending_receipts.count() == 2
    assert {p.message for p in store.pending_receipts.of_device("alice@ministry", 1, 1)} == {kept}


def test_start_up_sweep_runs_before_open_returns(
    profile: Path, passphrase: Passphrase, clock: FakeClock
) -> None:
    """Test that messages that expired while the app was closed are gone when open() returns."""
    with Store.create(profile, passphrase, clock=clock) as store:
        conversation = store.conversations.create(
            ConversationKind.SECRET, peer_account_id="gil@ministry", timer_seconds=60, secret_id=b"\x05" * 16
        )
        doomed = _expiring(store, conversation, clock, 60, "gone")
        kept = _expiring(store, conversation, clock, 600, "stays")
    clock.advance(120)
    with Store.open(profile, passphrase, clock=clock) as store:
        assert store.startup_swept == (doomed,)
        assert [m.id for m in store.messages.page(conversation.id).messages] == [kept]


def test_user_deletion_and_conversation_deletion_scrub_files(
    store: Store, direct: Conversation, profile: Path
) -> None:
    """Test that deleting messages or a whole conversation removes their attachment files too."""
    first = store.messages.add(NewMessage(direct.id, b"1", "one", MessageStatus.SENT, sent_at=1)).id
    second = store.messages.add(NewMessage(direct.id, b"2", "two", MessageStatus.SENT, sent_at=2)).id
    for message_id in (first, second):
        store.attachments.add(message_id, io.BytesIO(b"z"), name="z", mime_type="x/y")
    assert store.delete_messages([first, 12345]) == [first]
    assert len(list((profile / ATTACHMENTS_NAME).iterdir())) == 1
    store.delete_conversation(direct.id)
    assert list((profile / ATTACHMENTS_NAME).iterdir()) == []
    assert store.messages.count() == 0
