"""The key log as a real relay keeps and serves it (server/keylog.py, GET /v1/log/...): every device
it registers and every revocation is a leaf, and a reader takes its heads only as the log's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest

from app.crypto.merkle import parse_proof
from app.protocol.logview import LogView
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
    assert later_size == size + 1
    earlier = view.head
    assert earlier is not None
    view.advance(later, _entries(relay, token, size, later_size - size))
    revoked = view.directory.binding("log.alice", alice.device_id)
    assert revoked is not None and revoked.revoked == size
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
    view = LogView(log_key=key, authority_key=TEST_AUTHORITY.public)
    old, new = view.signed(before).checkpoint, view.signed(after).checkpoint
    assert new.size == old.size + 1
    status, proof = get(relay, f"/v1/log/consistency?old={old.size}&new={new.size}", token)
    view.advance(after, _entries(relay, token, 0, new.size))
    view.check_head(before, parse_proof(proof))
