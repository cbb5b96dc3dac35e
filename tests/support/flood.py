"""Connections that cost a relay without ever becoming a device, from another loopback address.

Linux routes all of 127.0.0.0/8 to the loopback, so ``ATTACKER`` (127.0.0.2) is another
network address than the honest devices' 127.0.0.1, as it would be in real life, and the
relay counts it against its own ``connections_per_address``. Used by the deadline tests
(tests/server/test_deadlines.py) and the flood benchmark (bench/flood.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import aiohttp

from app.protocol.frames import MAX_FRAME_BYTES
from tests.support.relay import REPLY_SECONDS, RelayProcess

ATTACKER = "127.0.0.2"


class FloodKind(StrEnum):
    """What one attacking connection does until the relay closes it."""

    SILENT_TCP = "tcp"
    """Never starts TLS: the handshake times out (``tls_handshake_seconds``)."""
    PLAINTEXT = "plaintext"
    """Sends an HTTP request in clear text: the handshake fails at once."""
    SILENT_TLS = "tls"
    """Finishes the handshake, then sends nothing (``request_head_seconds``)."""
    UNAUTHENTICATED = "websocket"
    """Opens a WebSocket and never authenticates (``authentication_seconds``)."""


async def open_tls(
    relay: RelayProcess, local: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TLS stream to ``relay`` from the address ``local``, the handshake done."""
    return await asyncio.open_connection(
        "127.0.0.1",
        relay.port,
        ssl=relay.ssl_context(),
        server_hostname="127.0.0.1",
        local_addr=(local, 0),
        ssl_handshake_timeout=REPLY_SECONDS,
    )


async def until_closed(reader: asyncio.StreamReader, within: float) -> None:
    """Read and drop bytes until the relay closes the stream; TimeoutError if a read waits ``within``."""
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while await asyncio.wait_for(reader.read(4096), within):
            pass


@dataclass
class Flood:
    """Connections from ``ATTACKER`` that never authenticate, reopened as the relay closes them.

    ``closed_within`` is how long a connection may wait for the relay to close it (its
    deadline and a margin); a connection left open longer raises TimeoutError. ``held``
    is how many are open at this moment and ``held_peak`` the most at once: a connection
    counts from TCP connect (after the TLS handshake for the kinds that make one) until
    it is closed.
    """

    relay: RelayProcess
    closed_within: float
    refused: int = 0
    closed: int = 0
    held: int = 0
    held_peak: int = 0

    async def run(self, kind: FloodKind, stop: asyncio.Event) -> None:
        """Open connections of ``kind`` one after another until ``stop`` is set."""
        connect = {
            FloodKind.SILENT_TCP: self._silent_tcp,
            FloodKind.PLAINTEXT: self._plaintext,
            FloodKind.SILENT_TLS: self._silent_tls,
            FloodKind.UNAUTHENTICATED: self._unauthenticated_websocket,
        }[kind]
        while not stop.is_set():
            try:
                await connect()
                self.closed += 1
            except (ConnectionError, ssl.SSLError, aiohttp.ClientError):
                self.refused += 1

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        self.held += 1
        self.held_peak = max(self.held_peak, self.held)
        try:
            yield
        finally:
            self.held -= 1

    async def _silent_tcp(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.relay.port, local_addr=(ATTACKER, 0))
        try:
            with self._holding():
                await until_closed(reader, self.closed_within)
        finally:
            writer.close()

    async def _plaintext(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.relay.port, local_addr=(ATTACKER, 0))
        try:
            with self._holding():
                writer.write(b"GET /health HTTP/1.1\r\nHost: relay\r\n\r\n")
                await until_closed(reader, self.closed_within)
        finally:
            writer.close()

    async def _silent_tls(self) -> None:
        reader, writer = await open_tls(self.relay, ATTACKER)
        try:
            with self._holding():
                await until_closed(reader, self.closed_within)
        finally:
            writer.close()

    async def _unauthenticated_websocket(self) -> None:
        connector = aiohttp.TCPConnector(local_addr=(ATTACKER, 0))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.ws_connect(
                self.relay.url, ssl=self.relay.ssl_context(), max_msg_size=MAX_FRAME_BYTES
            ) as ws,
        ):
            with self._holding():
                async for _ in ws:
                    pass
