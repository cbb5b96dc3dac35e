"""Hostile and broken requests against a real relay (127.0.0.1, TLS), and what it logs.

Each test speaks raw HTTP over TLS, so it can send what a well-behaved client library
would refuse to, then stops the relay and reads its log: a client's fault is answered
400 (never 500), the log holds no traceback and no client address, and a flood of bad
requests adds only a bounded number of lines (app/base/requestlog.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.base.requestlog import MAX_LINES
from app.protocol.frames import Frame, FrameType
from app.protocol.lifetime import EXPIRY_BUCKET_SECONDS
from tests.server.fuzzing import raw_https
from tests.support.relay import REPLY_SECONDS, RelayProcess, TestDevice, new_account

FLOOD = 300
SUPPRESSED_SUMMARY = re.compile(r"(\d+) lines about bad requests were suppressed")


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    """One relay on SQLite (what is tested here does not depend on the backend)."""
    started = RelayProcess(tmp_path / "relay").start()
    yield started
    started.stop()


def _upload_token(relay: RelayProcess) -> str:
    async def join() -> bytes:
        device = await TestDevice(relay).join(new_account(relay.data_dir, "hostile.input"))
        await device.disconnect()
        return device.upload_token

    return "Enclave-Upload " + asyncio.run(join()).hex()


async def _exchange(relay: RelayProcess, request: bytes) -> tuple[int, bytes]:
    """Send raw bytes over TLS; the answer's status and body (0 if the relay sent none)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", relay.port, ssl=relay.ssl_context(), server_hostname="127.0.0.1"
    )
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), REPLY_SECONDS)
    finally:
        writer.close()
    if not answer.startswith(b"HTTP/"):
        return 0, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _post(headers: dict[str, str], body: bytes) -> bytes:
    lines = [
        "POST /v1/attachments HTTP/1.1",
        "Host: relay",
        "Connection: close",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def _log_after_start(relay: RelayProcess, start_lines: int) -> list[str]:
    """Stop the relay and return what it logged after start-up, checked for leaks."""
    relay.stop()
    lines = relay.output[start_lines:]
    text = "".join(lines)
    assert "Traceback" not in text, text
    assert "127.0.0.1" not in text, text
    return lines


@pytest.mark.parametrize("value", ["\u00b2", "9" * 5000, "-1", "yesterday", "in two seconds", "4102444800"])
def test_that_an_asked_expiry_is_ignored(relay: RelayProcess, value: str) -> None:
    """Test that an Enclave-Expires-At, well formed or not, changes nothing: the upload is stored for
    the relay's whole-day lifetime (older clients sent one; it would tell the message's timer)."""
    token, start_lines = _upload_token(relay), len(relay.output)
    if value == "in two seconds":
        value = str(int(time.time()) + 2)  # made here: a collected value must be the same on every worker
    status, body = asyncio.run(
        _exchange(relay, _post({"Authorization": token, "Enclave-Expires-At": value}, b"x"))
    )
    assert status == 201
    expires_at = json.loads(body)["expires_at"]
    assert expires_at % EXPIRY_BUCKET_SECONDS == 0 and expires_at > time.time() + 28 * EXPIRY_BUCKET_SECONDS
    _log_after_start(relay, start_lines)


def test_that_a_body_that_does_not_decompress_is_refused(relay: RelayProcess) -> None:
    """Test that a Content-Encoding: gzip upload whose body is not gzip gets 400, not 500."""
    token, start_lines = _upload_token(relay), len(relay.output)
    status, body = asyncio.run(
        _exchange(relay, _post({"Authorization": token, "Content-Encoding": "gzip"}, b"not gzip at all"))
    )
    assert status == 400
    assert "Content-Encoding" in json.loads(body)["error"]
    _log_after_start(relay, start_lines)


@pytest.mark.parametrize("path", ["/health", "/v1/attachments", "/no/such/route"])
def test_that_an_expect_header_that_is_not_utf8_is_refused(relay: RelayProcess, path: str) -> None:
    """Test that an Expect value that is not UTF-8 gets 417 on every path, routed or not, not a
    500 and a traceback (aiohttp's own handler quoted it into its answer)."""
    start_lines = len(relay.output)
    request = f"GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\nExpect: \x80\r\n\r\n"
    status, _ = asyncio.run(_exchange(relay, request.encode("latin-1")))
    assert status == 417
    _log_after_start(relay, start_lines)


@pytest.mark.parametrize("header", ["Upgrade", "Connection", "Sec-WebSocket-Version"])
def test_that_a_websocket_handshake_header_that_is_not_utf8_is_refused(
    relay: RelayProcess, header: str
) -> None:
    """Test that a handshake whose Upgrade, Connection or Sec-WebSocket-Version is not UTF-8 gets
    400, not a 500 and a traceback (aiohttp quotes these into its own answer)."""
    start_lines = len(relay.output)
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", header: "\x80"}
    lines = ["GET /v1/ws HTTP/1.1", "Host: relay", f"Sec-WebSocket-Key: {key}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    status = asyncio.run(raw_https(relay, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")))
    assert status == 400
    _log_after_start(relay, start_lines)


def test_that_an_expect_of_100_continue_still_continues(relay: RelayProcess) -> None:
    """Test that an upload with Expect: 100-continue is told to continue and is stored."""
    token = _upload_token(relay)
    request = _post({"Authorization": token, "Expect": "100-continue"}, b"x")
    status, body = asyncio.run(_exchange(relay, request))
    assert status == 100
    assert b"201 Created" in body


def test_that_an_upload_token_that_is_not_ascii_is_refused(relay: RelayProcess) -> None:
    """Test that an upload token that is not ASCII gets 401 (400 if not even UTF-8), not a 500 and
    a traceback."""
    start_lines = len(relay.output)
    for token, expected in (("é".encode(), 401), (b"\x80", 400)):
        request = _post({"Authorization": "Enclave-Upload TOKEN"}, b"x").replace(b"TOKEN", token)
        status, _ = asyncio.run(_exchange(relay, request))
        assert status == expected, token
    _log_after_start(relay, start_lines)


MALFORMED = [
    b"GET /health HTTP/1.1\r\nHost: relay\r\nBad Header\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: relay\r\nContent-Length: many\r\n\r\n",
    b"POST /v1/attachments HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    _post({"Content-Encoding": "gzip"}, b"not gzip at all"),
    b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: relay\r\n\r\n",
]


def test_that_a_flood_of_malformed_requests_adds_few_log_lines(relay: RelayProcess) -> None:
    """Test that hundreds of malformed requests add a bounded, address-free, traceback-free log."""
    start_lines = len(relay.output)

    async def flood() -> list[int]:
        return [(await _exchange(relay, MALFORMED[i % len(MALFORMED)]))[0] for i in range(FLOOD)]

    statuses = asyncio.run(flood())
    assert 500 not in statuses
    lines = _log_after_start(relay, start_lines)
    assert len(lines) <= MAX_LINES + 2, "".join(lines)
    assert any("suppressing them" in line for line in lines), "".join(lines)
    summaries = [m for line in lines if (m := SUPPRESSED_SUMMARY.search(line))]
    assert summaries, "no summary of the suppressed lines at shutdown:\n" + "".join(lines)
    assert int(summaries[-1].group(1)) > 0


def _ws_frame(payload: bytes) -> bytes:
    """A masked binary WebSocket frame, as a client must send it."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    size = bytes([0x80 | len(payload)]) if len(payload) < 126 else b"\xfe" + len(payload).to_bytes(2, "big")
    return b"\x82" + size + mask + masked


def test_that_a_client_hanging_up_mid_request_is_not_logged_as_an_error(relay: RelayProcess) -> None:
    """Test that devices hanging up with requests in flight add nothing to the log (debug at most)."""
    start_lines = len(relay.output)
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    upgrade = (
        "GET /v1/ws HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode("ascii")
    requests = b"".join(_ws_frame(Frame(FrameType.SEND, i + 1, b"").encode()) for i in range(2000))

    async def hang_up() -> None:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", relay.port, ssl=relay.ssl_context(), server_hostname="127.0.0.1"
        )
        writer.write(upgrade + requests)
        await writer.drain()
        writer.transport.abort()

    async def many() -> None:
        for _ in range(20):
            await hang_up()
        # The relay still serves: a health check answers once it has dealt with them all.
        status, _ = await _exchange(
            relay, b"GET /health HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n"
        )
        assert status == 200

    asyncio.run(many())
    assert _log_after_start(relay, start_lines) == []
