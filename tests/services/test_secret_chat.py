"""Secret chats: a mandatory timer, one device, no forwarding, export, search or previews."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.base.errors import LocalProtocolError
from app.services.errors import SecretChatError
from app.services.events import ConversationStarted, MessageArrived
from storage.records import ConversationKind
from tests.support.clients import WAIT_SECONDS, Client


def test_secret_chat_restrictions(pair: tuple[Client, Client], tmp_path: Path) -> None:
    """Test that a secret chat opens on the peer with its timer and refuses what it must refuse."""
    alice, bob = pair
    with pytest.raises(SecretChatError):
        alice.enclave.start_secret_chat("bob", 0).result(WAIT_SECONDS)
    secret = alice.enclave.start_secret_chat("bob", 60).result(WAIT_SECONDS)
    assert secret.kind is ConversationKind.SECRET and secret.secret_id is not None

    started = bob.wait_for(ConversationStarted)
    assert started.conversation.kind is ConversationKind.SECRET
    assert (started.conversation.timer_seconds, started.conversation.peer_account_id) == (60, "alice")

    alice.enclave.send_text(secret.id, "classified detail").result(WAIT_SECONDS)
    arrived = bob.wait_for(MessageArrived)
    assert arrived.conversation.id == started.conversation.id
    assert arrived.preview is None, "a secret chat's notification shows no text"
    assert arrived.message.expire_after == 60
    for client in (alice, bob):
        assert client.enclave.search("classified").result(WAIT_SECONDS) == []

    direct = bob.enclave.start_conversation("alice").result(WAIT_SECONDS)
    assert direct.id != started.conversation.id
    assert bob.enclave.history(direct.id).result(WAIT_SECONDS).messages == ()
    with pytest.raises(SecretChatError):
        bob.enclave.forward(arrived.message.id, direct.id).result(WAIT_SECONDS)

    paper = tmp_path / "paper.txt"
    paper.write_text("eyes only", encoding="utf-8")
    alice.enclave.send_file(secret.id, paper).result(WAIT_SECONDS)
    with_file = bob.wait_for(MessageArrived)
    [attachment] = bob.enclave.attachments(with_file.message.id).result(WAIT_SECONDS)
    with pytest.raises(SecretChatError):
        bob.enclave.save_attachment(attachment.id, tmp_path / "out.txt").result(WAIT_SECONDS)
    assert not (tmp_path / "out.txt").exists()

    with pytest.raises(LocalProtocolError, match="cannot be turned off"):
        alice.enclave.set_timer(secret.id, 0).result(WAIT_SECONDS)
    [summary] = [
        s for s in alice.enclave.conversations().result(WAIT_SECONDS) if s.conversation.id == secret.id
    ]
    assert summary.conversation.timer_seconds == 60
