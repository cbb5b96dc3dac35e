"""Identity keys: a contact's new key blocks sending until accepted; a revoked device stops."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.services.errors import IdentityChangedError
from app.services.events import (
    ConnectionChanged,
    KeyChanged,
    MessageArrived,
    MessageHeld,
    MessageStatusChanged,
)
from app.services.types import MessageStatus, Trust
from app.sync.machine import Backoff
from tests.support.authority import run_admin
from tests.support.clients import WAIT_SECONDS, Client, enrolled_device, first_message, open_client, until
from tests.support.deployment import deployment
from tests.support.mailbox import deliverable
from tests.support.relay import RelayProcess, admin


@dataclass(frozen=True)
class CountingBackoff(Backoff):
    """No wait between attempts, and a note of every time the link asked how long to wait."""

    base_seconds: float = 0.0
    asked: list[int] = field(default_factory=list)

    def delay(self, attempt: int, unit_random: float) -> float:
        self.asked.append(attempt)
        return super().delay(attempt, unit_random)


HELD_FLUSH_SECONDS = 2.0
"""How long flush is given to show a held message does not leave (the relay's mailbox count
after it is what proves nothing was sent)."""


def _reinstall(relay: RelayProcess, old: Client, root: Path) -> Client:
    """The colleague's workstation is replaced: IT revokes the old device at the relay and at the
    enrolment authority, and the new one enrols with a new code."""
    account = old.enclave.account
    assert account is not None
    assert admin(relay.data_dir, "device", "revoke", str(account.device_id)).returncode == 0
    revoked = run_admin(
        "authority",
        "revoke",
        account.account_id,
        str(account.device_id),
        "--authority-data",
        str(deployment().authority().data_dir),
    )
    assert revoked.returncode == 0, revoked.stderr
    old.close()
    return enrolled_device(relay, root / "bob-new-laptop", account.account_id)


def test_changed_key_blocks_sending_until_accepted(
    relay: RelayProcess, pair: tuple[Client, Client], tmp_path: Path
) -> None:
    """Test that a contact's new device key is flagged, blocks sending, and after acceptance gets messages."""
    alice, bob = pair
    conversation, _ = first_message(alice, bob, "before")
    [before] = alice.enclave.safety_numbers("bob").result(WAIT_SECONDS)
    alice.enclave.mark_verified("bob", before.device_id).result(WAIT_SECONDS)
    assert alice.enclave.safety_numbers("bob").result(WAIT_SECONDS)[0].trust is Trust.VERIFIED

    laptop = _reinstall(relay, bob, tmp_path)
    try:
        laptop.enclave.add_contact("alice", "Alice Archer").result(WAIT_SECONDS)
        back = laptop.enclave.start_conversation("alice").result(WAIT_SECONDS)
        laptop.enclave.send_text(back.id, "new laptop, same Bob").result(WAIT_SECONDS)

        changed = alice.wait_for(KeyChanged)
        assert changed.account_id == "bob" and changed.device_id == laptop.enclave.account.device_id
        assert alice.wait_for(MessageArrived).message.body == "new laptop, same Bob"
        [summary] = alice.enclave.conversations().result(WAIT_SECONDS)
        assert summary.blocked
        with pytest.raises(IdentityChangedError):
            alice.enclave.send_text(conversation.id, "blocked").result(WAIT_SECONDS)

        numbers = {n.device_id: n for n in alice.enclave.safety_numbers("bob").result(WAIT_SECONDS)}
        new_number = numbers[changed.device_id]
        assert new_number.trust is Trust.CHANGED
        assert new_number.digits == laptop.enclave.safety_numbers("alice").result(WAIT_SECONDS)[0].digits
        assert new_number.digits != before.digits

        alice.enclave.accept_key_change("bob").result(WAIT_SECONDS)
        assert not alice.enclave.conversations().result(WAIT_SECONDS)[0].blocked
        sent = alice.enclave.send_text(conversation.id, "accepted").result(WAIT_SECONDS)
        assert laptop.wait_for(MessageArrived).message.body == "accepted"
        alice.wait_for(
            MessageStatusChanged, lambda e: e.message_id == sent.id and e.status is MessageStatus.SENT
        )
        until(
            lambda: (
                {n.device_id for n in alice.enclave.safety_numbers("bob").result(WAIT_SECONDS)}
                == {changed.device_id}
            ),
            "the revoked device is forgotten once the relay refuses it",
        )
    finally:
        laptop.close()


def test_revoked_device_is_told_and_stops_retrying(relay: RelayProcess, pair: tuple[Client, Client]) -> None:
    """Test that a device revoked while away gets a clear refusal on reconnecting and never retries."""
    alice, _ = pair
    account = alice.enclave.account
    assert account is not None
    alice.close()
    assert admin(relay.data_dir, "device", "revoke", str(account.device_id)).returncode == 0

    backoff = CountingBackoff()
    returning = open_client(alice.profile, backoff=backoff)
    try:
        refused = returning.wait_for(ConnectionChanged, lambda e: e.state == "refused")
        assert "revoked" in refused.reason.lower()
        # A retry would ask the back-off for a delay at once (no await in between); one
        # round trip through the worker loop comes after it.
        returning.enclave.contacts().result(WAIT_SECONDS)
        assert backoff.asked == [], "no reconnection after a refusal"
        assert returning.enclave.connection.state == "refused"
        assert returning.events.empty(), "no state change after the refusal"
    finally:
        returning.close()


def test_a_message_to_a_replaced_device_waits_for_the_new_key(
    relay: RelayProcess, pair: tuple[Client, Client], tmp_path: Path
) -> None:
    """Test that nothing reaches a replacement device before its key is accepted; then the message does."""
    alice, bob = pair
    conversation, _ = first_message(alice, bob, "before")
    laptop = _reinstall(relay, bob, tmp_path)
    laptop_account = laptop.enclave.account
    assert laptop_account is not None
    laptop.close()  # offline, so whatever is sent to it stays in its mailbox where the test can count it
    try:
        sent = alice.enclave.send_text(conversation.id, "are you there?").result(WAIT_SECONDS)
        changed = alice.wait_for(KeyChanged)
        assert changed.device_id == laptop_account.device_id
        held = alice.wait_for(MessageHeld)
        assert (held.message_id, held.conversation_id, held.account_id) == (sent.id, conversation.id, "bob")
        assert [m.id for m in alice.enclave.pending().result(WAIT_SECONDS)] == [sent.id]
        # A held message never leaves, so flush waits out its whole timeout: a short one says as much.
        assert alice.enclave.flush(HELD_FLUSH_SECONDS).result(WAIT_SECONDS) is False, "the message is held"
        assert deliverable(relay, laptop_account.device_id) == 0, "nothing was sent to the unaccepted key"

        alice.enclave.accept_key_change("bob").result(WAIT_SECONDS)
        alice.wait_for(
            MessageStatusChanged, lambda e: e.message_id == sent.id and e.status is MessageStatus.SENT
        )
        assert deliverable(relay, laptop_account.device_id) == 1
        laptop = open_client(laptop.profile)
        assert laptop.wait_for(MessageArrived).message.body == "are you there?"
    finally:
        laptop.close()
