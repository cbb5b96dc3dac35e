"""One open profile for the length of one command (or one interactive session).

The facade answers with futures and reports events on its worker thread; a session
waits for the futures on the calling thread and queues the events, so a command reads
them in order on its own thread and never blocks the core.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TypeVar

from app.base.errors import EnclaveError, OfflineError
from app.services.errors import NotEnrolledError
from app.services.events import ConnectionChanged, Event, MessageHeld, MessageStatusChanged
from app.services.facade import Enclave
from app.services.profiles import KeySource
from app.services.types import Contact, Conversation, ConversationKind, Identity, Message, MessageStatus
from cli import output
from cli.errors import CliError

T = TypeVar("T")
REFUSED = "refused"
"""The connection state of a device the relay refused (revoked, account disabled): it never reconnects."""

CALL_SECONDS = 90.0
"""Longer than any network wait inside the core (30 s per relay request), so a timeout here is a hang."""
ONLINE_SECONDS = 15.0
FLUSH_SECONDS = 10.0
"""How long a command that queued control messages (timer change, receipts) waits for them to leave.

What has not left by then waits in the profile and leaves with its next connection.
"""
POLL_SECONDS = 0.5
"""The longest a wait blocks at once, so Ctrl-C stops it on every platform."""


class Session:
    def __init__(self, enclave: Enclave, events: queue.Queue[Event]) -> None:
        self.enclave = enclave
        self.events = events

    def close(self) -> None:
        """Close the profile now (``opened`` closes it anyway); afterwards ``drain`` has every event.

        ``Enclave.close`` joins the core's worker thread, so each event of what the core did
        (a message stored and acknowledged, say) is in the queue by the time this returns.
        """
        self.enclave.close()

    def call(self, future: Future[T]) -> T:
        """The result of a facade call, or its typed error raised here."""
        try:
            return future.result(CALL_SECONDS)
        except TimeoutError as e:
            raise CliError(f"the core did not answer within {CALL_SECONDS:.0f} s") from e

    def enrolled(self) -> Identity:
        """This device's account and device id; refuses a profile not enrolled yet."""
        if self.enclave.account is None:
            raise NotEnrolledError("this profile is not enrolled yet: run enclave-cli enrol first")
        return self.enclave.account

    @property
    def online(self) -> bool:
        return self.enclave.connection.state == "online"

    def go_online(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the relay connection; False if it is not up by then."""
        self.enrolled()  # a profile that is not enrolled never connects
        return self.call(self.enclave.wait_online(seconds))

    def require_online(self, seconds: float = ONLINE_SECONDS) -> None:
        if not self.go_online(seconds):
            reason = self.enclave.connection.reason or self.enclave.connection.state
            raise OfflineError(f"the relay did not answer within {seconds:.0f} s ({reason})")

    def next_event(self, deadline: float | None) -> Event | None:
        """The next event; None once ``deadline`` (``time.monotonic``) has passed."""
        while True:
            left = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - time.monotonic())
            if left <= 0:
                return None
            with contextlib.suppress(queue.Empty):
                return self.events.get(timeout=left)

    def drain(self) -> list[Event]:
        """The events queued now, without waiting for more."""
        drained: list[Event] = []
        with contextlib.suppress(queue.Empty):
            while True:
                drained.append(self.events.get_nowait())
        return drained

    def final_status(self, message: Message, deadline: float) -> Outcome:
        """Where the message stands once it is no longer pending, or at ``deadline``.

        Waiting stops early when it cannot end before the user acts: the message is held
        for a colleague's new key, or the relay refused this device.
        """
        status = message.status
        while status is MessageStatus.PENDING and (event := self.next_event(deadline)) is not None:
            if isinstance(event, MessageStatusChanged) and event.message_id == message.id:
                status = event.status
            elif isinstance(event, MessageHeld) and event.message_id == message.id:
                return Outcome(status, held_for=event.account_id)
            elif isinstance(event, ConnectionChanged) and event.state == REFUSED:
                return Outcome(status, refused=event.reason or REFUSED)
        return Outcome(status)

    def linger(self) -> None:
        """Let queued control messages leave before the profile closes (see ``FLUSH_SECONDS``)."""
        if self.online:
            self.call(self.enclave.flush(FLUSH_SECONDS))

    # Colleagues and conversations by account id.

    def contact(self, account_id: str) -> Contact:
        """The colleague as a contact; looked up in the directory and added if not one yet."""
        for contact in self.call(self.enclave.contacts()):
            if contact.account_id == account_id:
                return contact
        self.require_online()
        for entry in self.call(self.enclave.lookup(account_id)):
            if entry.account_id == account_id:
                return self.call(self.enclave.add_contact(account_id, entry.display_name, entry.department))
        raise CliError(f"no colleague {account_id!r} in the directory")

    def add_from_directory(self, query: str) -> list[Contact]:
        """Look colleagues up in the organisation's directory and add them as contacts (never oneself)."""
        self.require_online()
        own = self.enrolled().account_id
        return [
            self.call(self.enclave.add_contact(entry.account_id, entry.display_name, entry.department))
            for entry in self.call(self.enclave.lookup(query))
            if entry.account_id != own
        ]

    def direct_conversation(self, account_id: str) -> Conversation:
        """The direct conversation with a colleague, started if there is none."""
        self.contact(account_id)
        return self.call(self.enclave.start_conversation(account_id))

    def existing_conversation(self, account_id: str) -> Conversation:
        for summary in self.call(self.enclave.conversations()):
            c = summary.conversation
            if c.kind is ConversationKind.DIRECT and c.peer_account_id == account_id:
                return c
        raise CliError(f"no conversation with {account_id!r} yet")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a sent message while ``send`` waited."""

    status: MessageStatus
    held_for: str | None = None
    """The colleague whose new key the message waits for the user to accept."""
    refused: str | None = None
    """Why the relay refused this device, if it did: the message can never leave from here."""


@contextlib.contextmanager
def opened(profile: Path, key: KeySource, *, holder: str, create: bool = False) -> Iterator[Session]:
    """Open (or create) the profile and start its core; closed on leaving, whatever happened.

    ``holder`` names this program to whoever tries to open the profile meanwhile
    ("enclave-cli listen"): one process at a time has a profile open. The organisation
    config is read from the OS's system location; no switch moves it (a user who could
    would hide the machine's mandatory policy).
    """
    events: queue.Queue[Event] = queue.Queue()

    def listener(event: Event) -> None:
        warning = output.security_note(event)
        if warning is not None:
            output.note(warning)
        events.put(event)

    enclave = Enclave.open(profile, key, create=create, listener=listener, holder=holder)
    try:
        yield Session(enclave, events)
    finally:
        enclave.close()


def interrupt_on_termination() -> None:
    """Treat SIGTERM and SIGHUP (the terminal closed) like Ctrl-C, so the profile closes cleanly
    and a relay this process started is stopped, instead of the process dying on the spot."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), interrupt)


FAILED = 1
INTERRUPTED = 130


def run_guarded(program: str, run: Callable[[], int]) -> int:
    """Run a command the way every Enclave terminal program runs: line-buffered output, SIGTERM
    and SIGHUP as Ctrl-C, warnings only, and an expected error as one line on stderr (exit 1)."""
    output.line_buffered()
    interrupt_on_termination()
    logging.basicConfig(level=logging.WARNING, format=f"{program}: %(levelname)s %(name)s: %(message)s")
    try:
        return run()
    except KeyboardInterrupt:
        return INTERRUPTED
    except (EnclaveError, OSError) as e:
        output.note(f"{program}: {output.one_line(e)}")
        return FAILED
