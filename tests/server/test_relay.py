"""The relay end to end: a real server process on 127.0.0.1 with TLS, real clients, both backends."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from nacl.utils import random

from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import NO_ONE_TIME_PREKEY, IdentityKeyPair, PreKeyBundle
from app.protocol.frames import (
    Bundles,
    Count,
    DirectoryLookup,
    DirectoryResults,
    FetchBundles,
    Frame,
    FrameType,
    NoticeKind,
    Response,
    Status,
    UploadedPreKey,
    UploadPreKeys,
)
from app.protocol.lifetime import relay_expiry
from server.http import SPOOL_WRITE_BYTES
from server.keys import UPLOAD_KEY_FILE
from server.store.base import ATTACHMENT_CHUNK_BYTES
from server.store.sealing import MAILBOX_KEY_FILE
from tests.server.relays import RelayFactory, eventually, run
from tests.server.stores import database_of
from tests.support.relay import TEST_AUTHORITY, RelayProcess, TestDevice, admin, new_account

DAY = 24 * 3600


async def _pair(relay: RelayProcess, prefix: str = "u") -> tuple[TestDevice, TestDevice]:
    alice = await TestDevice(relay).join(new_account(relay.data_dir, f"{prefix}.alice", "Alice"))
    bob = await TestDevice(relay).join(new_account(relay.data_dir, f"{prefix}.bob", "Bob"))
    return alice, bob


async def _exchange_still_works(alice: TestDevice, bob: TestDevice) -> None:
    response, sent = await alice.send(bob.device_id, b"still served " + random(8))
    assert response.status == Status.OK
    received = await bob.next_push()
    assert received == sent
    assert (await bob.ack(received)).status == Status.OK


def test_enrol_authenticate_send_push_ack_and_redeliver(start_relay: RelayFactory) -> None:
    """Test the whole path: enrolment, auth, prekey fetch, send, push, ack, redelivery after reconnect."""
    relay = start_relay()

    async def scenario() -> None:
        alice, bob = await _pair(relay)
        certificate = DeviceCertificate.parse(alice.certificate)
        assert (certificate.account_id, certificate.device_id) == ("u.alice", alice.device_id)
        assert certificate.identity_key == alice.identity.public

        fetched = await alice.request(FrameType.FETCH_BUNDLES, FetchBundles("u.bob").encode())
        assert fetched.status == Status.OK
        (device,) = Bundles.parse(fetched.body).devices
        bundle = PreKeyBundle.from_bytes(device.bundle)
        bundle.verify()
        assert device.device_id == bob.device_id and bundle.identity_key == bob.identity.public
        assert device.certificate == bob.certificate
        bobs = DeviceCertificate.parse(device.certificate)
        assert (bobs.account_id, bobs.device_id) == ("u.bob", bob.device_id)
        assert bobs.identity_key == bob.identity.public
        bobs.verify(trust_root=TEST_AUTHORITY.public, now=int(time.time()))
        assert bundle.one_time_prekey is not None

        sent = []
        for i in range(3):
            response, envelope = await alice.send(bob.device_id, f"sealed {i}".encode())
            assert response.status == Status.OK
            sent.append(envelope)
        assert [await bob.next_push() for _ in range(3)] == sent
        assert (await bob.ack(sent[0])).status == Status.OK

        assert (await bob.reconnect()).status == Status.OK
        assert [await bob.next_push(), await bob.next_push()] == sent[1:]
        drained = await asyncio.wait_for(bob.notices.get(), 10)
        assert (drained.kind, drained.value) == (NoticeKind.QUEUE_DRAINED, 2)
        await bob.ack(*sent[1:])
        assert (await bob.reconnect()).status == Status.OK
        assert (await asyncio.wait_for(bob.notices.get(), 10)).value == 0
        assert bob.pushes.empty()
        await alice.disconnect()
        await bob.disconnect()

    run(scenario())
    stats = admin(relay.data_dir, "stats")
    assert "queued_envelopes\t0" in stats.stdout


def test_relay_stores_no_sender_and_logs_nothing_per_message(start_relay: RelayFactory) -> None:
    """Test that a queued envelope's row holds only recipient, id, bytes and expiry; nothing is logged."""
    relay = start_relay()

    async def scenario() -> None:
        alice, bob = await _pair(relay)
        await bob.disconnect()
        lines_before = len(relay.output)
        response, envelope = await alice.send(bob.device_id, b"opaque")
        assert response.status == Status.OK
        await alice.disconnect()
        relay.stop()
        assert relay.output[lines_before:] == []
        database = database_of(relay.data_dir)
        columns = await database.columns("mailbox")
        assert columns == (
            ["device_id", "sequence", "envelope_id", "blob", "expires_at"]
            if database.name == "sqlite"
            else ["mailbox_tag", "sequence", "epoch", "envelope_tag", "expiry_tag", "sealed"]
        )
        (row,) = await database.waiting()
        assert (row.device_id, row.envelope_id) == (bob.device_id, envelope.envelope_id)
        assert row.blob == envelope.encode()
        assert row.expires_at == envelope.expires_at
        for value in (
            alice.identity.public,
            alice.account_id.encode(),
            alice.device_id.to_bytes(4, "big"),
        ):
            assert value not in row.blob

    run(scenario())


def test_malformed_frames_close_only_the_offending_connection(start_relay: RelayFactory) -> None:
    """Test that garbage, unknown types, text frames and oversized frames close that connection alone."""
    relay = start_relay()

    async def scenario() -> None:
        alice, bob = await _pair(relay)
        for bad in (b"\x00garbage", b"\x01\x7f\x00\x00\x00\x01", b"\x09\x01\x00\x00\x00\x01"):
            intruder = TestDevice(relay)
            await intruder.connect()
            assert intruder.ws is not None
            await intruder.ws.send_bytes(bad)
            await asyncio.wait_for(intruder._reader, 10)  # type: ignore[arg-type]
            assert intruder.closing is not None and intruder.closing.status == Status.BAD_REQUEST
            await intruder.disconnect()
        text_sender = TestDevice(relay)
        await text_sender.connect()
        assert text_sender.ws is not None
        await text_sender.ws.send_str("hello")
        await asyncio.wait_for(text_sender._reader, 10)  # type: ignore[arg-type]
        assert text_sender.closing is not None
        await text_sender.disconnect()

        oversized = TestDevice(relay)
        await oversized.connect()
        assert oversized.ws is not None
        await oversized.ws.send_bytes(b"\x01\x03" + b"\x00" * (300 * 1024))
        await asyncio.wait_for(oversized._reader, 10)  # type: ignore[arg-type]
        assert oversized.ws.closed
        await oversized.disconnect()

        malformed_body = await alice.request(FrameType.SEND, b"\x00\x00")
        assert malformed_body.status == Status.BAD_REQUEST
        await _exchange_still_works(alice, bob)
        await alice.disconnect()
        await bob.disconnect()

    run(scenario())


def test_wrong_signature_and_replayed_challenge_are_refused(start_relay: RelayFactory) -> None:
    """Test that a bad signature, and a valid answer replayed on a new connection, are refused and closed."""
    relay = start_relay()

    async def scenario() -> None:
        alice, bob = await _pair(relay)
        mallory = TestDevice(relay, device_id=alice.device_id)
        await mallory.connect()
        refused = await mallory.authenticate()
        assert refused.status == Status.UNAUTHENTICATED
        await asyncio.wait_for(mallory._reader, 10)  # type: ignore[arg-type]
        await mallory.disconnect()

        await alice.disconnect()
        await alice.connect()
        recorded = alice.authentication()
        assert (await alice.request(FrameType.AUTHENTICATE, recorded)).status == Status.OK
        replayer = TestDevice(relay)
        await replayer.connect()
        replayed = await replayer.request(FrameType.AUTHENTICATE, recorded)
        assert replayed.status == Status.UNAUTHENTICATED
        await replayer.disconnect()

        second_try = await alice.request(FrameType.AUTHENTICATE, recorded)
        assert second_try.status == Status.BAD_REQUEST
        before_auth = TestDevice(relay)
        await before_auth.connect()
        assert (await before_auth.request(FrameType.SEND, b"")).status == Status.UNAUTHENTICATED
        await before_auth.disconnect()
        await _exchange_still_works(alice, bob)
        await alice.disconnect()
        await bob.disconnect()

    run(scenario())


def test_enrolment_attempts_are_rate_limited(start_relay: RelayFactory) -> None:
    """Test that enrolment attempts from one address, each on a connection of its own, are slowed
    to the configured attempts per minute, certified or not, and the refused ones register nothing."""
    relay = start_relay(enrolment_attempts_per_minute=3)
    account = new_account(relay.data_dir, "r.limited")
    stranger = IdentityKeyPair.generate(random)

    async def attempt(device: TestDevice) -> Status:
        await device.connect()
        try:
            return (await device.enrol()).status
        finally:
            await device.disconnect()

    async def scenario() -> None:
        guessers = [TestDevice(relay) for _ in range(4)]
        for guesser in guessers:
            guesser.certify(account, issuer=stranger)
        certified = TestDevice(relay)
        certified.certify(account)
        statuses = [await attempt(device) for device in [*guessers, certified]]
        assert statuses == [Status.UNAUTHENTICATED] * 3 + [Status.RATE_LIMITED] * 2
        assert await database_of(relay.data_dir).sql("SELECT COUNT(*) FROM devices") == [(0,)]

    run(scenario())


def test_full_mailbox_tells_the_sender(start_relay: RelayFactory) -> None:
    """Test that past the quota the sender gets MAILBOX_FULL and nothing is dropped silently."""
    relay = start_relay(mailbox_max_envelopes=2)

    async def scenario() -> None:
        alice, bob = await _pair(relay)
        await bob.disconnect()
        statuses = [(await alice.send(bob.device_id, b"x"))[0].status for _ in range(3)]
        assert statuses == [Status.OK, Status.OK, Status.MAILBOX_FULL]
        assert (await bob.reconnect()).status == Status.OK
        first, second = await bob.next_push(), await bob.next_push()
        await bob.ack(first, second)
        await alice.disconnect()
        await bob.disconnect()

    run(scenario())


def test_revoked_device_is_refused_with_a_reason_and_its_mailbox_deleted(start_relay: RelayFactory) -> None:
    """Test that revoking a device empties its mailbox and refuses its next connection, closing it."""
    relay = start_relay()

    async def scenario() -> None:
        alice, bob = await _pair(relay)
        await bob.disconnect()
        await alice.send(bob.device_id, b"waiting")
        revoked = admin(relay.data_dir, "device", "revoke", str(bob.device_id))
        assert revoked.returncode == 0, revoked.stderr
        assert "queued_envelopes\t0" in admin(relay.data_dir, "stats").stdout
        await bob.connect()
        response = await bob.authenticate()
        assert response.status == Status.REVOKED and "revoked" in response.reason
        await asyncio.wait_for(bob._reader, 10)  # type: ignore[arg-type]
        assert bob.closing is not None and bob.closing.status == Status.REVOKED
        assert (await alice.send(bob.device_id, b"to nobody"))[0].status == Status.NOT_FOUND
        assert (await alice.send(bob.device_id + 1000, b"to no device"))[0].status == Status.NOT_FOUND
        await alice.disconnect()
        await bob.disconnect()

    run(scenario())


def test_a_device_revoked_or_disabled_while_connected_can_send_no_more(start_relay: RelayFactory) -> None:
    """Test that a device still connected when it is revoked, or its account disabled, gets its next
    SEND refused (the reason given, the connection closed, nothing queued) instead of sending on
    until it reconnects."""
    relay = start_relay()

    async def scenario() -> None:
        alice, bob = await _pair(relay)
        carol = await TestDevice(relay).join(new_account(relay.data_dir, "u.carol"))
        assert (await alice.send(bob.device_id, b"before"))[0].status == Status.OK
        assert admin(relay.data_dir, "device", "revoke", str(alice.device_id)).returncode == 0
        response, _ = await alice.send(bob.device_id, b"after the revocation")
        assert response.status == Status.REVOKED and "revoked" in response.reason
        await asyncio.wait_for(alice._reader, 10)  # type: ignore[arg-type]
        assert alice.closing is not None and alice.closing.status == Status.REVOKED

        assert admin(relay.data_dir, "account", "disable", "u.carol").returncode == 0
        response, _ = await carol.send(bob.device_id, b"from a disabled account")
        assert response.status == Status.ACCOUNT_DISABLED
        assert (await bob.next_push()).sealed == b"before"
        with pytest.raises(asyncio.TimeoutError):
            await bob.next_push(timeout=1)
        for device in (alice, bob, carol):
            await device.disconnect()

    run(scenario())


def test_acknowledged_envelopes_survive_sigkill(start_relay: RelayFactory, tmp_path: Path) -> None:
    """Test that every envelope the relay answered OK to is delivered after a SIGKILL mid-stream."""
    relay = start_relay()

    async def scenario() -> None:
        alice, bob = await _pair(relay)
        await bob.disconnect()
        stored = []
        thirty_stored = asyncio.Event()

        async def stream() -> None:
            for i in range(10_000):
                response, envelope = await alice.send(bob.device_id, f"message {i}".encode())
                if response.status == Status.OK:
                    stored.append(envelope)
                    if len(stored) == 30:
                        thirty_stored.set()

        sender = asyncio.create_task(stream())
        waiting = asyncio.create_task(thirty_stored.wait())
        await asyncio.wait({sender, waiting}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        assert thirty_stored.is_set(), f"the relay stored {len(stored)} envelopes in 60 s, not 30"
        relay.kill()
        with pytest.raises((ConnectionError, asyncio.TimeoutError, aiohttp.ClientError)):
            await sender
        assert len(stored) >= 30
        restarted = RelayProcess(relay.data_dir).start()
        try:
            bob.relay = restarted
            await bob.connect()
            assert (await bob.authenticate()).status == Status.OK
            received = [await bob.next_push() for _ in stored]
            assert received[: len(stored)] == stored
            await bob.disconnect()
        finally:
            restarted.stop()
        await alice.disconnect()

    run(scenario())


def test_attachments_need_a_token_respect_the_limit_and_expire_unknown_ids(start_relay: RelayFactory) -> None:
    """Test upload with the device's token, download by id, and refusals without token, too large, unknown."""
    relay = start_relay(attachment_max_bytes=4096)

    async def scenario() -> None:
        alice, bob = await _pair(relay)
        context = relay.ssl_context()
        headers = {"Authorization": "Enclave-Upload " + alice.upload_token.hex()}
        async with aiohttp.ClientSession() as http:
            blob = random(3000)
            async with http.post(
                f"{relay.https}/v1/attachments", data=blob, headers=headers, ssl=context
            ) as r:
                assert r.status == 201
                attachment_id = (await r.json())["attachment_id"]
            async with http.get(f"{relay.https}/v1/attachments/{attachment_id}", ssl=context) as r:
                assert r.status == 200 and await r.read() == blob
            async with http.post(f"{relay.https}/v1/attachments", data=blob, ssl=context) as r:
                assert r.status == 401
            forged = {"Authorization": "Enclave-Upload " + bytes(44).hex()}
            async with http.post(
                f"{relay.https}/v1/attachments", data=blob, headers=forged, ssl=context
            ) as r:
                assert r.status == 401
            async with http.post(
                f"{relay.https}/v1/attachments", data=random(5000), headers=headers, ssl=context
            ) as r:
                assert r.status == 413
            async with http.get(f"{relay.https}/v1/attachments/{'A' * 32}", ssl=context) as r:
                assert r.status == 404
            async with http.get(f"{relay.https}/health", ssl=context) as r:
                assert (await r.json()) == {"status": "ok"}
        await alice.disconnect()
        await bob.disconnect()

    run(scenario())


def test_a_device_uploads_no_more_than_its_hourly_share_and_others_still_upload(
    start_relay: RelayFactory,
) -> None:
    """Test that uploads past a device's attachment_bytes_per_hour are 429 with the reason, whether
    the body's length is declared or streamed (charged once read), and that another device's
    uploads go on."""
    relay = start_relay(attachment_max_bytes=4096, attachment_bytes_per_hour=10_000)

    async def streamed(blob: bytes) -> AsyncIterator[bytes]:
        yield blob

    async def scenario() -> None:
        alice, bob = await _pair(relay)
        context = relay.ssl_context()
        url = f"{relay.https}/v1/attachments"

        async def upload(
            device: TestDevice, body: bytes | AsyncIterator[bytes]
        ) -> tuple[int, dict[str, object]]:
            headers = {"Authorization": "Enclave-Upload " + device.upload_token.hex()}
            async with http.post(url, data=body, headers=headers, ssl=context) as r:
                return r.status, await r.json(content_type=None)

        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                assert (await upload(alice, random(3000)))[0] == 201
            for body in (random(3000), streamed(random(3000))):
                status, answer = await upload(alice, body)
                assert status == 429 and "hourly share" in str(answer["error"])
            assert (await upload(alice, random(5000)))[0] == 413, "too large for anyone, not over a share"
            assert (await upload(bob, random(3000)))[0] == 201
        await alice.disconnect()
        await bob.disconnect()

    run(scenario())


def test_every_upload_lives_whole_days_whatever_it_asks_and_comes_back_whole(
    start_relay: RelayFactory,
) -> None:
    """Test that an upload's expiry is the last whole day within the retention even when it asks for
    less (so it tells no timer or send second), and that a blob of several chunks is streamed back
    byte for byte, with its length announced (HEAD too)."""
    relay = start_relay()
    blob = random(2 * ATTACHMENT_CHUNK_BYTES + 123)

    async def scenario() -> None:
        alice, bob = await _pair(relay)
        context = relay.ssl_context()
        token = {"Authorization": "Enclave-Upload " + alice.upload_token.hex()}
        url = f"{relay.https}/v1/attachments"
        async with aiohttp.ClientSession() as http:
            before = int(time.time())
            asked = {**token, "Enclave-Expires-At": str(before + 2)}
            async with http.post(url, data=blob, headers=asked, ssl=context) as r:
                answer = await r.json()
                assert r.status == 201
            after = int(time.time())
            expires_at = answer["expires_at"]
            assert expires_at % DAY == 0, "a whole day, not a second"
            assert expires_at in {relay_expiry(before, 30 * DAY), relay_expiry(after, 30 * DAY)}
            assert expires_at > before + 29 * DAY, "not the two seconds it asked for"
            attachment_id = answer["attachment_id"]
            async with http.head(f"{url}/{attachment_id}", ssl=context) as r:
                assert r.status == 200 and r.content_length == len(blob)
            async with http.get(f"{url}/{attachment_id}", ssl=context) as r:
                assert r.status == 200 and r.content_length == len(blob)
                assert await r.read() == blob
        await alice.disconnect()
        await bob.disconnect()

    run(scenario())


def test_an_upload_is_spooled_to_disk_while_it_arrives(start_relay: RelayFactory) -> None:
    """Test that the bytes of an upload still arriving are in a spool file in the data folder (open,
    already unlinked), not gathered in memory, and that the spool is gone once it is stored."""
    relay = start_relay()
    first = random(3 * SPOOL_WRITE_BYTES)
    paused, resume = asyncio.Event(), asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield first
        paused.set()
        await resume.wait()
        yield b"the end"

    def spooled() -> list[int]:
        """Sizes of the relay's open files that were in its data folder and are unlinked."""
        assert relay.process is not None
        sizes = []
        for fd in Path(f"/proc/{relay.process.pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith(str(relay.data_dir)) and target.endswith("(deleted)"):
                sizes.append(os.stat(fd).st_size)
        return sizes

    async def scenario() -> None:
        alice, bob = await _pair(relay)
        token = {"Authorization": "Enclave-Upload " + alice.upload_token.hex()}
        async with aiohttp.ClientSession() as http:
            upload = asyncio.create_task(
                http.post(
                    f"{relay.https}/v1/attachments", data=body(), headers=token, ssl=relay.ssl_context()
                )
            )
            await paused.wait()

            async def on_disk() -> bool:
                return any(size >= len(first) - SPOOL_WRITE_BYTES for size in spooled())

            await eventually(on_disk, "the arrived bytes are in the spool file")
            resume.set()
            async with await upload as r:
                assert r.status == 201
            assert spooled() == [], "the spool went with the request"
        await alice.disconnect()
        await bob.disconnect()

    run(scenario())


def test_directory_lookup_finds_colleagues_but_refuses_bulk_queries(start_relay: RelayFactory) -> None:
    """Test that a look-up finds a colleague by name, and a one-letter query is refused."""
    relay = start_relay()

    async def scenario() -> None:
        alice, bob = await _pair(relay)
        new_account(relay.data_dir, "k.kim", "Ким Минсу")
        found = await alice.request(FrameType.DIRECTORY_LOOKUP, DirectoryLookup("ким").encode())
        assert found.status == Status.OK
        (entry,) = DirectoryResults.parse(found.body).entries
        assert (entry.account_id, entry.display_name) == ("k.kim", "Ким Минсу")
        too_short = await alice.request(FrameType.DIRECTORY_LOOKUP, DirectoryLookup("k").encode())
        assert too_short.status == Status.BAD_REQUEST
        await alice.disconnect()
        await bob.disconnect()

    run(scenario())


def test_device_is_told_when_its_prekeys_run_low(start_relay: RelayFactory) -> None:
    """Test that fetching a bundle that leaves few one-time prekeys sends their owner a notice."""
    relay = start_relay(prekeys_low_threshold=10)

    async def scenario() -> None:
        alice, bob = await _pair(relay)
        await alice.request(FrameType.FETCH_BUNDLES, FetchBundles(bob.account_id).encode())
        seen = []
        while (NoticeKind.PREKEYS_LOW, 4) not in seen:
            notice = await asyncio.wait_for(bob.notices.get(), 10)
            seen.append((notice.kind, notice.value))
        await alice.disconnect()
        await bob.disconnect()

    run(scenario())


def test_one_device_takes_only_its_hourly_share_of_one_time_prekeys_and_holds_a_bounded_number(
    start_relay: RelayFactory,
) -> None:
    """Test that a device fetching a colleague's bundles again and again gets one-time prekeys only
    up to one_time_prekeys_per_hour, then bundles without one, while another device still gets
    one; and that an upload past one_time_prekeys_max_held is TOO_LARGE and stores nothing."""
    relay = start_relay(one_time_prekeys_per_hour=3, one_time_prekeys_max_held=8)

    async def one_time(fetcher: TestDevice, account_id: str) -> int:
        fetched = await fetcher.request(FrameType.FETCH_BUNDLES, FetchBundles(account_id).encode())
        assert fetched.status == Status.OK, fetched.reason
        (device,) = Bundles.parse(fetched.body).devices
        return PreKeyBundle.from_bytes(device.bundle).one_time_prekey_id

    async def upload(device: TestDevice, first_id: int, count: int) -> Response:
        keys = tuple(
            UploadedPreKey(first_id + n, IdentityKeyPair.generate(random).public) for n in range(count)
        )
        return await device.request(FrameType.UPLOAD_PREKEYS, UploadPreKeys(None, keys).encode())

    async def scenario() -> None:
        alice, bob = await _pair(relay)  # bob holds the 5 one-time prekeys he enrolled with
        carol = await TestDevice(relay).join(new_account(relay.data_dir, "u.carol", "Carol"))
        taken = [await one_time(alice, bob.account_id) for _ in range(5)]
        assert NO_ONE_TIME_PREKEY not in taken[:3] and len(set(taken[:3])) == 3
        assert taken[3:] == [NO_ONE_TIME_PREKEY, NO_ONE_TIME_PREKEY]
        assert await one_time(carol, bob.account_id) != NO_ONE_TIME_PREKEY

        held = await upload(bob, 1000, 7)  # 1 left + 7 = 8, the most the relay holds
        assert held.status == Status.OK and Count.parse(held.body).value == 8
        refused = await upload(bob, 2000, 1)
        assert refused.status == Status.TOO_LARGE and "at most 8 one-time prekeys" in refused.reason
        assert Count.parse((await upload(bob, 3000, 0)).body).value == 8
        for device in (alice, bob, carol):
            await device.disconnect()

    run(scenario())


def test_a_client_that_stops_mid_frame_does_not_stall_others(start_relay: RelayFactory) -> None:
    """Test that a TLS client sending half a WebSocket frame and going silent leaves others served."""
    relay = start_relay()

    async def scenario() -> None:
        alice, bob = await _pair(relay)
        context = ssl.create_default_context(cafile=str(relay.data_dir / "tls.crt"))
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port, ssl=context)
        writer.write(
            b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"\x82\xfe\x10\x00\x00\x00\x00\x00" + b"\x01\x03")
        await writer.drain()
        await _exchange_still_works(alice, bob)
        writer.close()
        await alice.disconnect()
        await bob.disconnect()

    run(scenario())


def test_frame_round_trip_sanity() -> None:
    """Test that a frame parses back to itself (the fuzz tests cover refusals)."""
    frame = Frame(FrameType.SEND, 7, b"body")
    assert Frame.parse(frame.encode()) == frame


def test_a_damaged_database_stops_the_relay_with_a_clear_message(tmp_path: Path) -> None:
    """Test that a relay.sqlite3 that is not a database stops start-up with a clear error, no traceback."""
    data = tmp_path / "relay"
    data.mkdir()
    (data / "relay.sqlite3").write_bytes(b"this is not a database" * 100)
    relay = RelayProcess(data)
    with pytest.raises(RuntimeError, match="cannot open the relay database") as raised:
        relay.start()
    assert "Traceback" not in str(raised.value)


def _copy_of(data_dir: Path, into: Path) -> Path:
    """A second relay's data folder as docs/ADMIN.md §6 says: the same config and key files."""
    into.mkdir()
    for name in ("server.toml", "tls.key", "tls.crt", UPLOAD_KEY_FILE, MAILBOX_KEY_FILE):
        shutil.copy2(data_dir / name, into / name)
    return into


def test_two_relays_on_one_postgres_push_across_processes(
    start_postgres_relay: RelayFactory, tmp_path: Path
) -> None:
    """Test that an envelope sent through one relay process reaches a device connected to another at once."""
    first = start_postgres_relay()
    second = start_postgres_relay(data_dir=_copy_of(first.data_dir, tmp_path / "second"))
    assert second.port != first.port

    async def scenario() -> None:
        alice = await TestDevice(first).join(new_account(first.data_dir, "x.alice"))
        bob = await TestDevice(second).join(new_account(first.data_dir, "x.bob"))
        await asyncio.wait_for(bob.notices.get(), 10)
        sent_at = time.monotonic()
        response, envelope = await alice.send(bob.device_id, b"across relays")
        assert response.status == Status.OK
        assert await bob.next_push(timeout=5) == envelope
        assert time.monotonic() - sent_at < 5
        await alice.disconnect()
        await bob.disconnect()

    run(scenario())
