"""Real Enclave clients (the facade, its worker thread, a real SQLCipher profile) for tests.

``Client`` wraps an ``Enclave`` with a queue of the events it emitted, so a test can
wait for "the message arrived" or "the status became read" without sleeping.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from app.services.events import Event, MessageArrived
from app.services.facade import Enclave
from app.services.receipts import ReceiptDelays
from app.sync.machine import Backoff
from storage.keyheader import MINIMUM_COST
from storage.keys import Passphrase
from storage.records import Conversation
from tests.support.deployment import deployment
from tests.support.ownauthority import OwnAuthority
from tests.support.relay import RelayProcess, new_account

PASSPHRASE = "correct horse battery staple"
WAIT_SECONDS = 20.0
POLL_SECONDS = 0.05
FAST_BACKOFF = Backoff(base_seconds=0.2, cap_seconds=1.0)
FAST_RECEIPTS = ReceiptDelays(0.05, 0.3)
"""Receipts wait a fraction of a second here, not the 5 to 60 s of a real profile."""

E = TypeVar("E")


def passphrase() -> Passphrase:
    return Passphrase(PASSPHRASE, MINIMUM_COST)


@dataclass
class Client:
    enclave: Enclave
    profile: Path
    events: queue.Queue[Event] = field(default_factory=queue.Queue)
    seen: list[Event] = field(default_factory=list)

    def wait_for(
        self, kind: type[E], where: Callable[[E], bool] = lambda _: True, timeout: float = WAIT_SECONDS
    ) -> E:
        """The first event of ``kind`` (seen before or arriving now) that satisfies ``where``."""
        for event in self.seen:
            if isinstance(event, kind) and where(event):
                self.seen.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            if isinstance(event, kind) and where(event):
                return event
            self.seen.append(event)
        raise AssertionError(f"no {kind.__name__} within {timeout} s; saw {self.seen}")

    def close(self) -> None:
        self.enclave.close()


def until(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    """Poll ``condition`` (it may ask a client's worker) until it holds; fail after ``timeout``.

    For a state that no event announces, such as a device forgotten after the relay refused it.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(POLL_SECONDS)


def open_client(
    profile: Path,
    *,
    create: bool = False,
    backoff: Backoff = FAST_BACKOFF,
    clock: Callable[[], float] = time.time,
    receipt_delays: ReceiptDelays = FAST_RECEIPTS,
) -> Client:
    events: queue.Queue[Event] = queue.Queue()
    enclave = Enclave.open(
        profile,
        passphrase(),
        create=create,
        listener=events.put,
        backoff=backoff,
        clock=clock,
        receipt_delays=receipt_delays,
    )
    return Client(enclave, profile, events)


def enrolled_client(
    relay: RelayProcess, root: Path, account_id: str, name: str, *, authority: OwnAuthority | None = None
) -> Client:
    """A new profile under ``root`` enrolled as ``account_id`` and online, as a colleague is: the
    account made at the relay with the admin CLI, the organisation's config for this relay
    imported, and the code from the run's enrolment authority (tests/support/deployment.py), or
    from ``authority``, which the config then names."""
    new_account(relay.data_dir, account_id, name)
    return enrolled_device(relay, root / account_id, account_id, authority=authority, name=name)


def enrolled_device(
    relay: RelayProcess,
    profile: Path,
    account_id: str,
    *,
    authority: OwnAuthority | None = None,
    name: str = "",
) -> Client:
    """A new profile at ``profile`` enrolled as a device of ``account_id``, an account the relay
    has already, and online: the organisation's config for this relay imported (written beside
    the profile), and a new code from the run's enrolment authority (or ``authority``), whose
    certificates carry ``name`` and the department new accounts get ("Tests")."""
    client = open_client(profile, create=True)
    config = profile.with_name(f"{profile.name}.config") / "enclave.toml"
    if authority is None:
        import_organisation(client, relay, config)
        code = deployment().code(account_id, name, "Tests")
    else:
        import_organisation(client, relay, config, **authority.changes())
        code = authority.code(account_id)
    client.enclave.enrol(None, None, code).result(WAIT_SECONDS)
    assert client.enclave.wait_online(WAIT_SECONDS).result(WAIT_SECONDS + 5)
    return client


def import_organisation(client: Client, relay: RelayProcess, path: Path, **changes: object) -> Path:
    """The run's organisation config for ``relay`` written at ``path`` and imported by ``client``."""
    client.enclave.import_config(deployment().install(path, relay, **changes)).result(WAIT_SECONDS)
    return path


def first_message(sender: Client, recipient: Client, text: str) -> tuple[Conversation, MessageArrived]:
    """The sender opens the direct conversation and its first text arrives: both ends have a session."""
    account = recipient.enclave.account
    if account is None:
        raise AssertionError("the recipient is not enrolled")
    conversation = sender.enclave.start_conversation(account.account_id).result(WAIT_SECONDS)
    sender.enclave.send_text(conversation.id, text).result(WAIT_SECONDS)
    return conversation, recipient.wait_for(MessageArrived)
