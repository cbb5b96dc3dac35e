"""The engine against a relay on PostgreSQL (the several-node set-up), not only SQLite."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.services.events import MessageArrived, MessageStatusChanged
from storage.records import MessageStatus
from tests.conftest import require
from tests.server.stores import POSTGRES_DSN, drop_schema, postgres_problem
from tests.support.clients import WAIT_SECONDS, enrolled_client
from tests.support.relay import RelayProcess


@pytest.fixture
def postgres_relay(tmp_path: Path) -> Iterator[RelayProcess]:
    problem = asyncio.run(postgres_problem())
    require(problem is None, problem or "")
    schema = "t_" + uuid.uuid4().hex[:12]
    folder = tmp_path / "relay"
    folder.mkdir()
    (folder / "server.toml").write_text(
        f'backend = "postgres"\npostgres_dsn = "{POSTGRES_DSN}"\npostgres_schema = "{schema}"\n',
        encoding="utf-8",
    )
    relay = RelayProcess(folder).start()
    yield relay
    relay.stop()
    asyncio.run(drop_schema(schema))


def test_a_conversation_through_a_postgresql_relay(postgres_relay: RelayProcess, tmp_path: Path) -> None:
    """Test that texts both ways and their receipts work when the relay keeps its mailboxes in PostgreSQL."""
    alice = enrolled_client(postgres_relay, tmp_path, "alice", "Alice Archer")
    bob = enrolled_client(postgres_relay, tmp_path, "bob", "Bob Baker")
    try:
        alice.enclave.add_contact("bob", "Bob Baker").result(WAIT_SECONDS)
        conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
        sent = alice.enclave.send_text(conversation.id, "via PostgreSQL").result(WAIT_SECONDS)
        arrived = bob.wait_for(MessageArrived)
        assert arrived.message.body == "via PostgreSQL"
        alice.wait_for(
            MessageStatusChanged, lambda e: e.message_id == sent.id and e.status is MessageStatus.DELIVERED
        )
        bob.enclave.send_text(arrived.conversation.id, "received").result(WAIT_SECONDS)
        assert alice.wait_for(MessageArrived).message.body == "received"
    finally:
        alice.close()
        bob.close()
