"""What a seized relay database shows about waiting and delivered envelopes: while they wait, no
kind, timer, send second or order across mailboxes (both backends); once acked or expired,
nothing of them in the SQLite file, its WAL or its shared-memory file, and on PostgreSQL only
dead tuples sealed under a key that is destroyed two epochs later."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.utils import random

from app.protocol.envelope import Envelope
from app.protocol.frames import FrameType, Send, Status
from app.protocol.lifetime import EXPIRY_BUCKET_SECONDS
from server.store.attachmentrows import AttachmentHeader
from server.store.base import ATTACHMENT_CHUNK_BYTES, NewDevice, Quota, RelayStore, SignedPreKey, StoreError
from server.store.postgres import PostgresStore, quote_identifier
from server.store.sealing import EPOCH_SECONDS, EpochKey, MailboxKeys
from server.store.sqlite import SQLiteStore
from tests.server.relays import RelayFactory, eventually, relays, run
from tests.server.stores import PostgresBackend, database_of, run_with
from tests.support.adminkey import signed_action
from tests.support.relay import TestDevice, new_account

DAY = 24 * 3600
MAILBOX_OBJECTS = ("mailbox", "mailbox_expiry", "sqlite_autoindex_mailbox_1", "sqlite_autoindex_mailbox_2")
"""The SQLite b-trees that hold envelopes: the table and its indexes."""


@pytest.fixture
def start_sqlite_relay(tmp_path: Path) -> Iterator[RelayFactory]:
    yield from relays(tmp_path, "sqlite")


async def _send(sender: TestDevice, recipient: int, sealed: bytes, expires_at: int) -> Envelope:
    """Send an envelope that asks for ``expires_at``, as a client of any version might."""
    envelope = Envelope.create(sealed=sealed, expires_at=expires_at, random=random)
    response = await sender.request(FrameType.SEND, Send(recipient, envelope).encode())
    assert response.status == Status.OK, response.reason
    return envelope


def test_a_seized_relay_shows_no_kind_timer_send_second_or_order_across_mailboxes(
    start_relay: RelayFactory,
) -> None:
    """Test that envelopes asking for a disappearing message's, a receipt's and a message's lifetime,
    sent in two different seconds to two mailboxes in turn, are all stored (and would be pushed)
    with one expiry on a whole day, that no column or blob holds a second they were sent in, and
    that each mailbox's envelopes are numbered 1..n by themselves."""
    relay = start_relay()
    seconds: set[int] = set()

    async def scenario() -> None:
        alice = await TestDevice(relay).join(new_account(relay.data_dir, "s.alice", "Alice"))
        bob = await TestDevice(relay).join(new_account(relay.data_dir, "s.bob", "Bob"))
        carol = await TestDevice(relay).join(new_account(relay.data_dir, "s.carol", "Carol"))
        await bob.disconnect()
        await carol.disconnect()
        for _ in range(2):
            now = int(time.time())
            seconds.add(now)
            for asked in (now + 5, now + 14 * DAY, now + 30 * DAY + 1):
                for recipient in (bob, carol):
                    await _send(alice, recipient.device_id, random(64), asked)
            seconds.add(int(time.time()))

            async def next_second(start: int = now) -> bool:
                return int(time.time()) > start

            await eventually(next_second, "the next second")
        await alice.disconnect()

    run(scenario())
    relay.stop()
    database = database_of(relay.data_dir)

    rows = [(w.device_id, w.sequence, w.blob, w.expires_at) for w in asyncio.run(database.waiting())]
    assert len(seconds) >= 2 and len(rows) == 12
    (expiry,) = {row[3] for row in rows}
    assert expiry % EXPIRY_BUCKET_SECONDS == 0
    assert {Envelope.parse(row[2]).expires_at for row in rows} == {expiry}
    by_mailbox: dict[int, list[int]] = {}
    for device_id, sequence, _, _ in rows:
        by_mailbox.setdefault(device_id, []).append(sequence)
    assert sorted(sorted(sequences) for sequences in by_mailbox.values()) == [list(range(1, 7))] * 2
    for row in rows:
        for second in range(min(seconds) - 1, max(seconds) + 2):
            assert second not in (row[0], row[1], row[3])
            assert second.to_bytes(8, "big") not in row[2] and second.to_bytes(4, "big") not in row[2]


def _files(database: Path) -> dict[str, bytes]:
    """The bytes of the database file, its WAL and its shared-memory file, as a seizure copies them."""
    return {
        path.name: path.read_bytes()
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm"))
        if path.exists()
    }


def _mailbox_pages(database: Path) -> list[bytes]:
    """Every page of the b-trees that hold envelopes, past its header, read from the file itself."""
    uri = f"file:{database}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        marks = ",".join("?" * len(MAILBOX_OBJECTS))
        pages = db.execute(
            f"SELECT pageno, pagetype FROM dbstat WHERE name IN ({marks})",
            MAILBOX_OBJECTS,
        ).fetchall()
    raw = database.read_bytes()
    assert pages, "the mailbox has pages"
    return [
        raw[(number - 1) * page_size : number * page_size][12 if kind == "internal" else 8 :]
        for number, kind in pages
    ]


def _assert_gone(database: Path, *traces: bytes) -> None:
    for name, content in _files(database).items():
        for trace in traces:
            assert trace not in content, f"{name} still holds {trace.hex()}"


def _mailbox_pages_blank(database: Path) -> bool:
    """Whether the envelopes' b-trees hold nothing but their page headers: not a cell, not a free
    block's length, not a stale cell pointer."""
    return all(page.count(0) == len(page) for page in _mailbox_pages(database))


def test_nothing_of_an_acked_envelope_is_left_in_the_sqlite_files(start_sqlite_relay: RelayFactory) -> None:
    """Test that once its recipient has acked an envelope, a copy of the running relay's database
    file, WAL and shared-memory file holds neither its id nor its bytes, and that after the next
    sweep the mailbox's pages hold nothing at all (not even a freed cell's length)."""
    relay = start_sqlite_relay(sweep_interval_seconds=1)
    database = relay.data_dir / "relay.sqlite3"
    sent: list[Envelope] = []

    async def scenario() -> None:
        alice = await TestDevice(relay).join(new_account(relay.data_dir, "z.alice", "Alice"))
        bob = await TestDevice(relay).join(new_account(relay.data_dir, "z.bob", "Bob"))
        sent.extend([(await alice.send(bob.device_id, os.urandom(3000)))[1] for _ in range(3)])
        pushed = [await bob.next_push() for _ in sent]
        assert pushed == sent
        before = _files(database)
        assert any(sent[0].sealed[:64] in content for content in before.values()), "it was stored"
        assert (await bob.ack(*pushed)).status == Status.OK
        _assert_gone(database, *(e.envelope_id for e in sent), *(e.sealed[:64] for e in sent))

        async def blank() -> bool:
            return _mailbox_pages_blank(database)

        await eventually(blank, "the sweep rebuilding the mailbox's pages")
        await alice.disconnect()
        await bob.disconnect()

    run(scenario())


def test_nothing_of_an_expired_envelope_is_left_in_the_sqlite_files(tmp_path: Path) -> None:
    """Test that once the sweep has dropped an expired envelope, the database file, WAL and
    shared-memory file hold neither its id, its bytes nor its expiry, and the mailbox's pages hold
    nothing (so neither its recipient nor its size)."""
    database = tmp_path / "relay.sqlite3"
    envelope_id, blob, expires_at = os.urandom(16), os.urandom(5000), 1_700_006_400

    async def body(store: RelayStore) -> None:
        await store.create_account("alice", "Alice", "Finance", admin_entry=signed_action("a"))
        signed = SignedPreKey(1, os.urandom(32), os.urandom(64))
        await store.register(
            NewDevice(7, "alice", os.urandom(32), os.urandom(120), signed, (), 1_700_000_000)
        )
        await store.enqueue(7, envelope_id, blob, expires_at, Quota(10, 1 << 20))
        assert any(blob[:64] in content for content in _files(database).values()), "it was stored"
        assert await store.drop_expired(expires_at) == 1
        assert _files(database).get("relay.sqlite3-wal", b"") == b"", "the WAL is truncated"
        _assert_gone(database, envelope_id, blob[:64], expires_at.to_bytes(4, "big"))
        assert _mailbox_pages_blank(database)

    run_with(SQLiteStore(database), body)


def test_nothing_of_an_expired_attachment_is_left_in_the_sqlite_files(tmp_path: Path) -> None:
    """Test that once the sweep has dropped an expired attachment of several chunks, the database
    file, WAL and shared-memory file hold neither its id nor any of its chunks' bytes."""
    database = tmp_path / "relay.sqlite3"
    attachment_id, blob = "A" * 32, os.urandom(ATTACHMENT_CHUNK_BYTES + 5000)
    expires_at = 1_700_006_400

    async def body(store: RelayStore) -> None:
        await store.put_attachment(attachment_id, io.BytesIO(blob), expires_at)
        head, tail = blob[:64], blob[-64:]
        assert any(tail in content for content in _files(database).values()), "it was stored"
        assert await store.drop_expired(expires_at) == 1
        _assert_gone(database, attachment_id.encode("ascii"), head, tail, blob[ATTACHMENT_CHUNK_BYTES:][:64])

    run_with(SQLiteStore(database), body)


class Clock:
    """The epoch clock of a test's relay: real time, moved on by whole epochs when the test says."""

    def __init__(self) -> None:
        self.ahead = 0

    def __call__(self) -> float:
        return time.time() + self.ahead


async def _heap_tuples(backend: PostgresBackend, table: str = "mailbox") -> list[bytes]:
    """The data of every tuple in ``table``'s heap pages, live or dead, read raw with
    ``pageinspect`` (what a copy of the table's files holds)."""
    await backend.sql("CREATE EXTENSION IF NOT EXISTS pageinspect SCHEMA public")
    relation = f"{quote_identifier(backend.schema)}.{table}"
    (pages,) = await backend.sql(
        "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int", relation
    )
    tuples: list[bytes] = []
    for page in range(int(pages[0])):
        rows = await backend.sql(
            "SELECT t_data FROM public.heap_page_items(public.get_raw_page($1, $2::int))"
            " WHERE t_data IS NOT NULL",
            relation,
            page,
        )
        tuples.extend(bytes(row[0]) for row in rows)
    return tuples


def test_what_postgresql_keeps_of_an_acked_or_expired_envelope_is_sealed_under_a_key_then_destroyed(
    postgres: PostgresBackend,
) -> None:
    """Test that the dead tuples an acked and an expired envelope leave in the mailbox table's pages
    hold neither their ids, bytes nor recipient in clear, and that once two epochs have passed and
    the sweep has run, the key file yields no key that opens them."""
    clock = Clock()
    keys = MailboxKeys(postgres.key_file, clock)
    # Small enough to stay in the heap tuple (PostgreSQL moves values over about 2 KB to TOAST).
    acked, expired = (os.urandom(16), os.urandom(500)), (os.urandom(16), os.urandom(500))
    device_id = 0x5A17C0DE

    async def body(store: RelayStore) -> tuple[list[bytes], list[bytes]]:
        await store.create_account("alice", "Alice", "Finance", admin_entry=signed_action("a"))
        signed = SignedPreKey(1, os.urandom(32), os.urandom(64))
        await store.register(NewDevice(device_id, "alice", os.urandom(32), os.urandom(120), signed, (), 1))
        now = int(time.time())
        await store.enqueue(device_id, acked[0], acked[1], now + 30 * DAY, Quota(10, 1 << 20))
        await store.enqueue(device_id, expired[0], expired[1], now + 60, Quota(10, 1 << 20))
        sealed = [bytes(row[0]) for row in await postgres.sql("SELECT sealed FROM mailbox")]
        assert await store.acknowledge(device_id, [acked[0]]) == 1
        assert await store.drop_expired(now + 60) == 1
        assert await postgres.sql("SELECT COUNT(*) FROM mailbox") == [(0,)]
        return sealed, await _heap_tuples(postgres)

    sealed, tuples = run_with(PostgresStore(postgres.dsn, postgres.schema, keys), body)
    assert len(sealed) == 2
    for row in sealed:
        assert any(row in data for data in tuples), "the deleted row is still in the table's pages"
    for data in tuples:
        for trace in (acked[0], acked[1][:64], expired[0], expired[1][:64], device_id.to_bytes(4, "big")):
            assert trace not in data
    assert all(any(_opens(key, row) for key in keys.kept()) for row in sealed), "readable while kept"

    clock.ahead = 2 * EPOCH_SECONDS

    async def sweep(store: RelayStore) -> None:
        await store.drop_expired(int(clock()))

    run_with(PostgresStore(postgres.dsn, postgres.schema, keys), sweep)
    survivors = MailboxKeys(postgres.key_file, clock).kept()
    assert survivors and not any(_opens(key, row) for key in survivors for row in sealed)


def _opens(key: EpochKey, sealed: bytes) -> bool:
    """Whether ``key`` opens ``sealed`` (for the recipient's mailbox tag under that key)."""
    try:
        key.open(tag=key.mailbox_tag(0x5A17C0DE), sealed=sealed)
    except StoreError:
        return False
    return True


def test_what_postgresql_keeps_of_an_expired_attachment_is_sealed_under_a_key_then_destroyed(
    postgres: PostgresBackend,
) -> None:
    """Test that the dead tuples an expired attachment leaves in the attachments and chunks tables
    hold neither its id nor its bytes in clear, and that once two epochs have passed and the sweep
    has run, no key the key file yields opens its header, which alone holds its chunks' key."""
    clock = Clock()
    keys = MailboxKeys(postgres.key_file, clock)
    attachment_id = "B" * 32
    # Chunks small enough to stay in the heap tuple (PostgreSQL moves values over about 2 KB to TOAST).
    blob = os.urandom(1500)

    async def body(store: RelayStore) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
        now = int(time.time())
        await store.put_attachment(attachment_id, io.BytesIO(blob), now + 60)
        headers = [
            (bytes(t), bytes(s))
            for t, s in await postgres.sql("SELECT attachment_tag, sealed FROM attachments")
        ]
        assert await store.drop_expired(now + 60) == 1
        assert await postgres.sql("SELECT COUNT(*) FROM attachment_chunks") == [(0,)]
        return headers, await _heap_tuples(postgres, "attachments") + await _heap_tuples(
            postgres, "attachment_chunks"
        )

    headers, tuples = run_with(PostgresStore(postgres.dsn, postgres.schema, keys), body)
    assert len(headers) == 1
    assert any(headers[0][1] in data for data in tuples), "the deleted header is still in the table's pages"
    assert any(len(data) > len(blob) for data in tuples), "the deleted chunk is still in the table's pages"
    for data in tuples:
        assert attachment_id.encode("ascii") not in data and blob[:64] not in data and blob[-64:] not in data
    assert any(_opens_header(key, *headers[0]) for key in keys.kept()), "readable while kept"

    clock.ahead = 2 * EPOCH_SECONDS

    async def sweep(store: RelayStore) -> None:
        await store.drop_expired(int(clock()))

    run_with(PostgresStore(postgres.dsn, postgres.schema, keys), sweep)
    survivors = MailboxKeys(postgres.key_file, clock).kept()
    assert survivors and not any(_opens_header(key, *headers[0]) for key in survivors)


def _opens_header(key: EpochKey, tag: bytes, sealed: bytes) -> bool:
    try:
        AttachmentHeader.open(key, tag=tag, sealed=sealed)
    except StoreError:
        return False
    return True
