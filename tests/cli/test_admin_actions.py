"""What ``enclave-cli`` says when IT acts: a device revoked, an account disabled, a colleague's new device.

Each test enrols its own accounts on the module's relay, since what IT does to them
would break the pair the other CLI tests share.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import CliUser, enrol, pairs, passphrase_file, rows
from tests.support.relay import RelayProcess, admin, new_account

NO_WAITING_OUT = "120"
"""A ``--wait`` longer than a CLI run may last (``RUN_SECONDS``): waiting it out fails the test."""


@pytest.fixture(scope="module")
def witness(relay: RelayProcess) -> str:
    """A colleague in the directory to write to (never enrolled: nothing reaches them anyway)."""
    new_account(relay.data_dir, "witness", "Wendy Witness")
    return "witness"


@pytest.mark.parametrize(
    ("account_id", "reason"),
    [
        ("cut-off-device", "This device was revoked by your organisation's administrator."),
        ("cut-off-account", "Your account is disabled. Contact your organisation's administrator."),
    ],
)
def test_a_refusal_ends_listen_and_send_at_once(
    relay: RelayProcess, witness: str, tmp_path: Path, account_id: str, reason: str
) -> None:
    """Test that a revoked device or a disabled account ends listen and send at once, exit 1, with why."""
    user = CliUser(account_id, tmp_path / account_id, passphrase_file(tmp_path))
    device = enrol(relay, user, new_account(relay.data_dir, account_id, "Cut Off"))
    found = user.run("contacts", "--search", "Witness")
    assert found.returncode == 0 and rows(found.stdout)[0][0] == witness, found.stderr
    if account_id == "cut-off-device":
        done = admin(relay.data_dir, "device", "revoke", str(device))
    else:
        done = admin(relay.data_dir, "account", "disable", account_id)
    assert done.returncode == 0, done.stderr

    listened = user.run("listen", "--wait", NO_WAITING_OUT)
    assert listened.returncode == 1 and listened.stdout == "", listened.stderr
    assert listened.stderr.splitlines()[-1] == f"enclave-cli: the relay refused this device: {reason}"

    sent = user.run("send", witness, "Is anyone there?", "--wait", NO_WAITING_OUT)
    assert sent.returncode == 1 and pairs(sent.stdout)["status"] == "pending", sent.stderr
    assert sent.stderr.splitlines() == [f"enclave-cli: the relay refused this device: {reason}"]


def test_a_send_held_for_a_new_key_says_so_and_leaves_once_accepted(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that a send to a colleague's new device says it waits for their new key, until accepted."""
    secret = passphrase_file(tmp_path)
    alice = CliUser("a.ivanova", tmp_path / "alice", secret)
    bob = CliUser("b.petrov", tmp_path / "bob", secret)
    enrol(relay, alice, new_account(relay.data_dir, "a.ivanova", "Anna Ivanova"))
    old_device = enrol(relay, bob, new_account(relay.data_dir, "b.petrov", "Boris Petrov"))
    first = alice.run("send", "b.petrov", "Hello Boris")
    assert first.returncode == 0 and pairs(first.stdout)["status"] == "sent", first.stderr
    listened = bob.run("listen", "--count", "1", "--wait", "60")
    assert [body for _, _, _, body, _ in rows(listened.stdout)] == ["Hello Boris"], listened.stderr

    # Boris's workstation is replaced: IT revokes the old device, he enrols a new one.
    revoked = admin(relay.data_dir, "device", "revoke", str(old_device))
    assert revoked.returncode == 0, revoked.stderr
    new_bob = CliUser("b.petrov", tmp_path / "bob-new", secret)
    new_device = enrol(relay, new_bob, "b.petrov")
    assert new_device != old_device

    held = alice.run("send", "b.petrov", "Is this still you?", "--wait", NO_WAITING_OUT)
    assert held.returncode == 0 and pairs(held.stdout)["status"] == "pending", held.stderr
    assert "waiting until you accept b.petrov's new key" in held.stderr
    assert "enclave-cli safety-number b.petrov --accept" in held.stderr
    assert "the relay has not taken it" not in held.stderr

    accepted = alice.run("safety-number", "b.petrov", "--accept")
    assert accepted.returncode == 0, accepted.stderr
    arrived = new_bob.run("listen", "--count", "1", "--wait", "60")
    assert arrived.returncode == 0, arrived.stderr
    [[_, sender, _, body, _]] = rows(arrived.stdout)
    assert (sender, body) == ("a.ivanova", "Is this still you?")
