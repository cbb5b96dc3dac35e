"""The relay's store, on both backends: accounts, device registration, devices, prekeys, mailboxes,
attachments, the admin log; and, on PostgreSQL, several relay processes on one schema."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.protocol.frames import MAX_DEVICES_PER_ACCOUNT
from app.protocol.logentry import DeviceRevoked, EntryKind, device_added_entry, parse_entry
from server.store import postgres, sqlite
from server.store.base import (
    ATTACHMENT_CHUNK_BYTES,
    Account,
    AccountInactiveError,
    AccountState,
    AccountUnknownError,
    Device,
    DeviceGoneError,
    DuplicateError,
    MailboxFullError,
    NewDevice,
    OneTimePreKey,
    Quota,
    RelayStore,
    SignedPreKey,
    StoreError,
    TooManyDevicesError,
    schema_refusal,
)
from server.store.postgres import PostgresStore, wake_channel
from server.store.sealing import MAILBOX_KEY_FILE, MailboxKeys
from tests.server.stores import PostgresBackend, SQLiteBackend, StoreBackend, run_with
from tests.support.adminkey import signed_action

ACTION = signed_action("test.action")
"""An admin's entry for the changes these tests make through the store."""
NOW = 1_700_000_000
LATER = NOW + 3600
ROOMY = Quota(max_envelopes=1000, max_bytes=1 << 20)
WAIT_SECONDS = 5


def _signed_prekey(key_id: int = 1) -> SignedPreKey:
    return SignedPreKey(key_id, os.urandom(32), os.urandom(64))


def _prekeys(first: int, count: int) -> list[OneTimePreKey]:
    return [OneTimePreKey(key_id, os.urandom(32)) for key_id in range(first, first + count)]


DEVICE_IDS = itertools.count(1)
"""Device ids as the enrolment authority hands them out: each new one higher, never reused."""


def _new_device(
    account_id: str,
    device_id: int | None = None,
    identity_key: bytes | None = None,
    signed: SignedPreKey | None = None,
    keys: list[OneTimePreKey] | None = None,
) -> NewDevice:
    """What a device with a certificate for ``account_id`` registers. The store keeps the
    certificate's bytes as they are (the relay checked them), so these are random."""
    return NewDevice(
        next(DEVICE_IDS) if device_id is None else device_id,
        account_id,
        identity_key or os.urandom(32),
        os.urandom(120),
        signed or _signed_prekey(),
        tuple(keys or ()),
        1_700_000_000,
    )


async def _register(
    store: RelayStore,
    account_id: str,
    identity_key: bytes | None = None,
    signed: SignedPreKey | None = None,
    keys: list[OneTimePreKey] | None = None,
) -> Device:
    """Register a new device on ``account_id``; the device as stored."""
    new = _new_device(account_id, identity_key=identity_key, signed=signed, keys=keys)
    assert await store.register(new)
    device = await store.get_device(new.device_id)
    assert device is not None
    return device


async def _device(store: RelayStore, account_id: str, prekeys: int = 0) -> Device:
    return await _register(store, account_id, keys=_prekeys(1, prekeys))


async def _account_with_device(store: RelayStore, account_id: str, prekeys: int = 0) -> Device:
    await store.create_account(account_id, account_id.title(), "Finance", admin_entry=ACTION)
    return await _device(store, account_id, prekeys)


def _envelope_id() -> bytes:
    return os.urandom(16)


# Accounts and the directory.


def test_created_account_is_active_and_can_be_read(store: RelayStore) -> None:
    """Test that a new account is active and reads back as created; an unknown one is None."""

    async def body(store: RelayStore) -> None:
        created = await store.create_account("alice", "Alice Archer", "Finance", admin_entry=ACTION)
        assert created == Account("alice", "Alice Archer", "Finance", AccountState.ACTIVE)
        assert await store.get_account("alice") == created
        assert await store.get_account("nobody") is None

    run_with(store, body)


def test_duplicate_account_is_refused(store: RelayStore) -> None:
    """Test that creating an account id twice raises DuplicateError and keeps the first."""

    async def body(store: RelayStore) -> None:
        await store.create_account("alice", "Alice", "Finance", admin_entry=ACTION)
        with pytest.raises(DuplicateError):
            await store.create_account("alice", "Another Alice", "Legal", admin_entry=ACTION)
        account = await store.get_account("alice")
        assert account is not None and account.display_name == "Alice"

    run_with(store, body)


def test_account_state_changes_and_unknown_account(store: RelayStore) -> None:
    """Test that an account can be disabled and enabled again, and an unknown one reports False."""

    async def body(store: RelayStore) -> None:
        await store.create_account("alice", "Alice", "Finance", admin_entry=ACTION)
        assert await store.set_account_state("alice", AccountState.DISABLED, admin_entry=ACTION)
        account = await store.get_account("alice")
        assert account is not None and account.state == AccountState.DISABLED
        assert await store.set_account_state("alice", AccountState.ACTIVE, admin_entry=ACTION)
        account = await store.get_account("alice")
        assert account is not None and account.state == AccountState.ACTIVE
        assert not await store.set_account_state("nobody", AccountState.DISABLED, admin_entry=ACTION)

    run_with(store, body)


def test_directory_search_is_case_insensitive_and_lists_only_active_accounts(store: RelayStore) -> None:
    """Test that the directory matches id, name or department in any case, and only active accounts."""

    async def body(store: RelayStore) -> None:
        await store.create_account("alice", "Alice Archer", "Treasury", admin_entry=ACTION)
        await store.create_account("bob", "Bob Baker", "FINANCE audit", admin_entry=ACTION)
        await store.create_account("finn", "Finn", "Legal", admin_entry=ACTION)
        await store.create_account("carol", "Carol", "Finance", admin_entry=ACTION)
        await store.create_account("dave", "Dave", "Finance", admin_entry=ACTION)
        await store.create_account("erin", "Erin", "Press", admin_entry=ACTION)
        await store.set_account_state("carol", AccountState.DISABLED, admin_entry=ACTION)
        await store.set_account_state("dave", AccountState.REVOKED, admin_entry=ACTION)

        found = await store.search_directory("fIn", 20)
        assert [a.account_id for a in found] == ["bob", "finn"]
        assert [a.account_id for a in await store.search_directory("ARCH", 20)] == ["alice"]
        assert [a.account_id for a in await store.search_directory("treas", 20)] == ["alice"]
        assert await store.search_directory("nothing like it", 20) == []

    run_with(store, body)


def test_directory_search_folds_case_in_every_script(store: RelayStore) -> None:
    """Test that the directory matches names in any case beyond ASCII (umlauts, Cyrillic, ß as ss)."""

    async def body(store: RelayStore) -> None:
        await store.create_account("mueller", "Ärztin Müller", "ПРЕСС-СЛУЖБА", admin_entry=ACTION)
        await store.create_account("weiss", "Hans Weiß", "Straßenbau", admin_entry=ACTION)
        await store.create_account("other", "Other", "Finance", admin_entry=ACTION)

        assert [a.account_id for a in await store.search_directory("äRZTIN", 20)] == ["mueller"]
        assert [a.account_id for a in await store.search_directory("пресс", 20)] == ["mueller"]
        assert [a.account_id for a in await store.search_directory("WEISS", 20)] == ["weiss"]
        assert [a.account_id for a in await store.search_directory("strassen", 20)] == ["weiss"]

    run_with(store, body)


def test_directory_search_stops_at_the_limit(store: RelayStore) -> None:
    """Test that the directory returns at most ``limit`` accounts, in display-name order."""

    async def body(store: RelayStore) -> None:
        for index in range(5):
            await store.create_account(f"user{index}", f"Official {index}", "Finance", admin_entry=ACTION)
        found = await store.search_directory("official", 3)
        assert [a.display_name for a in found] == ["Official 0", "Official 1", "Official 2"]

    run_with(store, body)


def test_directory_search_treats_like_metacharacters_literally(store: RelayStore) -> None:
    """Test that % _ and backslash in a query match only themselves, not any text."""

    async def body(store: RelayStore) -> None:
        await store.create_account("percent", "Rate 50% cut", "Finance", admin_entry=ACTION)
        await store.create_account("digits", "Rate 500 cut", "Finance", admin_entry=ACTION)
        await store.create_account("underscore", "a_b", "Legal", admin_entry=ACTION)
        await store.create_account("letter", "axb", "Legal", admin_entry=ACTION)
        await store.create_account("backslash", "c\\d", "Legal", admin_entry=ACTION)
        await store.create_account("plain", "cd", "Legal", admin_entry=ACTION)

        assert [a.account_id for a in await store.search_directory("50%", 20)] == ["percent"]
        assert [a.account_id for a in await store.search_directory("a_b", 20)] == ["underscore"]
        assert [a.account_id for a in await store.search_directory("c\\d", 20)] == ["backslash"]
        assert [a.account_id for a in await store.search_directory("%", 20)] == ["percent"]
        assert [a.account_id for a in await store.search_directory("_", 20)] == ["underscore"]

    run_with(store, body)


# Registration: a device with a certificate from the enrolment authority.


def test_a_registered_device_reads_back_with_its_certificate_and_prekeys(store: RelayStore) -> None:
    """Test that register stores the device under the certificate's id with its identity key,
    certificate, signed prekey and one-time prekeys, and answers True."""

    async def body(store: RelayStore) -> None:
        await store.create_account("alice", "Alice", "Finance", admin_entry=ACTION)
        new = _new_device("alice", device_id=4242, signed=_signed_prekey(7), keys=_prekeys(1, 3))
        assert await store.register(new)
        spk = new.signed_prekey
        expected = Device(
            4242, "alice", new.identity_key, 7, spk.public, spk.signature, False, new.certificate
        )
        assert await store.get_device(4242) == expected
        assert await store.get_device(4243) is None
        assert await store.list_devices("alice") == [expected]
        assert await store.count_one_time_prekeys(4242) == 3

    run_with(store, body)


def test_the_same_device_registered_again_takes_its_new_prekeys_and_nothing_else(
    backend: StoreBackend,
) -> None:
    """Test that registering a device a second time (an ENROL whose answer was lost, sent again
    with new prekeys) answers False, replaces its signed and one-time prekeys with the new ones
    (the device kept only their private halves), and changes nothing else: its certificate, its
    identity key and every other row stay."""

    async def body(store: RelayStore) -> None:
        await store.create_account("alice", "Alice", "Finance", admin_entry=ACTION)
        first = _new_device("alice", keys=_prekeys(1, 3))
        assert await store.register(first)
        before = await backend.snapshot()
        again = _new_device("alice", first.device_id, first.identity_key, _signed_prekey(2), _prekeys(10, 5))
        assert not await store.register(again)
        device = await store.get_device(first.device_id)
        assert device is not None
        assert (device.signed_prekey_id, device.signed_prekey) == (2, again.signed_prekey.public)
        assert device.certificate == first.certificate
        assert await store.count_one_time_prekeys(first.device_id) == 5
        taken = await store.take_bundles("alice")
        assert [one_time.key_id for _, one_time in taken if one_time] == [10]
        after = await backend.snapshot()
        assert {k: v for k, v in after.items() if k not in ("devices", "one_time_prekeys")} == {
            k: v for k, v in before.items() if k not in ("devices", "one_time_prekeys")
        }

    run_with(backend.new_store(), body)


def test_each_refused_registration_changes_nothing(backend: StoreBackend) -> None:
    """Test that register refuses, with its own error and no row changed: an account the relay
    does not have, a disabled and a revoked account, a revoked device id, a device id that is
    another device's (another identity key, or the same key on another account), and an
    identity key that another device id holds."""

    async def body(store: RelayStore) -> None:
        held = await _account_with_device(store, "alice", prekeys=2)
        gone = await _device(store, "alice")
        await store.revoke_device(gone.device_id, admin_entry=ACTION)
        await store.create_account("bob", "Bob", "Legal", admin_entry=ACTION)
        await store.create_account("carol", "Carol", "Legal", admin_entry=ACTION)
        await store.set_account_state("carol", AccountState.DISABLED, admin_entry=ACTION)
        await store.create_account("dave", "Dave", "Legal", admin_entry=ACTION)
        await store.set_account_state("dave", AccountState.REVOKED, admin_entry=ACTION)
        refusals = [
            (_new_device("nobody"), AccountUnknownError),
            (_new_device("ALICE"), AccountUnknownError),
            (_new_device("carol"), AccountInactiveError),
            (_new_device("dave"), AccountInactiveError),
            (_new_device("alice", gone.device_id, gone.identity_key), DeviceGoneError),
            (_new_device("alice", held.device_id), DuplicateError),
            (_new_device("bob", held.device_id, held.identity_key), DuplicateError),
            (_new_device("bob", identity_key=held.identity_key), DuplicateError),
            (_new_device("alice", identity_key=held.identity_key, keys=_prekeys(1, 4)), DuplicateError),
        ]
        before = await backend.snapshot()
        assert before["devices"] and before["one_time_prekeys"]
        for new, refusal in refusals:
            with pytest.raises(refusal):
                await store.register(new)
            assert await backend.snapshot() == before, (new, refusal)

    run_with(backend.new_store(), body)


@contextlib.asynccontextmanager
async def _relay_processes(backend: StoreBackend, store: RelayStore) -> AsyncIterator[list[RelayStore]]:
    """The stores of the relay processes that may share ``backend``'s database: on PostgreSQL
    ``store`` and a second store (a second process), on SQLite (one process) ``store`` alone."""
    if not isinstance(backend, PostgresBackend):
        yield [store]
        return
    other = backend.new_store()
    await other.open()
    try:
        yield [store, other]
    finally:
        await other.close()


def test_concurrent_registrations_of_one_device_register_it_once(backend: StoreBackend) -> None:
    """Test that ten simultaneous registrations of one device (on PostgreSQL through two relay
    processes) store it once with its prekeys once: one answers True, the others False, none
    is refused as another device's."""

    async def body(store: RelayStore) -> tuple[list[bool], int, int]:
        await store.create_account("alice", "Alice", "Finance", admin_entry=ACTION)
        new = _new_device("alice", keys=_prekeys(1, 5))
        async with _relay_processes(backend, store) as stores:
            results = await asyncio.gather(*(stores[i % len(stores)].register(new) for i in range(10)))
        devices = await store.list_devices("alice")
        return results, len(devices), await store.count_one_time_prekeys(new.device_id)

    results, devices, prekeys = run_with(backend.new_store(), body)
    assert sorted(results) == [False] * 9 + [True]
    assert (devices, prekeys) == (1, 5)


def test_concurrent_registrations_of_one_identity_key_register_one_device(backend: StoreBackend) -> None:
    """Test that ten devices registering one identity key at once under ten ids store one device:
    the others are refused as duplicates and leave no prekey behind."""

    async def body(store: RelayStore) -> tuple[list[object], int, int]:
        await store.create_account("alice", "Alice", "Finance", admin_entry=ACTION)
        identity_key = os.urandom(32)
        news = [_new_device("alice", identity_key=identity_key, keys=_prekeys(1, 3)) for _ in range(10)]
        async with _relay_processes(backend, store) as stores:
            results = await asyncio.gather(
                *(stores[i % len(stores)].register(new) for i, new in enumerate(news)), return_exceptions=True
            )
        prekeys = await backend.sql("SELECT COUNT(*) FROM one_time_prekeys")
        return results, len(await store.list_devices("alice")), int(prekeys[0][0])

    results, devices, prekeys = run_with(backend.new_store(), body)
    assert results.count(True) == 1
    assert sum(isinstance(result, DuplicateError) for result in results) == 9
    assert (devices, prekeys) == (1, 3)


def test_an_account_registers_at_most_the_devices_a_bundle_answer_carries(backend: StoreBackend) -> None:
    """Test that of 20 devices registering on one account at once (on PostgreSQL through two relay
    processes) MAX_DEVICES_PER_ACCOUNT are stored and the others refused with TooManyDevicesError,
    leaving no prekey; that a stored one registering again is still answered False; and that
    revoking one makes room for one more."""

    async def body(store: RelayStore) -> tuple[list[object], int]:
        await store.create_account("alice", "Alice", "Finance", admin_entry=ACTION)
        news = [_new_device("alice", keys=_prekeys(1, 2)) for _ in range(20)]
        async with _relay_processes(backend, store) as stores:
            results = await asyncio.gather(
                *(stores[i % len(stores)].register(new) for i, new in enumerate(news)), return_exceptions=True
            )
        stored = [new for new, result in zip(news, results, strict=True) if result is True]
        assert not await store.register(stored[0])
        with pytest.raises(TooManyDevicesError):
            await store.register(_new_device("alice"))
        await store.revoke_device(stored[0].device_id, admin_entry=ACTION)
        assert await store.register(_new_device("alice"))
        prekeys = await backend.sql("SELECT COUNT(*) FROM one_time_prekeys")
        return results, int(prekeys[0][0])

    results, prekeys = run_with(backend.new_store(), body)
    assert results.count(True) == MAX_DEVICES_PER_ACCOUNT
    assert sum(isinstance(r, TooManyDevicesError) for r in results) == 20 - MAX_DEVICES_PER_ACCOUNT
    assert prekeys == 2 * (MAX_DEVICES_PER_ACCOUNT - 1)


def test_set_certificate_replaces_only_that_devices_certificate(store: RelayStore) -> None:
    """Test that set_certificate keeps the new certificate for the device, read back by get_device,
    list_devices and take_bundles, and leaves the other devices' as they were."""

    async def body(store: RelayStore) -> None:
        device = await _account_with_device(store, "alice", prekeys=1)
        other = await _device(store, "alice")
        fresher = os.urandom(120)
        await store.set_certificate(device.device_id, fresher)
        stored = await store.get_device(device.device_id)
        assert stored is not None and stored.certificate == fresher
        assert [d.certificate for d in await store.list_devices("alice")] == [fresher, other.certificate]
        assert {d.device_id: d.certificate for d, _ in await store.take_bundles("alice")} == {
            device.device_id: fresher,
            other.device_id: other.certificate,
        }

    run_with(store, body)


# Devices and prekeys.


def test_devices_are_listed_per_account_and_in_all(store: RelayStore) -> None:
    """Test that list_devices gives an account's devices, or every device, in id order."""

    async def body(store: RelayStore) -> None:
        first = await _account_with_device(store, "alice")
        second = await _device(store, "alice")
        other = await _account_with_device(store, "bob")
        assert await store.list_devices("alice") == [first, second]
        assert await store.list_devices("bob") == [other]
        assert await store.list_devices() == [first, second, other]
        assert first.device_id < second.device_id < other.device_id

    run_with(store, body)


def test_signed_prekey_is_replaced(store: RelayStore) -> None:
    """Test that set_signed_prekey replaces the device's signed prekey and its signature."""

    async def body(store: RelayStore) -> None:
        device = await _account_with_device(store, "alice")
        newer = _signed_prekey(2)
        await store.set_signed_prekey(device.device_id, newer)
        stored = await store.get_device(device.device_id)
        assert stored is not None
        assert (stored.signed_prekey_id, stored.signed_prekey, stored.signed_prekey_signature) == (
            2,
            newer.public,
            newer.signature,
        )

    run_with(store, body)


def test_take_bundles_hands_out_each_one_time_prekey_once(store: RelayStore) -> None:
    """Test that each fetch takes the lowest remaining one-time prekey, and then None when none is left."""

    async def body(store: RelayStore) -> None:
        await store.create_account("alice", "Alice", "Finance", admin_entry=ACTION)
        keys = _prekeys(1, 3)
        device = await _register(store, "alice", keys=keys)
        taken = [(await store.take_bundles("alice"))[0] for _ in range(4)]
        assert [bundle_device for bundle_device, _ in taken] == [device] * 4
        assert [one_time for _, one_time in taken] == [*keys, None]
        assert await store.count_one_time_prekeys(device.device_id) == 0

    run_with(store, body)


def test_take_bundles_takes_one_time_prekeys_of_at_most_the_devices_it_is_allowed(store: RelayStore) -> None:
    """Test that with a one-time limit, only that many devices (lowest ids first) give up a one-time
    prekey and the rest are handed out without one, keeping theirs; with 0, nobody's is taken."""

    async def body(store: RelayStore) -> None:
        first = await _account_with_device(store, "alice", prekeys=2)
        second = await _device(store, "alice", prekeys=2)
        taken = await store.take_bundles("alice", one_time_limit=1)
        assert [(d.device_id, one_time is not None) for d, one_time in taken] == [
            (first.device_id, True),
            (second.device_id, False),
        ]
        assert [one_time for _, one_time in await store.take_bundles("alice", one_time_limit=0)] == [
            None,
            None,
        ]
        assert await store.count_one_time_prekeys(first.device_id) == 1
        assert await store.count_one_time_prekeys(second.device_id) == 2

    run_with(store, body)


def test_take_bundles_skips_revoked_devices_and_inactive_accounts(store: RelayStore) -> None:
    """Test that bundles come only from unrevoked devices of active accounts."""

    async def body(store: RelayStore) -> None:
        kept = await _account_with_device(store, "alice", prekeys=2)
        revoked = await _device(store, "alice", prekeys=2)
        await store.revoke_device(revoked.device_id, admin_entry=ACTION)
        assert [d.device_id for d, _ in await store.take_bundles("alice")] == [kept.device_id]

        await store.set_account_state("alice", AccountState.DISABLED, admin_entry=ACTION)
        assert await store.take_bundles("alice") == []
        assert await store.count_one_time_prekeys(kept.device_id) == 1
        assert await store.take_bundles("nobody") == []

    run_with(store, body)


def test_uploaded_prekeys_keep_the_ids_already_held(store: RelayStore) -> None:
    """Test that an upload adds new key ids, ignores held ones (keeping their key) and returns the count."""

    async def body(store: RelayStore) -> None:
        await store.create_account("alice", "Alice", "Finance", admin_entry=ACTION)
        original = _prekeys(1, 2)
        device = await _register(store, "alice", keys=original)
        replacement = OneTimePreKey(2, os.urandom(32))
        assert await store.add_one_time_prekeys(device.device_id, [replacement, *_prekeys(3, 2)]) == 4
        assert await store.count_one_time_prekeys(device.device_id) == 4
        taken = [(await store.take_bundles("alice"))[0][1] for _ in range(2)]
        assert taken == original

    run_with(store, body)


# Mailboxes.


def test_pending_is_oldest_first_after_a_sequence_and_limited(store: RelayStore) -> None:
    """Test that pending lists a device's envelopes in arrival order, after ``after``, at most ``limit``."""

    async def body(store: RelayStore) -> None:
        device = await _account_with_device(store, "alice")
        other = await _account_with_device(store, "bob")
        sent = [(_envelope_id(), os.urandom(100)) for _ in range(5)]
        for index, (envelope_id, blob) in enumerate(sent):
            await store.enqueue(device.device_id, envelope_id, blob, LATER, ROOMY)
            if index == 1:
                await store.enqueue(other.device_id, _envelope_id(), b"not yours", LATER, ROOMY)

        queued = await store.pending(device.device_id, 0, NOW, 100)
        assert [(q.envelope_id, q.blob) for q in queued] == sent
        assert [q.sequence for q in queued] == sorted(q.sequence for q in queued)
        later = await store.pending(device.device_id, queued[1].sequence, NOW, 100)
        assert [q.envelope_id for q in later] == [envelope_id for envelope_id, _ in sent[2:]]
        assert await store.pending(device.device_id, 0, NOW, 2) == queued[:2]
        assert await store.pending(device.device_id, queued[-1].sequence, NOW, 100) == []

    run_with(store, body)


def test_pending_leaves_out_expired_envelopes(store: RelayStore) -> None:
    """Test that an envelope at or past its expiry is no longer pending, before any sweep."""

    async def body(store: RelayStore) -> None:
        device = await _account_with_device(store, "alice")
        short, long = _envelope_id(), _envelope_id()
        await store.enqueue(device.device_id, short, b"short", NOW + 10, ROOMY)
        await store.enqueue(device.device_id, long, b"long", LATER, ROOMY)
        assert [q.envelope_id for q in await store.pending(device.device_id, 0, NOW + 9, 10)] == [short, long]
        assert [q.envelope_id for q in await store.pending(device.device_id, 0, NOW + 10, 10)] == [long]

    run_with(store, body)


def test_acknowledge_deletes_only_the_devices_named_envelopes(store: RelayStore) -> None:
    """Test that acknowledging deletes the device's named envelopes and counts what it deleted."""

    async def body(store: RelayStore) -> None:
        device = await _account_with_device(store, "alice")
        other = await _account_with_device(store, "bob")
        first, second, elsewhere = _envelope_id(), _envelope_id(), _envelope_id()
        await store.enqueue(device.device_id, first, b"1", LATER, ROOMY)
        await store.enqueue(device.device_id, second, b"2", LATER, ROOMY)
        await store.enqueue(other.device_id, elsewhere, b"3", LATER, ROOMY)

        assert await store.acknowledge(device.device_id, [first, first, _envelope_id()]) == 1
        assert await store.acknowledge(device.device_id, [elsewhere]) == 0
        assert [q.envelope_id for q in await store.pending(device.device_id, 0, NOW, 10)] == [second]
        assert [q.envelope_id for q in await store.pending(other.device_id, 0, NOW, 10)] == [elsewhere]
        assert await store.acknowledge(device.device_id, [second]) == 1

    run_with(store, body)


def test_mailbox_quota_by_count_refuses_and_stores_nothing(store: RelayStore) -> None:
    """Test that the envelope past the count quota raises MailboxFullError and is not stored."""

    async def body(store: RelayStore) -> None:
        device = await _account_with_device(store, "alice")
        quota = Quota(max_envelopes=2, max_bytes=1 << 20)
        await store.enqueue(device.device_id, _envelope_id(), b"1", LATER, quota)
        await store.enqueue(device.device_id, _envelope_id(), b"2", LATER, quota)
        refused = _envelope_id()
        with pytest.raises(MailboxFullError):
            await store.enqueue(device.device_id, refused, b"3", LATER, quota)
        queued = await store.pending(device.device_id, 0, NOW, 10)
        assert [q.blob for q in queued] == [b"1", b"2"]
        assert (await store.statistics())["queued_envelopes"] == 2

    run_with(store, body)


def test_mailbox_quota_by_bytes_refuses_and_stores_nothing(store: RelayStore) -> None:
    """Test that an envelope going past the byte quota is refused; one reaching it exactly is stored."""

    async def body(store: RelayStore) -> None:
        device = await _account_with_device(store, "alice")
        quota = Quota(max_envelopes=100, max_bytes=100)
        await store.enqueue(device.device_id, _envelope_id(), b"a" * 60, LATER, quota)
        with pytest.raises(MailboxFullError):
            await store.enqueue(device.device_id, _envelope_id(), b"b" * 41, LATER, quota)
        await store.enqueue(device.device_id, _envelope_id(), b"c" * 40, LATER, quota)
        queued = await store.pending(device.device_id, 0, NOW, 10)
        assert [len(q.blob) for q in queued] == [60, 40]

    run_with(store, body)


def test_repeated_envelope_id_is_refused_per_device(store: RelayStore) -> None:
    """Test that an envelope id repeated for a device raises DuplicateError; for another device it is fine."""

    async def body(store: RelayStore) -> None:
        device = await _account_with_device(store, "alice")
        other = await _account_with_device(store, "bob")
        envelope_id = _envelope_id()
        await store.enqueue(device.device_id, envelope_id, b"first", LATER, ROOMY)
        with pytest.raises(DuplicateError):
            await store.enqueue(device.device_id, envelope_id, b"again", LATER, ROOMY)
        await store.enqueue(other.device_id, envelope_id, b"other", LATER, ROOMY)
        assert [q.blob for q in await store.pending(device.device_id, 0, NOW, 10)] == [b"first"]

    run_with(store, body)


def test_revoking_a_device_deletes_its_mailbox_and_prekeys(store: RelayStore) -> None:
    """Test that a revoked device is marked, loses its mail and prekeys, and other devices keep theirs."""

    async def body(store: RelayStore) -> None:
        device = await _account_with_device(store, "alice", prekeys=3)
        other = await _device(store, "alice", prekeys=3)
        await store.enqueue(device.device_id, _envelope_id(), b"gone", LATER, ROOMY)
        await store.enqueue(other.device_id, _envelope_id(), b"kept", LATER, ROOMY)

        assert await store.revoke_device(device.device_id, admin_entry=ACTION)
        revoked = await store.get_device(device.device_id)
        assert revoked is not None and revoked.revoked
        assert await store.pending(device.device_id, 0, NOW, 10) == []
        assert await store.count_one_time_prekeys(device.device_id) == 0
        assert [q.blob for q in await store.pending(other.device_id, 0, NOW, 10)] == [b"kept"]
        assert await store.count_one_time_prekeys(other.device_id) == 3
        assert not await store.revoke_device(other.device_id + 1000, admin_entry=ACTION)

    run_with(store, body)


def test_nothing_is_queued_for_a_revoked_or_unknown_device(store: RelayStore) -> None:
    """Test that enqueue itself refuses a revoked or unknown device, so a revocation racing a SEND
    cannot leave an envelope in a revoked mailbox."""

    async def body(store: RelayStore) -> None:
        device = await _account_with_device(store, "alice")
        assert await store.revoke_device(device.device_id, admin_entry=ACTION)
        for device_id in (device.device_id, device.device_id + 1000):
            with pytest.raises(DeviceGoneError):
                await store.enqueue(device_id, _envelope_id(), b"late", LATER, ROOMY)
        assert await store.pending(device.device_id, 0, NOW, 10) == []

    run_with(store, body)


def test_revoking_an_account_revokes_its_devices_and_deletes_their_mail(store: RelayStore) -> None:
    """Test that revoking an account revokes every device of it and empties their mailboxes and prekeys."""

    async def body(store: RelayStore) -> None:
        devices = [await _account_with_device(store, "alice", prekeys=2), await _device(store, "alice", 2)]
        bystander = await _account_with_device(store, "bob")
        for device in [*devices, bystander]:
            await store.enqueue(device.device_id, _envelope_id(), b"mail", LATER, ROOMY)

        assert await store.set_account_state("alice", AccountState.REVOKED, admin_entry=ACTION)
        for device in devices:
            stored = await store.get_device(device.device_id)
            assert stored is not None and stored.revoked
            assert await store.pending(device.device_id, 0, NOW, 10) == []
            assert await store.count_one_time_prekeys(device.device_id) == 0
        assert len(await store.pending(bystander.device_id, 0, NOW, 10)) == 1

    run_with(store, body)


def test_disabling_an_account_keeps_its_devices_and_mail(store: RelayStore) -> None:
    """Test that a disabled account's devices stay unrevoked and their mail waits."""

    async def body(store: RelayStore) -> None:
        device = await _account_with_device(store, "alice")
        await store.enqueue(device.device_id, _envelope_id(), b"mail", LATER, ROOMY)
        await store.set_account_state("alice", AccountState.DISABLED, admin_entry=ACTION)
        assert await store.get_device(device.device_id) == device
        assert len(await store.pending(device.device_id, 0, NOW, 10)) == 1

    run_with(store, body)


def test_drop_expired_deletes_expired_envelopes_and_attachments(store: RelayStore) -> None:
    """Test that the sweep deletes exactly what has expired, counts it, and keeps the rest."""

    async def body(store: RelayStore) -> None:
        device = await _account_with_device(store, "alice")
        await store.enqueue(device.device_id, _envelope_id(), b"old", NOW, ROOMY)
        await store.enqueue(device.device_id, _envelope_id(), b"older", NOW - 100, ROOMY)
        await store.enqueue(device.device_id, _envelope_id(), b"fresh", NOW + 1, ROOMY)
        await _put(store, "old-attachment", b"old", NOW)
        await _put(store, "fresh-attachment", b"fresh", NOW + 1)

        assert await store.drop_expired(NOW) == 3
        assert [q.blob for q in await store.pending(device.device_id, 0, NOW - 1000, 10)] == [b"fresh"]
        assert await _get(store, "old-attachment", NOW - 1000) is None
        assert await _get(store, "fresh-attachment", NOW) == b"fresh"
        assert await store.drop_expired(NOW) == 0

    run_with(store, body)


# Attachments.


async def _put(store: RelayStore, attachment_id: str, blob: bytes, expires_at: int) -> int:
    """Store ``blob`` from a spool, as the relay's upload handler does."""
    return await store.put_attachment(attachment_id, io.BytesIO(blob), expires_at)


async def _get(store: RelayStore, attachment_id: str, now: int) -> bytes | None:
    stored = await store.get_attachment(attachment_id, now)
    if stored is None:
        return None
    blob = b"".join([chunk async for chunk in stored.chunks])
    assert len(blob) == stored.size
    return blob


def test_attachment_is_stored_until_it_expires(store: RelayStore) -> None:
    """Test that an attachment reads back before its expiry, not at or after it, and ids are unique."""

    async def body(store: RelayStore) -> None:
        blob = os.urandom(5000)
        assert await _put(store, "attachment-1", blob, NOW + 10) == len(blob)
        assert await _get(store, "attachment-1", NOW) == blob
        assert await _get(store, "attachment-1", NOW + 10) is None
        assert await _get(store, "unknown", NOW) is None
        with pytest.raises(DuplicateError):
            await _put(store, "attachment-1", b"other", LATER)
        assert await _get(store, "attachment-1", NOW) == blob, "the refused one changed nothing"

    run_with(store, body)


def test_a_large_attachment_is_kept_and_read_back_in_chunks(store: RelayStore) -> None:
    """Test that an attachment of several chunks is stored from its spool and read back one chunk of
    ATTACHMENT_CHUNK_BYTES at a time, the last one short, in order."""
    blob = os.urandom(2 * ATTACHMENT_CHUNK_BYTES + 1000)

    async def body(store: RelayStore) -> list[bytes]:
        assert await _put(store, "large", blob, LATER) == len(blob)
        stored = await store.get_attachment("large", NOW)
        assert stored is not None and stored.size == len(blob)
        return [chunk async for chunk in stored.chunks]

    chunks = run_with(store, body)
    assert [len(c) for c in chunks] == [ATTACHMENT_CHUNK_BYTES, ATTACHMENT_CHUNK_BYTES, 1000]
    assert b"".join(chunks) == blob


def test_an_attachment_swept_while_it_is_read_stops_the_reading(store: RelayStore) -> None:
    """Test that reading an attachment that the sweep dropped after its first chunk raises
    StoreError instead of ending as if the blob were whole."""
    blob = os.urandom(2 * ATTACHMENT_CHUNK_BYTES)

    async def body(store: RelayStore) -> None:
        await _put(store, "brief", blob, NOW + 10)
        stored = await store.get_attachment("brief", NOW)
        assert stored is not None
        assert await anext(stored.chunks) == blob[:ATTACHMENT_CHUNK_BYTES]
        assert await store.drop_expired(NOW + 10) == 1
        with pytest.raises(StoreError):
            await anext(stored.chunks)

    run_with(store, body)


def test_attachments_of_the_schema_before_chunks_are_carried_over(backend: StoreBackend) -> None:
    """Test that a database whose attachments are rows in clear (SQLite 5, PostgreSQL 6) is opened
    with each one readable as before, and that no clear attachment table is left."""
    run_with(backend.new_store(), lambda store: store.statistics())
    asyncio.run(backend.write_plain_attachments())
    old = os.urandom(ATTACHMENT_CHUNK_BYTES + 10)
    asyncio.run(backend.sql("INSERT INTO attachments VALUES ($1, $2, $3)", "old-one", old, LATER))

    async def reopened(store: RelayStore) -> tuple[bytes | None, bytes | None]:
        await _put(store, "new-one", b"new", LATER)
        return await _get(store, "old-one", NOW), await _get(store, "old-one", LATER)

    assert run_with(backend.new_store(), reopened) == (old, None)
    assert "blob" not in asyncio.run(backend.columns("attachments"))
    assert not [t for t in asyncio.run(backend.tables()) if "schema" in t and t != "schema_version"]


# Admin actions in the key log.


def test_an_admin_action_is_logged_only_with_the_change_it_signs(store: RelayStore) -> None:
    """Test that an account created, set or revoked, and a device revoked, append the admin's entry
    before the change's own, and that a change refused (a duplicate id, no such account, a
    device revoked already) appends nothing; an action that changes nothing here (a code, a
    publication) is appended alone."""

    async def body(store: RelayStore) -> list[bytes]:
        await store.create_account("alice", "Alice", "Finance", admin_entry=signed_action("account.create"))
        with pytest.raises(DuplicateError):
            await store.create_account("alice", "Alice", "Legal", admin_entry=signed_action("duplicate"))
        assert not await store.set_account_state(
            "nobody", AccountState.DISABLED, admin_entry=signed_action("nobody")
        )
        device = await _register(store, "alice")
        assert await store.revoke_device(device.device_id, admin_entry=signed_action("device.revoke"))
        assert not await store.revoke_device(device.device_id, admin_entry=signed_action("again"))
        assert not await store.revoke_device(999, admin_entry=signed_action("no such device"))
        await store.append_admin_entry(signed_action("config.publish"))
        return await store.log_entries(0, 100)

    described = [
        parse_entry(e).action if e[1] == EntryKind.ADMIN_ACTION else EntryKind(e[1]).name  # type: ignore[union-attr]
        for e in run_with(store, body)
    ]
    assert described == [
        "account.create",
        "DEVICE_ADDED",
        "device.revoke",
        "DEVICE_REVOKED",
        "config.publish",
    ]


# What is left behind.


def test_acknowledged_envelope_leaves_nothing_behind(backend: StoreBackend) -> None:
    """Test that after acknowledgement (and a sweep) no byte of the envelope is left in the database.

    SQLite: the raw bytes of the database file and its WAL. PostgreSQL: the mailbox rows, opened
    with the key file (what a deleted row leaves in pages and WAL: tests/server/test_seizure.py).
    """
    blob = os.urandom(64)

    async def holders() -> int:
        if isinstance(backend, SQLiteBackend):
            files = [backend.path, backend.path.with_name(backend.path.name + "-wal")]
            return sum(path.read_bytes().count(blob) for path in files if path.exists())
        return sum(blob in waiting.blob for waiting in await backend.waiting())

    async def body(store: RelayStore) -> tuple[int, int]:
        device = await _account_with_device(store, "alice")
        envelope_id = _envelope_id()
        await store.enqueue(device.device_id, envelope_id, blob, LATER, ROOMY)
        before = await holders()
        assert await store.acknowledge(device.device_id, [envelope_id]) == 1
        await store.drop_expired(NOW)
        return before, await holders()

    before, after = run_with(backend.new_store(), body)
    assert before >= 1, "the test blob was never written where the test looks"
    assert after == 0


# Counts, versions, reopening.


def test_statistics_count_each_kind_of_row(store: RelayStore) -> None:
    """Test that statistics report accounts, devices, queued envelopes, attachments and prekeys."""

    async def body(store: RelayStore) -> dict[str, int]:
        device = await _account_with_device(store, "alice", prekeys=3)
        revoked = await _device(store, "alice", prekeys=2)
        await _account_with_device(store, "bob", prekeys=1)
        await store.create_account("carol", "Carol", "Legal", admin_entry=ACTION)
        await store.set_account_state("carol", AccountState.DISABLED, admin_entry=ACTION)
        await store.revoke_device(revoked.device_id, admin_entry=ACTION)
        for _ in range(4):
            await store.enqueue(device.device_id, _envelope_id(), b"mail", LATER, ROOMY)
        await _put(store, "attachment-1", b"file", LATER)
        return await store.statistics()

    assert run_with(store, body) == {
        "accounts": 3,
        "active_accounts": 2,
        "devices": 2,
        "revoked_devices": 1,
        "queued_envelopes": 4,
        "attachments": 1,
        "one_time_prekeys": 4,
    }


def test_data_survives_closing_and_reopening(backend: StoreBackend) -> None:
    """Test that a second store opened on the same database finds what the first stored."""

    async def store_some(store: RelayStore) -> Device:
        return await _account_with_device(store, "alice")

    async def read_back(store: RelayStore) -> tuple[Device | None, Account | None]:
        return await store.get_device(device.device_id), await store.get_account("alice")

    device = run_with(backend.new_store(), store_some)
    stored, account = run_with(backend.new_store(), read_back)
    assert stored == device
    assert account is not None and account.account_id == "alice"


def test_unsupported_schema_version_is_refused(backend: StoreBackend) -> None:
    """Test that a database of another schema version is refused with StoreError."""

    async def nothing(store: RelayStore) -> None:
        return None

    run_with(backend.new_store(), nothing)
    statement = (
        "PRAGMA user_version = 99"
        if isinstance(backend, SQLiteBackend)
        else "UPDATE schema_version SET version = 99"
    )
    asyncio.run(backend.sql(statement))

    async def open_it() -> None:
        await backend.new_store().open()

    with pytest.raises(StoreError, match="99"):
        asyncio.run(open_it())


def test_a_schema_1_database_is_refused_saying_its_devices_cannot_be_carried_over(
    backend: StoreBackend,
) -> None:
    """Test that a database a relay of schema 1 left (relay-signed devices, enrolment codes) is
    refused with schema_refusal's message, and its rows are left as they were."""
    asyncio.run(backend.write_schema_1())
    before = asyncio.run(backend.snapshot())
    assert len(before["devices"]) == 1

    async def open_it() -> None:
        await backend.new_store().open()

    with pytest.raises(StoreError) as refused:
        asyncio.run(open_it())
    supported = sqlite.SCHEMA_VERSION if isinstance(backend, SQLiteBackend) else postgres.SCHEMA_VERSION
    assert str(refused.value) == schema_refusal(1, supported)
    assert "cannot be carried over" in str(refused.value)
    assert asyncio.run(backend.snapshot()) == before


# Wake-ups.


def test_subscriber_is_woken_once_per_stored_envelope(store: RelayStore) -> None:
    """Test that a subscriber hears each stored envelope's device once, and nothing for a refused one."""

    async def body(store: RelayStore) -> tuple[int, int, list[int]]:
        first = await _account_with_device(store, "alice")
        second = await _account_with_device(store, "bob")
        woken: list[int] = []
        heard = asyncio.Event()

        async def wake_up(device_id: int) -> None:
            woken.append(device_id)
            heard.set()

        async def enqueue_and_wait(device_id: int, envelope_id: bytes) -> None:
            heard.clear()
            await store.enqueue(device_id, envelope_id, b"mail", LATER, ROOMY)
            await asyncio.wait_for(heard.wait(), WAIT_SECONDS)

        await store.subscribe(wake_up)
        repeated = _envelope_id()
        await enqueue_and_wait(first.device_id, repeated)
        await enqueue_and_wait(second.device_id, _envelope_id())
        with pytest.raises(DuplicateError):
            await store.enqueue(first.device_id, repeated, b"again", LATER, ROOMY)
        await enqueue_and_wait(second.device_id, _envelope_id())
        return first.device_id, second.device_id, woken

    first, second, woken = run_with(store, body)
    assert woken == [first, second, second]


# Several relay processes on one PostgreSQL schema.


async def _two_stores(postgres: PostgresBackend) -> tuple[RelayStore, RelayStore]:
    first, second = postgres.new_store(), postgres.new_store()
    await asyncio.gather(first.open(), second.open())
    return first, second


def test_postgres_opening_a_fresh_schema_from_two_processes_at_once(postgres: PostgresBackend) -> None:
    """Test that several stores creating the same fresh schema at the same moment all open."""

    async def body() -> int:
        stores = [postgres.new_store() for _ in range(4)]
        await asyncio.gather(*(s.open() for s in stores))
        try:
            await stores[0].create_account("alice", "Alice", "Finance", admin_entry=ACTION)
            return len([a for s in stores if (a := await s.get_account("alice")) is not None])
        finally:
            await asyncio.gather(*(s.close() for s in stores))

    assert asyncio.run(body()) == 4


def test_postgres_subscriber_of_another_process_is_woken(postgres: PostgresBackend) -> None:
    """Test that an envelope stored through one relay process wakes the subscriber on another."""

    async def body() -> tuple[int, list[int]]:
        sender, receiver = await _two_stores(postgres)
        try:
            woken: list[int] = []
            heard = asyncio.Event()

            def wake_up(device_id: int) -> None:
                woken.append(device_id)
                heard.set()

            await receiver.subscribe(wake_up)
            device = await _account_with_device(sender, "alice")
            await sender.enqueue(device.device_id, _envelope_id(), b"mail", LATER, ROOMY)
            await asyncio.wait_for(heard.wait(), WAIT_SECONDS)
            return device.device_id, woken
        finally:
            await sender.close()
            await receiver.close()

    device_id, woken = asyncio.run(body())
    assert woken == [device_id]


def test_postgres_wake_ups_resume_after_the_listening_connection_is_lost(postgres: PostgresBackend) -> None:
    """Test that a store whose LISTEN connection is killed reconnects and still wakes its subscriber."""

    async def body() -> tuple[int, int]:
        sender, receiver = await _two_stores(postgres)
        try:
            device = await _account_with_device(sender, "alice")
            woken: list[int] = []
            heard = asyncio.Event()

            def wake_up(device_id: int) -> None:
                woken.append(device_id)
                heard.set()

            await receiver.subscribe(wake_up)
            killed = await postgres.sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN %' AND position($1 IN query) > 0",
                wake_channel(postgres.schema),
            )
            await sender.enqueue(device.device_id, _envelope_id(), b"mail", LATER, ROOMY)
            await asyncio.wait_for(heard.wait(), 2 * WAIT_SECONDS)
            return len(killed), woken[0]
        finally:
            await sender.close()
            await receiver.close()

    killed, woken = asyncio.run(body())
    assert killed == 1
    assert woken >= 1


def test_postgres_concurrent_bundle_fetches_never_share_a_prekey(postgres: PostgresBackend) -> None:
    """Test that 40 simultaneous fetches through two processes hand out 20 prekeys exactly once each."""

    async def body() -> list[OneTimePreKey | None]:
        first, second = await _two_stores(postgres)
        try:
            await first.create_account("alice", "Alice", "Finance", admin_entry=ACTION)
            await _register(first, "alice", keys=_prekeys(1, 20))
            fetches = [(first if index % 2 else second).take_bundles("alice") for index in range(40)]
            return [bundles[0][1] for bundles in await asyncio.gather(*fetches)]
        finally:
            await first.close()
            await second.close()

    taken = asyncio.run(body())
    keys = [key.key_id for key in taken if key is not None]
    assert sorted(keys) == list(range(1, 21))
    assert taken.count(None) == 20


def test_postgres_concurrent_enqueues_respect_the_quota(postgres: PostgresBackend) -> None:
    """Test that 30 simultaneous envelopes through two processes fill a 10-envelope mailbox exactly."""

    async def body() -> tuple[int, int, int]:
        first, second = await _two_stores(postgres)
        try:
            device = await _account_with_device(first, "alice")
            quota = Quota(max_envelopes=10, max_bytes=1 << 20)
            sends = [
                (first if index % 2 else second).enqueue(device.device_id, _envelope_id(), b"m", LATER, quota)
                for index in range(30)
            ]
            results = await asyncio.gather(*sends, return_exceptions=True)
            full = sum(isinstance(result, MailboxFullError) for result in results)
            stored = len(await first.pending(device.device_id, 0, NOW, 100))
            return sum(result is None for result in results), full, stored
        finally:
            await first.close()
            await second.close()

    assert asyncio.run(body()) == (10, 20, 10)


def test_postgres_concurrent_log_appends_take_turns(postgres: PostgresBackend) -> None:
    """Test that 40 admin entries appended at once through two processes are 40 leaves, each once,
    numbered without a gap."""

    async def body() -> tuple[int, list[bytes]]:
        first, second = await _two_stores(postgres)
        try:
            appends = [
                (first if index % 2 else second).append_admin_entry(signed_action("n", {"n": index}))
                for index in range(40)
            ]
            await asyncio.gather(*appends)
            return await second.log_size(), await second.log_entries(0, 100)
        finally:
            await first.close()
            await second.close()

    size, entries = asyncio.run(body())
    assert size == len(entries) == 40
    assert sorted(json.loads(e.details)["n"] for e in _parsed(entries)) == list(range(40))  # type: ignore[attr-defined]


def test_postgres_unreachable_database_is_a_store_error(tmp_path: Path) -> None:
    """Test that a database nobody listens for makes open() raise StoreError, not a socket error."""

    async def open_it() -> None:
        keys = MailboxKeys(tmp_path / MAILBOX_KEY_FILE)
        await PostgresStore("postgresql://postgres@127.0.0.1:1/test", "enclave", keys).open()

    with pytest.raises(StoreError, match="cannot connect"):
        asyncio.run(open_it())


# The key log.


def _parsed(entries: list[bytes]) -> list[object]:
    return [parse_entry(e) for e in entries]


def test_registering_and_revoking_append_to_the_key_log_once_each(store: RelayStore) -> None:
    """Test that a new device appends its certificate as it was given, that registering the same device
    again appends nothing, and that revoking a device, and an account's devices, appends one
    revocation each, never a second one for a device revoked already."""

    async def body(store: RelayStore) -> tuple[list[bytes], int, bytes, list[int]]:
        await store.create_account("alice", "Alice", "Finance", admin_entry=ACTION)
        await store.create_account("bob", "Bob", "Finance", admin_entry=ACTION)
        first = _new_device("alice")
        assert await store.register(first)
        assert not await store.register(first)
        second = await _register(store, "bob")
        third = await _register(store, "bob")
        assert await store.revoke_device(second.device_id, admin_entry=ACTION)
        assert not await store.revoke_device(second.device_id, admin_entry=ACTION)
        await store.set_account_state("bob", AccountState.REVOKED, admin_entry=ACTION)
        return (
            await store.log_entries(0, 100),
            await store.log_size(),
            first.certificate,
            [
                second.device_id,
                third.device_id,
            ],
        )

    entries, size, certificate, (second, third) = run_with(store, body)
    devices = [e for e in entries if e[1] != EntryKind.ADMIN_ACTION]
    assert size == len(entries) == len(devices) + 4  # two accounts created, a device and an account revoked
    assert devices[0] == device_added_entry(1_700_000_000, certificate)
    revoked = _parsed(devices[3:])
    assert all(isinstance(r, DeviceRevoked) for r in revoked)
    assert [(r.account_id, r.device_id) for r in revoked] == [("bob", second), ("bob", third)]  # type: ignore[attr-defined]


def test_log_entries_come_by_leaf_range(store: RelayStore) -> None:
    """Test that a range of leaves gives those entries in order, and fewer past the end."""

    async def body(store: RelayStore) -> tuple[list[bytes], list[bytes], list[bytes]]:
        await store.create_account("alice", "Alice", "Finance", admin_entry=ACTION)
        for _ in range(4):
            await _register(store, "alice")
        everything = await store.log_entries(0, 10)
        return everything, await store.log_entries(1, 2), await store.log_entries(3, 10)

    everything, middle, tail = run_with(store, body)
    assert len(everything) == 5 and middle == everything[1:3] and tail == everything[3:]


def test_a_schema_2_database_gets_a_key_log_of_its_devices(backend: StoreBackend) -> None:
    """Test that a database from before the key log (schema 2) is opened with a log holding each of its
    devices, in device id order, then a revocation for each revoked one, and new registrations after."""

    async def fill(store: RelayStore) -> list[int]:
        await store.create_account("alice", "Alice", "Finance", admin_entry=ACTION)
        ids = sorted([(await _register(store, "alice")).device_id for _ in range(3)])
        await store.revoke_device(ids[1], admin_entry=ACTION)
        return ids

    ids = run_with(backend.new_store(), fill)
    asyncio.run(backend.write_schema_3_mailbox())
    downgrade = (
        ["DROP TABLE key_log", "PRAGMA user_version = 2"]
        if isinstance(backend, SQLiteBackend)
        else ["DROP TABLE key_log", "UPDATE schema_version SET version = 2"]
    )
    for statement in downgrade:
        asyncio.run(backend.sql(statement))

    async def reopened(store: RelayStore) -> list[bytes]:
        await _register(store, "alice")
        return await store.log_entries(0, 10)

    entries = run_with(backend.new_store(), reopened)
    assert [e[1] for e in entries] == [EntryKind.DEVICE_ADDED] * 3 + [
        EntryKind.DEVICE_REVOKED,
        EntryKind.DEVICE_ADDED,
    ]
    revocation = parse_entry(entries[3])
    assert isinstance(revocation, DeviceRevoked) and revocation.device_id == ids[1]
