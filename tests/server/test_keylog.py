"""The key log as a real relay keeps and serves it (server/keylog.py, GET /v1/log/...): every device
it registers and every revocation is a leaf, and a reader takes its heads only as the log's."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from nacl.utils import random

from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.merkle import parse_proof
from app.crypto.primitives import ed25519_keypair_from_seed
from app.protocol.logentry import AdminAction, device_added_entry
from app.protocol.logview import LogView
from server.keys import LOG_KEY_FILE, LOG_PUBLIC_FILE, load_or_create_keys
from tests.support.adminkey import ADMIN_NAME, ADMIN_PUBLIC
from tests.support.deployment import deployment
from tests.support.relay import TEST_AUTHORITY, RelayProcess, TestDevice, admin, new_account


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    started = RelayProcess(tmp_path_factory.mktemp("keylog") / "relay").start()
    yield started
    started.stop()


def _token(relay: RelayProcess, account_id: str) -> tuple[TestDevice, str]:
    async def join() -> TestDevice:
        device = await TestDevice(relay).join(new_account(relay.data_dir, account_id))
        await device.disconnect()
        return device

    device = asyncio.run(join())
    return device, "Enclave-Upload " + device.upload_token.hex()


async def _get(relay: RelayProcess, path: str, token: str | None) -> tuple[int, bytes]:
    headers = {} if token is None else {"Authorization": token}
    async with (
        aiohttp.ClientSession() as session,
        session.get(relay.https + path, headers=headers, ssl=relay.ssl_context()) as answer,
    ):
        return answer.status, await answer.read()


def get(relay: RelayProcess, path: str, token: str | None) -> tuple[int, bytes]:
    return asyncio.run(_get(relay, path, token))


def _entries(relay: RelayProcess, token: str, start: int, count: int) -> list[bytes]:
    status, body = get(relay, f"/v1/log/entries?start={start}&count={count}", token)
    assert status == 200
    entries, at = [], 0
    while at < len(body):
        length = int.from_bytes(body[at : at + 2], "big")
        entries.append(body[at + 2 : at + 2 + length])
        at += 2 + length
    return entries


def test_a_reader_follows_the_relays_log_to_the_devices_it_registered(relay: RelayProcess) -> None:
    """Test that the log's head verifies under the log key the relay printed, that its entries lead to
    it, and that they replay to the very devices the relay registered, revocation included; a later
    head checks out against the earlier one with the relay's consistency proof."""
    alice, token = _token(relay, "log.alice")
    bob, _ = _token(relay, "log.bob")
    view = LogView(log_key=relay.log_key, authority_key=TEST_AUTHORITY.public, watched_account="log.bob")
    status, head = get(relay, "/v1/log/head", token)
    assert status == 200
    size = view.signed(head).checkpoint.size
    advanced = view.advance(head, _entries(relay, token, 0, size))
    assert not advanced.problems
    assert [b.device_id for b in advanced.watched] == [bob.device_id]
    binding = view.directory.binding("log.alice", alice.device_id)
    assert binding is not None and binding.identity_key == alice.identity.public and binding.revoked is None

    assert admin(relay.data_dir, "device", "revoke", str(alice.device_id)).returncode == 0
    _, later = get(relay, "/v1/log/head", token)
    later_size = view.signed(later).checkpoint.size
    assert later_size == size + 2  # the admin's signed action, then the revocation it made
    earlier = view.head
    assert earlier is not None
    view.advance(later, _entries(relay, token, size, later_size - size))
    revoked = view.directory.binding("log.alice", alice.device_id)
    assert revoked is not None and revoked.revoked == size + 1
    status, proof = get(relay, f"/v1/log/consistency?old={size}&new={later_size}", token)
    assert status == 200
    view.check_head(earlier.note, parse_proof(proof))


def test_the_log_is_for_devices_only_and_bad_ranges_are_refused(relay: RelayProcess) -> None:
    """Test that the log's paths without a device's upload token are 401 and show nothing, and that a
    malformed or impossible range is 400 with a reason, the relay serving on."""
    _, token = _token(relay, "log.carol")
    for path in ("/v1/log/head", "/v1/log/entries?start=0&count=1", "/v1/log/consistency?old=1&new=1"):
        status, body = get(relay, path, None)
        assert status == 401 and b"enclave" not in body
    for path in (
        "/v1/log/entries?start=0&count=0",
        "/v1/log/entries?start=0&count=1001",
        "/v1/log/entries?start=-1&count=1",
        "/v1/log/entries?start=01&count=1",
        "/v1/log/entries?start=99999999999999999999&count=1",
        "/v1/log/entries",
        "/v1/log/consistency?old=0&new=1",
        "/v1/log/consistency?old=2&new=1",
        "/v1/log/consistency?old=1&new=1000000",
    ):
        status, body = get(relay, path, token)
        assert status == 400 and b"error" in body, path
    assert get(relay, "/v1/log/head", token)[0] == 200


def test_a_restarted_relay_signs_the_same_log_with_the_same_key(relay: RelayProcess) -> None:
    """Test that the log key is kept in the data folder: after a restart the relay prints the same key
    and its head of the same leaves is the same signed note."""
    _, token = _token(relay, "log.dave")
    key, (_, before) = relay.log_key, get(relay, "/v1/log/head", token)
    relay.stop()
    relay.start()
    _, token = _token(relay, "log.erin")
    status, after = get(relay, "/v1/log/head", token)
    assert status == 200 and relay.log_key == key
    assert (relay.data_dir / LOG_PUBLIC_FILE).read_text("ascii") == key.hex() + "\n"
    view = LogView(log_key=key, authority_key=TEST_AUTHORITY.public)
    old, new = view.signed(before).checkpoint, view.signed(after).checkpoint
    assert new.size == old.size + 2  # log.erin's account, then her device
    status, proof = get(relay, f"/v1/log/consistency?old={old.size}&new={new.size}", token)
    view.advance(after, _entries(relay, token, 0, new.size))
    view.check_head(before, parse_proof(proof))


def test_the_log_key_is_written_in_log_pub_for_admins_and_written_again_when_wrong(tmp_path: Path) -> None:
    """Test that the relay's keys put the log key's public half in log.pub (hex, mode 0644) beside
    log.key, and write it again, leaving log.key as it was, where it is missing, damaged or
    another key: enclave-admin and the local workspace take the log key from it."""
    keys = load_or_create_keys(tmp_path, "127.0.0.1")
    public, seed = tmp_path / LOG_PUBLIC_FILE, (tmp_path / LOG_KEY_FILE).read_bytes()
    assert public.read_text("ascii") == keys.log_public.hex() + "\n"
    assert public.stat().st_mode & 0o777 == 0o644
    for damage in (None, b"not hex\n", IdentityKeyPair.generate(random).public.hex().encode() + b"\n"):
        if damage is None:
            public.unlink()
        else:
            public.write_bytes(damage)
        again = load_or_create_keys(tmp_path, "127.0.0.1")
        assert again.log_public == keys.log_public and not again.created
        assert public.read_text("ascii") == keys.log_public.hex() + "\n"
        assert (tmp_path / LOG_KEY_FILE).read_bytes() == seed


def _rows(relay: RelayProcess) -> list[bytes]:
    with sqlite3.connect(relay.data_dir / "relay.sqlite3") as db:
        return [row[0] for row in db.execute("SELECT entry FROM key_log ORDER BY leaf")]


def _rewrite(relay: RelayProcess, entries: list[bytes]) -> None:
    """The operator's edit behind the relay's back: the log table replaced by ``entries``."""
    with sqlite3.connect(relay.data_dir / "relay.sqlite3") as db:
        db.execute("DELETE FROM key_log")
        db.executemany("INSERT INTO key_log VALUES (?, ?)", list(enumerate(entries)))


def test_log_audit_catches_a_log_rewritten_from_its_start_against_a_kept_head(tmp_path: Path) -> None:
    """Test that enclave-admin log audit passes on the relay's log and against a head a device kept,
    and that a log rewritten from its start (a device for Bob slipped in at leaf 1, every later leaf
    moved), cut short, or given a binding the authority did not sign is refused, naming what broke."""
    relay = RelayProcess(tmp_path / "relay").start()
    try:
        _, token = _token(relay, "audit.alice")
        _token(relay, "audit.bob")
        kept = tmp_path / "kept-head"
        kept.write_bytes(get(relay, "/v1/log/head", token)[1])
        _token(relay, "audit.carol")
        honest = admin(relay.data_dir, "log", "verify", "--head", str(kept))
        assert honest.returncode == 0, honest.stderr
        assert "key log intact: 6 entries (3 devices added, 0 revoked, 3 admin actions)" in honest.stdout
        assert "extends the head" in honest.stdout
        entries = _rows(relay)

        spy = IdentityKeyPair.generate(random)
        planted = device_added_entry(
            1_700_000_000,
            DeviceCertificate.issue(
                TEST_AUTHORITY,
                account_id="audit.bob",
                device_id=4242,
                identity_key=spy.public,
                expires_at=2**40,
            ).encode(),
        )
        _rewrite(relay, [entries[0], planted, *entries[1:]])
        rewritten = admin(relay.data_dir, "log", "verify", "--head", str(kept))
        assert rewritten.returncode == 1 and "the log was rewritten" in rewritten.stderr
        assert admin(relay.data_dir, "log", "audit").returncode == 0  # without a kept head it looks fine

        _rewrite(relay, entries[:1])
        cut = admin(relay.data_dir, "log", "audit", "--head", str(kept))
        assert cut.returncode == 1 and "entries were cut" in cut.stderr

        stranger = IdentityKeyPair.generate(random)
        forged = DeviceCertificate.issue(
            stranger, account_id="audit.bob", device_id=77, identity_key=stranger.public, expires_at=2**40
        )
        _rewrite(relay, [*entries, device_added_entry(1, forged.encode())])
        unsigned = admin(relay.data_dir, "log", "audit")
        assert (
            unsigned.returncode == 1 and "leaf 6: device 77 of audit.bob is not certified" in unsigned.stderr
        )

        kept.write_bytes(kept.read_bytes().replace(b"\n4\n", b"\n9\n"))
        forged_head = admin(relay.data_dir, "log", "audit", "--head", str(kept))
        assert forged_head.returncode == 1 and "not one this log key signed" in forged_head.stderr
        assert admin(relay.data_dir, "log", "verify").returncode == 2  # verify needs a kept head
    finally:
        relay.stop()


def test_log_audit_names_admin_actions_edited_or_by_an_admin_the_config_does_not_list(
    relay: RelayProcess, tmp_path: Path
) -> None:
    """Test that every admin action is an entry naming the acting admin, that an action whose
    details the operator edited in the database no longer verifies, and that an action signed
    by a key the config does not list (an operator's own) is named by the audit given the config;
    log show lists them all, by whom."""
    new_account(relay.data_dir, "actions.dora", "Dora")
    config = deployment().install(tmp_path / "org" / "enclave.toml", relay)
    honest = admin(relay.data_dir, "log", "audit", "--config", str(config))
    assert honest.returncode == 0 and "admin keys not checked" not in honest.stdout, honest.stderr
    shown = admin(relay.data_dir, "log", "show").stdout.splitlines()
    assert shown[-1].split("\t")[2:4] == ["account.create", f"by {ADMIN_NAME} ({ADMIN_PUBLIC.hex()[:16]}…)"]
    entries = _rows(relay)
    try:
        operator_public, operator_secret = ed25519_keypair_from_seed(seed=random(32))
        own = AdminAction.sign(
            at=1,
            admin=ADMIN_NAME,
            admin_public=operator_public,
            admin_secret=operator_secret,
            action="account.create",
            details='{"account": "ghost"}',
        )
        _rewrite(relay, [*entries, own.encode()])
        listed = admin(relay.data_dir, "log", "audit", "--config", str(config))
        assert listed.returncode == 1 and "signed by a key the config does not list" in listed.stderr

        edited = entries[-1].replace(b'"actions.dora"', b'"actions.dorb"')
        assert edited != entries[-1]
        _rewrite(relay, [*entries[:-1], edited])
        tampered = admin(relay.data_dir, "log", "audit")
        assert tampered.returncode == 1 and "is not signed by the key it names" in tampered.stderr
    finally:
        _rewrite(relay, entries)
