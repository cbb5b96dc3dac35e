"""The PostgreSQL mailbox's hourly keys (server/store/sealing.py): one chain for every relay that
shares the file, rows that open only under their epoch's key and tag, keys that are gone once
forgotten."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from server.store.base import NewDevice, Quota, SignedPreKey, StoreError
from server.store.postgres import PostgresStore
from server.store.sealing import EPOCH_SECONDS, MAILBOX_KEY_FILE, EpochKey, KeyFileError, MailboxKeys
from tests.server.stores import PostgresBackend
from tests.support.adminkey import signed_action


class Clock:
    def __init__(self) -> None:
        self.now = float(time.time())

    def __call__(self) -> float:
        return self.now


def test_relays_with_copies_of_one_key_file_derive_the_same_keys_as_hours_pass(tmp_path: Path) -> None:
    """Test that two copies of one key file give the same key for each epoch, hours later too, and
    that a row one seals the other opens, its recipient, id, expiry and bytes intact."""
    clock = Clock()
    first = MailboxKeys(tmp_path / MAILBOX_KEY_FILE, clock)
    first.create_if_missing()
    (tmp_path / "other").mkdir()
    shutil.copy2(tmp_path / MAILBOX_KEY_FILE, tmp_path / "other" / MAILBOX_KEY_FILE)
    second = MailboxKeys(tmp_path / "other" / MAILBOX_KEY_FILE, clock)
    clock.now += 5 * EPOCH_SECONDS
    key, envelope_id, envelope = first.current(), os.urandom(16), os.urandom(300)
    sealed = key.seal(device_id=7, envelope_id=envelope_id, expires_at=1_800_000_000, envelope=envelope)
    opened = second.current().open(tag=second.current().mailbox_tag(7), sealed=sealed)
    assert (opened.device_id, opened.envelope_id, opened.expires_at, opened.envelope) == (
        7,
        envelope_id,
        1_800_000_000,
        envelope,
    )
    assert [k.mailbox_tag(7) for k in first.kept()] == [k.mailbox_tag(7) for k in second.kept()]


def test_a_row_opens_only_under_its_epochs_key_and_its_mailboxs_tag(tmp_path: Path) -> None:
    """Test that a sealed row does not open under the next epoch's key nor for another mailbox, and
    that tags differ from one epoch to the next."""
    keys = MailboxKeys(tmp_path / MAILBOX_KEY_FILE, Clock())
    keys.create_if_missing()
    older, current = keys.kept()[:2]
    sealed = older.seal(device_id=7, envelope_id=os.urandom(16), expires_at=1, envelope=b"x")
    older.open(tag=older.mailbox_tag(7), sealed=sealed)
    with pytest.raises(StoreError):
        current.open(tag=current.mailbox_tag(7), sealed=sealed)
    with pytest.raises(StoreError):
        older.open(tag=older.mailbox_tag(8), sealed=sealed)
    assert older.mailbox_tag(7) != current.mailbox_tag(7)


def test_a_forgotten_epochs_key_is_in_neither_the_file_nor_the_process(tmp_path: Path) -> None:
    """Test that once the keys before an epoch are forgotten, neither this process nor a relay that
    reads the file afterwards holds a key that opens a row of an earlier epoch."""
    clock = Clock()
    keys = MailboxKeys(tmp_path / MAILBOX_KEY_FILE, clock)
    keys.create_if_missing()
    old = keys.current()
    sealed = old.seal(device_id=7, envelope_id=os.urandom(16), expires_at=1, envelope=b"gone")
    clock.now += 2 * EPOCH_SECONDS
    keys.forget_before(old.epoch + 1)

    def opens(key_list: list[EpochKey]) -> bool:
        for key in key_list:
            try:
                key.open(tag=key.mailbox_tag(7), sealed=sealed)
            except StoreError:
                continue
            return True
        return False

    assert keys.kept()[0].epoch == old.epoch + 1
    assert not opens(keys.kept())
    assert not opens(MailboxKeys(tmp_path / MAILBOX_KEY_FILE, clock).kept())


def test_a_file_that_is_not_a_key_file_is_refused(tmp_path: Path) -> None:
    """Test that a key file of the wrong length is refused with KeyFileError, not read as a key."""
    (tmp_path / MAILBOX_KEY_FILE).write_bytes(b"short")
    with pytest.raises(KeyFileError):
        MailboxKeys(tmp_path / MAILBOX_KEY_FILE).kept()


def test_a_relay_with_another_key_chain_leaves_the_others_rows_and_says_so(
    postgres: PostgresBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Test that a store whose mailbox.key is not the others' neither sees nor deletes their rows when
    it sweeps, warns that its key is not theirs, and that the rightly keyed store still reads them."""
    stranger_keys = MailboxKeys(tmp_path / "stranger" / MAILBOX_KEY_FILE)
    (tmp_path / "stranger").mkdir()
    envelope_id = os.urandom(16)

    async def body() -> tuple[int, int, int]:
        ours, stranger = postgres.new_store(), PostgresStore(postgres.dsn, postgres.schema, stranger_keys)
        await ours.open()
        await stranger.open()
        try:
            await ours.create_account("alice", "Alice", "Finance", admin_entry=signed_action("a"))
            signed = SignedPreKey(1, os.urandom(32), os.urandom(64))
            await ours.register(NewDevice(9, "alice", os.urandom(32), os.urandom(120), signed, (), 1))
            await ours.enqueue(9, envelope_id, b"ours", int(time.time()) + 3600, Quota(10, 1 << 20))
            await postgres.sql("UPDATE mailbox SET epoch = epoch - 1")
            seen_by_stranger = len(await stranger.pending(9, 0, 0, 10))
            with caplog.at_level(logging.WARNING, logger="server.store.postgres"):
                dropped = await stranger.drop_expired(int(time.time()))
            return seen_by_stranger, dropped, len(await ours.pending(9, 0, 0, 10))
        finally:
            await ours.close()
            await stranger.close()

    assert asyncio.run(body()) == (0, 0, 1)
    assert "do not open with this relay's mailbox.key" in caplog.text
