"""Messages per second between real Enclave clients through one relay, and where a message's time goes.

Run from the repository root as a module (it imports ``bench.server``)::

    .venv/bin/python -m bench.e2e                         # 50 pairs, 20 messages each: about a minute
    .venv/bin/python -m bench.e2e --pairs 2 --messages 3  # seconds

One relay (``enclave-server``, TLS, SQLite by default or ``--backend postgres``) on
127.0.0.1, an enrolment authority (``enclave-authority``) holding the key the relay
trusts, and, in this process, ``--pairs`` senders and as many recipients: each a real
``Enclave`` (its own worker thread and asyncio loop, SQLCipher profile, WebSocket link)
that imported the organisation's signed config and enrolled with a code from that
authority alone, as a colleague's workstation does. A sender sends texts of
``TEXT_CHARACTERS`` characters to its recipient one at a time, the next as soon as the
relay has stored the last (the message became *sent*), as a device's outbox does. After
a warm-up message per sender, which sets up the X3DH sessions and is not measured, come
two phases of ``--messages`` texts per sender: one pair alone (the engine's own latency,
nothing else in the process busy), then all pairs at once (the issue's load).

Measured per message: from the call to ``send_text`` to the commit of the recipient's
receive transaction (the message, its ratchet state and its delivery receipt stored),
p50 and p99 (nearest rank); and, for what a window would see, to the recipient's
``MessageArrived`` event, which the engine emits right after that commit (the ack to the
relay follows it, unawaited). Throughput: messages committed per second, first send to last commit.

Receipts: the clients delay delivery receipts and batch them per sender device
(app/services/receipts.py). Here a receipt waits a time drawn from 0 to ``--receipt-delay``
seconds, default 0: a real profile's 5 to 60 s would make each phase wait that long for its
last "delivered" and measure the delay, not the pipeline. What the delay changes is counted
instead: the receipt envelopes the recipients sent per message delivered (``Receipts.seal_due``
over the phase, which ends only when every message came back delivered), 1.00 when each
receipt leaves alone and less when several messages arrive within one delay and share one.

The peer, in the same run on relays started the same way (a fresh one for each exchange,
whose devices bench/server.py numbers from 1): bench/server.py's raw exchange
between bare devices (no crypto, no store; 1 KiB opaque blobs), two per pair (2 for the
solo phase, ``2 * pairs`` for the loaded one), each sending ``--messages`` envelopes to
its partner one at a time after the relay's OK and acking each push. That is the
envelope traffic the clients make when every message is answered by a receipt of its own
(receipt envelopes per message 1.00): a ``rate/raw`` of 0.50 would mean the clients keep pace
with the bare relay.

Where the time goes: while it runs, and in this process only, the bench wraps the code
that does the work (the code under test is not changed, and is restored afterwards):

- crypto: ``seal``, ``unseal``, ``initiate_session`` and ``accept_session`` (wherever a
  module of ``app`` binds them) and ``Session.encrypt``, ``decrypt``, ``to_bytes`` and
  ``from_bytes``: sealed sender, the Double Ratchet, its state encoding;
- storage: every public method of the store's repositories and ``Database``'s statement
  methods: SQL, SQLCipher's page encryption, the fsync of each commit (``synchronous =
  FULL``), the repositories' Python around them.

Each wrapper notes, per thread, when the thread entered and left (wall clock) and its
CPU time inside. A wrapped call inside another (a repository method inside a
transaction, a storage read inside ``open_message``) is taken out of the outer one, so
nothing counts twice. Two views come out of that:

- Shares of send-to-commit time. A message's latency is split where the relay had it
  (the sender heard OK, or the recipient's link read the push, whichever came first):
  before that point it is charged to the sender's worker thread, after it to the
  recipient's. "crypto" and "storage" are the parts of those windows during which that
  thread was inside the wrapped code: its own work, and equally the work for earlier
  messages and receipts it had to finish first, since the message waited for that too.
  "transport and waiting" is the rest: the relay (its TLS, database and fsync),
  loopback, aiohttp and the protocol code, the event loop, idle waits. Shares are of
  all messages' latencies summed, so they add up to 100 %.
- CPU per message (its receipt included): the threads' CPU time inside crypto and
  storage over the phase, this process's other CPU time (protocol, asyncio, aiohttp,
  TLS, the engine's logic, thread switching), and the relay process's (Linux ``/proc``,
  in 10 ms ticks), each divided by the messages delivered. On a saturated machine this
  is the view that says what to make cheaper.

Limits: all clients are threads of one process and share one GIL, which no desktop
does (each runs one engine); a wall-clock share therefore includes waits for the GIL
and for a core, counted in whatever the thread was doing, and the loaded phase shows
this process's limits as much as the engine's; the solo phase is the cleaner view of
the engine. The wrappers themselves cost about 4 µs per call and some 240 calls per
message and receipt, about 1 ms of CPU, mostly charged to storage. The protocol
encoding between wrapped calls (content, envelope, frames) counts as transport.
Set-up is not timed. Nothing here asserts on speed.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:
    sys.exit("run it as a module from the repository root: .venv/bin/python -m bench.e2e")

import argparse
import asyncio
import contextlib
import functools
import inspect
import os
import ssl
import tempfile
import threading
import time
import uuid
from bisect import bisect_right
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from nacl.utils import random

from app.crypto.keys import IdentityKeyPair
from app.crypto.sealed import seal, unseal
from app.crypto.session import Session, accept_session, initiate_session
from app.protocol.envelope import Envelope
from app.provisioning.keyfile import Role, seal_key
from app.services.events import Event, Listener, MessageArrived, MessageStatusChanged
from app.services.facade import Enclave
from app.services.incoming import Receiving
from app.services.receipts import ReceiptDelays, Receipts
from app.services.relay import relay_pin
from app.sync.machine import Connection, Pushed
from authority.admin import issue_code
from authority.store import AuthorityStore
from bench import server as relay_bench
from server.keys import LOG_PUBLIC_FILE
from storage.attachments import AttachmentRepository
from storage.contacts import ContactRepository
from storage.conversations import ConversationRepository
from storage.database import Database
from storage.identity import IdentityRepository, PreKeyRepository
from storage.keyheader import MINIMUM_COST
from storage.keys import Passphrase
from storage.messages import MessageRepository
from storage.outbox import OutboxRepository
from storage.records import OUTGOING, MessageStatus, NewMessage
from storage.seen import SeenEnvelopeRepository
from storage.sessions import SessionRepository
from storage.settings import SettingsRepository
from storage.unsealed import UnsealedRepository
from tests.support.authority import AuthorityProcess
from tests.support.organisation import Organisation

SQLITE = relay_bench.SQLITE
POSTGRES = relay_bench.POSTGRES
DEFAULT_PAIRS = 50
DEFAULT_MESSAGES = 20
MAX_PAIRS = 250
DEFAULT_RECEIPT_DELAY = 0.0
"""Receipts leave as soon as they are recorded: the phases measure the pipeline, not the privacy delay."""
MAX_RECEIPT_DELAY = 60.0
TEXT_CHARACTERS = 120
"""About a chat line; each text starts with its pair and sequence number, which identify it."""
FILLER = "The minutes of Tuesday's meeting are attached; please send corrections by Friday noon. " * 2
WARM_UP = -1
"""The sequence number of each sender's first, unmeasured message."""
PASSPHRASE = "bench passphrase"
AUTHORITY_PASSPHRASE = "bench authority passphrase"
AUTHORITY_KEY_FILE = "authority.key"
"""Where ``enclave-authority`` looks for its sealed key in its data folder."""
CODE_HOURS = 1
SETUP_THREADS = 8
STEP_SECONDS = 60.0
"""Each client's open, enrolment and first connection must each finish within this."""
TRAFFIC_SECONDS = 600.0
"""All messages of one phase must arrive within this, or the run fails."""

CRYPTO = "crypto"
STORAGE = "storage"
CRYPTO_FUNCTIONS = (seal, unseal, initiate_session, accept_session)
"""Wrapped wherever a module of ``app`` binds them (``from ... import`` copies the name)."""
SESSION_METHODS = ("encrypt", "decrypt", "to_bytes", "from_bytes")
REPOSITORIES = (
    AttachmentRepository,
    ContactRepository,
    ConversationRepository,
    IdentityRepository,
    PreKeyRepository,
    MessageRepository,
    OutboxRepository,
    SeenEnvelopeRepository,
    SessionRepository,
    SettingsRepository,
    UnsealedRepository,
)
DATABASE_CALLS = ("execute", "executemany", "one", "all", "scalar")


# Instrumentation: per-thread timelines of crypto and storage, and when messages passed the relay.


class _Timeline:
    """One thread's time inside wrapped code: wall-clock segments in time order, and CPU totals.

    Only the thread itself writes; others read once the traffic is over. Entering a
    wrapped call inside another closes the outer segment and reopens it on return.
    """

    def __init__(self) -> None:
        self.segments: list[tuple[float, float, str]] = []
        """(start, end, category), ``perf_counter`` seconds."""
        self.cpu = {CRYPTO: 0.0, STORAGE: 0.0}
        """This thread's CPU seconds inside each category so far."""
        self.commits = 0
        """Outermost transactions this thread committed so far (each one an fsync)."""
        self._stack: list[str] = []
        self._since = 0.0
        self._since_cpu = 0.0

    def enter(self, category: str) -> None:
        now, now_cpu = time.perf_counter(), time.thread_time()
        if self._stack:
            self._close(now, now_cpu)
        self._stack.append(category)
        self._since, self._since_cpu = now, now_cpu

    def leave(self) -> None:
        now, now_cpu = time.perf_counter(), time.thread_time()
        self._close(now, now_cpu)
        self._stack.pop()
        self._since, self._since_cpu = now, now_cpu

    def _close(self, now: float, now_cpu: float) -> None:
        category = self._stack[-1]
        self.segments.append((self._since, now, category))
        self.cpu[category] += now_cpu - self._since_cpu

    def within(self, start: float, end: float) -> dict[str, float]:
        """Seconds of each category between ``start`` and ``end``."""
        spent = {CRYPTO: 0.0, STORAGE: 0.0}
        segments = self.segments
        index = bisect_right(segments, start, key=itemgetter(1))
        while index < len(segments) and segments[index][0] < end:
            first, last, category = segments[index]
            spent[category] += min(last, end) - max(first, start)
            index += 1
        return spent


@dataclass
class _ThreadState:
    timeline: _Timeline = field(default_factory=_Timeline)
    push_read_at: float | None = None
    """When the link read the envelope this thread's engine is receiving now."""
    uncommitted: list[tuple[str, float | None]] = field(default_factory=list)
    """Incoming texts stored in the open transaction, with when their push was read."""


@dataclass(frozen=True, slots=True)
class _Commit:
    thread: int
    push_read_at: float | None
    at: float


class _Probe:
    """Wraps the code under test while installed; collects timelines and receive milestones."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self.timelines: dict[int, _Timeline] = {}
        self.push_read: dict[bytes, float] = {}
        """Envelope id -> when a client's link parsed its push."""
        self.committed: dict[str, _Commit] = {}
        """Text -> when the recipient's receive transaction holding it committed."""
        self.receipts_sealed = 0
        """Receipt envelopes all clients sealed so far (``Receipts.seal_due``), batches counted once."""

    def _state(self) -> _ThreadState:
        state: _ThreadState | None = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = _ThreadState()
            with self._lock:
                self.timelines[threading.get_ident()] = state.timeline
        return state

    def totals(self) -> tuple[dict[str, float], int]:
        """CPU seconds spent in each category so far, and commits, all threads together."""
        with self._lock:
            timelines = list(self.timelines.values())
        cpu = {category: sum(t.cpu[category] for t in timelines) for category in (CRYPTO, STORAGE)}
        return cpu, sum(t.commits for t in timelines)

    def install(self, stack: contextlib.ExitStack) -> None:
        """Wrap everything; ``stack`` puts the originals back when it closes."""
        _replace(stack, MessageRepository, "add", self._noting_incoming)
        _replace(stack, Database, "transaction", self._stamping_commits)
        _replace(stack, Connection, "receive", self._noting_pushes)
        _replace(stack, Receiving, "receive", self._tagging_push)
        _replace(stack, Receipts, "seal_due", self._counting_receipts)
        for function in CRYPTO_FUNCTIONS:
            _replace_everywhere(stack, function, self._timed(CRYPTO, function))
        for name in SESSION_METHODS:
            _replace(stack, Session, name, functools.partial(self._timed, CRYPTO))
        for repository in REPOSITORIES:
            for name, value in list(vars(repository).items()):
                if not name.startswith("_") and inspect.isfunction(value):
                    _replace(stack, repository, name, functools.partial(self._timed, STORAGE))
        for name in DATABASE_CALLS:
            _replace(stack, Database, name, functools.partial(self._timed, STORAGE))

    def _timed(self, category: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            timeline = self._state().timeline
            timeline.enter(category)
            try:
                return function(*args, **kwargs)
            finally:
                timeline.leave()

        return timed

    def _noting_pushes(self, receive: Callable[[Connection, bytes], list[Any]]) -> Callable[..., Any]:
        @functools.wraps(receive)
        def noting(connection: Connection, untrusted: bytes) -> list[Any]:
            events = receive(connection, untrusted)
            now = time.perf_counter()
            for event in events:
                if isinstance(event, Pushed):
                    self.push_read[event.envelope.envelope_id] = now
            return events

        return noting

    def _tagging_push(
        self, receive: Callable[[Receiving, Envelope, Any], Coroutine[Any, Any, None]]
    ) -> Callable[..., Any]:
        # The link hands an engine one push at a time, so one tag per thread suffices.
        @functools.wraps(receive)
        async def tagging(receiving: Receiving, envelope: Envelope, source: Any) -> None:
            state = self._state()
            state.push_read_at = self.push_read.get(envelope.envelope_id)
            try:
                await receive(receiving, envelope, source)
            finally:
                state.push_read_at = None

        return tagging

    def _noting_incoming(self, add: Callable[[MessageRepository, NewMessage], Any]) -> Callable[..., Any]:
        @functools.wraps(add)
        def noting(repository: MessageRepository, new: NewMessage) -> Any:
            message = add(repository, new)
            if new.sender != OUTGOING:
                state = self._state()
                state.uncommitted.append((new.body, state.push_read_at))
            return message

        return noting

    def _counting_receipts(self, seal_due: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(seal_due)
        def counting(*args: Any, **kwargs: Any) -> int:
            sealed = seal_due(*args, **kwargs)
            with self._lock:
                self.receipts_sealed += sealed
            return sealed

        return counting

    def _stamping_commits(
        self, transaction: Callable[[Database], contextlib.AbstractContextManager[None]]
    ) -> Callable[..., Any]:
        @contextlib.contextmanager
        def stamping(db: Database) -> Iterator[None]:
            state = self._state()
            try:
                with transaction(db):
                    yield
            except BaseException:
                if not db.in_transaction:
                    state.uncommitted.clear()
                raise
            if db.in_transaction:
                return
            state.timeline.commits += 1
            if state.uncommitted:
                now, thread = time.perf_counter(), threading.get_ident()
                for body, push_read_at in state.uncommitted:
                    self.committed[body] = _Commit(thread, push_read_at, now)
                state.uncommitted.clear()

        return stamping


def _replace(
    stack: contextlib.ExitStack, owner: object, name: str, wrap: Callable[[Callable[..., Any]], Any]
) -> None:
    """Set ``owner.name`` to ``wrap(original)`` until ``stack`` closes (class methods stay so).

    The original may be inherited; then the wrapper is removed again rather than copied down.
    """
    original = inspect.getattr_static(owner, name)
    if isinstance(original, classmethod):
        replacement: Any = classmethod(wrap(original.__func__))
    else:
        replacement = wrap(original)
    own = name in vars(owner)
    setattr(owner, name, replacement)
    if own:
        stack.callback(setattr, owner, name, original)
    else:
        stack.callback(delattr, owner, name)


def _replace_everywhere(stack: contextlib.ExitStack, function: object, replacement: object) -> None:
    """Replace every binding of ``function`` in the loaded modules of ``app`` until ``stack`` closes."""
    for module in list(sys.modules.values()):
        if module is None or module.__name__.split(".")[0] != "app":
            continue
        for name, value in list(vars(module).items()):
            if value is function:
                setattr(module, name, replacement)
                stack.callback(setattr, module, name, function)


# The clients and their traffic.


def _text(pair: int, sequence: int) -> str:
    prefix = f"{pair} {sequence} "
    return prefix + FILLER[: TEXT_CHARACTERS - len(prefix)]


@dataclass
class _Sent:
    sender_thread: int
    at: float = 0.0
    """When ``send_text`` was called."""
    relay_stored_at: float = float("inf")
    """When the sender heard the relay had stored the message."""


class _Pair:
    """A sender, its recipient and their conversation; routes their events to the current traffic."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.sender_account = f"sender{index}"
        self.recipient_account = f"recipient{index}"
        self.sender: Enclave | None = None
        self.recipient: Enclave | None = None
        self.conversation_id = 0
        self.sender_thread = 0
        """The sender's worker thread, learned from its first event (it connects during set-up)."""
        self.traffic: _Traffic | None = None
        self.outstanding: str | None = None
        """The text the relay has not yet stored (at most one: the next waits for it)."""
        self.queue: list[str] = []
        """Texts still to send in this phase, the next one last."""
        self.settled: set[int] = set()
        """Store ids of the sender's messages whose status moved past pending."""

    def on_sender_event(self, event: Event) -> None:
        self.sender_thread = threading.get_ident()
        if not isinstance(event, MessageStatusChanged) or self.traffic is None:
            return
        if event.status is not MessageStatus.PENDING and event.message_id not in self.settled:
            self.settled.add(event.message_id)
            self.traffic.settled(self, event.status)
        if event.status is MessageStatus.DELIVERED:
            self.traffic.receipted()

    def on_recipient_event(self, event: Event) -> None:
        if isinstance(event, MessageArrived) and self.traffic is not None:
            self.traffic.arrived(event.message.body)


class _Traffic:
    """One phase: every sender sends its texts in turn, until each is stored, arrived and receipted.

    Callbacks come from the clients' worker threads; nothing here blocks them.
    """

    def __init__(self, pairs: Sequence[_Pair], sequences: Sequence[int]) -> None:
        self.pairs = pairs
        self.expected = len(pairs) * len(sequences)
        self.sent: dict[str, _Sent] = {}
        self.arrivals: dict[str, float] = {}
        self.started = 0.0
        self._settled = 0
        self._receipted = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._error: str | None = None
        for pair in pairs:
            pair.queue = [_text(pair.index, sequence) for sequence in reversed(sequences)]
            pair.traffic = self

    def run(self, label: str) -> None:
        self.started = time.perf_counter()
        for pair in self.pairs:
            self._send_next(pair)
        if not self._done.wait(TRAFFIC_SECONDS):
            self._fail(
                f"in {TRAFFIC_SECONDS:.0f} s, of {self.expected} messages {self._settled} reached the relay,"
                f" {len(self.arrivals)} arrived and {self._receipted} came back as delivered"
            )
        if self._error is not None:
            raise RuntimeError(f"{label}: {self._error}")

    def _send_next(self, pair: _Pair) -> None:
        with self._lock:
            if not pair.queue:
                return
            text = pair.queue.pop()
            pair.outstanding = text
            sent = self.sent[text] = _Sent(pair.sender_thread)
        assert pair.sender is not None
        sent.at = time.perf_counter()
        pair.sender.send_text(pair.conversation_id, text).add_done_callback(self._check)

    def settled(self, pair: _Pair, status: MessageStatus) -> None:
        now = time.perf_counter()
        with self._lock:
            text, pair.outstanding = pair.outstanding, None
            if text is not None:
                self.sent[text].relay_stored_at = now
                self._settled += 1
                self._finish_if_done()
        if status is MessageStatus.FAILED:
            self._fail(f"a message from {pair.sender_account} failed")
        self._send_next(pair)

    def arrived(self, text: str) -> None:
        now = time.perf_counter()
        with self._lock:
            if text in self.sent and text not in self.arrivals:
                self.arrivals[text] = now
                self._finish_if_done()

    def receipted(self) -> None:
        with self._lock:
            self._receipted += 1
            self._finish_if_done()

    def _finish_if_done(self) -> None:
        """With the lock held: the phase ends when the relay stored, the recipient committed and
        the sender applied the delivery receipt of every message.

        Then no late event or receipt of this phase is taken for, or charged to, the next.
        """
        if self._settled == len(self.arrivals) == self._receipted == self.expected:
            self._done.set()

    def _check(self, future: Future[Any]) -> None:
        error = future.exception()
        if error is not None:
            self._fail(f"send_text failed: {error!r}")

    def _fail(self, error: str) -> None:
        with self._lock:
            if self._error is None:
                self._error = error
        self._done.set()


def _open_client(
    root: Path, account: str, organisation: _Organisation, listener: Listener, receipt_delays: ReceiptDelays
) -> Enclave:
    """A new profile for ``account`` with the organisation's config imported, enrolled with its code
    alone, and online."""
    key = Passphrase(PASSPHRASE, MINIMUM_COST)
    enclave = Enclave.open(root / account, key, create=True, listener=listener, receipt_delays=receipt_delays)
    try:
        enclave.import_config(organisation.config).result(STEP_SECONDS)
        enclave.enrol(None, None, organisation.codes[account]).result(STEP_SECONDS)
        if not enclave.wait_online(STEP_SECONDS).result(STEP_SECONDS * 2):
            raise RuntimeError(f"{account} did not get online within {STEP_SECONDS:.0f} s")
    except BaseException:
        enclave.close()
        raise
    return enclave


def _open_pair(root: Path, pair: _Pair, organisation: _Organisation, receipt_delays: ReceiptDelays) -> None:
    pair.sender = _open_client(root, pair.sender_account, organisation, pair.on_sender_event, receipt_delays)
    pair.recipient = _open_client(
        root, pair.recipient_account, organisation, pair.on_recipient_event, receipt_delays
    )
    pair.sender.add_contact(pair.recipient_account, f"Recipient {pair.index}").result(STEP_SECONDS)
    pair.conversation_id = pair.sender.start_conversation(pair.recipient_account).result(STEP_SECONDS).id


@contextlib.contextmanager
def _clients(
    pairs: Sequence[_Pair], organisation: _Organisation, receipt_delays: ReceiptDelays
) -> Iterator[None]:
    """Every pair's two clients open, enrolled and online; closed (and their profiles gone) after."""
    with (
        tempfile.TemporaryDirectory(prefix="enclave-e2e-") as folder,
        ThreadPoolExecutor(SETUP_THREADS) as pool,
    ):
        try:
            opening = [
                pool.submit(_open_pair, Path(folder), pair, organisation, receipt_delays) for pair in pairs
            ]
            wait(opening)
            for opened in opening:
                opened.result()
            yield
        finally:
            clients = [c for pair in pairs for c in (pair.sender, pair.recipient) if c is not None]
            list(pool.map(Enclave.close, clients))


# The relay and the organisation the clients enrol in.


@contextlib.contextmanager
def _relay(backend: str, accounts: Sequence[str], postgres_dsn: str) -> Iterator[relay_bench._RelayProcess]:
    """A fresh relay on ``backend``, trusting an enrolment authority key made for it, with the accounts."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="enclave-e2e-relay-") as folder:
        data_dir = Path(folder)
        relay_bench._write_config(data_dir, backend, postgres_dsn, schema)
        relay = relay_bench._RelayProcess(data_dir, IdentityKeyPair.generate(random))
        try:
            relay.start()
            for account in accounts:
                relay_bench._admin(data_dir, "account", "create", account, "--name", account.title())
            yield relay
        finally:
            relay.stop()
            if backend == POSTGRES:
                asyncio.run(relay_bench._drop_schema(postgres_dsn, schema))


@dataclass(frozen=True)
class _Organisation:
    """What a client needs to enrol: the organisation's signed config, naming the relay and the
    enrolment authority, and a one-time code for each account from that authority."""

    config: Path
    codes: dict[str, str]


@contextlib.contextmanager
def _enrolment(relay: relay_bench._RelayProcess, accounts: Sequence[str]) -> Iterator[_Organisation]:
    """The organisation as docs/ADMIN.md deploys one, for ``relay``'s clients: ``enclave-authority``
    over a data folder of its own holding the key the relay trusts, sealed; a config that a root
    made for the run signs, naming the relay and the authority; and a code per account, issued
    into the authority's store in this process (a process per code would dominate the set-up)."""
    with tempfile.TemporaryDirectory(prefix="enclave-e2e-organisation-") as folder:
        data_dir = Path(folder) / "authority"
        data_dir.mkdir(mode=0o700)
        sealed, _ = seal_key(Role.AUTHORITY, AUTHORITY_PASSPHRASE, relay.authority.seed, random=random)
        (data_dir / AUTHORITY_KEY_FILE).write_bytes(sealed)
        passphrase = Path(folder) / "authority.pass"
        passphrase.write_text(AUTHORITY_PASSPHRASE + "\n", encoding="utf-8")
        # Every client enrols from 127.0.0.1; the per-address limit is for real networks.
        authority = AuthorityProcess(data_dir, passphrase, "--attempts-per-minute", "1000000").start()
        try:
            store = AuthorityStore.open(data_dir)
            try:
                now = int(time.time())
                codes = {account: issue_code(store, account, CODE_HOURS, now=now) for account in accounts}
            finally:
                store.close()
            relay_der = ssl.PEM_cert_to_DER_cert((relay.data_dir / "tls.crt").read_text(encoding="ascii"))
            organisation = Organisation(authority=(relay.authority.public, b""))
            config = organisation.config(
                relay_urls=(f"https://127.0.0.1:{relay.port}",),
                relay_pins=(relay_pin(relay_der),),
                log_key=bytes.fromhex((relay.data_dir / LOG_PUBLIC_FILE).read_text(encoding="ascii")),
                admins=((relay_bench.BENCH_ADMIN, relay_bench.bench_admin_public(relay.data_dir)),),
                authority_urls=(f"https://127.0.0.1:{authority.port}",),
                authority_pins=(authority.pin,),
                mandatory="",
                recommended="",
            )
            yield _Organisation(organisation.write(Path(folder) / "enclave.toml", config), codes)
        finally:
            authority.stop()


def _relay_cpu_seconds(relay: relay_bench._RelayProcess) -> float:
    """User and system CPU seconds the relay process has used so far (Linux ``/proc``)."""
    if relay.process is None:
        raise RuntimeError("the relay is not running")
    fields = Path(f"/proc/{relay.process.pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Results.


@dataclass(frozen=True, slots=True)
class Shares:
    """Percent of all messages' send-to-commit time, summed; see the module docstring."""

    crypto_sender: float
    crypto_recipient: float
    storage_sender: float
    storage_recipient: float
    transport: float

    @property
    def crypto(self) -> float:
        return self.crypto_sender + self.crypto_recipient

    @property
    def storage(self) -> float:
        return self.storage_sender + self.storage_recipient


@dataclass(frozen=True, slots=True)
class CpuBudget:
    """CPU milliseconds per delivered message, its delivery receipt included, over a whole phase."""

    crypto: float
    storage: float
    other: float
    """The clients' remaining CPU: protocol code, asyncio, aiohttp, TLS, the engine's own logic."""
    relay: float
    commits: float
    """Not CPU: the clients' committed transactions per message and receipt, each with its fsync."""


@dataclass(frozen=True, slots=True)
class Phase:
    """One measured phase of the clients, next to the raw relay exchange with as many devices."""

    pairs: int
    delivered: int
    seconds: float
    """From the first send to the last commit."""
    messages_per_second: float
    p50_ms: float
    """Send to the recipient's commit."""
    p99_ms: float
    arrived_p50_ms: float
    """Send to the recipient's ``MessageArrived`` event (after the ack's round trip)."""
    arrived_p99_ms: float
    shares: Shares
    cpu: CpuBudget
    receipts_per_message: float
    """Receipt envelopes the recipients sent per message delivered: 1 if each receipt leaves alone,
    less when messages that arrive within one receipt delay share one (see the module docstring)."""
    raw: relay_bench.Result


@dataclass(frozen=True, slots=True)
class Result:
    backend: str
    messages_per_pair: int
    receipt_delay: float
    """The longest a receipt waited, in seconds (``--receipt-delay``)."""
    solo: Phase
    """One pair alone: the engine's own latency, with nothing else in this process busy."""
    loaded: Phase
    """All pairs at once: the issue's load."""


def _percent(spent: dict[tuple[str, str], float], total: float) -> Shares:
    def share(category: str, side: str) -> float:
        return 100 * spent[category, side] / total

    return Shares(
        crypto_sender=share(CRYPTO, "sender"),
        crypto_recipient=share(CRYPTO, "recipient"),
        storage_sender=share(STORAGE, "sender"),
        storage_recipient=share(STORAGE, "recipient"),
        transport=100 * (total - sum(spent.values())) / total,
    )


def _phase(
    label: str,
    pairs: Sequence[_Pair],
    sequences: Sequence[int],
    *,
    probe: _Probe,
    relay: relay_bench._RelayProcess,
    raw: relay_bench.Result,
) -> Phase:
    """Run one phase of traffic and measure it."""
    traffic = _Traffic(pairs, sequences)
    cpu_before, relay_before, (probe_before, commits_before) = (
        time.process_time(),
        _relay_cpu_seconds(relay),
        probe.totals(),
    )
    receipts_before = probe.receipts_sealed
    traffic.run(label)
    cpu, relay_cpu, (probe_cpu, commits) = time.process_time(), _relay_cpu_seconds(relay), probe.totals()
    # The phase ended when every message came back delivered, so each of its receipts is counted.
    receipts = probe.receipts_sealed - receipts_before

    to_commit, to_event = [], []
    spent = {(category, side): 0.0 for category in (CRYPTO, STORAGE) for side in ("sender", "recipient")}
    total, last = 0.0, traffic.started
    for text, sent in traffic.sent.items():
        commit = probe.committed.get(text)
        if commit is None:
            raise RuntimeError(
                f"{label}: a message arrived but its commit went unseen; does the receive path still"
                " store messages with MessageRepository.add inside Database.transaction?"
            )
        relay_had = min(sent.relay_stored_at, commit.push_read_at or float("inf"))
        split = min(max(relay_had, sent.at), commit.at)
        for side, thread, start, end in (
            ("sender", sent.sender_thread, sent.at, split),
            ("recipient", commit.thread, split, commit.at),
        ):
            for category, seconds in probe.timelines[thread].within(start, end).items():
                spent[category, side] += seconds
        total += commit.at - sent.at
        last = max(last, commit.at)
        to_commit.append(round((commit.at - sent.at) * 1e9))
        to_event.append(round((traffic.arrivals[text] - sent.at) * 1e9))
    to_commit.sort()
    to_event.sort()

    delivered = len(to_commit)
    crypto_cpu, storage_cpu = (probe_cpu[c] - probe_before[c] for c in (CRYPTO, STORAGE))
    per_message_ms = 1000 / delivered
    return Phase(
        pairs=len(pairs),
        delivered=delivered,
        seconds=last - traffic.started,
        messages_per_second=delivered / (last - traffic.started),
        p50_ms=relay_bench._percentile(to_commit, 50) / 1e6,
        p99_ms=relay_bench._percentile(to_commit, 99) / 1e6,
        arrived_p50_ms=relay_bench._percentile(to_event, 50) / 1e6,
        arrived_p99_ms=relay_bench._percentile(to_event, 99) / 1e6,
        shares=_percent(spent, total),
        cpu=CpuBudget(
            crypto=crypto_cpu * per_message_ms,
            storage=storage_cpu * per_message_ms,
            other=(cpu - cpu_before - crypto_cpu - storage_cpu) * per_message_ms,
            relay=(relay_cpu - relay_before) * per_message_ms,
            commits=(commits - commits_before) / delivered,
        ),
        receipts_per_message=receipts / delivered,
        raw=raw,
    )


def _raw(accounts: Sequence[str], messages: int, backend: str, postgres_dsn: str) -> relay_bench.Result:
    """bench/server.py's exchange between a bare device of each account (with its own warm-up), on a
    relay of its own: that exchange numbers its devices from 1, so two cannot share a relay."""
    with _relay(backend, accounts, postgres_dsn) as relay:
        exchange = asyncio.run(relay_bench._relay_exchange(relay, accounts, messages))
    return exchange.result(backend, len(accounts), messages)


def run(
    pairs: int = DEFAULT_PAIRS,
    messages: int = DEFAULT_MESSAGES,
    backend: str = SQLITE,
    postgres_dsn: str = relay_bench.POSTGRES_DSN,
    *,
    progress: Callable[[str], None] | None = None,
    receipt_delay: float = DEFAULT_RECEIPT_DELAY,
) -> Result:
    """The raw exchanges (each on a relay of its own), then on one relay the clients' warm-up, solo
    phase and loaded phase.

    ``receipt_delay``: the longest a client's receipt waits (drawn in [0, receipt_delay] s). The
    default, none, measures the pipeline; a real profile's 5 to 60 s (app.services.receipts) would
    make each phase wait that long for its last "delivered" and measure the delay instead.
    """
    if not 1 <= pairs <= MAX_PAIRS or messages < 1 or backend not in (SQLITE, POSTGRES):
        raise ValueError(f"pairs are 1 to {MAX_PAIRS}, messages at least 1, backend sqlite or postgres")
    if not 0 <= receipt_delay <= MAX_RECEIPT_DELAY:
        raise ValueError(f"the receipt delay is 0 to {MAX_RECEIPT_DELAY:.0f} s")
    say = progress or (lambda _text: None)
    couples = [_Pair(index) for index in range(pairs)]
    raw_accounts = [f"raw{index}" for index in range(2 + 2 * pairs)]
    client_accounts = [a for p in couples for a in (p.sender_account, p.recipient_account)]
    say(f"raw relay exchange on {backend}: 2 devices, then {2 * pairs}, {messages} envelopes each")
    raw_solo = _raw(raw_accounts[:2], messages, backend, postgres_dsn)
    raw_loaded = _raw(raw_accounts[2:], messages, backend, postgres_dsn)
    say(f"starting a relay on {backend} with {len(client_accounts)} accounts, and an enrolment authority")
    with (
        _relay(backend, client_accounts, postgres_dsn) as relay,
        _enrolment(relay, client_accounts) as organisation,
        contextlib.ExitStack() as stack,
    ):
        probe = _Probe()
        probe.install(stack)
        say(f"opening and enrolling {2 * pairs} clients")
        stack.enter_context(_clients(couples, organisation, ReceiptDelays(0.0, receipt_delay)))
        say("warm-up: one message per sender (X3DH sessions)")
        _Traffic(couples, [WARM_UP]).run("warm-up")
        say(f"measuring one pair alone, {messages} messages")
        solo = _phase("one pair", couples[:1], range(messages), probe=probe, relay=relay, raw=raw_solo)
        say(f"measuring {pairs} pairs at once, {messages} messages each")
        loaded = _phase(
            "all pairs", couples, range(messages, 2 * messages), probe=probe, relay=relay, raw=raw_loaded
        )
    return Result(
        backend=backend, messages_per_pair=messages, receipt_delay=receipt_delay, solo=solo, loaded=loaded
    )


def report(result: Result) -> str:
    phases = (("one pair alone", result.solo), (f"{result.loaded.pairs} pairs at once", result.loaded))
    column = 26
    lines = [
        f"on {os.cpu_count()} cores; the clients (threads of this process), the relay and its database"
        " share them",
        f"relay on {result.backend}; each sender sends {result.messages_per_pair} texts of"
        f" {TEXT_CHARACTERS} characters, the next once the relay has stored the last",
        "",
        f"{'':<18}{'messages/s':>11}{'p50 ms':>9}{'p99 ms':>9} |{'raw env/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f" |{'rate/raw':>9}{'p50/raw':>9}{'p99/raw':>9}",
    ]
    for name, phase in phases:
        raw = phase.raw
        lines.append(
            f"{name:<18}{phase.messages_per_second:>11,.0f}{phase.p50_ms:>9.1f}{phase.p99_ms:>9.1f}"
            f" |{raw.envelopes_per_second:>10,.0f}{raw.p50_ms:>9.1f}{raw.p99_ms:>9.1f}"
            f" |{phase.messages_per_second / raw.envelopes_per_second:>8.2f}x"
            f"{phase.p50_ms / raw.p50_ms:>8.1f}x{phase.p99_ms / raw.p99_ms:>8.1f}x"
        )
    lines += [
        "raw: bench/server.py's bare devices, two per pair: as many envelopes as the clients' messages and",
        "their delivery receipts, so a rate/raw of 0.50x would keep pace with the bare relay.",
        "send to MessageArrived, emitted right after the commit: p50 "
        + " / ".join(f"{p.arrived_p50_ms:.1f}" for _, p in phases)
        + " ms, p99 "
        + " / ".join(f"{p.arrived_p99_ms:.1f}" for _, p in phases)
        + " ms",
        "",
        f"{'share of send-to-commit time':<32}" + "".join(f"{name:>{column}}" for name, _ in phases),
    ]
    for name, sender, recipient in (
        (
            "crypto (sender + recipient)",
            lambda p: p.shares.crypto_sender,
            lambda p: p.shares.crypto_recipient,
        ),
        (
            "storage (sender + recipient)",
            lambda p: p.shares.storage_sender,
            lambda p: p.shares.storage_recipient,
        ),
    ):
        cells = (
            f"{sender(p) + recipient(p):.1f}%  ({sender(p):.1f} + {recipient(p):.1f})" for _, p in phases
        )
        lines.append(f"  {name:<30}" + "".join(f"{cell:>{column}}" for cell in cells))
    lines += [
        f"  {'transport and waiting':<30}"
        + "".join(f"{f'{p.shares.transport:.1f}%':>{column}}" for _, p in phases),
        "",
        f"{'CPU ms per message and receipt':<32}" + "".join(f"{name:>{column}}" for name, _ in phases),
    ]
    for name, value in (
        ("clients: crypto", lambda p: p.cpu.crypto),
        ("clients: storage", lambda p: p.cpu.storage),
        ("clients: everything else", lambda p: p.cpu.other),
        ("relay process", lambda p: p.cpu.relay),
    ):
        lines.append(f"  {name:<30}" + "".join(f"{value(p):>{column}.2f}" for _, p in phases))
    lines.append(
        f"{'commits (fsyncs) per message':<32}" + "".join(f"{p.cpu.commits:>{column}.1f}" for _, p in phases)
    )
    lines.append(
        f"{'receipt envelopes per message':<32}"
        + "".join(f"{p.receipts_per_message:>{column}.2f}" for _, p in phases)
    )
    lines.append(f"  (each receipt waited up to {result.receipt_delay:g} s; batching makes it less than 1)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pairs", type=int, default=DEFAULT_PAIRS, help=f"sender-recipient pairs (default {DEFAULT_PAIRS})"
    )
    parser.add_argument(
        "--messages",
        type=int,
        default=DEFAULT_MESSAGES,
        help=f"texts per sender and phase (default {DEFAULT_MESSAGES})",
    )
    parser.add_argument("--backend", choices=(SQLITE, POSTGRES), default=SQLITE, help="the relay's database")
    parser.add_argument(
        "--postgres-dsn", default=relay_bench.POSTGRES_DSN, help=f"(default {relay_bench.POSTGRES_DSN})"
    )
    parser.add_argument(
        "--receipt-delay",
        type=float,
        default=DEFAULT_RECEIPT_DELAY,
        help="the longest a receipt waits before it leaves, in seconds (default 0: none; a real profile"
        " waits 5 to 60)",
    )
    args = parser.parse_args(argv)
    try:
        result = run(
            args.pairs,
            args.messages,
            args.backend,
            args.postgres_dsn,
            progress=_progress,
            receipt_delay=args.receipt_delay,
        )
    except ValueError as e:
        parser.error(str(e))
    print(report(result))


def _progress(text: str) -> None:
    print(f"{text} ...", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
