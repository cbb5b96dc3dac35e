"""A whole conversation between two real clients through a real relay on loopback."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from app.crypto.keys import IdentityKeyPair
from app.protocol.frames import delivery_key_hash
from app.services.errors import FileAccessError, TimerNotAllowedError
from app.services.events import MessageArrived, MessageStatusChanged, TimerChanged
from storage.records import MessageStatus
from tests.server.relays import configure
from tests.support.clients import WAIT_SECONDS, Client, enrolled_client, first_message, open_client, until
from tests.support.relay import RelayProcess


def test_text_both_ways_with_delivery_and_read_receipts(pair: tuple[Client, Client]) -> None:
    """Test that a text arrives, the sender sees sent, delivered and read, and the reply arrives too."""
    alice, bob = pair
    conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
    sent = alice.enclave.send_text(conversation.id, "The draft is ready.").result(WAIT_SECONDS)

    arrived = bob.wait_for(MessageArrived)
    assert arrived.message.body == "The draft is ready."
    assert arrived.message.sender == "alice" and arrived.preview == "The draft is ready."
    assert sent.status in (MessageStatus.PENDING, MessageStatus.SENT)
    alice.wait_for(
        MessageStatusChanged, lambda e: e.message_id == sent.id and e.status == MessageStatus.DELIVERED
    )

    assert bob.enclave.mark_read(arrived.conversation.id).result(WAIT_SECONDS) == 1
    alice.wait_for(MessageStatusChanged, lambda e: e.message_id == sent.id and e.status == MessageStatus.READ)

    bob.enclave.send_text(arrived.conversation.id, "Thanks, reading it now.").result(WAIT_SECONDS)
    reply = alice.wait_for(MessageArrived)
    assert reply.conversation.id == conversation.id
    page = alice.enclave.history(conversation.id).result(WAIT_SECONDS)
    assert [m.body for m in page.messages] == ["Thanks, reading it now.", "The draft is ready."]
    assert page.messages[1].status == MessageStatus.READ
    assert [m.id for m in alice.enclave.search("draft").result(WAIT_SECONDS)] == [sent.id]


def test_read_receipts_can_be_turned_off(pair: tuple[Client, Client]) -> None:
    """Test that with read receipts off the sender sees delivered but never read."""
    alice, bob = pair
    bob.enclave.set_read_receipts(False).result(WAIT_SECONDS)
    conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
    sent = alice.enclave.send_text(conversation.id, "one").result(WAIT_SECONDS)
    arrived = bob.wait_for(MessageArrived)
    alice.wait_for(
        MessageStatusChanged, lambda e: e.message_id == sent.id and e.status == MessageStatus.DELIVERED
    )
    bob.enclave.mark_read(arrived.conversation.id).result(WAIT_SECONDS)
    second = alice.enclave.send_text(conversation.id, "two").result(WAIT_SECONDS)
    alice.wait_for(
        MessageStatusChanged, lambda e: e.message_id == second.id and e.status == MessageStatus.DELIVERED
    )
    history = alice.enclave.history(conversation.id).result(WAIT_SECONDS).messages
    assert history[1].status == MessageStatus.DELIVERED
    assert not any(isinstance(e, MessageStatusChanged) and e.status == MessageStatus.READ for e in alice.seen)


def test_a_file_both_ways_arrives_identical_and_goes_with_its_message(
    pair: tuple[Client, Client], tmp_path: Path
) -> None:
    """Test that files sent each way decrypt to the same bytes, and deleting the message deletes the file."""
    alice, bob = pair
    report = tmp_path / "report.pdf"
    report.write_bytes(os.urandom(300_000))
    conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
    alice.enclave.send_file(conversation.id, report, "for review").result(WAIT_SECONDS)
    arrived = bob.wait_for(MessageArrived)
    assert arrived.message.body == "for review"
    [attachment] = bob.enclave.attachments(arrived.message.id).result(WAIT_SECONDS)
    assert (attachment.name, attachment.mime_type, attachment.size) == (
        "report.pdf",
        "application/pdf",
        300_000,
    )
    with pytest.raises(FileAccessError, match="cannot save"):
        bob.enclave.save_attachment(attachment.id, tmp_path / "no-folder" / "x.pdf").result(WAIT_SECONDS)
    saved = tmp_path / "saved.pdf"
    bob.enclave.save_attachment(attachment.id, saved).result(WAIT_SECONDS)
    assert saved.read_bytes() == report.read_bytes()

    answer = tmp_path / "notes.txt"
    answer.write_text("Section 3 needs a source.", encoding="utf-8")
    bob.enclave.send_file(arrived.conversation.id, answer).result(WAIT_SECONDS)
    back = alice.wait_for(MessageArrived)
    [returned] = alice.enclave.attachments(back.message.id).result(WAIT_SECONDS)
    alice.enclave.save_attachment(returned.id, tmp_path / "back.txt").result(WAIT_SECONDS)
    assert (tmp_path / "back.txt").read_text(encoding="utf-8") == "Section 3 needs a source."

    files_before = set((bob.profile / "attachments").iterdir())
    assert files_before
    bob.enclave.delete_messages([arrived.message.id]).result(WAIT_SECONDS)
    assert len(set((bob.profile / "attachments").iterdir())) == len(files_before) - 1


def test_a_file_sent_right_after_opening_waits_for_the_connection(
    pair: tuple[Client, Client], tmp_path: Path
) -> None:
    """Test that a file queued before the link is up leaves once it is, instead of failing."""
    alice, bob = pair
    alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
    alice.close()
    reopened = open_client(alice.profile)
    try:
        memo = tmp_path / "memo.txt"
        memo.write_text("sent while connecting", encoding="utf-8")
        conversation = reopened.enclave.start_conversation("bob").result(WAIT_SECONDS)
        sent = reopened.enclave.send_file(conversation.id, memo).result(WAIT_SECONDS)
        assert sent.status is MessageStatus.PENDING
        arrived = bob.wait_for(MessageArrived)
        [attachment] = bob.enclave.attachments(arrived.message.id).result(WAIT_SECONDS)
        assert attachment.name == "memo.txt"
        with pytest.raises(FileAccessError):
            reopened.enclave.send_file(conversation.id, tmp_path / "missing.pdf").result(WAIT_SECONDS)
        assert [m.id for m in reopened.enclave.pending().result(WAIT_SECONDS)] == []
    finally:
        reopened.close()


def test_flush_waits_until_control_messages_have_left(pair: tuple[Client, Client]) -> None:
    """Test that flush returns True once a timer change has left, and the peer then has it."""
    alice, bob = pair
    conversation, _ = first_message(alice, bob, "hello")
    with pytest.raises(TimerNotAllowedError, match="timer_maximum_seconds"):
        alice.enclave.set_timer(conversation.id, 10**9).result(WAIT_SECONDS)
    [summary] = alice.enclave.conversations().result(WAIT_SECONDS)
    assert summary.conversation.timer_seconds == 0, "a refused timer changes nothing"
    alice.enclave.set_timer(conversation.id, 3600).result(WAIT_SECONDS)
    assert alice.enclave.flush(WAIT_SECONDS).result(WAIT_SECONDS + 5)
    alice.close()
    assert bob.wait_for(TimerChanged).timer_seconds == 3600


def test_a_stranger_is_named_by_their_certificate_not_by_the_relay(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that a message from someone not in the contacts names them at once with the name and
    department their certificate carries, although the relay's directory now says another name
    for them: nobody asked the relay who wrote, and the relay cannot rename a sender."""
    alice = enrolled_client(relay, tmp_path, "alice", "Alice Archer")
    dora = enrolled_client(relay, tmp_path, "dora", "Dora Daniels")
    try:
        with sqlite3.connect(relay.data_dir / "relay.sqlite3") as db:
            db.execute("UPDATE accounts SET display_name = 'Forged Name' WHERE account_id = 'dora'")
        dora.enclave.add_contact("alice", "Alice Archer").result(WAIT_SECONDS)
        conversation = dora.enclave.start_conversation("alice").result(WAIT_SECONDS)
        dora.enclave.send_text(conversation.id, "we have not met").result(WAIT_SECONDS)
        arrived = alice.wait_for(MessageArrived)
        [contact] = alice.enclave.contacts().result(WAIT_SECONDS)
        assert (contact.account_id, contact.display_name, contact.department) == (
            "dora",
            "Dora Daniels",
            "Tests",
        )
        assert arrived.conversation.title == "Dora Daniels"
        [summary] = alice.enclave.conversations().result(WAIT_SECONDS)
        assert summary.conversation.id == arrived.conversation.id
        assert summary.conversation.title == "Dora Daniels"
    finally:
        alice.close()
        dora.close()


def test_each_device_registers_the_hash_of_its_delivery_key_and_the_relay_holds_no_key(
    relay: RelayProcess, pair: tuple[Client, Client]
) -> None:
    """Test that once online both clients have given the relay the SHA-256 of their delivery key (what an
    unidentified envelope to them must match), that no key itself is in the relay's database files, and
    that a text both ways, the reply sent with the key the first text taught, arrives."""
    alice, bob = pair
    conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
    alice.enclave.send_text(conversation.id, "first").result(WAIT_SECONDS)
    arrived = bob.wait_for(MessageArrived)
    bob.enclave.send_text(arrived.conversation.id, "answered unidentified").result(WAIT_SECONDS)
    assert alice.wait_for(MessageArrived).message.body == "answered unidentified"
    with sqlite3.connect(relay.data_dir / "relay.sqlite3") as db:
        rows = db.execute(
            "SELECT a.account_id, length(k.key_hash) FROM delivery_keys k JOIN devices d USING (device_id)"
            " JOIN accounts a USING (account_id) WHERE a.account_id IN ('alice', 'bob') ORDER BY 1"
        ).fetchall()
    assert rows == [("alice", 32), ("bob", 32)]
    keys = []
    for client in (alice, bob):
        identity = client.enclave.account
        assert identity is not None
        keys.append(IdentityKeyPair.from_seed(identity.seed).delivery_key)
    with sqlite3.connect(relay.data_dir / "relay.sqlite3") as db:
        hashes = {bytes(row[0]) for row in db.execute("SELECT key_hash FROM delivery_keys")}
    assert {delivery_key_hash(key) for key in keys} <= hashes
    files = [path.read_bytes() for path in relay.data_dir.glob("relay.sqlite3*")]
    assert not any(key in data for key in keys for data in files)


def test_the_unidentified_socket_closes_when_idle_and_opens_again_for_the_next_envelope(
    pair: tuple[Client, Client],
) -> None:
    """Test that the socket that hands envelopes in without a sender closes once nothing was delivered
    on it for delivery_idle_seconds (shortened here), and that the next envelope opens a new one and
    arrives: one socket never ties a whole day's envelopes together."""
    alice, bob = pair
    for client in pair:
        client.enclave._run(lambda c: setattr(c.relay, "delivery_idle_seconds", 3.0)).result(WAIT_SECONDS)
    conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
    alice.enclave.send_text(conversation.id, "first, by SEND").result(WAIT_SECONDS)
    arrived = bob.wait_for(MessageArrived)
    bob.enclave.send_text(arrived.conversation.id, "by DELIVER").result(WAIT_SECONDS)
    assert alice.wait_for(MessageArrived).message.body == "by DELIVER"

    def delivery_path_open(client: Client) -> bool:
        return client.enclave._run(lambda c: c.relay.delivery_path_open).result(WAIT_SECONDS)

    assert delivery_path_open(bob), "Bob's envelope went by DELIVER on the unidentified socket"
    until(lambda: not delivery_path_open(bob), "Bob's idle unidentified socket closed")
    bob.enclave.send_text(arrived.conversation.id, "again by DELIVER").result(WAIT_SECONDS)
    assert alice.wait_for(MessageArrived).message.body == "again by DELIVER"
    until(lambda: not delivery_path_open(bob), "and closed again")


def test_a_file_to_a_device_that_wrote_to_us_is_uploaded_without_naming_us(tmp_path: Path) -> None:
    """Test that once Bob's device has written to Alice, her file to him is uploaded with his delivery key,
    charged to his mailbox, not to her device: with her own hourly share spent (her token is refused
    429), the file still reaches him."""
    relay_dir = tmp_path / "relay"
    configure(relay_dir, "sqlite", {"attachment_max_bytes": 100_000, "attachment_bytes_per_hour": 100_000})
    relay = RelayProcess(relay_dir).start()
    alice = enrolled_client(relay, tmp_path, "alice", "Alice Archer")
    bob = enrolled_client(relay, tmp_path, "bob", "Bob Baker")
    try:
        alice.enclave.add_contact("bob", "Bob Baker").result(WAIT_SECONDS)
        bob.enclave.add_contact("alice", "Alice Archer").result(WAIT_SECONDS)
        conversation, arrived = first_message(alice, bob, "a file follows")
        bob.enclave.send_text(arrived.conversation.id, "send it").result(WAIT_SECONDS)
        alice.wait_for(MessageArrived)

        token = alice.enclave._run(lambda c: c.credentials.upload_token).result(WAIT_SECONDS)
        assert token

        async def spend_alices_share() -> list[int]:
            headers = {"Authorization": "Enclave-Upload " + token.hex()}
            statuses = []
            url = f"{relay.https}/v1/attachments"
            async with aiohttp.ClientSession() as http:
                for _ in range(2):
                    blob = os.urandom(90_000)
                    async with http.post(url, data=blob, headers=headers, ssl=relay.ssl_context()) as r:
                        statuses.append(r.status)
            return statuses

        assert asyncio.run(spend_alices_share()) == [201, 429], "her device's own share is spent"
        report = tmp_path / "report.txt"
        report.write_bytes(os.urandom(50_000))
        alice.enclave.send_file(conversation.id, report).result(WAIT_SECONDS)
        delivered = bob.wait_for(MessageArrived)
        [attachment] = bob.enclave.attachments(delivered.message.id).result(WAIT_SECONDS)
        bob.enclave.save_attachment(attachment.id, tmp_path / "saved.txt").result(WAIT_SECONDS)
        assert (tmp_path / "saved.txt").read_bytes() == report.read_bytes()
    finally:
        alice.close()
        bob.close()
        relay.stop()
