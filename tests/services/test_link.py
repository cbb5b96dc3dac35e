"""The relay link: the pin checked before anything is sent, bad envelopes, prekeys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.base.errors import PinMismatchError
from app.services.events import ConnectionChanged, MessageArrived
from app.services.facade import Enclave
from storage.errors import WrongPassphraseError
from storage.keyheader import MINIMUM_COST
from storage.keys import Passphrase
from storage.records import PreKeyKind
from tests.support.clients import (
    WAIT_SECONDS,
    Client,
    enrolled_client,
    first_message,
    import_organisation,
    open_client,
)
from tests.support.deployment import deployment
from tests.support.mailbox import registered
from tests.support.relay import RelayProcess, TestDevice, new_account

WRONG_PIN = "sha256/" + "A" * 43 + "="
OTHER_WRONG_PIN = "sha256/" + "B" * 43 + "="


def test_a_relay_with_another_key_than_pinned_is_sent_nothing(relay: RelayProcess, tmp_path: Path) -> None:
    """Test that enrolling at a relay whose key matches none of the config's pins fails before the
    relay is sent anything (it registers no device) and leaves the profile unenrolled, and that once
    a config pins the relay's key the same code enrols the profile."""
    new_account(relay.data_dir, "carol", "Carol")
    code = deployment().code("carol")
    client = open_client(tmp_path / "carol", create=True)
    try:
        import_organisation(client, relay, tmp_path / "v1" / "enclave.toml", relay_pins=(WRONG_PIN,))
        with pytest.raises(PinMismatchError, match="matches no pinned key"):
            client.enclave.enrol(None, None, code).result(WAIT_SECONDS)
        assert client.enclave.account is None
        assert registered(relay, "carol") == []
        import_organisation(client, relay, tmp_path / "v2" / "enclave.toml", version=2)
        account = client.enclave.enrol(None, None, code).result(WAIT_SECONDS)
        assert account.account_id == "carol"
        assert [device_id for device_id, _ in registered(relay, "carol")] == [account.device_id]
    finally:
        client.close()


def test_a_relay_presenting_another_key_is_never_authenticated_to(
    relay: RelayProcess, pair: tuple[Client, Client], tmp_path: Path
) -> None:
    """Test that a config in force whose pins none match keeps the device offline with the reason shown."""
    alice, _ = pair
    wrong_pins = (WRONG_PIN, OTHER_WRONG_PIN)
    import_organisation(alice, relay, tmp_path / "wrong" / "enclave.toml", version=2, relay_pins=wrong_pins)
    alice.close()
    reopened = open_client(alice.profile)
    try:
        offline = reopened.wait_for(ConnectionChanged, lambda e: e.state == "offline" and bool(e.reason))
        assert "pinned" in offline.reason
        assert not reopened.enclave.wait_online(1).result(WAIT_SECONDS)
    finally:
        reopened.close()


def test_wrong_passphrase_is_a_typed_error(pair: tuple[Client, Client]) -> None:
    """Test that opening a profile with a wrong passphrase raises WrongPassphraseError."""
    alice, _ = pair
    alice.close()
    with pytest.raises(WrongPassphraseError):
        Enclave.open(alice.profile, Passphrase("not it", MINIMUM_COST))


@pytest.fixture
def intruder(relay: RelayProcess) -> Iterator[tuple[TestDevice, asyncio.AbstractEventLoop]]:
    """An enrolled raw device (tests/support/relay.py) that can send any bytes, and its loop."""
    device = TestDevice(relay)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(device.join(new_account(relay.data_dir, "mallory", "Mallory")))
    yield device, loop
    loop.run_until_complete(device.disconnect())
    loop.close()


def test_undecryptable_envelope_is_dropped_and_the_client_keeps_working(
    pair: tuple[Client, Client], intruder: tuple[TestDevice, asyncio.AbstractEventLoop]
) -> None:
    """Test that junk sealed bytes pushed to a client are dropped without harm to what follows."""
    alice, bob = pair
    device, loop = intruder
    assert bob.enclave.account is not None
    for junk in (b"\x01" + b"\x00" * 200, b"\x07junk"):
        response, _ = loop.run_until_complete(device.send(bob.enclave.account.device_id, junk))
        assert response.status.name == "OK"
    conversation = alice.enclave.start_conversation("bob").result(WAIT_SECONDS)
    alice.enclave.send_text(conversation.id, "still fine").result(WAIT_SECONDS)
    assert bob.wait_for(MessageArrived).message.body == "still fine"


def test_prekeys_are_refilled_when_the_relay_runs_low(tmp_path: Path) -> None:
    """Test that a PREKEYS_LOW notice makes the client make, keep and upload fresh one-time prekeys."""
    relay = RelayProcess(tmp_path / "relay", "--prekeys-low-threshold", "150").start()
    try:
        client = enrolled_client(relay, tmp_path, "dave", "Dave")
        try:
            deadline = time.monotonic() + WAIT_SECONDS
            count = 0
            while time.monotonic() < deadline:
                count = client.enclave._run(lambda e: len(e.store.prekeys.list(PreKeyKind.ONE_TIME))).result(
                    5
                )
                if count >= 200:
                    break
                time.sleep(0.2)
            assert count == 200
        finally:
            client.close()
    finally:
        relay.stop()


def test_a_received_prekey_message_uses_up_its_one_time_prekey(pair: tuple[Client, Client]) -> None:
    """Test that the one-time prekey a first message used is deleted with its receipt, and only that one."""
    alice, bob = pair

    def one_time_ids(client: Client) -> set[int]:
        keys = client.enclave._run(lambda c: c.store.prekeys.list(PreKeyKind.ONE_TIME)).result(WAIT_SECONDS)
        return {k.key_id for k in keys}

    before = one_time_ids(bob)
    first_message(alice, bob, "first contact")
    after = one_time_ids(bob)
    assert len(before - after) == 1 and after < before, "exactly the prekey the message named is gone"
