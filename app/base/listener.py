"""A server's listening sockets: bound first, serving only once the server is ready.

Shared by the relay and the enrolment authority (``authority/``), which may import
nothing of ``server/``. A server that cannot have its port must fail before it writes
anything: before it makes keys, prints a pin an admin might copy into a provisioning
config, or locks its data folder. So ``Listener.bind`` binds every address of the host (asyncio's
``create_server`` with ``start_serving=False``: bound, not yet accepting) and makes a
TLS context that has no certificate yet; ``serve`` loads the certificate into that
context and starts accepting, through app/base/guard.py (per-address cap, then TLS), with
the request handler the server made meanwhile. A port that is
taken or not allowed is ``ListenError``, one line naming host and port.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable
from pathlib import Path

from app.base.errors import EnclaveError
from app.base.guard import ConnectionGate


class ListenError(EnclaveError):
    """The server cannot listen on its host and port; the message names them and the cause."""


def server_tls_context() -> ssl.SSLContext:
    """TLS 1.3 only; the certificate is loaded later (``Listener.serve``)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


class _LateFactory:
    """The protocol factory given to asyncio at bind time, pointed at the real one by ``serve``."""

    def __init__(self) -> None:
        self.target: Callable[[], asyncio.BaseProtocol] | None = None

    def __call__(self) -> asyncio.BaseProtocol:
        if self.target is None:
            raise RuntimeError("a connection was accepted before the relay was ready")
        return self.target()


class Listener:
    def __init__(self, server: asyncio.Server, context: ssl.SSLContext, factory: _LateFactory) -> None:
        self._server = server
        self._context = context
        self._factory = factory
        self._gate: ConnectionGate | None = None

    @classmethod
    async def bind(cls, host: str, port: int) -> Listener:
        """Bind ``host``:``port`` (every address it resolves to) without accepting yet."""
        context = server_tls_context()
        factory = _LateFactory()
        try:
            server = await asyncio.get_running_loop().create_server(
                factory,
                host,
                port,
                reuse_address=True,
                start_serving=False,
            )
        except OSError as e:
            reason = os.strerror(e.errno) if e.errno else str(e)
            raise ListenError(f"cannot listen on {host}:{port} (host and port settings): {reason}") from e
        return cls(server, context, factory)

    @property
    def address(self) -> tuple[str, int]:
        """The first bound address (host, port): the real port when 0 was asked for."""
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def serve(
        self,
        protocol_factory: Callable[[], asyncio.Protocol],
        certificate: Path,
        key: Path,
        *,
        connections_per_address: int,
        connections_total: int,
        handshake_seconds: float,
    ) -> None:
        """Load the relay's certificate and start accepting connections for ``protocol_factory``.

        The socket is plain TCP: app/base/guard.py counts each connection against its
        address, then starts TLS with this context and hands it to ``protocol_factory``.
        """
        self._context.load_cert_chain(certificate, key)
        self._gate = ConnectionGate(
            protocol_factory,
            self._context,
            connections_per_address=connections_per_address,
            connections_total=connections_total,
            handshake_seconds=handshake_seconds,
        )
        self._factory.target = self._gate
        await self._server.start_serving()

    def close(self) -> None:
        """Stop accepting and abandon handshakes under way.

        Connections past their handshake are the request handler's to close.
        """
        self._server.close()
        if self._gate is not None:
            self._gate.close()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()
