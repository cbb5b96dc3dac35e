"""The store of one profile: opening and creating it, its repositories, transactions, sweeping.

A profile is a folder (docs/STORAGE.md)::

    profile/lock           held by the process that has the profile open (storage.profilelock)
    profile/keyheader      how the key is obtained (no secret), written atomically, 0600
    profile/store.db       the SQLCipher database (+ store.db-wal, store.db-shm while open)
    profile/attachments/   one encrypted file per attachment, random names

Opening and creating first take the profile lock, so one process at a time has a
profile open (another gets ``ProfileInUseError`` naming the holder); closing, or a failed
open, releases it. Opening then checks, in order, before anything is written: the key
header, the key (against the header's key check), the database's first read and
application id, and the schema version. Any failure raises its typed error and leaves
every file as it was, but for the lock file's note of who held it, emptied again. Then
migrations run, stray attachment files are collected, and expired messages are swept,
all before the caller can read anything to display.

A store owns one connection and belongs to the thread that opened it (see
``storage.database``). Group writes of several repositories with ``store.transaction()``:
"message + ratchet state + outbox entry" and "message + ratchet state + seen envelope id"
commit together or not at all.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

import nacl.utils

from storage import keys, schema
from storage.attachments import AttachmentRepository
from storage.basekeys import AcceptedBaseKeyRepository
from storage.contacts import ContactRepository
from storage.conversations import ConversationRepository
from storage.database import MEMORY_SECURITY, Database
from storage.errors import (
    KeyHeaderMissingError,
    NotAnEnclaveDatabaseError,
    ProfileExistsError,
    ProfileFileError,
)
from storage.fileio import PRIVATE_DIR_MODE, make_private_dir
from storage.groups import GroupChangeRepository, MemberReceiptRepository
from storage.identity import IdentityRepository, PreKeyRepository
from storage.keyheader import KeyHeader, Protection, read_header, write_header
from storage.keylog import KeyLogRepository
from storage.keys import KeySource
from storage.messages import MessageRepository
from storage.organisation import OrganisationRepository
from storage.outbox import OutboxRepository
from storage.profilelock import ProfileLock
from storage.receipts import PendingReceiptRepository
from storage.seen import SeenEnvelopeRepository
from storage.sessions import SessionRepository
from storage.settings import SettingsRepository
from storage.signedprekeys import SignedPreKeyRepository
from storage.unsealed import UnsealedRepository

log = logging.getLogger(__name__)

Clock = Callable[[], float]
RandomSource = Callable[[int], bytes]

KEY_HEADER_NAME = "keyheader"
DATABASE_NAME = "store.db"
ATTACHMENTS_NAME = "attachments"


def profile_present(profile_dir: Path) -> bool:
    """Whether ``profile_dir`` holds a profile, whole or damaged: its key header, or its
    database without one (opening it then says the key header is missing; it is never
    created anew over). A folder this user may not look into is ``ProfileFileError``."""
    try:
        return (profile_dir / KEY_HEADER_NAME).exists() or (profile_dir / DATABASE_NAME).exists()
    except OSError as e:
        raise ProfileFileError.from_os(profile_dir, e) from e


def protection_of(profile_dir: Path) -> Protection:
    """How a profile is protected, so the UI knows whether to ask for a passphrase."""
    try:
        _refuse_headless(profile_dir)
        return read_header(profile_dir / KEY_HEADER_NAME).protection
    except OSError as e:
        raise ProfileFileError.from_os(profile_dir, e) from e


def _refuse_headless(profile_dir: Path) -> None:
    """A database whose key header is gone is a profile to restore, never one to replace."""
    header, database = profile_dir / KEY_HEADER_NAME, profile_dir / DATABASE_NAME
    if not header.exists() and database.exists():
        raise KeyHeaderMissingError(header, database)


class Store:
    """An open profile. Make one with ``Store.create`` or ``Store.open``; close it when done."""

    def __init__(
        self,
        db: Database,
        profile_dir: Path,
        header: KeyHeader,
        *,
        clock: Clock,
        random: RandomSource,
        lock: ProfileLock | None = None,
    ):
        self._db = db
        self._lock = lock
        self.profile_dir = profile_dir
        self.header = header
        self._clock = clock
        self.attachments = AttachmentRepository(
            db, profile_dir / ATTACHMENTS_NAME, clock=clock, random=random
        )
        self.identity = IdentityRepository(db, clock=clock)
        self.prekeys = PreKeyRepository(db, clock=clock)
        self.signed_prekeys = SignedPreKeyRepository(db, clock=clock)
        self.sessions = SessionRepository(db, clock=clock)
        self.contacts = ContactRepository(db, clock=clock)
        self.conversations = ConversationRepository(db, self.attachments, clock=clock)
        self.messages = MessageRepository(db, self.attachments)
        self.outbox = OutboxRepository(db, clock=clock)
        self.unsealed = UnsealedRepository(db, clock=clock)
        self.seen = SeenEnvelopeRepository(db, clock=clock)
        self.base_keys = AcceptedBaseKeyRepository(db, clock=clock)
        self.pending_receipts = PendingReceiptRepository(db)
        self.group_changes = GroupChangeRepository(db, clock=clock)
        self.member_receipts = MemberReceiptRepository(db)
        self.settings = SettingsRepository(db)
        self.organisation = OrganisationRepository(db, clock=clock)
        self.key_log = KeyLogRepository(db, clock=clock)
        self.startup_swept: tuple[int, ...] = ()
        """Ids of the messages the start-up sweep deleted (nothing was shown yet)."""

    @classmethod
    def create(
        cls,
        profile_dir: Path,
        key: KeySource,
        *,
        clock: Clock = time.time,
        random: RandomSource = nacl.utils.random,
        memory_security: bool = MEMORY_SECURITY,
        holder: str | None = None,
    ) -> Store:
        """Create a new profile in ``profile_dir`` (created 0700 if missing), protected by ``key``.

        ``holder`` says what has it open, for a second opener's error (``storage.profilelock``).
        A file that cannot be written or read raises ``ProfileFileError`` naming it and why.
        """
        try:
            return cls._create(
                profile_dir, key, clock=clock, random=random, memory_security=memory_security, holder=holder
            )
        except OSError as e:
            raise ProfileFileError.from_os(profile_dir, e) from e

    @classmethod
    def _create(
        cls,
        profile_dir: Path,
        key: KeySource,
        *,
        clock: Clock,
        random: RandomSource,
        memory_security: bool,
        holder: str | None,
    ) -> Store:
        _refuse_headless(profile_dir)
        profile_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        lock = ProfileLock.acquire(profile_dir, holder)
        try:
            header_path, db_path = profile_dir / KEY_HEADER_NAME, profile_dir / DATABASE_NAME
            for path in (header_path, db_path):
                if path.exists():
                    raise ProfileExistsError(str(profile_dir))
            make_private_dir(profile_dir)
            make_private_dir(profile_dir / ATTACHMENTS_NAME)
            header, raw_key = keys.provision(key, random)
            try:
                db = Database.create(db_path, raw_key, memory_security=memory_security)
                try:
                    schema.migrate(db)
                    write_header(header_path, header)
                except BaseException:
                    db.close()
                    raise
            except BaseException:
                for suffix in ("", "-wal", "-shm"):
                    db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
                keys.forget(header, key)
                raise
        except BaseException:
            lock.release()
            raise
        log.info("created a profile protected by %s", header.protection.describe())
        return cls(db, profile_dir, header, clock=clock, random=random, lock=lock)

    @classmethod
    def open(
        cls,
        profile_dir: Path,
        key: KeySource,
        *,
        clock: Clock = time.time,
        random: RandomSource = nacl.utils.random,
        memory_security: bool = MEMORY_SECURITY,
        holder: str | None = None,
    ) -> Store:
        """Open an existing profile, migrate it, and sweep what expired while it was closed.

        ``holder`` says what has it open, for a second opener's error (``storage.profilelock``).
        A file that cannot be written or read raises ``ProfileFileError`` naming it and why.
        """
        try:
            return cls._open(
                profile_dir, key, clock=clock, random=random, memory_security=memory_security, holder=holder
            )
        except OSError as e:
            raise ProfileFileError.from_os(profile_dir, e) from e

    @classmethod
    def _open(
        cls,
        profile_dir: Path,
        key: KeySource,
        *,
        clock: Clock,
        random: RandomSource,
        memory_security: bool,
        holder: str | None,
    ) -> Store:
        _refuse_headless(profile_dir)
        if not (profile_dir / KEY_HEADER_NAME).exists():
            # Not a profile (or no folder at all): refused before a lock file is left there.
            raise NotAnEnclaveDatabaseError("the folder has no key header")
        lock = ProfileLock.acquire(profile_dir, holder)
        try:
            header = read_header(profile_dir / KEY_HEADER_NAME)
            raw_key = keys.unlock(header, key)
            db = Database.open(profile_dir / DATABASE_NAME, raw_key, memory_security=memory_security)
            try:
                schema.check_supported(db)
                schema.migrate(db)
                make_private_dir(profile_dir / ATTACHMENTS_NAME)
                store = cls(db, profile_dir, header, clock=clock, random=random, lock=lock)
                store.attachments.collect_garbage()
                store.startup_swept = tuple(store.sweep())
            except BaseException:
                db.close()
                raise
        except BaseException:
            lock.release()
            raise
        log.info("opened a profile; the start-up sweep deleted %d messages", len(store.startup_swept))
        return store

    @property
    def schema_version(self) -> int:
        return schema.schema_version(self._db)

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """One transaction across repositories; nested uses join it (as savepoints)."""
        return self._db.transaction()

    def after_commit(self, work: Callable[[], None]) -> None:
        """Run ``work`` once the current transaction has committed (never if it rolls back)."""
        self._db.after_commit(work)

    def after_rollback(self, work: Callable[[], None]) -> None:
        """Run ``work`` if the current transaction rolls back: to drop what was cached from it."""
        self._db.after_rollback(work)

    def sweep(self, now: float | None = None) -> list[int]:
        """Delete every message due at ``now`` (default: the clock) and return their ids.

        Their rows, search entries, attachment rows and keys go in one transaction, the
        files right after it; then ``scrub()`` removes what the search index and the WAL
        still held of their text.
        """
        ids = self.messages.delete_due(self._clock() if now is None else now)
        if ids:
            self.scrub()
            log.info("swept %d expired messages", len(ids))
        return ids

    def delete_messages(self, ids: Iterable[int]) -> list[int]:
        """Delete messages the user chose, as thoroughly as the sweeper does; returns the ids deleted."""
        deleted = self.messages.delete(ids)
        if deleted:
            self.scrub()
        return deleted

    def delete_retired_signed_prekeys(self, *, before: float) -> list[int]:
        """Delete the signed prekeys retired before ``before`` for good; returns their ids.

        The private keys' cells are zeroed (``secure_delete``) and the checkpoint removes
        the WAL's older copies of those pages, so the keys are gone from the disk too.
        """
        deleted = self.signed_prekeys.delete_retired(before=before)
        if deleted:
            self.scrub()
        return deleted

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete a conversation with its messages, files and every trace of their words."""
        self.conversations.delete(conversation_id)
        self.messages.search_index_dirty = True
        self.scrub()

    def scrub(self) -> None:
        """Leave no freed text behind: optimize the search index if rows left it, then checkpoint.

        ``secure_delete`` has already zeroed the freed cells and pages; the checkpoint
        copies those zeroed pages into the database file and truncates the WAL, which
        still held the older versions of the same pages.
        """
        if self._db.in_transaction:
            raise RuntimeError("scrub outside a transaction: it checkpoints the WAL")
        if self.messages.search_index_dirty:
            self.messages.optimize_search_index()
        self._db.checkpoint()

    def next_expiry(self) -> float | None:
        return self.messages.next_expiry()

    def checkpoint(self) -> None:
        """Fold the WAL into the database and truncate it (the sweeper does this itself)."""
        self._db.checkpoint()

    def close(self) -> None:
        """Close the database, then release the profile lock (even if closing failed)."""
        try:
            self._db.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
