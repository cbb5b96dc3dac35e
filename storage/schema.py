"""The schema and its forward-only migrations.

``PRAGMA user_version`` is the schema version. Each migration runs in its own
transaction together with the version bump, so a crash leaves the store at one version
or the next, never between. A store newer than this build is refused unchanged.

- v1: identity and prekeys, ratchet sessions, contacts and their devices (trust state),
  conversations, messages (with expires_at, swept by a scan), seen envelope ids, settings.
- v2: full-text search (FTS5, external content, kept in step by triggers, secret chats
  left out through the immutable ``messages.indexed`` flag) and the index on expires_at
  that lets the sweeper find what is due without a scan.
- v3: the outbox and encrypted attachment files.
- v4: disappearing rules, secret chats, the sealing queue: the timer each message carries
  (``messages.expire_after``) and the index of unread received messages, a secret chat's
  protocol id and its one peer device (``conversations.secret_id``, ``peer_device``;
  existing secret chats get a random id), and ``unsealed``, the outgoing messages stored
  but not yet sealed into outbox envelopes.
- v5: the organisation: the root key the profile trusts (``org_trust``, fixed once set) and
  the signed config accepted last from each origin with its version (``org_configs``,
  whose version never goes down), so a downgrade is refused across restarts.
- v6: signed prekeys move to their own table, ``signed_prekeys``, kept by id with when each
  was made, published (the relay acknowledged it) and retired (replaced by the next), so
  the client can rotate them and delete a retired one after its grace period; the
  ``prekeys`` table keeps the one-time prekeys.
- v7: the key log as this device checked it (storage/keylog.py): the head it accepted last
  and its tree's frontier (``key_log_head``), the bindings the entries replayed to
  (``key_log_bindings``, one identity key per device and per key), and the forks it caught
  with both heads (``key_log_forks``).
- v8: the base keys of the first messages this device accepted (``accepted_base_keys``,
  storage/basekeys.py), each kept while the signed prekey it named is. The sessions stored
  before v8 give theirs (session state v1 holds the remote identity key at bytes 38..70 and
  the base key at 70..102), tied to the newest signed prekey, which is deleted last.
- v9: each colleague device's delivery key (``contact_devices.delivery_key``), as the last
  envelope it sealed told it: what lets this device write to it unidentified.
- v10: receipts waiting for their random delay (``pending_receipts``, storage/receipts.py): the
  message, the receipt's kind, the sender's device it goes to, and when it falls due; a row
  goes with its message.
- v11: the changes of the groups this device is in (``group_changes``, storage/groups.py), from
  which their state is resolved, and each member's delivery and read receipt of a group message
  (``member_receipts``), which goes with its message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from storage.database import Database
from storage.errors import UnsupportedProfileVersionError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


_V1 = Migration(
    1,
    "core tables",
    (
        """CREATE TABLE identity (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            account_id TEXT NOT NULL,
            device_id INTEGER NOT NULL,
            seed BLOB NOT NULL CHECK (length(seed) = 32),
            created_at REAL NOT NULL)""",
        """CREATE TABLE prekeys (
            kind TEXT NOT NULL CHECK (kind IN ('signed', 'one_time')),
            key_id INTEGER NOT NULL,
            private_key BLOB NOT NULL CHECK (length(private_key) = 32),
            signature BLOB,
            created_at REAL NOT NULL,
            PRIMARY KEY (kind, key_id)) WITHOUT ROWID""",
        """CREATE TABLE sessions (
            account_id TEXT NOT NULL,
            device_id INTEGER NOT NULL,
            state BLOB NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (account_id, device_id)) WITHOUT ROWID""",
        """CREATE TABLE contacts (
            account_id TEXT PRIMARY KEY,
            display_name TEXT NOT NULL,
            department TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL) WITHOUT ROWID""",
        """CREATE TABLE contact_devices (
            account_id TEXT NOT NULL REFERENCES contacts (account_id) ON DELETE CASCADE,
            device_id INTEGER NOT NULL,
            identity_key BLOB NOT NULL CHECK (length(identity_key) = 32),
            trust TEXT NOT NULL CHECK (trust IN ('unverified', 'verified', 'changed')),
            previous_identity_key BLOB,
            updated_at REAL NOT NULL,
            PRIMARY KEY (account_id, device_id)) WITHOUT ROWID""",
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('direct', 'group', 'secret')),
            peer_account_id TEXT,
            group_id BLOB,
            title TEXT NOT NULL DEFAULT '',
            timer_seconds INTEGER NOT NULL DEFAULT 0 CHECK (timer_seconds >= 0),
            classification TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            CHECK (kind <> 'secret' OR timer_seconds > 0),
            CHECK ((kind = 'group') = (group_id IS NOT NULL)),
            CHECK ((kind = 'group') = (peer_account_id IS NULL)))""",
        "CREATE UNIQUE INDEX conversations_group ON conversations (group_id) WHERE group_id IS NOT NULL",
        """CREATE INDEX conversations_peer ON conversations (peer_account_id)
            WHERE peer_account_id IS NOT NULL""",
        """CREATE TABLE conversation_members (
            conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            account_id TEXT NOT NULL,
            PRIMARY KEY (conversation_id, account_id)) WITHOUT ROWID""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            sender TEXT NOT NULL,
            sender_device INTEGER NOT NULL DEFAULT 0,
            message_id BLOB NOT NULL,
            body TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'delivered', 'read', 'failed')),
            sent_at REAL NOT NULL,
            received_at REAL,
            read_at REAL,
            expires_at REAL,
            UNIQUE (conversation_id, sender, message_id))""",
        "CREATE INDEX messages_history ON messages (conversation_id, sent_at, id)",
        """CREATE TABLE seen_envelopes (
            envelope_id BLOB PRIMARY KEY,
            seen_at REAL NOT NULL) WITHOUT ROWID""",
        "CREATE INDEX seen_envelopes_age ON seen_envelopes (seen_at)",
        """CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL) WITHOUT ROWID""",
    ),
)

_V2 = Migration(
    2,
    "full-text search and the expiry index",
    (
        "ALTER TABLE messages ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0 CHECK (indexed IN (0, 1))",
        """UPDATE messages SET indexed = 1
            WHERE conversation_id IN (SELECT id FROM conversations WHERE kind <> 'secret')""",
        "CREATE INDEX messages_expiry ON messages (expires_at) WHERE expires_at IS NOT NULL",
        """CREATE VIRTUAL TABLE messages_fts USING fts5 (
            body, content = 'messages', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2')""",
        # Deleting a row removes its terms from the index at once instead of adding a
        # "delete" marker that would leave them in older segments until a merge.
        "INSERT INTO messages_fts (messages_fts, rank) VALUES ('secure-delete', 1)",
        "INSERT INTO messages_fts (rowid, body) SELECT id, body FROM messages WHERE indexed = 1",
        """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.indexed = 1 BEGIN
            INSERT INTO messages_fts (rowid, body) VALUES (new.id, new.body);
        END""",
        """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.indexed = 1 BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
        END""",
        """CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages WHEN old.indexed = 1 BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
            INSERT INTO messages_fts (rowid, body) VALUES (new.id, new.body);
        END""",
        """CREATE TRIGGER messages_indexed_fixed BEFORE UPDATE OF indexed ON messages
            WHEN new.indexed IS NOT old.indexed BEGIN
            SELECT RAISE (ABORT, 'messages.indexed never changes');
        END""",
    ),
)

_V3 = Migration(
    3,
    "outbox and attachments",
    (
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            message_id INTEGER REFERENCES messages (id) ON DELETE CASCADE,
            recipient TEXT NOT NULL,
            recipient_device INTEGER NOT NULL,
            envelope BLOB NOT NULL,
            created_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL)""",
        "CREATE INDEX outbox_due ON outbox (next_attempt_at, id)",
        "CREATE INDEX outbox_message ON outbox (message_id) WHERE message_id IS NOT NULL",
        """CREATE TABLE attachments (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            file_name TEXT NOT NULL UNIQUE,
            file_key BLOB NOT NULL CHECK (length(file_key) = 32),
            name TEXT NOT NULL,
            mime_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            created_at REAL NOT NULL)""",
        "CREATE INDEX attachments_message ON attachments (message_id)",
    ),
)

_V4 = Migration(
    4,
    "disappearing rules, secret chats, the sealing queue",
    (
        "ALTER TABLE messages ADD COLUMN expire_after INTEGER NOT NULL DEFAULT 0 CHECK (expire_after >= 0)",
        """CREATE INDEX messages_unread ON messages (conversation_id, sent_at, id)
            WHERE read_at IS NULL AND sender <> ''""",
        """CREATE INDEX messages_waiting ON messages (sent_at, id)
            WHERE status = 'pending' AND sender = ''""",
        """ALTER TABLE conversations ADD COLUMN secret_id BLOB
            CHECK (secret_id IS NULL OR length(secret_id) = 16)""",
        "ALTER TABLE conversations ADD COLUMN peer_device INTEGER",
        "UPDATE conversations SET secret_id = randomblob(16) WHERE kind = 'secret'",
        "CREATE UNIQUE INDEX conversations_secret ON conversations (secret_id) WHERE secret_id IS NOT NULL",
        # ALTER TABLE cannot add the table CHECK that v1 would have written; triggers hold it.
        """CREATE TRIGGER conversations_secret_insert BEFORE INSERT ON conversations
            WHEN (new.kind = 'secret') <> (new.secret_id IS NOT NULL)
                OR (new.kind <> 'secret' AND new.peer_device IS NOT NULL) BEGIN
            SELECT RAISE (ABORT, 'a secret chat has a secret id; other kinds no secret id, no peer device');
        END""",
        """CREATE TRIGGER conversations_secret_update BEFORE UPDATE OF kind, secret_id, peer_device
            ON conversations
            WHEN (new.kind = 'secret') <> (new.secret_id IS NOT NULL)
                OR (new.kind <> 'secret' AND new.peer_device IS NOT NULL) BEGIN
            SELECT RAISE (ABORT, 'a secret chat has a secret id; other kinds no secret id, no peer device');
        END""",
        """CREATE TABLE unsealed (
            message_id INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
            queued_at REAL NOT NULL)""",
    ),
)

_V5 = Migration(
    5,
    "the organisation's root and accepted configs",
    (
        """CREATE TABLE org_trust (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            root_key BLOB NOT NULL CHECK (length(root_key) = 32),
            pinned_at REAL NOT NULL)""",
        """CREATE TRIGGER org_trust_fixed BEFORE UPDATE ON org_trust BEGIN
            SELECT RAISE (ABORT, 'the organisation of a profile never changes');
        END""",
        """CREATE TABLE org_configs (
            origin TEXT PRIMARY KEY CHECK (origin IN ('system', 'user')),
            version INTEGER NOT NULL CHECK (version > 0),
            config BLOB NOT NULL,
            signature BLOB NOT NULL,
            accepted_at REAL NOT NULL) WITHOUT ROWID""",
        """CREATE TRIGGER org_configs_no_downgrade BEFORE UPDATE OF version ON org_configs
            WHEN new.version < old.version BEGIN
            SELECT RAISE (ABORT, 'an organisation config is never downgraded');
        END""",
    ),
)

_V6 = Migration(
    6,
    "signed prekeys by id with their publication and retirement",
    (
        """CREATE TABLE signed_prekeys (
            key_id INTEGER PRIMARY KEY CHECK (key_id BETWEEN 0 AND 4294967295),
            private_key BLOB NOT NULL CHECK (length(private_key) = 32),
            signature BLOB NOT NULL CHECK (length(signature) = 64),
            created_at REAL NOT NULL,
            published_at REAL,
            retired_at REAL,
            CHECK (retired_at IS NULL OR published_at IS NOT NULL))""",
        # Of the keys not retired, at most one is published (the current one) and at most
        # one is not (made, its upload not yet acknowledged).
        """CREATE UNIQUE INDEX signed_prekeys_live ON signed_prekeys ((published_at IS NULL))
            WHERE retired_at IS NULL""",
        # Before v6 the one signed prekey was made at enrolment, which the relay had
        # acknowledged; it is the current one (the newest, should there be several).
        """INSERT INTO signed_prekeys (key_id, private_key, signature, created_at, published_at, retired_at)
            SELECT key_id, private_key, signature, created_at, created_at,
                CASE WHEN key_id = (SELECT max(key_id) FROM prekeys WHERE kind = 'signed')
                    THEN NULL ELSE created_at END
            FROM prekeys WHERE kind = 'signed'""",
        "DELETE FROM prekeys WHERE kind = 'signed'",
    ),
)

_V7 = Migration(
    7,
    "the key log as this device checked it",
    (
        """CREATE TABLE key_log_head (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            log_key BLOB NOT NULL CHECK (length(log_key) = 32),
            note BLOB NOT NULL,
            frontier BLOB NOT NULL,
            checked_at REAL NOT NULL)""",
        """CREATE TABLE key_log_bindings (
            account_id TEXT NOT NULL,
            device_id INTEGER NOT NULL,
            identity_key BLOB NOT NULL UNIQUE CHECK (length(identity_key) = 32),
            added INTEGER NOT NULL,
            added_at INTEGER NOT NULL,
            revoked INTEGER,
            revoked_at INTEGER,
            PRIMARY KEY (account_id, device_id)) WITHOUT ROWID""",
        """CREATE TABLE key_log_forks (
            id INTEGER PRIMARY KEY,
            log_key BLOB NOT NULL CHECK (length(log_key) = 32),
            found_at REAL NOT NULL,
            reason TEXT NOT NULL,
            kept_note BLOB,
            other_note BLOB NOT NULL)""",
    ),
)

_V8 = Migration(
    8,
    "the base keys of accepted first messages",
    (
        """CREATE TABLE accepted_base_keys (
            identity_key BLOB NOT NULL CHECK (length(identity_key) = 32),
            base_key BLOB NOT NULL CHECK (length(base_key) = 32),
            signed_prekey_id INTEGER NOT NULL REFERENCES signed_prekeys (key_id) ON DELETE CASCADE,
            accepted_at REAL NOT NULL,
            PRIMARY KEY (identity_key, base_key)) WITHOUT ROWID""",
        "CREATE INDEX accepted_base_keys_prekey ON accepted_base_keys (signed_prekey_id)",
        """INSERT OR IGNORE INTO accepted_base_keys (identity_key, base_key, signed_prekey_id, accepted_at)
            SELECT substr(state, 39, 32), substr(state, 71, 32),
                (SELECT max(key_id) FROM signed_prekeys), updated_at
            FROM sessions
            WHERE substr(state, 1, 5) = X'454E535301' AND length(state) > 102
                AND EXISTS (SELECT 1 FROM signed_prekeys)""",
    ),
)

_V9 = Migration(
    9,
    "the delivery key of each colleague's device, learnt from what it sealed",
    (
        """ALTER TABLE contact_devices ADD COLUMN delivery_key BLOB
            CHECK (delivery_key IS NULL OR length(delivery_key) = 16)""",
    ),
)

_V10 = Migration(
    10,
    "delivery and read receipts waiting for their random delay",
    (
        # One row per (message, kind) until its receipt is sealed; it goes with its message
        # (deleted, swept, or its conversation deleted) through the foreign key.
        """CREATE TABLE pending_receipts (
            message INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            kind INTEGER NOT NULL CHECK (kind IN (1, 2)),
            account_id TEXT NOT NULL,
            device_id INTEGER NOT NULL,
            due_at REAL NOT NULL,
            PRIMARY KEY (message, kind)) WITHOUT ROWID""",
        "CREATE INDEX pending_receipts_due ON pending_receipts (due_at)",
        "CREATE INDEX pending_receipts_device ON pending_receipts (account_id, device_id, kind)",
    ),
)

_V11 = Migration(
    11,
    "group changes, and each member's receipt of a group message",
    (
        # Every verified change of every group this device is or was in (app/protocol/groupchange.py):
        # the group's state is resolved from them (app/protocol/groupstate.py), never stored apart.
        """CREATE TABLE group_changes (
            id INTEGER PRIMARY KEY,
            change_id BLOB NOT NULL UNIQUE CHECK (length(change_id) = 32),
            group_id BLOB NOT NULL CHECK (length(group_id) = 16),
            body BLOB NOT NULL,
            received_at REAL NOT NULL)""",
        "CREATE INDEX group_changes_group ON group_changes (group_id)",
        """CREATE TABLE member_receipts (
            message INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            account_id TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('delivered', 'read')),
            at REAL NOT NULL,
            PRIMARY KEY (message, account_id)) WITHOUT ROWID""",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11)
LATEST_VERSION = MIGRATIONS[-1].version


def schema_version(db: Database) -> int:
    version: int = db.scalar("PRAGMA user_version")
    return version


def check_supported(db: Database) -> None:
    """Refuse a store written by a newer Enclave, before anything is written to it."""
    version = schema_version(db)
    if version > LATEST_VERSION:
        raise UnsupportedProfileVersionError("message store", version, LATEST_VERSION)


def migrate(
    db: Database, target: int = LATEST_VERSION, migrations: Sequence[Migration] = MIGRATIONS
) -> list[int]:
    """Bring the schema up to ``target``, one transaction per version; returns the versions applied.

    ``migrations`` is for tests that need a migration which fails half-way.
    """
    check_supported(db)
    applied = []
    for migration in migrations:
        if schema_version(db) >= migration.version or migration.version > target:
            continue
        with db.transaction():
            for statement in migration.statements:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {migration.version}")
        log.info("migrated the store to schema v%d (%s)", migration.version, migration.summary)
        applied.append(migration.version)
    return applied
