"""The key log between real clients and a real relay: a device the relay registered without
logging it is refused, and a device added to an account is shown on that account's devices."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.services.events import DeviceAddedToAccount, MessageStatusChanged, Problem
from storage.records import MessageStatus
from tests.support.clients import WAIT_SECONDS, enrolled_client, enrolled_device
from tests.support.relay import RelayProcess


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    started = RelayProcess(tmp_path_factory.mktemp("keylog-clients") / "relay").start()
    yield started
    started.stop()


def test_a_device_the_relay_registered_without_logging_it_gets_no_message(tmp_path: Path) -> None:
    """Test that when the relay's log leaves out a device it registered (its operator deleted the
    leaf), a colleague who fetches that device's certified bundle refuses it: the message fails
    and the user is told the device is not in the key log."""
    relay = RelayProcess(tmp_path / "relay").start()
    try:
        bob = enrolled_client(relay, tmp_path, "bob", "Bob Baker")
        bob.close()
        relay.stop()
        with sqlite3.connect(relay.data_dir / "relay.sqlite3") as db:
            [(leaf, entry)] = db.execute("SELECT leaf, entry FROM key_log ORDER BY leaf DESC LIMIT 1")
            assert entry[1] == 1  # kind 1: Bob's device added, the last leaf after his account's creation
            assert db.execute("DELETE FROM key_log WHERE leaf = ?", (leaf,)).rowcount == 1
        relay.start()
        alice = enrolled_client(relay, tmp_path, "alice", "Alice Archer")
        try:
            alice.enclave.add_contact("bob", "Bob Baker").result(WAIT_SECONDS)
            conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
            message = alice.enclave.send_text(conversation.id, "for Bob only").result(WAIT_SECONDS)

            alice.wait_for(
                MessageStatusChanged,
                lambda e: e.message_id == message.id and e.status is MessageStatus.FAILED,
            )
            problem = alice.wait_for(Problem)
            assert (
                "bob's device" in problem.message and "not in the organisation's key log" in problem.message
            )
        finally:
            alice.close()
    finally:
        relay.stop()


def test_a_device_added_to_an_account_is_shown_on_its_other_device_at_once(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that when a second device is enrolled for Bob, Bob's connected device says so at once
    (the relay's notice makes it read the log), naming the new device; the new device says
    nothing of the one enrolled before it; both list the same two devices."""
    bob = enrolled_client(relay, tmp_path, "bob.watch", "Bob Baker")
    laptop = enrolled_device(relay, tmp_path / "laptop", "bob.watch")
    try:
        if bob.enclave.account is None or laptop.enclave.account is None:
            raise AssertionError("both devices are enrolled")
        added = bob.wait_for(DeviceAddedToAccount)
        assert added.device_id == laptop.enclave.account.device_id

        seen_by_bob = bob.enclave.key_log().result(WAIT_SECONDS)
        seen_by_laptop = laptop.enclave.key_log().result(WAIT_SECONDS)
        devices = [bob.enclave.account.device_id, laptop.enclave.account.device_id]
        assert [b.device_id for b in seen_by_bob.devices] == devices
        assert seen_by_laptop.devices == seen_by_bob.devices
        assert not any(isinstance(e, DeviceAddedToAccount) for e in laptop.seen + list(laptop.events.queue))
    finally:
        for client in (bob, laptop):
            client.close()
