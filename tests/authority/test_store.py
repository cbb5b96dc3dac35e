"""The authority's SQLite file (authority/store.py), opened in a temporary folder: its schema
versions, and the one transaction that spends a code and adds its device."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from authority.store import (
    DEVICE_ID_DRAWS,
    STORE_FILE,
    Added,
    AuthorityStore,
    NotAdded,
    StoreError,
)
from tests.support.authority import make_schema_1_store

NOW = 1_700_000_000
CODE_ID, OTHER_CODE_ID = b"i" * 32, b"j" * 32
KEY, OTHER_KEY = b"k" * 32, b"l" * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuthorityStore]:
    """A fresh store with two unspent codes of ``a.store``."""
    opened = AuthorityStore.open(tmp_path)
    for code_id in (CODE_ID, OTHER_CODE_ID):
        opened.add_code(code_id=code_id, code_key=b"c" * 32, account_id="a.store", expires_at=NOW + 60)
    yield opened
    opened.close()


def _rows(folder: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with sqlite3.connect(folder / STORE_FILE) as db:
        return (
            db.execute("SELECT * FROM codes ORDER BY code_id").fetchall(),
            db.execute("SELECT * FROM devices ORDER BY device_id").fetchall(),
        )


def _draws(*ids: int) -> Callable[[], int]:
    return iter(ids).__next__


def test_a_store_of_schema_1_is_refused_unchanged(tmp_path: Path) -> None:
    """Test that a file of schema 1 is refused with a StoreError saying it predates device ids
    assigned by the authority and must be moved aside, and that the file is left byte for byte."""
    old = make_schema_1_store(tmp_path)
    with pytest.raises(StoreError) as refused:
        AuthorityStore.open(tmp_path)
    message = str(refused.value)
    assert "is of schema 1, which predates device ids assigned by the authority" in message
    assert "move the file aside" in message
    assert (tmp_path / STORE_FILE).read_bytes() == old


def test_a_store_of_a_later_schema_is_refused(tmp_path: Path) -> None:
    """Test that a file of a schema this build does not know is refused, naming both versions."""
    with sqlite3.connect(tmp_path / STORE_FILE) as db:
        db.execute("PRAGMA user_version = 4")
    with pytest.raises(StoreError, match="is of schema 4; this build reads 3"):
        AuthorityStore.open(tmp_path)


def test_a_taken_device_id_is_drawn_again(store: AuthorityStore, tmp_path: Path) -> None:
    """Test that a drawn id another device has is drawn again, and the device gets the first free one."""
    assert store.spend_and_add(code_id=CODE_ID, identity_key=KEY, now=NOW, new_device_id=_draws(7)) == Added(
        "a.store", 7
    )
    added = store.spend_and_add(
        code_id=OTHER_CODE_ID, identity_key=OTHER_KEY, now=NOW, new_device_id=_draws(7, 7, 2**31 - 1)
    )
    assert added == Added("a.store", 2**31 - 1)
    _, devices = _rows(tmp_path)
    assert devices == [(7, "a.store", KEY, 0, NOW, "", ""), (2**31 - 1, "a.store", OTHER_KEY, 0, NOW, "", "")]


def test_draws_that_are_all_taken_change_nothing(store: AuthorityStore, tmp_path: Path) -> None:
    """Test that when every draw is taken the transaction fails with a StoreError, leaving the code
    unspent and no device added."""
    store.spend_and_add(code_id=CODE_ID, identity_key=KEY, now=NOW, new_device_id=_draws(7))
    before = _rows(tmp_path)
    with pytest.raises(StoreError, match=f"{DEVICE_ID_DRAWS} draws"):
        store.spend_and_add(
            code_id=OTHER_CODE_ID, identity_key=OTHER_KEY, now=NOW, new_device_id=_draws(*[7] * 8)
        )
    assert _rows(tmp_path) == before


def test_a_recorded_key_or_a_spent_code_adds_nothing(store: AuthorityStore, tmp_path: Path) -> None:
    """Test that an identity key already recorded, or a code spent or expired, changes nothing
    and draws no id, each reported as such."""
    store.spend_and_add(code_id=CODE_ID, identity_key=KEY, now=NOW, new_device_id=_draws(7))
    before = _rows(tmp_path)
    for code_id, key, now, outcome in (
        (OTHER_CODE_ID, KEY, NOW, NotAdded.KEY_RECORDED),
        (CODE_ID, OTHER_KEY, NOW, NotAdded.CODE_GONE),
        (OTHER_CODE_ID, OTHER_KEY, NOW + 60, NotAdded.CODE_GONE),
    ):
        added = store.spend_and_add(code_id=code_id, identity_key=key, now=now, new_device_id=_draws())
        assert added is outcome
        assert _rows(tmp_path) == before


def test_a_device_is_found_only_under_its_own_account(store: AuthorityStore) -> None:
    """Test that device ids are global: the device is found, and revoked, only with its own account."""
    store.spend_and_add(code_id=CODE_ID, identity_key=KEY, now=NOW, new_device_id=_draws(7))
    assert store.device("a.other", 7) is None
    assert not store.revoke("a.other", 7)
    device = store.device("a.store", 7)
    assert device is not None
    assert (device.identity_key, device.revoked) == (KEY, False)


SCHEMA_2 = """
CREATE TABLE codes (code_id BLOB PRIMARY KEY, code_key BLOB NOT NULL, account_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL, spent_at INTEGER);
CREATE TABLE devices (device_id INTEGER PRIMARY KEY, account_id TEXT NOT NULL,
    identity_key BLOB NOT NULL UNIQUE, revoked INTEGER NOT NULL DEFAULT 0, certified_at INTEGER NOT NULL);
INSERT INTO codes VALUES (x'6969696969696969696969696969696969696969696969696969696969696969',
    x'6363636363636363636363636363636363636363636363636363636363636363', 'a.old', 1700000060, NULL);
INSERT INTO devices VALUES (5, 'a.old',
    x'6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d', 0, 1699999000);
PRAGMA user_version = 2;
"""
"""A store as the authority wrote it before certificates carried names: a code and a device."""


def test_a_store_of_schema_2_is_upgraded_keeping_its_codes_and_devices_without_names(tmp_path: Path) -> None:
    """Test that a schema-2 file opens as schema 3, its unspent code and its device kept with empty
    names, and that the code still enrols (a certificate without a name)."""
    with sqlite3.connect(tmp_path / STORE_FILE) as db:
        db.executescript(SCHEMA_2)
    store = AuthorityStore.open(tmp_path)
    try:
        device = store.device("a.old", 5)
        assert device is not None and (device.display_name, device.department) == ("", "")
        assert store.spend_and_add(
            code_id=CODE_ID, identity_key=KEY, now=NOW, new_device_id=_draws(9)
        ) == Added("a.old", 9)
    finally:
        store.close()
    with sqlite3.connect(tmp_path / STORE_FILE) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (3,)


def test_a_code_s_name_and_department_go_to_the_device_it_enrols(tmp_path: Path) -> None:
    """Test that the name and department a code was issued with are the enrolled device's."""
    store = AuthorityStore.open(tmp_path)
    try:
        store.add_code(
            code_id=CODE_ID,
            code_key=b"c" * 32,
            account_id="a.named",
            expires_at=NOW + 60,
            display_name="Анна Иванова",
            department="Финансы",
        )
        added = store.spend_and_add(code_id=CODE_ID, identity_key=KEY, now=NOW, new_device_id=_draws(3))
        assert added == Added("a.named", 3, "Анна Иванова", "Финансы")
        device = store.device("a.named", 3)
        assert device is not None and (device.display_name, device.department) == ("Анна Иванова", "Финансы")
    finally:
        store.close()
