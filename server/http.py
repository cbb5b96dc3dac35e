"""The relay's HTTPS side: the WebSocket endpoint, attachments and a health check.

Why aiohttp rather than ``websockets``: the relay needs plain HTTPS (attachment upload
with a streamed, size-capped body; download; a health check) and WebSockets on the same
TLS port, and aiohttp serves both from one application with one TLS context.
``websockets`` is only a WebSocket server. The access log is off: it would write an
address next to every request. aiohttp's own error lines are tamed by app/base/requestlog.py
(no address, no traceback for a client's fault, rate-limited).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import tempfile
from typing import BinaryIO

from aiohttp import HttpVersion11, hdrs, web
from aiohttp.typedefs import Handler

from app.base.ratelimit import HOUR_SECONDS, RateLimiter
from app.base.requestlog import tame_aiohttp_loggers
from app.crypto.merkle import encode_proof
from app.protocol.lifetime import relay_expiry
from server.config import PUBLISHED_CONFIG
from server.relay import Relay
from server.store.base import ATTACHMENT_CHUNK_BYTES, StoreError
from server.tokens import check_upload_token

ATTACHMENT_ID_BYTES = 24
ATTACHMENT_ID = re.compile(r"^[A-Za-z0-9_-]{32}$")
UPLOAD_SCHEME = "Enclave-Upload "
DELIVER_SCHEME = "Enclave-Deliver "
DELIVER_CREDENTIAL = re.compile(r"([0-9]{1,10})\.([0-9a-f]{32})")
"""``<recipient device id>.<its delivery key, 32 lowercase hex digits>``."""
SPOOL_WRITE_BYTES = 1024 * 1024
"""An upload reaches its spool file in writes of about this much, each off the event loop."""
log = logging.getLogger(__name__)
RELAY_KEY: web.AppKey[Relay] = web.AppKey("relay", Relay)
UPLOAD_BUDGET_KEY: web.AppKey[RateLimiter] = web.AppKey("upload budget", RateLimiter)
UPLOAD_BUDGET_SPENT = (
    "the hourly share of attachments (this device's, or the recipient mailbox's) is spent; try again later"
)
SIGNATURE_SUFFIX = ".sig"


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def websocket(request: web.Request) -> web.StreamResponse:
    return await request.app[RELAY_KEY].handle_websocket(request)


async def unidentified_websocket(request: web.Request) -> web.StreamResponse:
    return await request.app[RELAY_KEY].handle_unidentified_websocket(request)


async def _spool_body(request: web.Request, limit: int, spool: BinaryIO) -> int | web.Response:
    """Write the upload's body to ``spool``; its size, or the error response: too large, empty, or
    not decodable. At most ``SPOOL_WRITE_BYTES`` of it is in memory at a time."""
    if request.content_length is not None and request.content_length > limit:
        return _error(413, f"attachments are limited to {limit} bytes")
    pending, size = bytearray(), 0
    try:
        async for chunk in request.content.iter_chunked(ATTACHMENT_CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                return _error(413, f"attachments are limited to {limit} bytes")
            pending += chunk
            if len(pending) >= SPOOL_WRITE_BYTES:
                await asyncio.to_thread(spool.write, bytes(pending))
                pending.clear()
    except web.RequestPayloadError:
        # aiohttp could not decode the body: a Content-Encoding it does not match, or a
        # broken chunked encoding. The client's fault, not ours.
        return _error(400, "the request body could not be read (is its Content-Encoding right?)")
    if size == 0:
        return _error(400, "the attachment is empty")
    await asyncio.to_thread(spool.write, bytes(pending))
    return size


def _uploader(request: web.Request, relay: Relay) -> int | None:
    """The device whose valid upload token the request carries (one authenticated lately), or None."""
    header = request.headers.get("Authorization", "")
    try:
        token = (
            binascii.unhexlify(header.removeprefix(UPLOAD_SCHEME))
            if header.startswith(UPLOAD_SCHEME)
            else b""
        )
    except ValueError:  # binascii.Error for bad hex, ValueError for text that is not ASCII
        token = b""
    return check_upload_token(relay.keys.upload_token_key, token, relay.now())


async def _charged_to(request: web.Request, relay: Relay) -> tuple[str, int] | web.Response:
    """Whose hourly upload share an upload is charged to, or the error response: 401 if it may not
    upload at all, 503 if the delivery key could not be checked.

    ``Enclave-Upload <token>`` names the uploading device: ``("device", its id)``.
    ``Enclave-Deliver <device>.<key>`` shows the delivery key of the device the file is for, as
    a DELIVER does, and names nobody: ``("mailbox", that device)``, the share of every contact
    writing to it together. A wrong key and an unknown device are the same 401.
    """
    refused = _error(401, "a valid upload token or delivery key is required")
    header = request.headers.get("Authorization", "")
    if not header.startswith(DELIVER_SCHEME):
        uploader = _uploader(request, relay)
        return refused if uploader is None else ("device", uploader)
    credential = DELIVER_CREDENTIAL.fullmatch(header.removeprefix(DELIVER_SCHEME))
    if credential is None:
        return refused
    device_id, key = int(credential[1]), bytes.fromhex(credential[2])
    try:
        taken = await relay.takes_delivery_key(device_id, key)
    except StoreError:
        log.warning("an upload's delivery key could not be checked", exc_info=True)
        return _error(503, "the relay could not check the upload; try again later")
    return ("mailbox", device_id) if taken else refused


def _authorised(request: web.Request, relay: Relay) -> bool:
    return _uploader(request, relay) is not None


async def published_config(request: web.Request) -> web.Response:
    """The organisation config published on this relay (``enclave-admin publish``), or its
    signature: for devices only (an upload token), since it names the organisation's
    services and policy. The relay cannot change it unseen: devices check the root's signature."""
    relay = request.app[RELAY_KEY]
    if not _authorised(request, relay):
        return _error(401, "a valid upload token is required")
    name = PUBLISHED_CONFIG + (SIGNATURE_SUFFIX if request.path.endswith(SIGNATURE_SUFFIX) else "")
    try:
        data = (relay.config.data_dir / name).read_bytes()
    except FileNotFoundError:
        return _error(404, "no organisation config is published on this relay")
    return web.Response(body=data, content_type="application/octet-stream")


LOG_NUMBER = re.compile(r"0|[1-9][0-9]{0,18}")
MAX_LOG_ENTRIES = 1000
"""Entries in one answer of ``GET /v1/log/entries``: at most about 17 MB, in practice 250 KB."""


def _log_numbers(request: web.Request, names: tuple[str, str]) -> tuple[int, int] | web.Response:
    """Two query parameters as decimal numbers below 2^63, or the 400 that says which is not."""
    values = []
    for name in names:
        untrusted_value = request.query.get(name, "")
        if LOG_NUMBER.fullmatch(untrusted_value) is None or int(untrusted_value) >= 1 << 63:
            return _error(400, f"{name} must be a decimal number below 2^63, without leading zeros")
        values.append(int(untrusted_value))
    return values[0], values[1]


async def log_head(request: web.Request) -> web.Response:
    """The key log's newest signed head (docs/PROTOCOL.md, "Key log"); for devices only, as is all
    of the log: it lists the organisation's accounts and devices."""
    relay = request.app[RELAY_KEY]
    if not _authorised(request, relay):
        return _error(401, "a valid upload token is required")
    return web.Response(body=await relay.key_log.head(), content_type="text/plain", charset="utf-8")


async def log_entries(request: web.Request) -> web.Response:
    """Leaves ``start`` to ``start + count - 1`` of the key log, each as ``var16`` bytes, fewer past
    its end; ``count`` at most ``MAX_LOG_ENTRIES``."""
    relay = request.app[RELAY_KEY]
    if not _authorised(request, relay):
        return _error(401, "a valid upload token is required")
    numbers = _log_numbers(request, ("start", "count"))
    if isinstance(numbers, web.Response):
        return numbers
    start, count = numbers
    if not 1 <= count <= MAX_LOG_ENTRIES:
        return _error(400, f"count must be 1 to {MAX_LOG_ENTRIES}")
    entries = await relay.key_log.entries(start, count)
    body = b"".join(len(e).to_bytes(2, "big") + e for e in entries)
    return web.Response(body=body, content_type="application/octet-stream")


async def log_consistency(request: web.Request) -> web.Response:
    """RFC 9162's consistency proof from ``old`` to ``new`` leaves, as ``u8 count || hashes``."""
    relay = request.app[RELAY_KEY]
    if not _authorised(request, relay):
        return _error(401, "a valid upload token is required")
    numbers = _log_numbers(request, ("old", "new"))
    if isinstance(numbers, web.Response):
        return numbers
    proof = await relay.key_log.consistency(*numbers)
    if proof is None:
        return _error(400, "old and new must be sizes the log has had, 0 < old <= new")
    return web.Response(body=encode_proof(proof), content_type="application/octet-stream")


async def upload_attachment(request: web.Request) -> web.Response:
    """Store an upload within its hourly budget (``attachment_bytes_per_hour`` per uploading device,
    or per recipient mailbox for one shown a delivery key; charged once the body is read, or
    refused from its Content-Length before): 429 past it.

    The body goes to a spool file in the data folder (unlinked from the start, so nothing is left
    of it by name if the relay dies), then into the database in chunks; it is never whole in
    memory. Every upload lives the same time, ending on a whole day (``relay_expiry``), so its
    expiry tells neither the second it came nor the timer of the message that points at it.
    """
    relay = request.app[RELAY_KEY]
    uploader = await _charged_to(request, relay)
    if isinstance(uploader, web.Response):
        return uploader
    budget, declared = request.app[UPLOAD_BUDGET_KEY], request.content_length
    if (
        declared is not None
        and declared <= relay.config.attachment_max_bytes
        and not budget.holds(uploader, declared)
    ):
        return _error(429, UPLOAD_BUDGET_SPENT)  # one too large for anyone is _spool_body's 413
    with tempfile.TemporaryFile(dir=relay.config.data_dir) as spool:
        size = await _spool_body(request, relay.config.attachment_max_bytes, spool)
        if isinstance(size, web.Response):
            return size
        if not budget.allow(uploader, cost=size):
            return _error(429, UPLOAD_BUDGET_SPENT)
        attachment_id = base64.urlsafe_b64encode(relay.random(ATTACHMENT_ID_BYTES)).decode("ascii")
        expires_at = relay_expiry(relay.now(), relay.config.attachment_retention_seconds)
        try:
            await relay.store.put_attachment(attachment_id, spool, expires_at)
        except StoreError:
            log.warning("an upload could not be stored", exc_info=True)
            return _error(503, "the relay could not store the attachment; try again later")
    return web.json_response({"attachment_id": attachment_id, "expires_at": expires_at}, status=201)


async def download_attachment(request: web.Request) -> web.StreamResponse:
    """The blob, streamed a chunk at a time as the database gives it; a download that outlives the
    attachment (it expired meanwhile) is cut off, short of its Content-Length."""
    relay = request.app[RELAY_KEY]
    attachment_id = request.match_info["attachment_id"]
    if not ATTACHMENT_ID.match(attachment_id):
        return _error(404, "no such attachment")
    stored = await relay.store.get_attachment(attachment_id, relay.now())
    if stored is None:
        return _error(404, "no such attachment, or it expired")
    response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "application/octet-stream"})
    response.content_length = stored.size
    await response.prepare(request)
    if request.method == hdrs.METH_HEAD:
        return response
    try:
        async for chunk in stored.chunks:
            await response.write(chunk)
    except StoreError:
        # It expired (or the database failed) mid-way: cut the connection, so that the client
        # sees a body short of its Content-Length rather than one that looks whole.
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


SURROGATES = re.compile("[\ud800-\udfff]")
"""How aiohttp hands on header bytes that are not UTF-8."""


@web.middleware
async def refuse_undecodable_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request with a header value that is not UTF-8 is a 400, before any handler sees it.

    aiohttp quotes some headers into the text of its own error answers (the WebSocket
    handshake's Upgrade, Connection and Sec-WebSocket-Version), and a surrogate there
    fails to encode: a 500 and a traceback for one header line anyone can send. No
    header the relay reads carries anything but ASCII.
    """
    if any(SURROGATES.search(value) for value in request.headers.values()):
        return _error(400, "a header value is not UTF-8")
    return await handler(request)


async def expect(request: web.Request) -> None:
    """``Expect`` as aiohttp answers it, without quoting the value back.

    aiohttp's own handler puts an unknown value in the text of its 417; a value that is
    not UTF-8 (aiohttp hands it on with surrogates) then fails to encode: a 500 and a
    traceback for one header line anyone can send. It runs before any middleware (so
    ``refuse_undecodable_headers`` is too late for it), and for unrouted paths too, so
    every route here, the catch-all included, names this one.
    """
    if request.version != HttpVersion11:
        return
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        raise web.HTTPExpectationFailed(text="the only Expect understood is 100-continue")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the body has not started (as aiohttp's handler does)


async def _wrong_method(request: web.Request) -> web.StreamResponse:
    resource = request.match_info.route.resource
    allowed = {route.method for route in resource or () if route.method != hdrs.METH_ANY}
    raise web.HTTPMethodNotAllowed(request.method, allowed)


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound()


ROUTES = (
    ("GET", "/health", health),
    ("GET", "/v1/ws", websocket),
    ("GET", "/v1/deliver", unidentified_websocket),
    ("POST", "/v1/attachments", upload_attachment),
    ("GET", "/v1/attachments/{attachment_id}", download_attachment),
    ("GET", "/v1/config", published_config),
    ("GET", "/v1/config" + SIGNATURE_SUFFIX, published_config),
    ("GET", "/v1/log/head", log_head),
    ("GET", "/v1/log/entries", log_entries),
    ("GET", "/v1/log/consistency", log_consistency),
)


def make_app(relay: Relay) -> web.Application:
    tame_aiohttp_loggers()
    app = web.Application(
        client_max_size=relay.config.attachment_max_bytes + 1024, middlewares=[refuse_undecodable_headers]
    )
    app[RELAY_KEY] = relay
    app[UPLOAD_BUDGET_KEY] = RateLimiter(
        relay.config.attachment_bytes_per_hour, relay.clock, window_seconds=HOUR_SECONDS
    )
    for method, path, handler in ROUTES:
        resource = app.router.add_resource(path)
        for allowed in (method, "HEAD") if method == "GET" else (method,):
            resource.add_route(allowed, handler, expect_handler=expect)
        resource.add_route(hdrs.METH_ANY, _wrong_method, expect_handler=expect)
    app.router.add_route(hdrs.METH_ANY, "/{path:.*}", _not_found, expect_handler=expect)
    return app
