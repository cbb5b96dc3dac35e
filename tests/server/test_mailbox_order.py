"""Each mailbox numbers its own envelopes (server/store): no relay-wide counter orders one
mailbox's envelopes against another's, on both backends, across several PostgreSQL relay
processes, and in a database upgraded from schema 3; the relay pushes by what it has pushed,
so a mailbox numbering again from 1 loses nothing."""

from __future__ import annotations

import asyncio
import itertools
import os

from app.protocol.frames import Status
from server.store.base import Device, NewDevice, Quota, RelayStore, SignedPreKey
from tests.server.relays import RelayFactory, run
from tests.server.stores import PostgresBackend, StoreBackend, run_with
from tests.support.adminkey import signed_action
from tests.support.relay import TestDevice, new_account

ACTION = signed_action("test.action")
NOW = 1_700_000_000
LATER = NOW + 3600
ROOMY = Quota(max_envelopes=1000, max_bytes=1 << 20)


DEVICE_IDS = itertools.count(1)


async def _device(store: RelayStore, account_id: str) -> Device:
    """A new account with one registered device (the store keeps certificates as given: random)."""
    await store.create_account(account_id, account_id.title(), "Finance", admin_entry=ACTION)
    signed = SignedPreKey(1, os.urandom(32), os.urandom(64))
    new = NewDevice(next(DEVICE_IDS), account_id, os.urandom(32), os.urandom(120), signed, (), NOW)
    await store.register(new)
    device = await store.get_device(new.device_id)
    if device is None:
        raise AssertionError("the device was not registered")
    return device


def test_each_mailbox_numbers_its_envelopes_from_one_and_an_emptied_one_starts_again(
    store: RelayStore,
) -> None:
    """Test that envelopes sent to two mailboxes in turn are numbered 1..n in each, and that a
    mailbox emptied by acks numbers its next envelope 1: nothing counts what it received before."""

    async def body(store: RelayStore) -> tuple[list[int], list[int], list[int]]:
        alice, bob = await _device(store, "alice"), await _device(store, "bob")
        for _ in range(4):
            await store.enqueue(alice.device_id, os.urandom(16), b"a", LATER, ROOMY)
            await store.enqueue(bob.device_id, os.urandom(16), b"b", LATER, ROOMY)
        await store.enqueue(bob.device_id, os.urandom(16), b"b", LATER, ROOMY)
        first = await store.pending(alice.device_id, 0, NOW, 100)
        await store.acknowledge(alice.device_id, [q.envelope_id for q in first])
        await store.enqueue(alice.device_id, os.urandom(16), b"a", LATER, ROOMY)
        again = await store.pending(alice.device_id, 0, NOW, 100)
        bobs = await store.pending(bob.device_id, 0, NOW, 100)
        return [q.sequence for q in first], [q.sequence for q in bobs], [q.sequence for q in again]

    first, bobs, again = run_with(store, body)
    assert first == [1, 2, 3, 4]
    assert bobs == [1, 2, 3, 4, 5]
    assert again == [1]


def test_a_connected_device_whose_mailbox_emptied_gets_the_next_envelope_at_once(
    start_relay: RelayFactory,
) -> None:
    """Test that a device that acked everything it was pushed is pushed the next envelope (numbered 1
    again) on the same connection, and is not pushed again what it has not acked yet."""
    relay = start_relay()

    async def scenario() -> None:
        alice = await TestDevice(relay).join(new_account(relay.data_dir, "o.alice", "Alice"))
        bob = await TestDevice(relay).join(new_account(relay.data_dir, "o.bob", "Bob"))
        for round_ in range(3):
            _, first = await alice.send(bob.device_id, b"first %d" % round_)
            _, second = await alice.send(bob.device_id, b"second %d" % round_)
            assert [await bob.next_push(), await bob.next_push()] == [first, second]
            assert (await bob.ack(first)).status == Status.OK
            _, third = await alice.send(bob.device_id, b"third %d" % round_)
            assert await bob.next_push() == third, "not the unacked second again"
            assert (await bob.ack(second, third)).status == Status.OK
        assert bob.pushes.empty()
        await alice.disconnect()
        await bob.disconnect()

    run(scenario())


def test_postgres_concurrent_sends_to_one_mailbox_from_two_relays_get_distinct_increasing_numbers(
    postgres: PostgresBackend,
) -> None:
    """Test that 40 envelopes enqueued at once to one mailbox through two relay processes are
    numbered 1..40, each number once, and are pending in that order."""

    async def body() -> tuple[list[int], int]:
        first, second = postgres.new_store(), postgres.new_store()
        await asyncio.gather(first.open(), second.open())
        try:
            device = await _device(first, "alice")
            await asyncio.gather(
                *(
                    (first if index % 2 else second).enqueue(
                        device.device_id, os.urandom(16), b"m", LATER, ROOMY
                    )
                    for index in range(40)
                )
            )
            queued = await second.pending(device.device_id, 0, NOW, 100)
            return [q.sequence for q in queued], len({q.envelope_id for q in queued})
        finally:
            await first.close()
            await second.close()

    sequences, distinct = asyncio.run(body())
    assert sequences == list(range(1, 41))
    assert distinct == 40


def test_a_schema_3_database_gets_each_mailbox_numbered_apart_in_its_old_order(backend: StoreBackend) -> None:
    """Test that a schema-3 database, whose envelopes share one relay-wide sequence, is opened with
    each mailbox's envelopes numbered 1..n in their old order, and the next one numbered n + 1."""

    async def devices(store: RelayStore) -> tuple[int, int]:
        return (await _device(store, "alice")).device_id, (await _device(store, "bob")).device_id

    alice, bob = run_with(backend.new_store(), devices)
    asyncio.run(backend.write_schema_3_mailbox())
    rows = [(alice if index % 3 else bob, os.urandom(16), bytes([index])) for index in range(9)]
    for device_id, envelope_id, blob in rows:
        asyncio.run(
            backend.sql(
                "INSERT INTO mailbox (device_id, envelope_id, blob, expires_at) VALUES ($1, $2, $3, $4)",
                device_id,
                envelope_id,
                blob,
                LATER,
            )
        )

    async def reopened(store: RelayStore) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
        await store.enqueue(bob, os.urandom(16), b"new", LATER, ROOMY)
        return (
            [(q.sequence, q.blob) for q in await store.pending(alice, 0, NOW, 100)],
            [(q.sequence, q.blob) for q in await store.pending(bob, 0, NOW, 100)],
        )

    alices, bobs = run_with(backend.new_store(), reopened)
    assert alices == list(enumerate([blob for device, _, blob in rows if device == alice], start=1))
    assert bobs == list(enumerate([blob for device, _, blob in rows if device == bob] + [b"new"], start=1))
