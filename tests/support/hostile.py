"""A TLS server of the test's own on loopback, answering as a hostile or broken peer would (a
relay that sends too much, an authority whose refusals hold terminal escapes): not a mock of
anything, a real HTTPS server whose answers the test writes.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from app.base.tlsfiles import load_or_create_tls


@dataclass(frozen=True, slots=True)
class HostileServer:
    url: str
    pin: str
    certificate_der: bytes


@contextlib.asynccontextmanager
async def hostile_https(folder: Path, routes: list[tuple[str, str, Handler]]) -> AsyncIterator[HostileServer]:
    """Serve ``routes`` (method, path, handler) over TLS with a key made in ``folder``, while the
    context lasts."""
    tls = load_or_create_tls(folder, "127.0.0.1", "hostile peer")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert_path, tls.key_path)
    app = web.Application()
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        await web.SockSite(runner, listening, ssl_context=context).start()
        der = ssl.PEM_cert_to_DER_cert(tls.cert_path.read_text(encoding="ascii"))
        try:
            yield HostileServer(f"https://127.0.0.1:{listening.getsockname()[1]}", tls.pin, der)
        finally:
            await runner.cleanup()
