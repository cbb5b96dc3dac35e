"""Connections before aiohttp sees them: a cap per network address and a TLS deadline.

Shared by the two public services, the relay and the enrolment authority. Each listens
on plain TCP and starts TLS here (``loop.start_tls``) rather than in
the listener, because a connection's address is known, and its cost already paid, from
the moment it is accepted: asyncio's TLS layer gives each connection a 256 KiB read
buffer before the handshake begins. A cap counted after the handshake would let one
address hold any number of half-open connections until the handshake deadline. So
each accepted connection is

1. counted against its address (``AddressCounts``); past ``connections_per_address``
   it is closed at once, before any TLS;
2. given ``tls_handshake_seconds`` to finish its handshake, else closed;
3. handed to aiohttp's request handler, whose keep-alive timer (``keepalive_timeout``,
   set to ``request_head_seconds``) closes it when no whole request head has come that
   long after the handshake or the previous response: a silent client, a slow-loris
   one that trickles a head, or an idle keep-alive all end the same way;
4. uncounted when it closes, however it closes. An address back at zero is forgotten,
   so the table holds only addresses with a connection open.

Nothing here logs an address. Refusals are summed into at most one line a minute.

Memory per connection, and what bounds it: the TLS layer's 256 KiB read buffer and its
write backlog (paused by flow control past 64 KiB); aiohttp's request head (8190-byte
lines and fields, 128 headers) and body reads (``read_bufsize`` chunks; an upload is
capped at ``attachment_max_bytes`` and needs an upload token); a WebSocket's reader
(one message of at most ``MAX_FRAME_BYTES``, reading paused past 128 KiB queued) and
its writer (``send_bytes`` waits for the transport to drain past 64 KiB, so the
delivery loop in server/relay.py holds one frame at a time, never a queue). Measured,
an open connection costs the service about 300 KiB; all of it is freed when it closes, a
handshake that failed or timed out included (see ``GatedConnection.handshake``), and
server/memory.py hands it back to the system (bench/flood.py measures both).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

REFUSAL_NOTICE_SECONDS = 60.0


class AddressCounts:
    """Open connections per peer address, at most ``cap`` each and ``total`` in all.

    The total bounds what many addresses together can hold open (a flood from a botnet, or
    from spoofed addresses that complete TCP), as the per-address cap bounds one address.
    """

    def __init__(self, cap: int, total: int) -> None:
        self._cap = cap
        self._total = total
        self._open: dict[str, int] = {}
        self._sum = 0

    def acquire(self, address: str) -> bool:
        """Count one more connection from ``address``; False, counting nothing, at either cap."""
        count = self._open.get(address, 0)
        if count >= self._cap or self._sum >= self._total:
            return False
        self._open[address] = count + 1
        self._sum += 1
        return True

    def release(self, address: str) -> None:
        self._sum -= 1
        count = self._open[address] - 1
        if count:
            self._open[address] = count
        else:
            del self._open[address]

    def __len__(self) -> int:
        """How many addresses have a connection open."""
        return len(self._open)


class ConnectionGate:
    """The protocol factory of a service's plain-TCP listener; see the module docstring."""

    def __init__(
        self,
        handler_factory: Callable[[], asyncio.Protocol],
        tls: ssl.SSLContext,
        *,
        connections_per_address: int,
        connections_total: int,
        handshake_seconds: float,
    ) -> None:
        self.handler_factory = handler_factory
        self.tls = tls
        self.handshake_seconds = handshake_seconds
        self.counts = AddressCounts(connections_per_address, connections_total)
        self._cap = connections_per_address
        self._total = connections_total
        self._handshakes: set[asyncio.Task[None]] = set()
        self._refused = 0
        self._refusal_noted_at: float | None = None

    def __call__(self) -> GatedConnection:
        return GatedConnection(self)

    def start_handshake(self, connection: GatedConnection, transport: asyncio.Transport) -> None:
        task = asyncio.get_running_loop().create_task(connection.handshake(transport))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    def note_refusal(self) -> None:
        """Count a refused connection; log the sum at most once a minute, with no address."""
        self._refused += 1
        now = time.monotonic()
        if self._refusal_noted_at is None or now - self._refusal_noted_at >= REFUSAL_NOTICE_SECONDS:
            log.warning(
                "refused %d connection(s) from addresses that already had %d open "
                "(connections_per_address), or past %d open in all (connections_total)",
                self._refused,
                self._cap,
                self._total,
            )
            self._refused, self._refusal_noted_at = 0, now

    def close(self) -> None:
        """Abandon handshakes under way (at shutdown); their connections close."""
        for task in list(self._handshakes):
            task.cancel()


class GatedConnection(asyncio.Protocol):
    """One accepted connection: counted, then TLS, then aiohttp's handler, then uncounted.

    asyncio calls ``connection_made`` with the TCP transport; after ``start_tls`` the TLS
    layer calls the other methods. It may deliver the first decrypted bytes (or the end
    of the stream) before ``start_tls`` returns the transport the handler needs, so those
    wait in ``_early`` until the handler is attached, one event-loop step later: what the
    TLS layer decrypted from one or two reads, never more.
    """

    def __init__(self, gate: ConnectionGate) -> None:
        self._gate = gate
        self._address: str | None = None
        """Set while this connection is counted against its address."""
        self._handler: asyncio.Protocol | None = None
        self._early: list[bytes] = []
        self._early_eof = False
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):
            raise TypeError("the service listens on TCP")
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else ""
        if not self._gate.counts.acquire(address):
            transport.abort()
            self._gate.note_refusal()
            return
        self._address = address
        # Nothing may be read before start_tls takes the transport over, or it would be lost.
        transport.pause_reading()
        self._gate.start_handshake(self, transport)

    async def handshake(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls_transport = await loop.start_tls(
                transport,
                self,
                self._gate.tls,
                server_side=True,
                ssl_handshake_timeout=self._gate.handshake_seconds,
            )
        except OSError as error:
            # A handshake that failed or timed out (ssl.SSLError, ConnectionAbortedError):
            # asyncio has closed the socket. The error's traceback holds start_tls's frame,
            # whose waiter holds the error: a cycle that keeps the connection's TLS layer
            # and its 256 KiB buffer until a full garbage collection, which a flood of
            # failing handshakes outruns. Dropping the traceback frees them now.
            error.__traceback__ = None
            self._release()
            return
        except asyncio.CancelledError:
            self._release()
            raise
        if self._lost or tls_transport is None:
            self._release()
            return
        handler = self._gate.handler_factory()
        self._handler = handler
        handler.connection_made(tls_transport)
        for data in self._early:
            handler.data_received(data)
        self._early.clear()
        if self._early_eof:
            handler.eof_received()

    def data_received(self, data: bytes) -> None:
        if self._handler is None:
            self._early.append(data)
        else:
            self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        if self._handler is None:
            self._early_eof = True
            return None
        return self._handler.eof_received()

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._early.clear()
        if self._handler is not None:
            self._handler.connection_lost(exc)
        self._release()

    def _release(self) -> None:
        """Uncount this connection; called on every way out, so it must be idempotent."""
        if self._address is not None:
            self._gate.counts.release(self._address)
            self._address = None
