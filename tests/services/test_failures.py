"""Offline compose, a recipient killed before its ack, and the relay killed mid-stream."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from app.services import client as engine_parts
from app.services.events import ConnectionChanged, MessageArrived, MessageStatusChanged, Problem
from storage.errors import StoreFullError
from storage.records import Message, MessageStatus, NewMessage
from tests.support.clients import WAIT_SECONDS, Client, enrolled_client, first_message, open_client
from tests.support.relay import REPO, RelayProcess


def _bodies(client: Client, conversation_id: int) -> list[str]:
    page = client.enclave.history(conversation_id, limit=500).result(WAIT_SECONDS)
    return [m.body for m in reversed(page.messages)]


def test_offline_compose_leaves_in_order_once_the_relay_is_back(
    relay: RelayProcess, pair: tuple[Client, Client]
) -> None:
    """Test that messages written while the relay is down wait as pending and arrive once, in order."""
    alice, bob = pair
    conversation, _ = first_message(alice, bob, "online first")

    relay.stop()
    alice.wait_for(ConnectionChanged, lambda e: e.state == "offline")
    written = [
        alice.enclave.send_text(conversation.id, f"offline {i}").result(WAIT_SECONDS) for i in range(5)
    ]
    assert all(m.status is MessageStatus.PENDING for m in written)
    pending = alice.enclave.pending().result(WAIT_SECONDS)
    assert sorted(m.id for m in pending) == sorted(m.id for m in written)

    relay.start()
    arrivals = [bob.wait_for(MessageArrived, timeout=30).message.body for _ in written]
    assert arrivals == [f"offline {i}" for i in range(5)]
    for message in written:
        alice.wait_for(MessageStatusChanged, lambda e, m=message: e.message_id == m.id)
    assert alice.enclave.pending().result(WAIT_SECONDS) == []
    assert _bodies(bob, bob.enclave.start_conversation("alice").result(WAIT_SECONDS).id) == [
        "online first",
        *arrivals,
    ]


def test_recipient_killed_between_commit_and_ack_shows_the_message_once(
    relay: RelayProcess, pair: tuple[Client, Client]
) -> None:
    """Test that a recipient killed after storing but before acking sees the redelivery dropped."""
    alice, bob = pair
    conversation, _ = first_message(alice, bob, "warm-up")
    bob.close()

    crashing = subprocess.Popen(
        [sys.executable, "-m", "tests.support.crash_before_ack", str(bob.profile)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert crashing.stdout is not None and crashing.stdout.readline().strip() == "listening"
        alice.enclave.send_text(conversation.id, "exactly once").result(WAIT_SECONDS)
        assert crashing.wait(timeout=30) == -signal.SIGKILL
    finally:
        if crashing.poll() is None:
            crashing.kill()
            crashing.wait()

    restarted = open_client(bob.profile)
    try:
        assert restarted.enclave.wait_online(WAIT_SECONDS).result(WAIT_SECONDS + 5)
        alice.enclave.send_text(conversation.id, "after the crash").result(WAIT_SECONDS)
        assert restarted.wait_for(MessageArrived).message.body == "after the crash"
        assert not [e for e in restarted.seen if isinstance(e, MessageArrived)]
        bob_conversation = restarted.enclave.start_conversation("alice").result(WAIT_SECONDS)
        assert _bodies(restarted, bob_conversation.id) == ["warm-up", "exactly once", "after the crash"]
    finally:
        restarted.close()


def test_relay_killed_mid_stream_loses_nothing(relay: RelayProcess, pair: tuple[Client, Client]) -> None:
    """Test that a relay SIGKILLed while messages flow loses none and shows none twice once restarted."""
    alice, bob = pair
    conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
    sent = [alice.enclave.send_text(conversation.id, f"stream {i}") for i in range(30)]
    bob.wait_for(MessageArrived, timeout=30)
    relay.kill()
    relay.start()
    for future in sent:
        future.result(WAIT_SECONDS)
    expected = [f"stream {i}" for i in range(30)]
    bob_conversation = bob.enclave.start_conversation("alice").result(WAIT_SECONDS)
    for _ in range(60):
        if len(_bodies(bob, bob_conversation.id)) >= 30:
            break
        bob.wait_for(MessageArrived, timeout=30)
    assert _bodies(bob, bob_conversation.id) == expected


def test_a_message_outlives_its_senders_certificate_while_it_waits(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that an envelope still waiting when the sender's certificate expires is accepted on
    delivery: the recipient comes back, by its clock, after the certificate it was sealed with
    expired."""
    alice = enrolled_client(relay, tmp_path, "alice", "Alice Archer")
    bob = enrolled_client(relay, tmp_path, "bob", "Bob Baker")
    try:
        alice.enclave.add_contact("bob", "Bob Baker").result(WAIT_SECONDS)
        bob.close()
        conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
        sent = alice.enclave.send_text(conversation.id, "read this after the weekend").result(WAIT_SECONDS)
        alice.wait_for(
            MessageStatusChanged, lambda e: e.message_id == sent.id and e.status is MessageStatus.SENT
        )
        sealed_with = alice.enclave._run(lambda c: c.credentials.certificate).result(WAIT_SECONDS)
        assert sealed_with is not None
        late = sealed_with.expires_at + 3600 - time.time()

        def after_expiry() -> float:
            return time.time() + late

        bob = open_client(bob.profile, clock=after_expiry)
        assert bob.wait_for(MessageArrived).message.body == "read this after the weekend"
        assert after_expiry() > sealed_with.expires_at
    finally:
        alice.close()
        bob.close()


def test_a_full_disk_is_reported_and_the_message_fetched_again(pair: tuple[Client, Client]) -> None:
    """Test that a store failure while receiving is shown to the user and the message arrives later.

    A full disk cannot be made safely here, so the store's first attempt to add the
    message is made to raise the error SQLite's SQLITE_FULL maps to (a fault injection).
    """
    alice, bob = pair

    def fail_once(engine: engine_parts.Client) -> None:
        original = engine.store.messages.add

        def add(new: NewMessage) -> Message:
            engine.store.messages.add = original  # type: ignore[method-assign]
            raise StoreFullError()

        engine.store.messages.add = add  # type: ignore[method-assign]

    bob.enclave._run(fail_once).result(WAIT_SECONDS)
    conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
    alice.enclave.send_text(conversation.id, "kept on the relay meanwhile").result(WAIT_SECONDS)
    problem = bob.wait_for(Problem)
    assert "disk" in problem.message and "full" in problem.message
    arrived = bob.wait_for(MessageArrived, timeout=30)
    assert arrived.message.body == "kept on the relay meanwhile"
    assert _bodies(bob, arrived.conversation.id) == ["kept on the relay meanwhile"]
