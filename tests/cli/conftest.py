"""One relay and two colleagues enrolled through ``enclave-cli``, shared by the module's tests.

Each CLI call is a new process that unlocks its profile (Argon2id) and connects, so
the tests share one enrolled pair rather than enrolling per test; each test consumes
the messages it sends.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.cli import CliUser, enrol_user, passphrase_file
from tests.support.relay import RelayProcess


@dataclass(frozen=True)
class Pair:
    alice: CliUser
    bob: CliUser
    enrolments: dict[str, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    process = RelayProcess(tmp_path_factory.mktemp("relay")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def pair(relay: RelayProcess, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    root = tmp_path_factory.mktemp("profiles")
    secret = passphrase_file(root)
    users, enrolments = {}, {}
    for account_id, name in (("alice", "Alice Archer"), ("bob", "Bob Baker")):
        users[account_id] = user = CliUser(account_id, root / account_id, secret)
        enrolments[account_id] = done = enrol_user(relay, user, name)
        assert done.returncode == 0, done.stderr
    return Pair(users["alice"], users["bob"], enrolments)
