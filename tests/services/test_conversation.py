"""A whole conversation between two real clients through a real relay on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.services.events import MessageArrived, MessageStatusChanged
from storage.records import MessageStatus
from tests.support.clients import WAIT_SECONDS, Client, enrolled_client
from tests.support.relay import RelayProcess


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    process = RelayProcess(tmp_path / "relay").start()
    yield process
    process.stop()


@pytest.fixture
def pair(relay: RelayProcess, tmp_path: Path) -> Iterator[tuple[Client, Client]]:
    alice = enrolled_client(relay, tmp_path, "alice", "Alice Archer")
    bob = enrolled_client(relay, tmp_path, "bob", "Bob Baker")
    yield alice, bob
    alice.close()
    bob.close()


def test_text_both_ways_with_delivery_and_read_receipts(pair: tuple[Client, Client]) -> None:
    """Test that a text arrives, the sender sees sent, delivered and read, and the reply arrives too."""
    alice, bob = pair
    alice.enclave.add_contact("bob", "Bob Baker").result(WAIT_SECONDS)
    conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
    sent = alice.enclave.send_text(conversation.id, "The draft is ready.").result(WAIT_SECONDS)

    arrived = bob.wait_for(MessageArrived)
    assert arrived.message.body == "The draft is ready."
    assert arrived.message.sender == "alice" and arrived.preview == "The draft is ready."
    for status in (MessageStatus.DELIVERED,):
        alice.wait_for(MessageStatusChanged, lambda e, s=status: e.message_id == sent.id and e.status == s)

    assert bob.enclave.mark_read(arrived.conversation.id).result(WAIT_SECONDS) == 1
    alice.wait_for(MessageStatusChanged, lambda e: e.message_id == sent.id and e.status == MessageStatus.READ)

    bob.enclave.send_text(arrived.conversation.id, "Thanks, reading it now.").result(WAIT_SECONDS)
    reply = alice.wait_for(MessageArrived)
    assert reply.conversation.id == conversation.id
    page = alice.enclave.history(conversation.id).result(WAIT_SECONDS)
    assert [m.body for m in page.messages] == ["Thanks, reading it now.", "The draft is ready."]
    assert page.messages[1].status == MessageStatus.READ
