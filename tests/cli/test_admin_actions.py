"""What ``enclave-cli`` says when IT acts: a device revoked, an account disabled.

Each test enrols its own accounts on the module's relay, since what IT does to them
would break the pair the other CLI tests share.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import CliUser, enrol, passphrase_file, rows
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
def test_a_refusal_ends_listen_at_once(
    relay: RelayProcess, witness: str, tmp_path: Path, account_id: str, reason: str
) -> None:
    """Test that a revoked device or a disabled account ends listen at once, exit 1, with the reason."""
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

