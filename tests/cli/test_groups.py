"""``enclave-cli group``: three colleagues as real processes through a real relay create a group, write
to it, and remove a member, who gets nothing after; the relay's files never hold the group's id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import CliUser, enrol_user, pairs, passphrase_file, rows
from tests.support.relay import RelayProcess

LISTEN = ("listen", "--count", "1", "--wait", "60")


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    process = RelayProcess(tmp_path_factory.mktemp("relay")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def people(relay: RelayProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, CliUser]:
    root = tmp_path_factory.mktemp("profiles")
    secret = passphrase_file(root)
    users = {}
    for account_id, name in (("g.alice", "Alice Archer"), ("g.bob", "Bob Baker"), ("g.carol", "Carol Clark")):
        users[account_id] = user = CliUser(account_id, root / account_id, secret)
        done = enrol_user(relay, user, name)
        assert done.returncode == 0, done.stderr
    return users


def _group_id_of(user: CliUser) -> str:
    """The id of the user's one group conversation, after taking what the relay holds for it."""
    user.run("listen", "--wait", "3")
    [conversation] = [row[0] for row in rows(user.run("conversations").stdout) if row[1] == "group"]
    return conversation


def test_a_group_is_made_written_to_and_a_removed_member_hears_nothing_more(
    relay: RelayProcess, people: dict[str, CliUser]
) -> None:
    """Test the whole path with enclave-cli processes: alice creates a group with bob and carol, both see
    it with its name and members; alice's text reaches bob; alice removes carol, whose state then says
    so, and the next text reaches bob but not carol; bob, not listening while alice renames the group
    and promotes him, then holds her state; the relay's files and log hold no byte of the group
    id, nor its name, and the log names no member."""
    alice, bob, carol = people["g.alice"], people["g.bob"], people["g.carol"]
    made = alice.run("group", "create", "Crisis cell", "g.bob", "g.carol")
    assert made.returncode == 0, made.stderr
    created = pairs(made.stdout)
    assert (created["name"], created["members"], created["admins"]) == (
        "Crisis cell",
        "g.alice g.bob g.carol",
        "g.alice",
    )
    for member in (bob, carol):
        shown = pairs(member.run("group", "info", _group_id_of(member)).stdout)
        assert (shown["group"], shown["members"]) == (created["group"], created["members"])

    listening = bob.start(*LISTEN)
    sent = alice.run("send", "--conversation", created["conversation"], "First status")
    out, err = listening.communicate(timeout=90)
    assert sent.returncode == 0, sent.stderr
    assert "First status" in out, err

    removed = alice.run("group", "remove", created["conversation"], "g.carol")
    assert removed.returncode == 0 and pairs(removed.stdout)["members"] == "g.alice g.bob", removed.stderr
    carols = _group_id_of(carol)
    assert pairs(carol.run("group", "info", carols).stdout)["members"] == "g.alice g.bob"
    listening = bob.start(*LISTEN)
    alice.run("send", "--conversation", created["conversation"], "After the removal")
    out, _ = listening.communicate(timeout=90)
    assert "After the removal" in out
    later = carol.run("listen", "--wait", "3")
    assert "After the removal" not in later.stdout
    history = carol.run("history", "--conversation", carols)
    assert "First status" in history.stdout and "After the removal" not in history.stdout

    alice.run("group", "rename", created["conversation"], "Task force")
    promoted = pairs(alice.run("group", "promote", created["conversation"], "g.bob").stdout)
    bobs = pairs(bob.run("group", "info", _group_id_of(bob)).stdout)
    assert (
        (bobs["name"], bobs["admins"])
        == (promoted["name"], promoted["admins"])
        == ("Task force", "g.alice g.bob")
    )

    group_id = bytes.fromhex(created["group"])
    files = [path.read_bytes() for path in Path(relay.data_dir).glob("relay.sqlite3*")]
    assert files and not any(group_id in data or created["group"].encode() in data for data in files)
    assert not any(b"Crisis cell" in data for data in files), "nor the group's name"
    logged = "\n".join(relay.output)
    assert created["group"] not in logged and "Crisis cell" not in logged and "g.carol" not in logged
