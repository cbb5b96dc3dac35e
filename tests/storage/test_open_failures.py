"""A profile the disk or the file system lets down is not blamed on its key or data:
read-only or full disk, a folder where the database file should be, a key header gone
or damaged.

Read-only and full disks are real tmpfs mounts (tests/support/disks.py).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.errors import (
    KeyHeaderDamagedError,
    KeyHeaderMissingError,
    ProfileFileError,
    StoreFullError,
    WrongKeyError,
)
from storage.keyheader import CHECKSUM_BYTES, MAGIC, PROFILE_ID_BYTES
from storage.keys import Passphrase
from storage.records import ConversationKind, MessageStatus, NewMessage
from storage.store import DATABASE_NAME, KEY_HEADER_NAME, Store
from tests.conftest import require
from tests.storage.harness import FakeClock, snapshot
from tests.support.disks import fill, remount, tmpfs

NOT_OURS = "not an Enclave"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs of this test's own (4 MiB), unmounted afterwards."""
    with tmpfs(tmp_path / "disk") as mounted:
        yield mounted


def _populated(profile: Path, passphrase: Passphrase, clock: FakeClock) -> None:
    with Store.create(profile, passphrase, clock=clock) as store:
        conversation = store.conversations.create(ConversationKind.DIRECT, peer_account_id="carol@ministry")
        store.messages.add(NewMessage(conversation.id, b"m", "minutes", MessageStatus.SENT, sent_at=1))


def test_read_only_profile_says_so(disk: Path, passphrase: Passphrase, clock: FakeClock) -> None:
    """Test that opening a profile on a read-only file system names the file and the cause."""
    profile = disk / "profile"
    _populated(profile, passphrase, clock)
    before = snapshot(profile)
    remount(disk, "ro")
    try:
        with pytest.raises(ProfileFileError, match="read-only file system") as refused:
            Store.open(profile, passphrase, clock=clock)
    finally:
        remount(disk, "rw")
    assert str(profile) in str(refused.value)
    assert NOT_OURS not in str(refused.value)
    assert snapshot(profile) == before


def test_full_disk_says_so(disk: Path, passphrase: Passphrase, clock: FakeClock) -> None:
    """Test that a write to a full disk is a disk-full error naming the file, not a damaged store."""
    profile = disk / "profile"
    _populated(profile, passphrase, clock)
    with Store.open(profile, passphrase, clock=clock) as store:
        (conversation,) = store.conversations.list()
        filler = fill(disk)
        with pytest.raises(StoreFullError, match="the disk holding it is full") as refused:
            for n in range(10_000):
                store.messages.add(
                    NewMessage(
                        conversation.id, n.to_bytes(4, "big"), "x" * 4000, MessageStatus.SENT, sent_at=1
                    )
                )
        filler.unlink()
    assert "Cannot write to" in str(refused.value)
    assert NOT_OURS not in str(refused.value)


def test_folder_in_place_of_the_database(profile: Path, passphrase: Passphrase, clock: FakeClock) -> None:
    """Test that a folder where the database file should be is named as such, not a raw errno."""
    _populated(profile, passphrase, clock)
    (profile / DATABASE_NAME).unlink()
    (profile / DATABASE_NAME).mkdir()
    with pytest.raises(ProfileFileError, match="it is a folder, not a file") as refused:
        Store.open(profile, passphrase, clock=clock)
    assert str(profile / DATABASE_NAME) in str(refused.value)
    assert "Errno" not in str(refused.value)


def test_missing_key_header_beside_a_database(
    profile: Path, passphrase: Passphrase, clock: FakeClock
) -> None:
    """Test that a key header gone beside its database says so, and no new profile is made over it."""
    _populated(profile, passphrase, clock)
    (profile / KEY_HEADER_NAME).unlink()
    before = snapshot(profile)
    with pytest.raises(KeyHeaderMissingError, match=r"key header .* is missing"):
        Store.open(profile, passphrase, clock=clock)
    with pytest.raises(KeyHeaderMissingError, match="Do not enrol again"):
        Store.create(profile, passphrase, clock=clock)
    assert snapshot(profile) == before


def test_flipped_byte_in_the_key_header_is_damage_not_a_wrong_passphrase(
    profile: Path, passphrase: Passphrase, clock: FakeClock
) -> None:
    """Test that one changed byte of the key header says the header is damaged, not the passphrase wrong."""
    _populated(profile, passphrase, clock)
    header = profile / KEY_HEADER_NAME
    for offset in (len(MAGIC) + 2, len(MAGIC) + 2 + PROFILE_ID_BYTES + 3, len(header.read_bytes()) - 20):
        original = header.read_bytes()
        flipped = bytearray(original)
        flipped[offset] ^= 0x01
        header.write_bytes(bytes(flipped))
        with pytest.raises(KeyHeaderDamagedError, match="is damaged") as refused:
            Store.open(profile, passphrase, clock=clock)
        assert str(header) in str(refused.value)
        assert not isinstance(refused.value, WrongKeyError)
        header.write_bytes(original)
    Store.open(profile, passphrase, clock=clock).close()


def test_a_version_1_key_header_without_checksum_still_opens(
    profile: Path, passphrase: Passphrase, clock: FakeClock
) -> None:
    """Test that a profile whose key header is version 1 (no checksum) still opens."""
    _populated(profile, passphrase, clock)
    header = profile / KEY_HEADER_NAME
    old = bytearray(header.read_bytes()[:-CHECKSUM_BYTES])
    old[len(MAGIC)] = 1
    header.write_bytes(bytes(old))
    with Store.open(profile, passphrase, clock=clock) as store:
        assert len(store.conversations.list()) == 1


def test_read_only_database_file_in_a_writable_folder_says_so(
    profile: Path, passphrase: Passphrase, clock: FakeClock
) -> None:
    """Test that a database file mounted read-only is named with the cause, not "not an Enclave store"."""
    _populated(profile, passphrase, clock)
    database = str(profile / DATABASE_NAME)
    bound = subprocess.run(
        ["mount", "--bind", database, database], capture_output=True, text=True, check=False
    )
    require(bound.returncode == 0, f"cannot bind-mount the database file here: {bound.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", database], check=True)
        with pytest.raises(ProfileFileError, match="read-only file system") as refused:
            Store.open(profile, passphrase, clock=clock)
    finally:
        subprocess.run(["umount", database], check=False)
    assert database in str(refused.value)
    assert NOT_OURS not in str(refused.value)
