"""The unidentified path: envelopes handed to the relay by a connection that says nobody sent them.

``/v1/deliver`` is a WebSocket with no challenge and no authentication. Its one request is
``DELIVER``: a recipient device, that device's delivery key and the envelope. The relay keeps
only the SHA-256 of each device's key (``SET_DELIVERY_KEY`` on the device's own connection) and
stores the envelope if the key hashes to it; the device shares the key with its contacts inside
the encryption (app/crypto/sealed.py), so showing it proves "a contact of this device", never
which one. What a ``SEND`` on an authenticated connection tells the relay (this device wrote to
that one, now) a ``DELIVER`` does not.

Why an access key and not anonymous tokens (blind signatures, Privacy Pass): neither PyNaCl nor
``cryptography`` offers a blind signature, and we write no such primitive by hand. An access key
bounds abuse by what its holders, the recipient's contacts, may send together
(``deliveries_per_key_per_minute``, and the mailbox quota); a token would bound each sender, but
is not needed for that here: every holder of a key is an enrolled colleague the recipient heard
from. What the relay still sees is in docs/PROTOCOL.md section 14: the connection's network
address and times, and the recipient mailbox.

Bad input is handled as on the authenticated path: a frame that does not parse closes this
connection with ``CLOSING``; a wrong key, an unknown device and a revoked one all get the same
``UNAUTHENTICATED`` answer (the key's holder is told nothing it could not know), and the
connection serves the next request. Nothing here logs but a store failure.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from app.base.errors import RemoteProtocolError
from app.protocol.frames import Closing, Deliver, Frame, FrameType, Response, Status
from server.store.base import StoreError

if TYPE_CHECKING:
    from server.relay import Relay

log = logging.getLogger(__name__)

NO_SUCH_KEY = "no mailbox takes this delivery key"


class UnidentifiedConnection:
    """One ``/v1/deliver`` WebSocket: requests answered in order, no device behind it."""

    def __init__(self, relay: Relay, ws: web.WebSocketResponse) -> None:
        self.relay = relay
        self.ws = ws

    async def send(self, frame_type: FrameType, request_id: int, body: bytes) -> None:
        await self.ws.send_bytes(Frame(frame_type, request_id, body).encode())

    async def run(self) -> None:
        while True:
            message = await self.ws.receive()
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            if message.type != WSMsgType.BINARY:
                await self._close(Status.BAD_REQUEST, "frames must be binary")
                return
            try:
                frame = Frame.parse(message.data)
            except RemoteProtocolError as e:
                await self._close(Status.BAD_REQUEST, str(e))
                return
            response = await self.answer(frame)
            if not self.ws.closed:
                await self.send(FrameType.RESPONSE, frame.request_id, response.encode())

    async def _close(self, status: Status, reason: str) -> None:
        await self.send(FrameType.CLOSING, 0, Closing(status, reason).encode())
        await self.ws.close()

    async def answer(self, frame: Frame) -> Response:
        if frame.type != FrameType.DELIVER:
            return Response(
                Status.BAD_REQUEST, f"the unidentified path takes DELIVER only, not {frame.type.name}"
            )
        try:
            request = Deliver.parse(frame.body)
            return await self.on_deliver(request)
        except RemoteProtocolError as e:
            return Response(Status.BAD_REQUEST, str(e))
        except StoreError:
            log.exception("the store failed while answering a delivery")
            return Response(Status.INTERNAL_ERROR, "the relay could not complete the request; try again")

    async def on_deliver(self, request: Deliver) -> Response:
        if not await self.relay.takes_delivery_key(request.recipient_device, request.delivery_key):
            return Response(Status.UNAUTHENTICATED, NO_SUCH_KEY)
        if not self.relay.delivery_limiter.allow(request.recipient_device):
            return Response(Status.RATE_LIMITED, "this mailbox takes no more envelopes this minute")
        return await self.relay.store_envelope(request.recipient_device, request.envelope)
