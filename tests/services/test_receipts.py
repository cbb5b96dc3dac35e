"""Receipts: delivery and read receipts wait a random delay and leave in batches, with real stores."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.services.receipts import ReceiptDelays
from storage.records import Message, MessageStatus
from tests.support.devices import Bench, Device, FakeClock, introduce, open_session

DELAYS = ReceiptDelays(5.0, 60.0)
"""The production delays: the alarm (real time) never rings within a test; the tests move the clock."""


@pytest.fixture
def delayed(tmp_path: Path) -> Iterator[Bench]:
    opened = Bench(tmp_path, receipt_delays=DELAYS)
    yield opened
    opened.close()


@pytest.fixture
def clock(delayed: Bench) -> FakeClock:
    assert isinstance(delayed.clock, FakeClock)
    return delayed.clock


def _pair(bench: Bench) -> tuple[Device, Device]:
    alice, bob = bench.device("alice"), bench.device("bob")
    introduce(alice, bob)
    open_session(alice, bob)
    return alice, bob


def _send(bench: Bench, alice: Device, bob: Device, *texts: str) -> list[Message]:
    """Alice's texts, handed to Bob (her own pending receipts are not sealed on the way)."""
    sent = []
    for text in texts:
        sent.append(bench.run(alice.sending.send_text(alice.direct(bob).id, text)))
        bench.deliver(alice, bob, receipts=False)
    return sent


def _statuses(device: Device, messages: list[Message]) -> list[MessageStatus]:
    return [device.store.messages.get(m.id).status for m in messages]


def test_messages_arriving_within_the_delay_get_one_receipt_envelope(
    delayed: Bench, clock: FakeClock
) -> None:
    """Test that several messages arriving within the delay produce one receipt envelope to the sender's
    device, naming all of them."""
    alice, bob = _pair(delayed)
    sent = _send(delayed, alice, bob, "one")
    clock.advance(1)
    sent += _send(delayed, alice, bob, "two", "three")
    assert bob.store.pending_receipts.count() == 3
    clock.advance(DELAYS.maximum)
    assert bob.receipts.seal_due() == 1
    [receipt] = bob.store.outbox.due(math.inf)
    assert (receipt.recipient, receipt.recipient_device, receipt.message_id) == ("alice", 1, None)
    assert bob.store.pending_receipts.count() == 0
    assert len(delayed.deliver(bob, alice, receipts=False)) == 1
    assert _statuses(alice, sent) == [MessageStatus.DELIVERED] * 3


def test_no_receipt_leaves_before_the_minimum_delay(delayed: Bench, clock: FakeClock) -> None:
    """Test that a delivery receipt is not sealed before the minimum delay, and is once the maximum passed."""
    alice, bob = _pair(delayed)
    sent = _send(delayed, alice, bob, "soon?")
    clock.advance(DELAYS.minimum - 0.01)
    assert bob.receipts.seal_due() == 0
    assert bob.store.outbox.due(math.inf) == []
    assert bob.store.pending_receipts.count() == 1
    clock.advance(DELAYS.maximum - DELAYS.minimum + 0.02)
    assert bob.receipts.seal_due() == 1
    delayed.deliver(bob, alice, receipts=False)
    assert _statuses(alice, sent) == [MessageStatus.DELIVERED]


def test_pending_receipts_survive_a_restart_and_leave_after(delayed: Bench, clock: FakeClock) -> None:
    """Test that a receipt pending when the profile closes still waits after it opens, and goes when due."""
    alice, bob = _pair(delayed)
    sent = _send(delayed, alice, bob, "before the restart")
    bob = delayed.reopen(bob)
    assert bob.store.pending_receipts.count() == 1
    assert bob.receipts.seal_due() == 0, "not due yet after the restart either"
    clock.advance(DELAYS.maximum)
    assert bob.receipts.seal_due() == 1
    delayed.deliver(bob, alice, receipts=False)
    assert _statuses(alice, sent) == [MessageStatus.DELIVERED]


def test_the_alarm_seals_due_receipts_by_itself(tmp_path: Path) -> None:
    """Test that the alarm seals receipts once they are due by the clock, with nobody calling seal_due
    (an alarm that rings before they are due by the clock re-arms)."""
    bench = Bench(tmp_path, receipt_delays=ReceiptDelays(0.02, 0.05))
    try:
        assert isinstance(bench.clock, FakeClock)
        alice, bob = _pair(bench)
        _send(bench, alice, bob, "ring")
        bench.idle()
        assert bob.store.pending_receipts.count() == 1, "the clock has not moved: not due"
        bench.clock.advance(1)
        bench.until(lambda: bob.store.pending_receipts.count() == 0, "the alarm sealed the receipt")
        bench.until(lambda: len(bob.transport.stored) == 1, "the receipt left")
    finally:
        bench.close()


def test_a_restarted_profile_arms_its_pending_receipts(tmp_path: Path) -> None:
    """Test that after a restart the alarm is set for the receipts pending from before, which then leave."""
    bench = Bench(tmp_path, receipt_delays=ReceiptDelays(0.02, 0.05))
    try:
        assert isinstance(bench.clock, FakeClock)
        alice, bob = _pair(bench)
        _send(bench, alice, bob, "before the restart")
        bob = bench.reopen(bob)
        assert bob.store.pending_receipts.count() == 1
        bench.clock.advance(1)
        bench.until(lambda: bob.store.pending_receipts.count() == 0, "the receipt left after the restart")
    finally:
        bench.close()


def test_draining_does_not_wait_for_pending_receipts(delayed: Bench) -> None:
    """Test that drained() reports the outbox empty while a receipt waits for its delay, and keeps it."""
    alice, bob = _pair(delayed)
    _send(delayed, alice, bob, "closing soon")
    assert delayed.run(bob.delivery.drained(5.0)) is True
    assert bob.store.pending_receipts.count() == 1
    assert bob.store.outbox.next_attempt() is None


def test_read_receipts_are_batched_per_device_and_kind(delayed: Bench, clock: FakeClock) -> None:
    """Test that messages read within the delay go back in one read receipt envelope, beside one delivery
    receipt envelope for their arrival."""
    alice, bob = _pair(delayed)
    first = _send(delayed, alice, bob, "first")
    conversation = bob.store.conversations.find_with_peer("alice")[0].id
    assert bob.conversations.mark_read(conversation) == 1
    clock.advance(2)
    second = _send(delayed, alice, bob, "second")
    assert bob.conversations.mark_read(conversation) == 1
    assert bob.store.pending_receipts.count() == 4, "two delivered, two read"
    assert bob.store.outbox.due(math.inf) == [], "reading seals nothing at once"
    clock.advance(DELAYS.maximum)
    assert bob.receipts.seal_due() == 2, "one envelope per kind"
    assert len(delayed.deliver(bob, alice, receipts=False)) == 2
    assert _statuses(alice, first + second) == [MessageStatus.READ] * 2


def test_receipts_of_a_disappearing_message_leave_before_it_does(delayed: Bench, clock: FakeClock) -> None:
    """Test that reading a message whose timer is shorter than the delay makes its delivery and read
    receipts due before it expires, so the sweep does not take them with it."""
    alice, bob = _pair(delayed)
    timer = 10
    sent = [delayed.run(alice.sending.send_text(alice.direct(bob, timer_seconds=timer).id, "brief"))]
    delayed.deliver(alice, bob, receipts=False)
    conversation = bob.store.conversations.find_with_peer("alice")[0].id
    assert bob.conversations.mark_read(conversation) == 1
    [message] = bob.store.messages.page(conversation).messages
    assert message.expires_at is not None
    clock.advance(timer - 1)
    assert clock() < message.expires_at
    assert bob.receipts.seal_due() == 2, "the delivery and the read receipt, both before the expiry"
    delayed.deliver(bob, alice, receipts=False)
    assert _statuses(alice, sent) == [MessageStatus.READ]
