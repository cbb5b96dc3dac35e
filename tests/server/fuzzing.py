"""The relay the fuzz test throws at (tests/server/test_fuzz_relay.py), and raw ways to reach it.

``FuzzedRelay`` is a real ``enclave-server`` on SQLite or on a PostgreSQL schema of its
own, with its rate limits raised so that hostile requests reach the code behind them
(the default 30 directory look-ups a minute would turn the rest into RATE_LIMITED). Its
log is read without blocking, in the test's own thread: every line the relay wrote
before it answered is in ``lines`` once ``read_log()`` returns, so a traceback is
pinned on the example that caused it and hypothesis can shrink that example.

``raw_https`` writes bytes on a TLS stream (what aiohttp's client refuses to send) and
``raw_tcp`` writes bytes on the TLS port before any handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tests.server.stores import POSTGRES_DSN
from tests.support.relay import REPLY_SECONDS, RelayProcess

UNLIMITED = 1_000_000
LOOSE_LIMITS = {
    "enrolment_attempts_per_minute": UNLIMITED,
    "bundle_fetches_per_minute": UNLIMITED,
    "directory_lookups_per_minute": UNLIMITED,
}
READ_BYTES = 65536

T = TypeVar("T")


class FuzzedRelay:
    """A relay on one backend whose log is checked after every example."""

    def __init__(self, data_dir: Path, postgres_schema: str | None) -> None:
        settings: dict[str, object] = dict(LOOSE_LIMITS)
        if postgres_schema is not None:
            settings |= {
                "backend": "postgres",
                "postgres_dsn": POSTGRES_DSN,
                "postgres_schema": postgres_schema,
            }
        data_dir.mkdir(parents=True)
        lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
        (data_dir / "server.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.relay = RelayProcess(data_dir).start()
        self.loop = asyncio.new_event_loop()
        self._banner = len(self.relay.output)
        """The start-up lines name the relay's own address; they are not checked."""
        self._partial = b""
        process = self.relay.process
        assert process is not None and process.stdout is not None
        # Nothing is logged between the banner and the first request, so the text
        # wrapper that read the banner holds no more lines: the rest is on the pipe.
        self._fd = process.stdout.fileno()
        os.set_blocking(self._fd, False)

    @property
    def lines(self) -> list[str]:
        return self.relay.output

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def read_log(self) -> None:
        """Take every line the relay has written so far off its pipe."""
        while True:
            try:
                chunk = os.read(self._fd, READ_BYTES)
            except BlockingIOError:
                return
            if not chunk:
                return
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            self.lines.extend(line.decode("utf-8", "replace") + "\n" for line in complete)

    def mark(self) -> int:
        self.read_log()
        return len(self.lines)

    def assert_clean(self, since: int | None = None) -> None:
        """No line since ``since`` (default: the banner) holds a traceback or a client address."""
        self.read_log()
        logged = self.lines[self._banner if since is None else max(since, self._banner) :]
        bad = [line for line in logged if "Traceback" in line or "127.0.0.1" in line]
        assert not bad, "the relay logged a traceback or an address:\n" + "".join(logged[:40])

    def close(self) -> None:
        self.loop.close()
        os.set_blocking(self._fd, True)
        self.relay.stop()


def client_hello(context: ssl.SSLContext) -> bytes:
    """The first flight of a real TLS client for the relay: its ClientHello record(s)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


async def _answer_head(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await reader.read(READ_BYTES)
        if not chunk:
            break
        data += chunk
    return data


async def raw_https(relay: RelayProcess, request: bytes) -> int:
    """Write ``request`` on a TLS stream; the status of the relay's answer, 0 if it sent none.

    Only the answer's head is read, so a connection kept alive is no reason to wait.
    """
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", relay.port, ssl=relay.ssl_context(), server_hostname="127.0.0.1"
    )
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(_answer_head(reader), REPLY_SECONDS)
    except (ConnectionError, ssl.SSLError):
        return 0  # the relay hung up on it
    finally:
        writer.transport.abort()
    if not head.startswith(b"HTTP/"):
        return 0
    return int(head.split(b" ", 2)[1])


async def raw_tcp(relay: RelayProcess, data: bytes) -> None:
    """Write ``data`` on the TLS port with no handshake, then half-close: the relay must
    hang up within ``REPLY_SECONDS`` (a half-open stranger must not hold a connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        while await asyncio.wait_for(reader.read(READ_BYTES), REPLY_SECONDS):
            pass
    except ConnectionError:
        pass  # the relay reset it: hung up as well
    finally:
        writer.transport.abort()
