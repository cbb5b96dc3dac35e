"""Schema migrations: forward only, one transaction each, from every earlier version on a populated store."""

from __future__ import annotations

import io
from pathlib import Path

import nacl.utils
import pytest

from app.base.errors import StorageError
from storage import schema
from storage.database import Database
from storage.keyheader import write_header
from storage.keys import Passphrase, provision
from storage.records import ConversationKind, MessageStatus, NewMessage, PreKeyKind, Trust
from storage.store import ATTACHMENTS_NAME, DATABASE_NAME, KEY_HEADER_NAME, Store
from tests.storage.harness import FakeClock


def _populate(db: Database, version: int) -> None:
    """Rows as an Enclave with schema ``version`` wrote them (v2 also sets the search flag)."""
    with db.transaction():
        db.execute(
            """INSERT INTO identity (id, account_id, device_id, seed, created_at)
                VALUES (1, 'me@ministry', 3, ?, 1)""",
            (b"\x01" * 32,),
        )
        db.execute(
            "INSERT INTO contacts (account_id, display_name, created_at) VALUES ('fay@ministry', 'Fay', 1)"
        )
        db.execute(
            """INSERT INTO contact_devices (account_id, device_id, identity_key, trust, updated_at)
                VALUES ('fay@ministry', 1, ?, 'verified', 1)""",
            (b"\x02" * 32,),
        )
        db.execute(
            """INSERT INTO sessions (account_id, device_id, state, updated_at)
                VALUES ('fay@ministry', 1, ?, 1)""",
            (b"state-v1",),
        )
        db.execute(
            """INSERT INTO conversations (id, kind, peer_account_id, created_at)
                VALUES (1, 'direct', 'fay@ministry', 1)"""
        )
        # From v4 on a secret chat has its secret id (a trigger refuses one without).
        secret_id = ", randomblob(16)" if version >= 4 else ""
        columns = ", secret_id" if version >= 4 else ""
        db.execute(
            f"""INSERT INTO conversations (id, kind, peer_account_id, timer_seconds, created_at{columns})
                VALUES (2, 'secret', 'fay@ministry', 30, 1{secret_id})"""
        )
        db.execute(
            f"""INSERT INTO conversations (id, kind, peer_account_id, timer_seconds, created_at{columns})
                VALUES (3, 'secret', 'gus@ministry', 60, 1{secret_id})"""
        )
        for i in range(40):
            row = (
                1 + i % 2,
                f"m{i}".encode(),
                f"agenda item {i} pelican",
                100 + i,
                500.0 if i == 0 else None,
            )
            if version == 1:
                db.execute(
                    """INSERT INTO messages (conversation_id, sender, message_id, body, status, sent_at,
                        expires_at) VALUES (?, '', ?, ?, 'sent', ?, ?)""",
                    row,
                )
            else:
                db.execute(
                    """INSERT INTO messages (conversation_id, sender, message_id, body, status, sent_at,
                        expires_at, indexed) VALUES (?, '', ?, ?, 'sent', ?, ?, ?)""",
                    (*row, int(i % 2 == 0)),
                )
        db.execute("INSERT INTO seen_envelopes (envelope_id, seen_at) VALUES (?, 1)", (b"env-1",))
        if version < 6:
            db.execute(
                """INSERT INTO prekeys (kind, key_id, private_key, signature, created_at)
                    VALUES ('signed', 1, ?, ?, 7), ('one_time', 5, ?, NULL, 7)""",
                (b"\x0a" * 32, b"\x0b" * 64, b"\x0c" * 32),
            )
        else:
            db.execute(
                """INSERT INTO signed_prekeys (key_id, private_key, signature, created_at, published_at)
                    VALUES (1, ?, ?, 7, 7)""",
                (b"\x0a" * 32, b"\x0b" * 64),
            )
            db.execute(
                """INSERT INTO prekeys (kind, key_id, private_key, signature, created_at)
                    VALUES ('one_time', 5, ?, NULL, 7)""",
                (b"\x0c" * 32,),
            )
        db.execute("INSERT INTO settings (key, value) VALUES ('theme', 'dark')")


def _make_profile_at(profile: Path, version: int, passphrase: Passphrase) -> None:
    profile.mkdir()
    (profile / ATTACHMENTS_NAME).mkdir()
    header, raw_key = provision(passphrase, nacl.utils.random)
    db = Database.create(profile / DATABASE_NAME, raw_key)
    assert schema.migrate(db, target=version) == list(range(1, version + 1))
    _populate(db, version)
    db.close()
    write_header(profile / KEY_HEADER_NAME, header)


@pytest.mark.parametrize("version", [v for v in range(1, schema.LATEST_VERSION)])
def test_migrate_populated_store_from_every_earlier_version(
    version: int, profile: Path, passphrase: Passphrase, clock: FakeClock
) -> None:
    """Test that a populated store of every earlier schema opens at the latest with all its data usable."""
    clock.now = 1000.0
    _make_profile_at(profile, version, passphrase)
    with Store.open(profile, passphrase, clock=clock) as store:
        assert store.schema_version == schema.LATEST_VERSION
        assert store.startup_swept == (1,), "the v1 message that expired at 500 is swept on open"
        assert store.identity.load() is not None and store.identity.load().account_id == "me@ministry"  # type: ignore[union-attr]
        assert store.contacts.device("fay@ministry", 1).trust is Trust.VERIFIED  # type: ignore[union-attr]
        assert store.sessions.get("fay@ministry", 1) == b"state-v1"
        assert store.settings.get("theme") == "dark"
        assert not store.seen.add(b"env-1")
        assert store.messages.count() == 39
        found = store.messages.search("pelican", limit=100)
        assert {m.conversation_id for m in found} == {1}, "old secret-chat messages stay out of search"
        assert len(found) == 19
        assert [m.sent_at for m in store.messages.page(1, limit=3).messages] == [138.0, 136.0, 134.0]
        old = [*store.messages.page(1, limit=100).messages, *store.messages.page(2, limit=100).messages]
        assert len(old) == 39 and {m.expire_after for m in old} == {0}
        direct, *secrets = store.conversations.list()
        assert (direct.secret_id, direct.peer_device) == (None, None)
        assert [c.kind for c in secrets] == [ConversationKind.SECRET] * 2
        secret_ids = {c.secret_id for c in secrets}
        assert len(secret_ids) == 2, "each secret chat gets its own random id"
        assert all(c.secret_id is not None and len(c.secret_id) == 16 for c in secrets)
        assert all(c.peer_device is None for c in secrets)
        assert all(store.conversations.find_secret(c.secret_id) == c for c in secrets)  # type: ignore[arg-type]
        message = store.messages.add(
            NewMessage(1, b"new", "after migration", MessageStatus.PENDING, sent_at=200, expire_after=60)
        )
        assert store.messages.get(message.id).expire_after == 60
        store.outbox.enqueue("fay@ministry", 1, b"sealed", message_id=message.id)
        store.attachments.add(message.id, io.BytesIO(b"data"), name="n.txt", mime_type="text/plain")
        assert store.outbox.pending_for(message.id) == 1
        store.unsealed.add(message.id)
        assert store.unsealed.list() == [message.id]
        signed = store.signed_prekeys.current()
        assert signed is not None, "enrolment's signed prekey is the current one"
        assert (signed.key_id, signed.private_key, signed.signature) == (1, b"\x0a" * 32, b"\x0b" * 64)
        assert (signed.created_at, signed.published_at, signed.retired_at) == (7, 7, None)
        assert [k.key_id for k in store.prekeys.list(PreKeyKind.ONE_TIME)] == [5]
        assert store.signed_prekeys.next_id() == 2
        assert store.organisation.root_key() is None
        store.organisation.accept("user", root_key=b"\x07" * 32, version=2, config=b"c", signature=b"s")
        assert store.organisation.config("user").version == 2  # type: ignore[union-attr]
        assert store.key_log.head() is None, "a profile from before the key log reads it from its start"
        assert store.pending_receipts.count() == 0, "v9: no receipt was pending before the table"
        assert store.pending_receipts.add(message.id, 1, "fay@ministry", 1, 260.0)
        assert store.pending_receipts.next_due() == 260.0
        assert [p.message_id for p in store.pending_receipts.of_device("fay@ministry", 1, 1)] == [b"new"]


def _contents(db: Database) -> dict[str, list[tuple[object, ...]]]:
    """The schema and every row of every table, to compare a store before and after."""
    contents = {"sqlite_master": db.all("SELECT type, name, sql FROM sqlite_master ORDER BY name")}
    for (table,) in db.all("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
        contents[table] = db.all(f'SELECT * FROM "{table}" ORDER BY 1')
    return contents


@pytest.mark.parametrize("version", [m.version for m in schema.MIGRATIONS])
def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path, version: int) -> None:
    """Test that each migration, failing after its last statement, rolls back whole: schema, rows, version."""
    db = Database.create(tmp_path / "s.db", None)
    schema.migrate(db, target=version - 1)
    if version > 1:
        _populate(db, version - 1)
    before = _contents(db)
    real = schema.MIGRATIONS[version - 1]
    broken = schema.Migration(version, "broken", (*real.statements, "CREATE TABLE ???"))
    with pytest.raises(StorageError):
        schema.migrate(db, migrations=(*schema.MIGRATIONS[: version - 1], broken))
    assert schema.schema_version(db) == version - 1
    assert _contents(db) == before
    db.close()


def test_migrations_are_numbered_in_order() -> None:
    """Test that migrations run 1, 2, 3 … with no gap, so every earlier version has a path forward."""
    assert [m.version for m in schema.MIGRATIONS] == list(range(1, schema.LATEST_VERSION + 1))
