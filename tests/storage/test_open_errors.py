"""Opening what is not an Enclave store, or a newer one: a typed error and not one file changed."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from sqlcipher3 import dbapi2 as sqlcipher

from storage.database import Database
from storage.errors import NotAnEnclaveDatabaseError, ProfileExistsError, UnsupportedProfileVersionError
from storage.keyheader import HEADER_VERSION, MAGIC, read_header
from storage.keys import Passphrase, unlock
from storage.records import ConversationKind, MessageStatus, NewMessage
from storage.store import DATABASE_NAME, KEY_HEADER_NAME, Store
from tests.storage.harness import FakeClock, snapshot


@pytest.fixture
def closed_profile(profile: Path, passphrase: Passphrase, clock: FakeClock) -> Path:
    """A populated passphrase profile, closed."""
    with Store.create(profile, passphrase, clock=clock) as store:
        conversation = store.conversations.create(ConversationKind.DIRECT, peer_account_id="carol@ministry")
        store.messages.add(
            NewMessage(conversation.id, b"m", "minutes of the meeting", MessageStatus.SENT, sent_at=1)
        )
    return profile


def _refused(profile: Path, passphrase: Passphrase, clock: FakeClock, match: str) -> None:
    before = snapshot(profile)
    with pytest.raises(NotAnEnclaveDatabaseError, match=match):
        Store.open(profile, passphrase, clock=clock)
    assert snapshot(profile) == before


def test_folder_without_key_header(closed_profile: Path, passphrase: Passphrase, clock: FakeClock) -> None:
    """Test that a folder with no key header and no database is not an Enclave store, and stays so."""
    (closed_profile / KEY_HEADER_NAME).unlink()
    (closed_profile / DATABASE_NAME).unlink()
    _refused(closed_profile, passphrase, clock, "no key header")


def test_damaged_key_header(closed_profile: Path, passphrase: Passphrase, clock: FakeClock) -> None:
    """Test that a key header cut short is refused as damaged, and nothing changes."""
    header = closed_profile / KEY_HEADER_NAME
    header.write_bytes(header.read_bytes()[:-3])
    _refused(closed_profile, passphrase, clock, "key header is damaged")


def test_foreign_file_as_key_header(closed_profile: Path, passphrase: Passphrase, clock: FakeClock) -> None:
    """Test that some other file in the key header's place is refused, and nothing changes."""
    (closed_profile / KEY_HEADER_NAME).write_bytes(b"[settings]\nkey = value\n")
    _refused(closed_profile, passphrase, clock, "key header is damaged")


def test_key_header_from_a_newer_enclave(
    closed_profile: Path, passphrase: Passphrase, clock: FakeClock
) -> None:
    """Test that a key header of a future version asks for an update, and nothing changes."""
    header = closed_profile / KEY_HEADER_NAME
    data = bytearray(header.read_bytes())
    data[len(MAGIC)] = HEADER_VERSION + 1
    header.write_bytes(bytes(data))
    before = snapshot(closed_profile)
    with pytest.raises(UnsupportedProfileVersionError, match="Update Enclave"):
        Store.open(closed_profile, passphrase, clock=clock)
    assert snapshot(closed_profile) == before


def test_plain_sqlite_file(closed_profile: Path, passphrase: Passphrase, clock: FakeClock) -> None:
    """Test that an unencrypted SQLite file in the database's place is refused, and nothing changes."""
    database = closed_profile / DATABASE_NAME
    database.unlink()
    with sqlite3.connect(database) as plain:
        plain.execute("CREATE TABLE notes (text)")
    _refused(closed_profile, passphrase, clock, "not encrypted")


def test_random_bytes_as_database(closed_profile: Path, passphrase: Passphrase, clock: FakeClock) -> None:
    """Test that a file no key we hold can read is not an Enclave database, and nothing changes."""
    (closed_profile / DATABASE_NAME).write_bytes(os.urandom(8192))
    _refused(closed_profile, passphrase, clock, "cannot be read with this profile's key")


def test_database_of_another_profile(
    closed_profile: Path, tmp_path: Path, passphrase: Passphrase, clock: FakeClock
) -> None:
    """Test that another profile's database (same passphrase, other salt) is refused, and nothing changes."""
    with Store.create(tmp_path / "other", passphrase, clock=clock):
        pass
    (closed_profile / DATABASE_NAME).write_bytes((tmp_path / "other" / DATABASE_NAME).read_bytes())
    _refused(closed_profile, passphrase, clock, "cannot be read with this profile's key")


def test_sqlcipher_database_of_another_program(
    closed_profile: Path, passphrase: Passphrase, clock: FakeClock
) -> None:
    """Test that a database readable with our key but without Enclave's application id is refused."""
    raw_key = unlock(read_header(closed_profile / KEY_HEADER_NAME), passphrase)
    if raw_key is None:
        raise AssertionError("a passphrase profile has a key")
    database = closed_profile / DATABASE_NAME
    database.unlink()
    foreign = sqlcipher.connect(str(database))
    foreign.execute(f"PRAGMA key = \"x'{raw_key.hex()}'\"")
    foreign.execute("CREATE TABLE other (x)")
    foreign.execute("PRAGMA user_version = 7")
    foreign.commit()
    foreign.close()
    _refused(closed_profile, passphrase, clock, "another program")


def test_missing_database_file(closed_profile: Path, passphrase: Passphrase, clock: FakeClock) -> None:
    """Test that a profile whose database file is gone is refused instead of being recreated empty."""
    (closed_profile / DATABASE_NAME).unlink()
    _refused(closed_profile, passphrase, clock, "missing")
    assert not (closed_profile / DATABASE_NAME).exists()


def test_schema_from_a_newer_enclave(closed_profile: Path, passphrase: Passphrase, clock: FakeClock) -> None:
    """Test that a store whose schema is newer than this build is refused unchanged."""
    raw_key = unlock(read_header(closed_profile / KEY_HEADER_NAME), passphrase)
    db = Database.open(closed_profile / DATABASE_NAME, raw_key)
    db.execute("PRAGMA user_version = 99")
    db.close()
    before = snapshot(closed_profile)
    with pytest.raises(UnsupportedProfileVersionError, match="version 99"):
        Store.open(closed_profile, passphrase, clock=clock)
    assert snapshot(closed_profile) == before


def test_create_refuses_an_existing_profile(
    closed_profile: Path, passphrase: Passphrase, clock: FakeClock
) -> None:
    """Test that creating a profile over an existing one is refused and leaves it intact."""
    before = snapshot(closed_profile)
    with pytest.raises(ProfileExistsError):
        Store.create(closed_profile, passphrase, clock=clock)
    assert snapshot(closed_profile) == before
