"""The profile lock: one open store per profile, in this process or another; a crash leaves no lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.errors import NotAnEnclaveDatabaseError, ProfileInUseError, WrongPassphraseError
from storage.keys import Passphrase, Unencrypted
from storage.profilelock import LOCK_NAME, MAX_HOLDER_BYTES, Holder, parse_holder
from storage.store import Store
from tests.storage.harness import FakeClock
from tests.support.relay import REPO

HOLDER_SCRIPT = """
import sys
from pathlib import Path
from storage.keys import Unencrypted
from storage.store import Store
store = Store.open(Path(sys.argv[1]), Unencrypted(), holder="enclave-cli listen")
print("open", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def closed_profile(profile: Path, clock: FakeClock) -> Path:
    """An unencrypted profile (the lock does not care how a profile is protected), closed."""
    Store.create(profile, Unencrypted(), clock=clock).close()
    return profile


@pytest.fixture
def holder_process(closed_profile: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that has ``closed_profile`` open, as ``enclave-cli listen``."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(closed_profile)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "open\n"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_a_second_open_in_the_same_process_names_the_holder(closed_profile: Path, clock: FakeClock) -> None:
    """Test that opening a profile this process has open already is refused, naming it and its pid."""
    with Store.open(closed_profile, Unencrypted(), clock=clock, holder="enclave-cli listen"):
        with pytest.raises(ProfileInUseError) as refused:
            Store.open(closed_profile, Unencrypted(), clock=clock)
        with pytest.raises(ProfileInUseError):
            Store.create(closed_profile, Unencrypted(), clock=clock)
    assert (refused.value.pid, refused.value.program) == (os.getpid(), "enclave-cli listen")
    assert f"is open in enclave-cli listen (pid {os.getpid()}); close it first" in str(refused.value)


def test_closing_releases_the_lock_and_empties_the_file(closed_profile: Path, clock: FakeClock) -> None:
    """Test that after close the profile opens again, and the lock file no longer names anyone."""
    with Store.open(closed_profile, Unencrypted(), clock=clock, holder="run.sh"):
        note = json.loads((closed_profile / LOCK_NAME).read_bytes())
    assert note == {"version": 1, "pid": os.getpid(), "program": "run.sh"}
    assert (closed_profile / LOCK_NAME).read_bytes() == b""
    with Store.open(closed_profile, Unencrypted(), clock=clock):
        pass


def test_a_failed_open_releases_the_lock(profile: Path, passphrase: Passphrase, clock: FakeClock) -> None:
    """Test that an open refused for a wrong passphrase leaves the profile free for the right one."""
    Store.create(profile, passphrase, clock=clock).close()
    with pytest.raises(WrongPassphraseError):
        Store.open(profile, Passphrase("not the passphrase", passphrase.cost), clock=clock)
    with Store.open(profile, passphrase, clock=clock):
        pass


def test_another_process_holding_the_profile_is_named(
    closed_profile: Path, holder_process: subprocess.Popen[str], clock: FakeClock
) -> None:
    """Test that a profile open in another process is refused with that process's pid and program."""
    with pytest.raises(ProfileInUseError) as refused:
        Store.open(closed_profile, Unencrypted(), clock=clock)
    assert (refused.value.pid, refused.value.program) == (holder_process.pid, "enclave-cli listen")


def test_a_killed_holder_leaves_no_lock(
    closed_profile: Path, holder_process: subprocess.Popen[str], clock: FakeClock
) -> None:
    """Test that once the holder is SIGKILLed the profile opens, though its lock file still names it."""
    os.kill(holder_process.pid, signal.SIGKILL)
    holder_process.wait()
    assert parse_holder((closed_profile / LOCK_NAME).read_bytes()) == Holder(
        holder_process.pid, "enclave-cli listen"
    )
    with Store.open(closed_profile, Unencrypted(), clock=clock, holder="run.sh"):
        assert parse_holder((closed_profile / LOCK_NAME).read_bytes()) == Holder(os.getpid(), "run.sh")


def test_a_folder_that_is_no_profile_gets_no_lock_file(tmp_path: Path, clock: FakeClock) -> None:
    """Test that opening a folder without a profile, or no folder, is refused and leaves no file behind."""
    (tmp_path / "documents").mkdir()
    for folder in (tmp_path / "documents", tmp_path / "missing"):
        with pytest.raises(NotAnEnclaveDatabaseError, match="no key header"):
            Store.open(folder, Unencrypted(), clock=clock)
    assert list((tmp_path / "documents").iterdir()) == []
    assert not (tmp_path / "missing").exists()


def test_a_lock_file_is_read_as_untrusted() -> None:
    """Test that a damaged, oversized or newer note names nobody, and a hostile name stays one line."""
    note = {"version": 1, "pid": 42, "program": "evil\x1b[2J\nline"}
    assert parse_holder(json.dumps(note).encode()) == Holder(42, "evil?[2J?line")
    for untrusted in (
        b"",
        b"\xff\xfe",
        b"pid 42",
        json.dumps({**note, "version": 2}).encode(),
        json.dumps({**note, "pid": True}).encode(),
        json.dumps({**note, "pid": -1}).encode(),
        json.dumps({**note, "program": ""}).encode(),
        json.dumps({**note, "program": "x" * MAX_HOLDER_BYTES}).encode(),
    ):
        assert parse_holder(untrusted) is None, untrusted
    assert str(ProfileInUseError("/p")) == (
        "The profile in /p is open in another program; close it first, then try again."
    )
