"""The authority's HTTP face: ``POST /v1/certify`` and ``POST /v1/renew``, nothing else.

Each takes a binary body (app/protocol/authority.py) of at most its format's size and
answers 200 with a device certificate's bytes, or a status and a one-line text reason
(``authority.service``'s refusals; 413 for a body too large, 429 when the address has
used its attempts for the minute). As the relay does, it writes no line per request and
no address: the access log is off, aiohttp's error lines pass through
app/base/requestlog.py, and the per-address counts live only in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from app.base.ratelimit import RateLimiter
from app.base.requestlog import tame_aiohttp_loggers
from app.protocol.authority import MAX_CERTIFY_BYTES, MAX_RENEW_BYTES
from authority.service import Authority, Refusal

OCTETS = "application/octet-stream"


def make_app(authority: Authority, *, attempts_per_minute: int) -> web.Application:
    tame_aiohttp_loggers()
    limiter = RateLimiter(attempts_per_minute, time.monotonic)

    def endpoint(limit: int, grant: Callable[[Authority, bytes], bytes]) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not limiter.allow(request.remote or ""):
                return web.Response(status=429, text="too many requests from this address; wait a minute")
            if request.content_length is not None and request.content_length > limit:
                return web.Response(status=413, text=f"the body exceeds {limit} bytes")
            untrusted_body = await request.content.read(limit + 1)
            if len(untrusted_body) > limit:
                return web.Response(status=413, text=f"the body exceeds {limit} bytes")
            try:
                certificate = grant(authority, untrusted_body)
            except Refusal as e:
                return web.Response(status=e.status, text=str(e))
            return web.Response(body=certificate, content_type=OCTETS)

        return handle

    app = web.Application(client_max_size=max(MAX_CERTIFY_BYTES, MAX_RENEW_BYTES))
    app.router.add_post("/v1/certify", endpoint(MAX_CERTIFY_BYTES, Authority.certify))
    app.router.add_post("/v1/renew", endpoint(MAX_RENEW_BYTES, Authority.renew))
    return app
