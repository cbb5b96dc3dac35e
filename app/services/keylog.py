"""The key log as this device follows it: every colleague key checked against it before first
use, every head checked against the one before, the user's own account watched.

docs/PROTOCOL.md section 19 is the log; this part is its reader on a workstation. After
each authentication and then hourly it fetches the relay's newest head and the entries
since the head it accepted last, and takes them only if they lead to that head
(``LogView.advance``); the bindings they replay to are kept in the profile's store
(storage/keylog.py). A colleague's key is looked up there, never asked of the relay, so
checking a key tells the relay nothing of who is about to write to whom: every device
replays the whole log, which is the inclusion check for every key at once (an entry the
device folded into a head's root is in that head's tree).

A key the log does not hold (or holds as revoked) is refused after one fresh sync: a relay
or an authority that adds a device for someone without logging it cannot get it used.
A head that cannot follow the one accepted before, from the relay or from a colleague's
message (``compare``), is a fork: both heads are kept as evidence, sending stops while the
config names that log, and the user is told in plain words to tell security.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from app.base.errors import (
    CryptoError,
    InvalidSignatureError,
    OfflineError,
    RemoteProtocolError,
    TransportError,
)
from app.crypto.merkle import HASH_BYTES, MAX_PROOF_HASHES, parse_proof
from app.protocol.checkpoint import MAX_NOTE_BYTES
from app.protocol.logentry import MAX_ENTRY_BYTES, Binding
from app.protocol.logview import LogForkError, LogView, parse_entry_page
from app.services.clock import Clock
from app.services.credentials import Credentials
from app.services.errors import LogForkedError, UnloggedKeyError
from app.services.events import DeviceAddedToAccount, Emitter, LogForked, Problem
from app.services.tasks import Tasks
from storage.keylog import LoggedBinding
from storage.store import Store

log = logging.getLogger(__name__)

SYNC_SECONDS = 3600.0
"""How often a connected device asks for a newer head besides after each authentication."""
PAGE_ENTRIES = 1000
"""Entries asked for in one request (the relay's most)."""
MAX_PROOF_BYTES = 1 + MAX_PROOF_HASHES * HASH_BYTES


class LogSource(Protocol):
    """Where the log is read: the relay link (``RelayLink.key_log``)."""

    async def key_log(self, path: str, upload_token: bytes, limit: int) -> bytes: ...


@dataclass(frozen=True, slots=True)
class LogTrust:
    """What the organisation config in force says the log is: its key, the authority whose
    certificates its device entries must carry, and the admins who may sign its admin actions."""

    log_key: bytes
    authority_key: bytes
    admins: Mapping[bytes, str]
    """Each admin's key and name: the admin actions the log may hold."""


@dataclass(frozen=True, slots=True)
class KeyLogStatus:
    """What this device knows of the key log: how far it checked it, and this account's devices."""

    size: int | None
    """Leaves of the head accepted last (None before the first)."""
    checked_at: float | None
    head: bytes | None
    """The signed head accepted last: a copy kept elsewhere lets ``enclave-admin log verify``
    catch a log rewritten after it."""
    devices: tuple[LoggedBinding, ...]
    forked: str | None
    """Why sending is stopped, if the log forked."""


class StoredBindings:
    """The profile's store as the ``BindingStore`` of a ``KeyDirectory``."""

    def __init__(self, store: Store) -> None:
        self._repository = store.key_log

    def get(self, account_id: str, device_id: int) -> Binding | None:
        kept = self._repository.binding(account_id, device_id)
        return None if kept is None else _binding(kept)

    def put(self, binding: Binding) -> None:
        self._repository.put(
            LoggedBinding(
                binding.account_id,
                binding.device_id,
                binding.identity_key,
                binding.added,
                binding.added_at,
                binding.revoked,
                binding.revoked_at,
            )
        )

    def has_key(self, identity_key: bytes) -> bool:
        return self._repository.has_key(identity_key)

    def of_account(self, account_id: str) -> list[Binding]:
        return [_binding(kept) for kept in self._repository.bindings_of(account_id)]


def _binding(kept: LoggedBinding) -> Binding:
    return Binding(
        kept.account_id,
        kept.device_id,
        kept.identity_key,
        kept.added,
        kept.added_at,
        kept.revoked,
        kept.revoked_at,
    )


class Transparency:
    """This device's reader of the organisation's key log."""

    def __init__(
        self,
        store: Store,
        *,
        credentials: Credentials,
        relay: LogSource,
        emitter: Emitter,
        tasks: Tasks,
        clock: Clock,
        trust: Callable[[], LogTrust | None],
    ) -> None:
        """``trust`` is the log the config in force names (``Provisioning.transparency``)."""
        self._store = store
        self._credentials = credentials
        self._relay = relay
        self._emitter = emitter
        self._tasks = tasks
        self._clock = clock
        self._trust = trust
        self._lock = asyncio.Lock()
        self._alarm = tasks.alarm()

    def online(self) -> None:
        """The relay accepted this device: sync now, and again every ``SYNC_SECONDS``."""
        self._tasks.spawn(self._sync_and_repeat())

    def grew(self) -> None:
        """The relay says the log grew with a device of this account: read it now."""
        self._tasks.spawn(self._sync_quietly())

    def close(self) -> None:
        self._alarm.cancel()

    async def _sync_quietly(self) -> None:
        """Sync, with a fork (told already, by ``LogForked``) or a relay that cannot answer now
        left for the next time."""
        try:
            await self.sync()
        except LogForkedError:
            return
        except (TransportError, RemoteProtocolError, CryptoError) as e:
            log.info("the key log could not be followed now (%s)", type(e).__name__)

    async def _sync_and_repeat(self) -> None:
        await self._sync_quietly()
        self._alarm.set(SYNC_SECONDS, lambda: self._tasks.spawn(self._sync_and_repeat()))

    def forked(self) -> str | None:
        """Why sending is stopped: the fork caught in the log the config names; None if none was."""
        trust = self._trust()
        if trust is None:
            return None
        fork = self._store.key_log.fork(trust.log_key)
        return None if fork is None else fork.reason

    def check_not_forked(self) -> None:
        reason = self.forked()
        if reason is not None:
            raise LogForkedError(reason)

    async def own_devices(self) -> KeyLogStatus:
        """This account's devices as the key log states them, after a sync if the relay answers."""
        await self._sync_quietly()
        account = self._credentials.account
        trust = self._trust()
        kept = self._store.key_log.head()
        view = None if trust is None or kept is None else self._view(trust)
        return KeyLogStatus(
            size=view.size if view is not None else None,
            checked_at=kept.checked_at if kept is not None else None,
            head=self.head_note(),
            devices=tuple(self._store.key_log.bindings_of(account.account_id)) if account else (),
            forked=self.forked(),
        )

    def head_note(self) -> bytes | None:
        """The newest head this device accepted, to pass on inside its messages."""
        trust = self._trust()
        kept = self._store.key_log.head()
        return None if trust is None or kept is None or kept.log_key != trust.log_key else kept.note

    async def sync(self) -> None:
        """Take the relay's newest head and the entries up to it; ``LogForkedError`` for a fork.

        ``TransportError`` when the relay cannot answer, ``RemoteProtocolError`` or
        ``InvalidSignatureError`` for answers that are not a log's (nothing is kept of them).
        """
        async with self._lock:
            trust = self._trust()
            if trust is None:
                return
            view = self._view(trust)
            note = await self._fetch("/v1/log/head", MAX_NOTE_BYTES)
            size = view.signed(note).checkpoint.size
            if size < view.size:
                # An older head (a relay restored from a backup, or a replica behind): it must
                # be a head of the same log, but it adds nothing.
                proof = await self._proof(size, view.size)
                self._caught(trust, view, lambda: view.check_head(note, proof))
                return
            entries: list[bytes] = []
            while view.size + len(entries) < size:
                start = view.size + len(entries)
                count = min(PAGE_ENTRIES, size - start)
                page = parse_entry_page(
                    await self._fetch(
                        f"/v1/log/entries?start={start}&count={count}", count * (2 + MAX_ENTRY_BYTES)
                    )
                )
                if not page:
                    raise RemoteProtocolError(f"the relay gave no entries from leaf {start} of {size}")
                entries += page[:count]

            def advance() -> None:
                with self._store.transaction():
                    advanced = view.advance(note, entries)
                    self._store.key_log.keep_head(trust.log_key, note, view.frontier.encode())
                self._report(advanced.watched, advanced.problems)

            self._caught(trust, view, advance)

    async def compare(self, untrusted_note: bytes) -> None:
        """Check a head a colleague's message carried against this device's own, with a
        consistency proof from the relay; a newer one is first caught up with (``sync``)."""
        trust = self._trust()
        if trust is None or untrusted_note == self.head_note():
            return
        view = self._view(trust)
        other = view.signed(untrusted_note).checkpoint.size
        if other > view.size:
            await self.sync()
            view = self._view(trust)
        if view.head is None:
            return
        if other > view.size:
            # The relay signed this head for a colleague, and now shows this device an older one.
            behind = LogForkError(
                f"a colleague was shown a head of {other} leaves, but the relay shows this device only"
                f" {view.size}: it shows different people different logs",
                (view.head.note, untrusted_note),
            )
            self._caught(trust, view, lambda: _raise(behind))
        low, high = sorted((other, view.size))
        proof = await self._proof(low, high)
        self._caught(trust, view, lambda: view.check_head(untrusted_note, proof))

    async def require(
        self, account_id: str, device_id: int, identity_key: bytes, *, revoked_too: bool = False
    ) -> None:
        """Whether the log binds ``identity_key`` to this device of ``account_id``, not revoked
        (or, ``revoked_too``, ever: a group change signed before a revocation stays the device's);
        after one fresh sync if the kept log does not. ``UnloggedKeyError`` if it does not,
        ``LogForkedError`` if the log forked, ``OfflineError`` if the relay cannot show it now."""
        self.check_not_forked()
        if self._logged(account_id, device_id, identity_key, revoked_too=revoked_too):
            return
        try:
            await self.sync()
        except (TransportError, RemoteProtocolError, InvalidSignatureError) as e:
            raise OfflineError(f"the organisation's key log cannot be read now ({type(e).__name__})") from e
        self.check_not_forked()
        if not self._logged(account_id, device_id, identity_key, revoked_too=revoked_too):
            raise UnloggedKeyError(account_id, device_id)

    def revoked(self, account_id: str, device_id: int) -> bool:
        """Whether the log this device has read revokes that device (no sync: the log is followed
        as it grows, so a revocation arrives with the next head)."""
        kept = self._store.key_log.binding(account_id, device_id)
        return kept is not None and kept.revoked is not None

    def _logged(self, account_id: str, device_id: int, identity_key: bytes, *, revoked_too: bool) -> bool:
        kept = self._store.key_log.binding(account_id, device_id)
        if kept is None or kept.identity_key != identity_key:
            return False
        return revoked_too or kept.revoked is None

    def _view(self, trust: LogTrust) -> LogView:
        kept = self._store.key_log.head()
        if kept is not None and kept.log_key != trust.log_key:
            log.info("the config names another key log: following it from its start")
            self._store.key_log.start_over()
            kept = None
        account = self._credentials.account
        return LogView(
            log_key=trust.log_key,
            authority_key=trust.authority_key,
            watched_account=account.account_id if account else None,
            bindings=StoredBindings(self._store),
            kept=None if kept is None else (kept.note, kept.frontier),
            admins=trust.admins,
        )

    def _caught(self, trust: LogTrust, view: LogView, check: Callable[[], None]) -> None:
        """Run ``check``; a ``LogForkError`` is kept with its evidence, told, and raised as
        ``LogForkedError``."""
        try:
            check()
        except LogForkError as e:
            kept, other = (None, e.evidence[0]) if len(e.evidence) == 1 else e.evidence[:2]
            self._store.key_log.record_fork(trust.log_key, str(e), kept, other)
            log.warning("the key log forked: sending is stopped")
            self._emitter.emit(LogForked(str(e)))
            raise LogForkedError(str(e)) from e

    def _report(self, watched: list[Binding], problems: list[str]) -> None:
        """Tell the user of devices added to their account after this one, and of entries that
        break the log's rules (they bind nothing, but someone wrote them)."""
        account = self._credentials.account
        own = None if account is None else self._store.key_log.binding(account.account_id, account.device_id)
        for binding in watched:
            if account is None or binding.device_id == account.device_id:
                continue
            if own is not None and binding.added < own.added:
                continue
            self._emitter.emit(DeviceAddedToAccount(binding.device_id, binding.added_at))
        if problems:
            log.warning("the key log holds %d entries that break its rules", len(problems))
            self._emitter.emit(
                Problem(
                    f"The organisation's key log holds {len(problems)} entries that break its rules"
                    f" (the first: {problems[0]}); tell security"
                )
            )

    async def _fetch(self, path: str, limit: int) -> bytes:
        return await self._relay.key_log(path, self._credentials.upload_token, limit)

    async def _proof(self, old: int, new: int) -> list[bytes]:
        if old in (0, new):
            return []
        return parse_proof(await self._fetch(f"/v1/log/consistency?old={old}&new={new}", MAX_PROOF_BYTES))


def _raise(error: Exception) -> None:
    raise error
