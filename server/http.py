"""The relay's HTTPS side: the WebSocket endpoint, attachments and a health check.

Why aiohttp rather than ``websockets``: the relay needs plain HTTPS (attachment upload
with a streamed, size-capped body; download; a health check) and WebSockets on the same
TLS port, and aiohttp serves both from one application with one TLS context.
``websockets`` is only a WebSocket server. The access log is off: it would write an
address next to every request. aiohttp's own error lines are tamed by app/base/requestlog.py
(no address, no traceback for a client's fault, rate-limited).
"""

from __future__ import annotations

import base64
import binascii
import re

from aiohttp import HttpVersion11, hdrs, web
from aiohttp.typedefs import Handler

from app.base.ratelimit import HOUR_SECONDS, RateLimiter
from app.base.requestlog import tame_aiohttp_loggers
from app.crypto.merkle import encode_proof
from server.config import PUBLISHED_CONFIG
from server.relay import Relay
from server.tokens import check_upload_token

ATTACHMENT_ID_BYTES = 24
ATTACHMENT_ID = re.compile(r"^[A-Za-z0-9_-]{32}$")
UPLOAD_SCHEME = "Enclave-Upload "
EXPIRES_HEADER = "Enclave-Expires-At"
CHUNK_BYTES = 64 * 1024
MAX_EXPIRY_DIGITS = 12
"""A Unix time in seconds has 10 digits until the year 2286; 12 leave room and bound ``int()``."""
EXPIRY_DIGITS = re.compile(rf"[0-9]{{1,{MAX_EXPIRY_DIGITS}}}")
RELAY_KEY: web.AppKey[Relay] = web.AppKey("relay", Relay)
UPLOAD_BUDGET_KEY: web.AppKey[RateLimiter] = web.AppKey("upload budget", RateLimiter)
UPLOAD_BUDGET_SPENT = "this device has uploaded its hourly share of attachments; try again later"
SIGNATURE_SUFFIX = ".sig"


class BadExpiry(ValueError):
    """``Enclave-Expires-At`` is not a Unix time in the future; the message says why."""


def _requested_expiry(request: web.Request, now: int) -> int | None:
    """The sender's ``Enclave-Expires-At`` (a disappearing message's end), None if absent.

    Only ASCII digits count (``str.isdigit`` also takes "²" and Arabic-Indic digits), and
    at most ``MAX_EXPIRY_DIGITS`` of them, so ``int()`` never sees a huge number.
    """
    untrusted_value = request.headers.get(EXPIRES_HEADER)
    if untrusted_value is None:
        return None
    if EXPIRY_DIGITS.fullmatch(untrusted_value) is None:
        raise BadExpiry(f"{EXPIRES_HEADER} must be a Unix time: 1 to {MAX_EXPIRY_DIGITS} ASCII digits")
    value = int(untrusted_value)
    if value <= now:
        raise BadExpiry(f"{EXPIRES_HEADER} must be a Unix time in the future")
    return value


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def websocket(request: web.Request) -> web.StreamResponse:
    return await request.app[RELAY_KEY].handle_websocket(request)


async def unidentified_websocket(request: web.Request) -> web.StreamResponse:
    return await request.app[RELAY_KEY].handle_unidentified_websocket(request)


async def _read_body(request: web.Request, limit: int) -> bytes | web.Response:
    """The upload's body, or the error response: too large, empty, or not decodable."""
    if request.content_length is not None and request.content_length > limit:
        return _error(413, f"attachments are limited to {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                return _error(413, f"attachments are limited to {limit} bytes")
            chunks.append(chunk)
    except web.RequestPayloadError:
        # aiohttp could not decode the body: a Content-Encoding it does not match, or a
        # broken chunked encoding. The client's fault, not ours.
        return _error(400, "the request body could not be read (is its Content-Encoding right?)")
    if size == 0:
        return _error(400, "the attachment is empty")
    return b"".join(chunks)


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
    """Store an upload within the device's hourly budget (``attachment_bytes_per_hour``, charged
    once the body is read, or refused from its Content-Length before): 429 past it."""
    relay = request.app[RELAY_KEY]
    uploader = _uploader(request, relay)
    if uploader is None:
        return _error(401, "a valid upload token is required")
    try:
        wanted = _requested_expiry(request, relay.now())
    except BadExpiry as e:
        return _error(400, str(e))
    budget, declared = request.app[UPLOAD_BUDGET_KEY], request.content_length
    if (
        declared is not None
        and declared <= relay.config.attachment_max_bytes
        and not budget.holds(uploader, declared)
    ):
        return _error(429, UPLOAD_BUDGET_SPENT)  # one too large for anyone is _read_body's 413
    blob = await _read_body(request, relay.config.attachment_max_bytes)
    if isinstance(blob, web.Response):
        return blob
    if not budget.allow(uploader, cost=len(blob)):
        return _error(429, UPLOAD_BUDGET_SPENT)
    attachment_id = base64.urlsafe_b64encode(relay.random(ATTACHMENT_ID_BYTES)).decode("ascii")
    expires_at = relay.now() + relay.config.attachment_retention_seconds
    if wanted is not None:
        expires_at = min(expires_at, wanted)
    await relay.store.put_attachment(attachment_id, blob, expires_at)
    return web.json_response({"attachment_id": attachment_id, "expires_at": expires_at}, status=201)


async def download_attachment(request: web.Request) -> web.Response:
    relay = request.app[RELAY_KEY]
    attachment_id = request.match_info["attachment_id"]
    if not ATTACHMENT_ID.match(attachment_id):
        return _error(404, "no such attachment")
    blob = await relay.store.get_attachment(attachment_id, relay.now())
    if blob is None:
        return _error(404, "no such attachment, or it expired")
    return web.Response(body=blob, content_type="application/octet-stream")


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
