"""Durability: a message the store reported committed survives the process dying right after."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from storage.keys import Passphrase
from storage.records import ConversationKind
from storage.store import Store
from tests.storage.harness import PASSPHRASE, FakeClock


def test_committed_message_survives_a_kill(profile: Path, passphrase: Passphrase, clock: FakeClock) -> None:
    """Test that a message committed by a process SIGKILLed right after the commit is there on reopen."""
    with Store.create(profile, passphrase, clock=clock) as store:
        store.conversations.create(ConversationKind.DIRECT, peer_account_id="ivan@ministry")
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from storage.keys import Passphrase
        from storage.records import MessageStatus, NewMessage
        from storage.store import Store
        store = Store.open(Path({str(profile)!r}), Passphrase({PASSPHRASE!r}))
        with store.transaction():
            new = NewMessage(1, b"env", "acknowledged", MessageStatus.DELIVERED, sent_at=1, sender="ivan")
            store.messages.add(new)
            store.seen.add(b"envelope-acked")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=Path(__file__).parents[2], timeout=60, check=False
    )
    assert result.returncode == -9
    assert (profile / "store.db-wal").stat().st_size > 0, "the commit is in the WAL, not yet checkpointed"
    with Store.open(profile, passphrase, clock=clock) as store:
        assert [m.body for m in store.messages.page(1).messages] == ["acknowledged"]
        assert store.seen.contains(b"envelope-acked")


def test_commits_are_fsynced(store: Store) -> None:
    """Test that the connection runs with synchronous=FULL, WAL, secure_delete and foreign keys on."""
    assert store._db.scalar("PRAGMA synchronous") == 2
    assert store._db.scalar("PRAGMA journal_mode") == "wal"
    assert store._db.scalar("PRAGMA secure_delete") == 1
    assert store._db.scalar("PRAGMA foreign_keys") == 1
