"""The policy is checked again when a waiting message is sealed: a newer config that arrived while
it waited (imported, or from the relay) applies to it, not only to what is written after."""

from __future__ import annotations

from pathlib import Path

from app.services.events import MessageStatusChanged, Problem
from storage.records import MessageStatus
from tests.support.clients import WAIT_SECONDS, Client, first_message, import_organisation
from tests.support.relay import RelayProcess


def test_a_message_written_offline_is_refused_when_the_policy_forbids_it_by_the_time_it_leaves(
    relay: RelayProcess, pair: tuple[Client, Client], tmp_path: Path
) -> None:
    """Test that a timed message written while the relay was down (so not sealed yet), before a
    config making secret chats the only ones arrived, is not sealed once the relay is back: it
    fails, the user is told which rule stopped it, and nothing of it is in the outbox."""
    alice, bob = pair
    conversation, _ = first_message(alice, bob, "before the rule")
    alice.enclave.set_timer(conversation.id, 3600).result(
        WAIT_SECONDS
    )  # a timed message waits to be sealed online
    relay.stop()
    waiting = alice.enclave.send_text(conversation.id, "written offline").result(WAIT_SECONDS)
    assert waiting.status is MessageStatus.PENDING
    import_organisation(
        alice, relay, tmp_path / "v2" / "enclave.toml", version=2, mandatory="secret_chats_only = true"
    )
    relay.start()
    failed = alice.wait_for(MessageStatusChanged, lambda e: e.message_id == waiting.id)
    assert failed.status is MessageStatus.FAILED
    problem = alice.wait_for(Problem)
    assert "secret_chats_only" in problem.message
    assert [m.id for m in alice.enclave.pending().result(WAIT_SECONDS)] == []
    assert alice.enclave.flush(WAIT_SECONDS).result(WAIT_SECONDS + 5)
