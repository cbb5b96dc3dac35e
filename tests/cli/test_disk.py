"""``enclave-cli`` on a profile whose disk is full or read-only: it says so, in one line
naming the file and the cause, never "not an Enclave store" (which invites replacing good
data), and loses nothing (issue 11, item 7). The disk is a real tmpfs (tests/support/disks.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import CliUser, enrol, passphrase_file, rows
from tests.support.disks import fill, remount, tmpfs
from tests.support.relay import RelayProcess, new_account

NOT_OURS = "not an Enclave"
DISK_SIZE = "16m"


@pytest.fixture
def on_small_disk(relay: RelayProcess, tmp_path: Path) -> Iterator[tuple[CliUser, CliUser, Path]]:
    """Carol, enrolled with her profile on a small disk of its own; Dave, elsewhere; the disk."""
    secret = passphrase_file(tmp_path)
    tag = os.urandom(3).hex()
    with tmpfs(tmp_path / "disk", DISK_SIZE) as disk:
        carol = CliUser(f"carol.{tag}", disk / "carol", secret)
        dave = CliUser(f"dave.{tag}", tmp_path / "dave", secret)
        for user in (carol, dave):
            enrol(relay, user, new_account(relay.data_dir, user.account_id))
        yield carol, dave, disk


def _refused_for(done_stderr: str, cause: str) -> None:
    assert "Traceback" not in done_stderr
    assert NOT_OURS not in done_stderr
    assert "Errno" not in done_stderr
    assert cause in done_stderr
    assert "Your messages and key are not damaged" in done_stderr


def test_a_full_disk_is_named_and_loses_nothing(on_small_disk: tuple[CliUser, CliUser, Path]) -> None:
    """Test that a send on a full disk says so, keeps the history, and works once there is room again."""
    carol, dave, disk = on_small_disk
    assert carol.run("send", dave.account_id, "before the disk filled").returncode == 0
    filler = fill(disk)
    try:
        done = carol.run("send", dave.account_id, "x" * 20_000)
        assert done.returncode == 1, done.stdout
        _refused_for(done.stderr, "the disk holding it is full")
    finally:
        filler.unlink()
    assert carol.run("send", dave.account_id, "after the space came back").returncode == 0
    shown = carol.run("history", dave.account_id)
    assert shown.returncode == 0, shown.stderr
    texts = [row[4] for row in rows(shown.stdout)]
    assert "before the disk filled" in texts
    assert "after the space came back" in texts


def test_a_read_only_disk_is_named_for_every_command(on_small_disk: tuple[CliUser, CliUser, Path]) -> None:
    """Test that history, send and listen on a read-only profile say "read-only file system", and that the
    profile opens as before once the disk is writable again."""
    carol, dave, disk = on_small_disk
    assert carol.run("send", dave.account_id, "written before").returncode == 0
    remount(disk, "ro")
    try:
        commands = (["history", dave.account_id], ["send", dave.account_id, "hi"], ["listen", "--count", "1"])
        for command in commands:
            done = carol.run(*command)
            assert done.returncode == 1, (command, done.stdout)
            _refused_for(done.stderr, "read-only file system")
    finally:
        remount(disk, "rw")
    shown = carol.run("history", dave.account_id)
    assert shown.returncode == 0, shown.stderr
    assert "written before" in shown.stdout
