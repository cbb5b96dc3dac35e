"""Colleagues: the contact list on this device, the organisation's directory, and names for strangers."""

from __future__ import annotations

import logging

from app.base.errors import OfflineError, RelayRefusedError
from app.protocol.frames import DirectoryEntry, DirectoryLookup, DirectoryResults, FrameType
from app.services.rules import RulesSource
from app.services.tasks import Tasks
from app.sync.link import RelayLink
from storage.errors import NotFoundError
from storage.records import Contact
from storage.store import Store

log = logging.getLogger(__name__)


class Contacts:
    def __init__(self, store: Store, *, relay: RelayLink, tasks: Tasks, rules: RulesSource) -> None:
        self._store = store
        self._relay = relay
        self._tasks = tasks
        self._rules = rules

    async def lookup(self, query: str) -> list[DirectoryEntry]:
        """The directory's matches; refused where the policy forbids look-ups (``list`` still works)."""
        self._rules().check_directory()
        response = await self._relay.call(FrameType.DIRECTORY_LOOKUP, DirectoryLookup(query).encode())
        return list(DirectoryResults.parse(response.body).entries)

    def add(self, account_id: str, display_name: str, department: str = "") -> Contact:
        return self._store.contacts.upsert(account_id, display_name, department)

    def list(self) -> list[Contact]:
        return self._store.contacts.list()

    def get(self, account_id: str) -> Contact:
        return self._store.contacts.get(account_id)

    def ensure(self, account_id: str) -> None:
        """A sender we had not added yet becomes a contact, named by account id until looked up."""
        try:
            self._store.contacts.get(account_id)
        except NotFoundError:
            self._store.contacts.upsert(account_id, account_id)
            self._tasks.spawn(self._learn_name(account_id))

    async def _learn_name(self, account_id: str) -> None:
        """Ask the directory for a new contact's name and department (best effort; never where the
        policy forbids look-ups: the contact keeps its account id as name)."""
        if not self._rules().directory_lookup_allowed:
            return
        try:
            entries = await self.lookup(account_id)
        except (OfflineError, RelayRefusedError) as e:
            log.debug("a contact keeps its account id as name (%s)", type(e).__name__)
            return
        for entry in entries:
            if entry.account_id == account_id:
                with self._store.transaction():
                    self._store.contacts.upsert(account_id, entry.display_name, entry.department)
                    self._store.conversations.rename_peer(account_id, entry.display_name)
