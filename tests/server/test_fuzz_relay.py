"""Hostile input from outside, over TLS, against one real relay per module (hypothesis).

Frames before and after authentication (random bytes, and frames of every request
type whose fields are random), text frames, and HTTP requests with random methods,
paths, headers and bodies. The relay must answer each as bad input and keep serving:
after every test an honest device still enrols, sends and receives, and the relay's
log holds no traceback and no client address.

The count is bounded for ``./test.sh``; ``ENCLAVE_FUZZ_EXAMPLES=5000 ./test.sh
tests/server/test_fuzz_relay.py`` runs longer.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.utils import random

from app.protocol.frames import FRAME_VERSION, MAX_FRAME_BYTES, FrameType, Status
from tests.support.relay import RelayProcess, TestDevice, new_account

EXAMPLES = int(os.environ.get("ENCLAVE_FUZZ_EXAMPLES", "60"))
REQUEST_TYPES = [t for t in FrameType if t < FrameType.CHALLENGE]
ROUTES = ["/v1/ws", "/v1/attachments", "/v1/attachments/x", "/health", "/", "/v1/attachments/" + "A" * 40]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Fuzzed:
    """The module's relay, its log read as it is written (so a noisy relay never blocks on it)."""

    def __init__(self, root: Path) -> None:
        self.relay = RelayProcess(root / "relay").start()
        self._banner = len(self.relay.output)
        """The start-up lines (they name the relay's own address) are not checked."""
        self.loop = asyncio.new_event_loop()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        process = self.relay.process
        if process is not None and process.stdout is not None:
            for line in process.stdout:
                self.relay.output.append(line)

    def ssl_context(self) -> ssl.SSLContext:
        return self.relay.ssl_context()

    def problems(self) -> list[str]:
        logged = self.relay.output[self._banner :]
        return [line for line in logged if "Traceback" in line or "127.0.0.1" in line]

    def close(self) -> None:
        self.loop.close()
        self.relay.stop()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    target = Fuzzed(tmp_path_factory.mktemp("fuzz"))
    yield target
    target.close()


@pytest.fixture
def honest_after(fuzzed: Fuzzed) -> Iterator[None]:
    """After the test: two new devices still enrol and exchange an envelope; the log stays clean."""
    yield
    fuzzed.loop.run_until_complete(_honest_exchange(fuzzed.relay))
    bad = fuzzed.problems()
    causes = sorted(
        {line for line in fuzzed.relay.output if line[:1].isalpha() and not line.startswith("Traceback")}
        - set(fuzzed.relay.output[:3])
    )
    assert not bad, "the relay logged a traceback or an address:\n" + "".join(bad[:6] + causes[:20])


async def _honest_exchange(relay: RelayProcess) -> None:
    tag = os.urandom(4).hex()
    sender = await TestDevice(relay).join(new_account(relay.data_dir, f"s{tag}"))
    recipient = await TestDevice(relay).join(new_account(relay.data_dir, f"r{tag}"))
    try:
        response, envelope = await sender.send(recipient.device_id, b"\x01" * 64)
        assert response.status == Status.OK
        assert (await recipient.next_push()).envelope_id == envelope.envelope_id
    finally:
        await sender.disconnect()
        await recipient.disconnect()


@pytest.fixture(scope="module")
def enrolled(fuzzed: Fuzzed) -> TestDevice:
    """One enrolled device whose every connection is authenticated afresh before it misbehaves."""
    device = fuzzed.loop.run_until_complete(
        TestDevice(fuzzed.relay).join(new_account(fuzzed.relay.data_dir, "fuzzer"))
    )
    fuzzed.loop.run_until_complete(device.disconnect())
    return device


async def _throw(relay: RelayProcess, messages: list[bytes | str], device: TestDevice | None = None) -> None:
    """Send ``messages`` on one new WebSocket (authenticated as ``device`` if given)."""
    if device is None:
        device = TestDevice(relay)
        await device.connect()
    else:
        response = await device.reconnect()
        assert response.status == Status.OK, response.reason
    ws = device.ws
    assert ws is not None
    try:
        for message in messages:
            if ws.closed:
                break
            if isinstance(message, str):
                await ws.send_str(message)
            else:
                await ws.send_bytes(message)
        if not ws.closed:
            await ws.ping()
    except (aiohttp.ClientError, ConnectionError):
        pass
    finally:
        await device.disconnect()


def _frames() -> st.SearchStrategy[bytes]:
    structured = st.builds(
        lambda version, kind, request_id, body: bytes([version, kind]) + request_id.to_bytes(4, "big") + body,
        st.sampled_from([FRAME_VERSION, FRAME_VERSION, 0, 2, 255]),
        st.sampled_from([int(t) for t in REQUEST_TYPES] + [0, 0x80, 0x84, 0xFF]),
        st.integers(0, 2**32 - 1),
        st.binary(max_size=400),
    )
    return st.one_of(structured, st.binary(max_size=200))


@FUZZ
@given(messages=st.lists(st.one_of(_frames(), st.text(max_size=50)), min_size=1, max_size=4))
def test_hostile_frames_before_authentication(
    fuzzed: Fuzzed, honest_after: None, messages: list[bytes | str]
) -> None:
    """Test that random and malformed frames from an unauthenticated socket leave the relay serving."""
    fuzzed.loop.run_until_complete(_throw(fuzzed.relay, messages))


@FUZZ
@given(messages=st.lists(_frames(), min_size=1, max_size=3))
def test_hostile_frames_after_authentication(
    fuzzed: Fuzzed, enrolled: TestDevice, honest_after: None, messages: list[bytes | str]
) -> None:
    """Test that malformed requests from an enrolled, authenticated device leave the relay serving."""
    fuzzed.loop.run_until_complete(_throw(fuzzed.relay, messages, enrolled))


def test_an_oversized_frame_is_refused(fuzzed: Fuzzed, enrolled: TestDevice, honest_after: None) -> None:
    """Test that a frame over the limit closes only that connection."""
    oversized = bytes([FRAME_VERSION, FrameType.SEND]) + b"\x00" * 4 + random(MAX_FRAME_BYTES + 1)
    fuzzed.loop.run_until_complete(_throw(fuzzed.relay, [oversized], enrolled))


HEADER_NAMES = st.sampled_from(
    [
        "Content-Encoding",
        "Content-Length",
        "Enclave-Expires-At",
        "Authorization",
        "Transfer-Encoding",
        "Connection",
        "Upgrade",
        "Content-Type",
        "X-Anything",
    ]
)
HEADER_VALUES = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, exclude_categories=("Cs",)), max_size=40
)


async def _request(relay: RelayProcess, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.request(
                method, relay.https + path, headers=headers, data=body, ssl=relay.ssl_context()
            ) as response:
                assert response.status < 500, f"{method} {path} {headers!r}: HTTP {response.status}"
                await response.read()
        except (aiohttp.ClientError, ValueError, UnicodeError):
            pass  # the client library refused to send it, or the relay hung up on it


@FUZZ
@given(
    request=st.fixed_dictionaries(
        {
            "method": st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
            "path": st.sampled_from(ROUTES),
            "headers": st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
            "body": st.binary(max_size=300),
        }
    )
)
def test_hostile_http_requests(fuzzed: Fuzzed, honest_after: None, request: dict[str, Any]) -> None:
    """Test that random HTTP requests to every route get an answer below 500, and no traceback."""
    fuzzed.loop.run_until_complete(
        _request(fuzzed.relay, request["method"], request["path"], request["headers"], request["body"])
    )
