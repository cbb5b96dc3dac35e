"""The unidentified path (``/v1/deliver``, server/unidentified.py) on the real relay, both backends:
an envelope is taken only with the recipient's delivery key, from a connection that never says who
it is; a wrong key, a stranger's frame or a flood harms nobody else."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from nacl.utils import random

from app.protocol.envelope import Envelope
from app.protocol.frames import (
    MAX_FRAME_BYTES,
    Closing,
    Deliver,
    Frame,
    FrameType,
    Response,
    SetDeliveryKey,
    Status,
    delivery_key_hash,
)
from app.protocol.lifetime import envelope_expiry
from tests.server.relays import RelayFactory, run
from tests.support.relay import REPLY_SECONDS, RelayProcess, TestDevice, admin, new_account


class Unidentified:
    """One socket of the unidentified path: no challenge comes, and it never authenticates."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_request = 0

    async def frame(self, frame_type: FrameType, body: bytes) -> Frame:
        self.next_request += 1
        await self.ws.send_bytes(Frame(frame_type, self.next_request, body).encode())
        return Frame.parse((await self.ws.receive(timeout=REPLY_SECONDS)).data)

    async def deliver(self, recipient: int, key: bytes, sealed: bytes) -> tuple[Response, Envelope]:
        envelope = Envelope.create(sealed=sealed, expires_at=envelope_expiry(time.time()), random=random)
        answer = await self.frame(FrameType.DELIVER, Deliver(recipient, key, envelope).encode())
        assert (answer.type, answer.request_id) == (FrameType.RESPONSE, self.next_request)
        return Response.parse(answer.body), envelope


@asynccontextmanager
async def unidentified(relay: RelayProcess) -> AsyncIterator[Unidentified]:
    async with aiohttp.ClientSession() as session:
        url = relay.url.replace("/v1/ws", "/v1/deliver")
        async with session.ws_connect(url, ssl=relay.ssl_context(), max_msg_size=MAX_FRAME_BYTES) as ws:
            yield Unidentified(ws)


async def _with_key(relay: RelayProcess, account: str) -> tuple[TestDevice, bytes]:
    device = await TestDevice(relay).join(new_account(relay.data_dir, account))
    key = random(16)
    response = await device.request(
        FrameType.SET_DELIVERY_KEY, SetDeliveryKey(delivery_key_hash(key)).encode()
    )
    assert response.status == Status.OK
    return device, key


def test_an_envelope_with_the_recipients_delivery_key_is_stored_and_pushed(start_relay: RelayFactory) -> None:
    """Test that a DELIVER with the key the recipient registered is stored and pushed as a SEND's would be,
    and that a wrong key and an unknown device get one answer, store nothing, and leave the socket serving."""
    relay = start_relay()

    async def scenario() -> None:
        bob, key = await _with_key(relay, "d.bob")
        async with unidentified(relay) as path:
            response, sent = await path.deliver(bob.device_id, key, b"from nobody in particular")
            assert response.status == Status.OK
            assert await bob.next_push() == sent
            refusals = [
                await path.deliver(bob.device_id, random(16), b"a guess"),
                await path.deliver(bob.device_id ^ 1, key, b"another mailbox"),
            ]
            assert {(r.status, r.reason) for r, _ in refusals} == {
                (Status.UNAUTHENTICATED, "no mailbox takes this delivery key")
            }
            response, again = await path.deliver(bob.device_id, key, b"still served")
            assert response.status == Status.OK
            assert await bob.next_push() == again
            assert bob.pushes.empty()
        await bob.disconnect()

    run(scenario())


def test_a_new_key_replaces_the_old_and_a_revoked_device_takes_none(start_relay: RelayFactory) -> None:
    """Test that after SET_DELIVERY_KEY the old key is refused and the new taken, and that once the device
    is revoked its key is refused too (the relay cut it off; no envelope waits for it)."""
    relay = start_relay()

    async def scenario() -> None:
        bob, old = await _with_key(relay, "k.bob")
        new = random(16)
        await bob.request(FrameType.SET_DELIVERY_KEY, SetDeliveryKey(delivery_key_hash(new)).encode())
        async with unidentified(relay) as path:
            assert (await path.deliver(bob.device_id, old, b"old key"))[0].status == Status.UNAUTHENTICATED
            assert (await path.deliver(bob.device_id, new, b"new key"))[0].status == Status.OK
            revoked = admin(relay.data_dir, "device", "revoke", str(bob.device_id))
            assert revoked.returncode == 0, revoked.stderr
            assert (await path.deliver(bob.device_id, new, b"after"))[0].status == Status.UNAUTHENTICATED
        await bob.disconnect()

    run(scenario())


def test_the_unidentified_path_takes_nothing_but_deliver_and_closes_on_a_broken_frame(
    start_relay: RelayFactory,
) -> None:
    """Test that no other request (not a SEND, not an AUTHENTICATE) is answered there but with BAD_REQUEST,
    that a frame that does not parse closes the socket with CLOSING, and that others are served meanwhile."""
    relay = start_relay()

    async def scenario() -> None:
        bob, key = await _with_key(relay, "b.bob")
        async with unidentified(relay) as path:
            for frame_type in (FrameType.SEND, FrameType.AUTHENTICATE, FrameType.SET_DELIVERY_KEY):
                answer = await path.frame(frame_type, b"")
                assert Response.parse(answer.body).status == Status.BAD_REQUEST
            await path.ws.send_bytes(b"\x01")
            closing = Frame.parse((await path.ws.receive(timeout=REPLY_SECONDS)).data)
            assert closing.type == FrameType.CLOSING
            assert Closing.parse(closing.body).status == Status.BAD_REQUEST
            assert (await path.ws.receive(timeout=REPLY_SECONDS)).type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
            )
        async with unidentified(relay) as other:
            assert (await other.deliver(bob.device_id, key, b"served"))[0].status == Status.OK
        await bob.disconnect()

    run(scenario())


def test_one_delivery_key_takes_at_most_its_share_a_minute(start_relay: RelayFactory) -> None:
    """Test that past ``deliveries_per_key_per_minute`` a key's envelopes are RATE_LIMITED, whoever sends
    them, and another device's key is still served."""
    relay = start_relay(deliveries_per_key_per_minute=3)

    async def scenario() -> None:
        bob, bobs = await _with_key(relay, "q.bob")
        carol, carols = await _with_key(relay, "q.carol")
        async with unidentified(relay) as one, unidentified(relay) as two:
            answers = [
                (await path.deliver(bob.device_id, bobs, b"x"))[0].status for path in (one, two, one, two)
            ]
            assert answers == [Status.OK, Status.OK, Status.OK, Status.RATE_LIMITED]
            assert (await one.deliver(carol.device_id, carols, b"y"))[0].status == Status.OK
        await bob.disconnect()
        await carol.disconnect()

    run(scenario())


def test_an_upload_for_a_device_shows_its_delivery_key_and_names_no_uploader(
    start_relay: RelayFactory,
) -> None:
    """Test that an upload authorised by the recipient's delivery key instead of an upload token is stored
    and downloadable; that a wrong key, an unknown device or a malformed credential get one 401; and that
    such uploads are charged to the recipient's mailbox, not to any uploader: past its hourly share they
    are 429 while the uploading device's own token still uploads."""
    relay = start_relay(attachment_max_bytes=4096, attachment_bytes_per_hour=8192)
    url = f"{relay.https}/v1/attachments"

    async def upload(
        http: aiohttp.ClientSession, authorization: str, blob: bytes
    ) -> tuple[int, dict[str, str]]:
        headers = {"Authorization": authorization}
        async with http.post(url, data=blob, headers=headers, ssl=relay.ssl_context()) as r:
            return r.status, await r.json(content_type=None)

    async def scenario() -> None:
        bob, key = await _with_key(relay, "u.bob")
        carol = await TestDevice(relay).join(new_account(relay.data_dir, "u.carol"))
        by_key = f"Enclave-Deliver {bob.device_id}.{key.hex()}"
        async with aiohttp.ClientSession() as http:
            blob = random(4000)
            status, answer = await upload(http, by_key, blob)
            assert status == 201
            async with http.get(f"{url}/{answer['attachment_id']}", ssl=relay.ssl_context()) as r:
                assert await r.read() == blob
            refusals = [
                await upload(http, f"Enclave-Deliver {bob.device_id}.{random(16).hex()}", b"x"),
                await upload(http, f"Enclave-Deliver {bob.device_id + 1}.{key.hex()}", b"x"),
                await upload(http, f"Enclave-Deliver {bob.device_id}.{key.hex().upper()}", b"x"),
                await upload(http, f"Enclave-Deliver {bob.device_id}:{key.hex()}", b"x"),
                await upload(http, "Enclave-Deliver ", b"x"),
            ]
            assert {status for status, _ in refusals} == {401}
            assert len({answer["error"] for _, answer in refusals}) == 1
            assert (await upload(http, by_key, random(4000)))[0] == 201
            status, answer = await upload(http, by_key, random(4000))
            assert status == 429 and "hourly share" in answer["error"], "the mailbox's share is spent"
            token = "Enclave-Upload " + carol.upload_token.hex()
            assert (await upload(http, token, random(4000)))[0] == 201, "a device's own share is apart"
        await bob.disconnect()
        await carol.disconnect()

    run(scenario())
