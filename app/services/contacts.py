"""Colleagues: the contact list on this device, the organisation's directory, and the names their
certificates give them."""

from __future__ import annotations

from app.crypto.certificate import DeviceCertificate
from app.protocol.frames import DirectoryEntry, DirectoryLookup, DirectoryResults, FrameType
from app.services.rules import RulesSource
from app.sync.link import RelayLink
from storage.errors import NotFoundError
from storage.records import Contact
from storage.store import Store


class Contacts:
    def __init__(self, store: Store, *, relay: RelayLink, rules: RulesSource) -> None:
        self._store = store
        self._relay = relay
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

    def ensure(self, certificate: DeviceCertificate) -> None:
        """Name the colleague a certificate speaks for as the certificate does (inside the transaction
        that takes a message or a bundle from them).

        The authority signs the name and department into every certificate, so a sender or a
        fetched colleague is named without asking the relay's directory: a look-up right after
        a message arrives would tell the relay who heard from whom, and its answer is the
        relay's to forge. A colleague new to this device becomes a contact; a known one takes
        the certificate's name when it changed (an admin renamed the account). A certificate
        without a name (version 1) names a new colleague by account id and renames nobody.
        """
        account_id = certificate.account_id
        name, department = certificate.display_name, certificate.department
        try:
            known = self._store.contacts.get(account_id)
        except NotFoundError:
            self._store.contacts.upsert(account_id, name or account_id, department)
            self._store.conversations.rename_peer(account_id, name or account_id)
            return
        if name and (known.display_name, known.department) != (name, department):
            self._store.contacts.upsert(account_id, name, department)
            self._store.conversations.rename_peer(account_id, name)
