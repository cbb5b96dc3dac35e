"""What the bytes on disk show: nothing readable in the encrypted store, no expired text in its twin."""

from __future__ import annotations

import io
import random
import string
from pathlib import Path

from storage.database import SQLITE_HEADER
from storage.keyheader import read_header
from storage.keys import Passphrase, unlock
from storage.records import ConversationKind, MessageStatus, NewMessage
from storage.store import ATTACHMENTS_NAME, KEY_HEADER_NAME, Store
from tests.storage.harness import FakeClock, database_files, tree_bytes

SECRETS = [
    "OPERATION-NIGHTJAR budget is 4.2 million",
    "minister arrives at 0700 via north gate",
    "Ζήτημα απόρρητο: κλειδί",
]


def _populate(store: Store) -> None:
    direct = store.conversations.create(
        ConversationKind.DIRECT, peer_account_id="dmitri@ministry", title="Dmitri"
    )
    secret = store.conversations.create(
        ConversationKind.SECRET, peer_account_id="dmitri@ministry", timer_seconds=60, secret_id=b"\x05" * 16
    )
    store.contacts.upsert("dmitri@ministry", "Dmitri NIGHTJARCONTACT", "Treasury")
    store.sessions.put("dmitri@ministry", 1, b"RATCHETSTATEMARKER" * 4)
    for i, text in enumerate(SECRETS):
        store.messages.add(NewMessage(direct.id, f"d{i}".encode(), text, MessageStatus.SENT, sent_at=i))
    message = store.messages.add(
        NewMessage(
            secret.id, b"s", "SECRETCHATMARKER text", MessageStatus.DELIVERED, sent_at=9, sender="dmitri"
        )
    )
    store.attachments.add(
        message.id,
        io.BytesIO(b"ATTACHMENTMARKER" * 10_000),
        name="NIGHTJAR-plan.pdf",
        mime_type="application/pdf",
    )


def _markers() -> list[bytes]:
    words = [w.encode() for text in SECRETS for w in text.split() if len(w) >= 6]
    return [
        *words,
        b"NIGHTJARCONTACT",
        b"RATCHETSTATEMARKER",
        b"SECRETCHATMARKER",
        b"ATTACHMENTMARKER",
        b"NIGHTJAR-plan",
    ]


def test_encrypted_files_show_no_header_and_no_plaintext(store: Store, profile: Path) -> None:
    """Test that the database, WAL and SHM, never begin with the SQLite header nor hold text."""
    _populate(store)
    for stage in ("open", "closed"):
        if stage == "closed":
            store.close()
        files = database_files(profile)
        assert "store.db" in files
        if stage == "open":
            assert files.get("store.db-wal"), "the WAL should hold the recent commits while the store is open"
        for name, data in files.items():
            assert not data.startswith(SQLITE_HEADER), f"{name} starts with the SQLite header ({stage})"
            for marker in _markers():
                assert marker not in data, f"{marker!r} readable in {name} ({stage})"
        everything = tree_bytes(profile)
        for marker in _markers():
            assert marker not in everything


def test_passphrase_key_is_nowhere_on_disk(store: Store, profile: Path, passphrase: Passphrase) -> None:
    """Test that the key derived from the passphrase appears in no file of the profile."""
    _populate(store)
    raw_key = unlock(read_header(profile / KEY_HEADER_NAME), passphrase)
    if raw_key is None:
        raise AssertionError("a passphrase profile has a key")
    everything = tree_bytes(profile)
    assert raw_key not in everything
    assert raw_key.hex().encode() not in everything


def test_the_twin_shows_plaintext(twin: Store) -> None:
    """Test that the unencrypted twin does show its text on raw bytes (so the checks below can fail)."""
    _populate(twin)
    twin.checkpoint()
    assert SECRETS[0].encode() in database_files(twin.profile_dir)["store.db"]


def test_expired_text_is_gone_from_the_twin_raw_bytes(twin: Store, clock: FakeClock) -> None:
    """Test that after expiry no word of a message stays in the twin's database or WAL, nor its attachment.

    Each message carries one random word; the expiring ones all begin "qqdoomed". The
    search index stores a term after the prefix it shares with the one before, and keeps
    a short prefix of the first term of each page as that page's separator, so the check
    looks both for "qqdoomed" anywhere (separators and shared prefixes) and for the last
    9 letters of each word, which two random words share by chance about once in 5e12.
    """
    conversation = twin.conversations.create(ConversationKind.DIRECT, peer_account_id="erin@ministry")
    rng = random.Random(7)
    doomed = set(rng.sample(range(3000), 600))
    words = [
        ("qqdoomed" if i in doomed else "keptword") + "".join(rng.choices(string.ascii_lowercase, k=9))
        for i in range(3000)
    ]
    attachment_files: list[Path] = []
    for i, word in enumerate(words):
        message = twin.messages.add(
            NewMessage(
                conversation.id,
                i.to_bytes(4, "big"),
                f"routine update {word} filed",
                MessageStatus.SENT,
                sent_at=i,
                expires_at=clock() + 60 if i in doomed else None,
            )
        )
        if i in doomed and len(attachment_files) < 3:
            twin.attachments.add(message.id, io.BytesIO(b"x" * 1000), name="a.txt", mime_type="text/plain")
            attachment_files = sorted((twin.profile_dir / ATTACHMENTS_NAME).iterdir())
    twin.checkpoint()
    before = b"".join(database_files(twin.profile_dir).values())
    assert all(words[i][-9:].encode() in before for i in doomed)
    assert before.count(b"qqdoomed") > 600

    clock.advance(61)
    deleted = twin.sweep()

    assert len(deleted) == len(doomed)
    raw = b"".join(database_files(twin.profile_dir).values())
    left = [words[i] for i in doomed if words[i][-9:].encode() in raw]
    assert left == [], f"{len(left)} expired words still readable"
    assert b"qqdoomed" not in raw, "a prefix of an expired word is still in the search index"
    kept = [word for i, word in enumerate(words) if i not in doomed]
    assert all(word[-9:].encode() in raw for word in kept), "the check must see the words that did not expire"
    assert twin.messages.search(words[min(doomed)]) == []
    assert twin.messages.search(kept[0])
    assert len(attachment_files) == 3
    assert not any(path.exists() for path in attachment_files)
    assert (twin.profile_dir / "store.db-wal").stat().st_size == 0
