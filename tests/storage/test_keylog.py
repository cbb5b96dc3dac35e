"""The key log repository: the head a device accepted, its bindings, and the forks it caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.base.errors import StorageError
from storage.keylog import LoggedBinding
from storage.keys import Passphrase
from storage.store import Store
from tests.storage.harness import FakeClock

LOG_KEY, OTHER_LOG = b"\x01" * 32, b"\x02" * 32


def test_a_head_and_its_bindings_are_kept_across_a_restart(
    store: Store, profile: Path, passphrase: Passphrase, clock: FakeClock
) -> None:
    """Test that the head, its frontier and the bindings (a revocation replacing the binding it
    revokes) are what a reopened store hands back."""
    log = store.key_log
    assert log.head() is None and log.binding("bob", 1) is None
    with store.transaction():
        log.put(LoggedBinding("bob", 1, b"\x0b" * 32, 0, 100))
        log.put(LoggedBinding("bob", 2, b"\x0c" * 32, 1, 200))
        log.put(LoggedBinding("bob", 1, b"\x0b" * 32, 0, 100, revoked=2, revoked_at=300))
        log.keep_head(LOG_KEY, b"note", b"frontier")
    store.close()
    with Store.open(profile, passphrase, clock=clock) as reopened:
        kept = reopened.key_log.head()
        assert kept is not None and (kept.log_key, kept.note, kept.frontier) == (
            LOG_KEY,
            b"note",
            b"frontier",
        )
        assert [(b.device_id, b.revoked) for b in reopened.key_log.bindings_of("bob")] == [(1, 2), (2, None)]
        assert reopened.key_log.has_key(b"\x0c" * 32) and not reopened.key_log.has_key(b"\x0d" * 32)


def test_one_identity_key_binds_one_device(store: Store) -> None:
    """Test that the store itself refuses a second device with a key already bound."""
    store.key_log.put(LoggedBinding("bob", 1, b"\x0b" * 32, 0, 100))
    with pytest.raises(StorageError):
        store.key_log.put(LoggedBinding("mallory", 1, b"\x0b" * 32, 1, 100))
    assert store.key_log.binding("mallory", 1) is None


def test_starting_over_forgets_the_log_but_keeps_the_forks(store: Store) -> None:
    """Test that a fork is kept per log key with both heads, and stays when the device starts over
    with another log."""
    store.key_log.put(LoggedBinding("bob", 1, b"\x0b" * 32, 0, 100))
    store.key_log.keep_head(LOG_KEY, b"note", b"frontier")
    store.key_log.record_fork(LOG_KEY, "two heads", b"kept", b"other")
    store.key_log.record_fork(LOG_KEY, "again", None, b"third")

    store.key_log.start_over()

    assert store.key_log.head() is None and store.key_log.binding("bob", 1) is None
    fork = store.key_log.fork(LOG_KEY)
    assert fork is not None and (fork.reason, fork.kept_note, fork.other_note) == (
        "two heads",
        b"kept",
        b"other",
    )
    assert store.key_log.fork(OTHER_LOG) is None
