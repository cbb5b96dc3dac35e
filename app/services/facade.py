"""``Enclave``: the one object the desktop window and ``enclave-cli`` talk to.

Every method returns at once with a ``concurrent.futures.Future``; the work runs on the
core's worker thread (``worker.Worker``), and the future carries its result or its
typed error (``app.base.errors``, ``app.services.errors``, ``storage.errors``). Events
arrive through the listener given to ``open``, on the worker
thread; a Qt face re-emits them as queued signals. No Qt here.

``Enclave.open`` is the one call that waits: it returns once the profile is open
(deriving a passphrase key with Argon2id takes about a second), so a window calls it
behind its unlock screen, off the UI thread. Never wait on a future inside an event
callback: callbacks run on the worker thread, which would wait for itself.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import nacl.utils

from app.crypto.primitives import RandomSource
from app.services.client import Client
from app.services.events import ConnectionChanged, Event, Listener
from app.services.policy import PolicyView, system_location, system_rules
from app.services.receipts import ReceiptDelays
from app.services.types import (
    Attachment,
    Contact,
    Conversation,
    ConversationSummary,
    DirectoryEntry,
    GroupInfo,
    GroupReceipts,
    Identity,
    KeyLogStatus,
    Message,
    Page,
    PageCursor,
    PolicyEntry,
    SafetyNumberView,
)
from app.services.worker import Worker
from app.sync.machine import Backoff
from storage.keys import KeySource
from storage.store import Store

T = TypeVar("T")
OPEN_SECONDS = 120.0


class Enclave:
    """An open profile with its core running. Make one with ``Enclave.open``; ``close`` it when done."""

    def __init__(self, worker: Worker, listener: Listener | None) -> None:
        self._worker = worker
        self._listener = listener
        self._client: Client | None = None
        self.connection = ConnectionChanged("offline", "")
        """The latest connection state (also sent as an event)."""

    @classmethod
    def open(
        cls,
        profile_dir: Path,
        key: KeySource,
        *,
        create: bool = False,
        listener: Listener | None = None,
        clock: Callable[[], float] = time.time,
        random: RandomSource = nacl.utils.random,
        backoff: Backoff | None = None,
        holder: str | None = None,
        system_config: Path | None = None,
        receipt_delays: ReceiptDelays | None = None,
    ) -> Enclave:
        """Open (or ``create``) the profile in ``profile_dir`` and start its core.

        ``holder`` names this program to anyone who tries to open the profile meanwhile
        ("enclave-cli listen"; default: the running program's name), as ``ProfileInUseError``.
        ``system_config`` is the organisation config of the machine's system location
        (default: the OS's, ``app.provisioning.locations``); it is read as the profile opens.
        A profile is created only with the protection that config's policy allows (a
        passphrase instead of the keystore, long enough): else ``ProfileProtectionError``,
        and nothing is written. ``profiles.new_profile_rules`` tells a face beforehand.
        ``receipt_delays``: how long receipts wait before they leave (``app.services.receipts``).
        """
        location = system_location(system_config)
        if create:
            system_rules(location, clock=clock).check_new_profile(key)
        enclave = cls(Worker(), listener)

        async def opening() -> Client:
            opener = Store.create if create else Store.open
            store = opener(profile_dir, key, clock=clock, random=random, holder=holder)
            client = Client.build(
                store,
                listener=enclave._dispatch,
                clock=clock,
                random=random,
                backoff=backoff,
                system_config=location,
                receipt_delays=receipt_delays,
            )
            client.provisioning.load_system()
            client.start()
            return client

        try:
            enclave._client = enclave._worker.submit(opening()).result(OPEN_SECONDS)
        except BaseException:
            enclave._worker.stop()
            raise
        return enclave

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, ConnectionChanged):
            self.connection = event
        if self._listener is not None:
            self._listener(event)

    def _run(self, call: Callable[[Client], T | Awaitable[T]]) -> Future[T]:
        async def run() -> T:
            if self._client is None:
                raise RuntimeError("this profile is closed")
            result = call(self._client)
            if inspect.isawaitable(result):
                return await result
            return result

        return self._worker.submit(run())

    # Account.

    @property
    def account(self) -> Identity | None:
        """This device's account id and device id once enrolled (None before)."""
        return self._client.credentials.account if self._client else None

    def enrol(self, relay_url: str | None, pin: str | None, code: str) -> Future[Identity]:
        """Enrol with a code from IT at the relay the organisation's config names (``relay_url`` and
        ``pin`` None), or, on a machine with no config, at the one given. Given ones that differ
        from a config in force are a ``RelayConflictError``; nothing is sent then."""
        return self._run(lambda c: c.enrol(relay_url, pin, code))

    def wait_online(self, timeout: float) -> Future[bool]:
        return self._run(lambda c: c.relay.wait_online(timeout))

    def lookup(self, query: str) -> Future[list[DirectoryEntry]]:
        return self._run(lambda c: c.contacts.lookup(query))

    def add_contact(self, account_id: str, display_name: str, department: str = "") -> Future[Contact]:
        return self._run(lambda c: c.contacts.add(account_id, display_name, department))

    def contacts(self) -> Future[list[Contact]]:
        return self._run(lambda c: c.contacts.list())

    def start_conversation(self, account_id: str) -> Future[Conversation]:
        return self._run(lambda c: c.conversations.start(account_id))

    def start_secret_chat(self, account_id: str, timer_seconds: int) -> Future[Conversation]:
        return self._run(lambda c: c.conversations.start_secret(account_id, timer_seconds))

    def conversations(self) -> Future[list[ConversationSummary]]:
        return self._run(lambda c: c.conversations.summaries())

    def history(
        self, conversation_id: int, before: PageCursor | None = None, limit: int = 50
    ) -> Future[Page]:
        return self._run(lambda c: c.conversations.history(conversation_id, before, limit))

    def pending(self) -> Future[list[Message]]:
        return self._run(lambda c: c.conversations.pending())

    def search(self, text: str, conversation_id: int | None = None) -> Future[list[Message]]:
        return self._run(lambda c: c.conversations.search(text, conversation_id))

    # Messages.

    def send_text(self, conversation_id: int, text: str) -> Future[Message]:
        return self._run(lambda c: c.sending.send_text(conversation_id, text))

    def send_file(self, conversation_id: int, path: Path, caption: str = "") -> Future[Message]:
        return self._run(lambda c: c.sending.send_file(conversation_id, path, caption))

    def forward(self, message_id: int, conversation_id: int) -> Future[Message]:
        return self._run(lambda c: c.sending.forward(message_id, conversation_id))

    def attachments(self, message_id: int) -> Future[list[Attachment]]:
        return self._run(lambda c: c.conversations.attachments(message_id))

    def save_attachment(self, attachment_id: int, dest: Path) -> Future[int]:
        return self._run(lambda c: c.conversations.save_attachment(attachment_id, dest))

    def delete_messages(self, ids: list[int]) -> Future[list[int]]:
        return self._run(lambda c: c.conversations.delete_messages(ids))

    def mark_read(self, conversation_id: int) -> Future[int]:
        return self._run(lambda c: c.conversations.mark_read(conversation_id))

    def set_read_receipts(self, enabled: bool) -> Future[None]:
        return self._run(lambda c: c.conversations.set_read_receipts(enabled))

    def set_timer(self, conversation_id: int, timer_seconds: int) -> Future[Conversation]:
        return self._run(lambda c: c.conversations.set_timer(conversation_id, timer_seconds))

    # Groups.

    def create_group(
        self, name: str, members: list[str], *, timer_seconds: int = 0, label: str = ""
    ) -> Future[Conversation]:
        """A new group with this account as its admin; the members hear of it at once."""
        return self._run(lambda c: c.groups.create(name, members, timer_seconds=timer_seconds, label=label))

    def group_info(self, conversation_id: int) -> Future[GroupInfo]:
        """The group's state as this device resolves it, and the changes it did not apply."""
        return self._run(lambda c: c.groups.info(conversation_id))

    def rename_group(self, conversation_id: int, name: str) -> Future[GroupInfo]:
        return self._run(lambda c: c.groups.rename(conversation_id, name))

    def add_to_group(self, conversation_id: int, account_ids: list[str]) -> Future[GroupInfo]:
        return self._run(lambda c: c.groups.add(conversation_id, account_ids))

    def remove_from_group(self, conversation_id: int, account_id: str) -> Future[GroupInfo]:
        return self._run(lambda c: c.groups.remove(conversation_id, account_id))

    def promote_in_group(self, conversation_id: int, account_id: str) -> Future[GroupInfo]:
        return self._run(lambda c: c.groups.promote(conversation_id, account_id))

    def demote_in_group(self, conversation_id: int, account_id: str) -> Future[GroupInfo]:
        return self._run(lambda c: c.groups.demote(conversation_id, account_id))

    def leave_group(self, conversation_id: int) -> Future[GroupInfo]:
        return self._run(lambda c: c.groups.leave(conversation_id))

    def set_group_timer(self, conversation_id: int, timer_seconds: int) -> Future[GroupInfo]:
        return self._run(lambda c: c.groups.set_timer(conversation_id, timer_seconds))

    def set_group_label(self, conversation_id: int, label: str) -> Future[GroupInfo]:
        return self._run(lambda c: c.groups.set_label(conversation_id, label))

    def group_receipts(self, message_id: int) -> Future[GroupReceipts]:
        """How many members got and read one of this device's group messages."""
        return self._run(lambda c: c.groups.receipts(message_id))

    # The organisation's policy.

    def policy(self) -> Future[PolicyView]:
        """The effective policy, key by key with its source, and the configs in force."""
        return self._run(lambda c: c.provisioning.view())

    def import_config(self, path: Path) -> Future[PolicyView]:
        """Accept the signed config at ``path`` as the user's; a refusal says why and changes nothing."""

        async def importing(c: Client) -> PolicyView:
            await c.import_config(path)
            return c.provisioning.view()

        return self._run(importing)

    def set_policy(self, key: str, value: object) -> Future[PolicyEntry]:
        """Set the user's own value of a key the organisation did not make mandatory."""
        return self._run(lambda c: c.provisioning.set_user(key, value))

    def clear_policy(self, key: str) -> Future[PolicyEntry]:
        return self._run(lambda c: c.provisioning.clear_user(key))

    # Trust.

    def safety_numbers(self, account_id: str) -> Future[list[SafetyNumberView]]:
        """One per device of the colleague; their keys are fetched first if none is known yet."""
        return self._run(lambda c: c.verification.fetched_safety_numbers(account_id))

    def mark_verified(self, account_id: str, device_id: int) -> Future[None]:
        return self._run(lambda c: c.verification.mark_verified(account_id, device_id))

    def accept_key_change(self, account_id: str) -> Future[None]:
        return self._run(lambda c: c.verification.accept_key_change(account_id))

    def key_log(self) -> Future[KeyLogStatus]:
        """How far this device checked the organisation's key log, and this account's devices in it
        (a device the user did not enrol is someone else reading what is sent to them)."""
        return self._run(lambda c: c.transparency.own_devices())

    def flush(self, timeout: float) -> Future[bool]:
        """Wait until every queued envelope has left for the relay (see ``Delivery.drained``); receipts
        still waiting for their delay are not waited for: they are kept, and leave later."""
        return self._run(lambda c: c.delivery.drained(timeout))

    def close(self) -> None:
        """Stop the link and close the store; waits for the worker thread to finish."""
        if self._client is not None:
            client, self._client = self._client, None
            try:
                self._worker.submit(client.close()).result(OPEN_SECONDS)
            finally:
                self._worker.stop()

    def __enter__(self) -> Enclave:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
