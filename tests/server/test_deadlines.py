"""Deadlines and the per-address cap of a real relay (127.0.0.1, TLS), seen from outside.

Each test starts a relay with deadlines of a second or so and a small cap, speaks to it
over raw TCP, TLS or a WebSocket, and measures when the relay closes the connection.
Attackers connect from 127.0.0.2 (tests/support/flood.py), another network address than
the honest devices' 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from app.protocol.frames import MAX_FRAME_BYTES, Challenge, Closing, Frame, FrameType, Status
from tests.support.flood import ATTACKER, Flood, FloodKind, open_tls, until_closed
from tests.support.relay import REPLY_SECONDS, RelayProcess, TestDevice, new_account

DEADLINE = 1
"""Each deadline under test, in seconds (the relay's settings are whole seconds)."""
MARGIN = 3.0
"""How late after its deadline a close may come on a busy test machine."""
EARLY = 0.9 * DEADLINE
"""No deadline closes a connection sooner than this."""
CAP = 6
KINDS = (FloodKind.SILENT_TCP, FloodKind.SILENT_TLS, FloodKind.UNAUTHENTICATED)
REFUSAL_LINE = "refused 1 connection(s) from addresses that already had"


def _relay(data_dir: Path, **settings: int) -> RelayProcess:
    args = [part for name, value in settings.items() for part in ("--" + name.replace("_", "-"), str(value))]
    return RelayProcess(data_dir, *args).start()


@pytest.fixture
def deadlines(tmp_path: Path) -> Iterator[RelayProcess]:
    """A relay whose TLS, request-head and authentication deadlines are all ``DEADLINE``."""
    relay = _relay(
        tmp_path / "relay",
        tls_handshake_seconds=DEADLINE,
        request_head_seconds=DEADLINE,
        authentication_seconds=DEADLINE,
    )
    yield relay
    relay.stop()


def _log_after_start(relay: RelayProcess) -> str:
    """Stop the relay; what it logged after its banner, checked for tracebacks and addresses."""
    banner = next(i for i, line in enumerate(relay.output) if line.startswith("enclave-server listening"))
    relay.stop()
    text = "".join(relay.output[banner + 1 :])
    assert "Traceback" not in text, text
    assert "127.0.0." not in text, text
    return text


async def _closed_after(reader: asyncio.StreamReader, started: float) -> float:
    """Seconds from ``started`` (a loop time) until the relay closes the stream."""
    await until_closed(reader, DEADLINE + MARGIN)
    return asyncio.get_running_loop().time() - started


async def _health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """One keep-alive GET /health on an open connection; the status line."""
    writer.write(b"GET /health HTTP/1.1\r\nHost: relay\r\n\r\n")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), REPLY_SECONDS)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REPLY_SECONDS)
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    await asyncio.wait_for(reader.readexactly(length), REPLY_SECONDS)
    return status.strip()


def test_a_connection_that_never_starts_tls_is_closed_on_time(deadlines: RelayProcess) -> None:
    """Test that a TCP connection that never sends a TLS ClientHello is closed at the handshake deadline."""

    async def scenario() -> float:
        started = asyncio.get_running_loop().time()
        reader, writer = await asyncio.open_connection("127.0.0.1", deadlines.port)
        try:
            return await _closed_after(reader, started)
        finally:
            writer.close()

    assert EARLY <= asyncio.run(scenario()) <= DEADLINE + MARGIN
    _log_after_start(deadlines)


def test_a_tls_connection_that_never_sends_a_request_is_closed_on_time(deadlines: RelayProcess) -> None:
    """Test that a connection past its TLS handshake that sends no request head is closed at its deadline."""

    async def scenario() -> float:
        reader, writer = await open_tls(deadlines)
        try:
            return await _closed_after(reader, asyncio.get_running_loop().time())
        finally:
            writer.close()

    assert EARLY <= asyncio.run(scenario()) <= DEADLINE + MARGIN
    _log_after_start(deadlines)


def test_a_request_head_sent_a_byte_at_a_time_is_cut_off_on_time(deadlines: RelayProcess) -> None:
    """Test that a slow-loris client, trickling a request head byte by byte, is closed at its deadline."""
    trickle = b"GET /health HTTP/1.1\r\nHost: relay\r\nX-Slow: " + b"a" * 200

    async def scenario() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        reader, writer = await open_tls(deadlines)
        started, sent = loop.time(), 0
        try:
            for byte in trickle:
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
                try:
                    # Wait a fifth of a second for the relay to close; that is the pace.
                    if not await asyncio.wait_for(reader.read(4096), 0.2):
                        break
                except TimeoutError:
                    continue
            return loop.time() - started, sent
        except (ConnectionError, ssl.SSLError):
            return loop.time() - started, sent
        finally:
            writer.close()

    elapsed, sent = asyncio.run(scenario())
    assert EARLY <= elapsed <= DEADLINE + MARGIN
    assert sent < len(trickle)
    _log_after_start(deadlines)


def test_a_websocket_that_never_authenticates_gets_closing_on_time(deadlines: RelayProcess) -> None:
    """Test that a WebSocket that never authenticates gets CLOSING UNAUTHENTICATED at its deadline."""

    async def scenario() -> tuple[float, Closing, aiohttp.WSMsgType]:
        loop = asyncio.get_running_loop()
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                deadlines.url, ssl=deadlines.ssl_context(), max_msg_size=MAX_FRAME_BYTES
            ) as ws,
        ):
            challenge = Frame.parse((await ws.receive(timeout=REPLY_SECONDS)).data)
            started = loop.time()
            assert challenge.type == FrameType.CHALLENGE
            Challenge.parse(challenge.body)
            closing = Frame.parse((await ws.receive(timeout=DEADLINE + MARGIN)).data)
            elapsed = loop.time() - started
            assert closing.type == FrameType.CLOSING
            after = await ws.receive(timeout=REPLY_SECONDS)
            return elapsed, Closing.parse(closing.body), after.type

    elapsed, closing, after = asyncio.run(scenario())
    assert EARLY <= elapsed <= DEADLINE + MARGIN
    assert closing.status == Status.UNAUTHENTICATED
    assert closing.reason == f"not authenticated within {DEADLINE} seconds"
    assert after in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    _log_after_start(deadlines)


def test_a_device_that_enrols_and_authenticates_in_time_stays_connected(deadlines: RelayProcess) -> None:
    """Test that the authentication deadline does not touch a device that authenticated: it stays past it."""

    async def scenario() -> None:
        device = await TestDevice(deadlines).join(new_account(deadlines.data_dir, "in.time"))
        try:
            with pytest.raises(TimeoutError):
                await device.next_push(timeout=DEADLINE + MARGIN)
            assert device.closing is None
            response, _ = await device.send(device.device_id, b"still here")
            assert response.status == Status.OK
        finally:
            await device.disconnect()

    asyncio.run(scenario())
    _log_after_start(deadlines)


async def _refused(relay: RelayProcess, local: str) -> bool:
    """Whether a TLS connection from ``local`` is refused (closed before or during its handshake)."""
    try:
        _, writer = await open_tls(relay, local)
    except (ConnectionError, ssl.SSLError):
        return True
    writer.close()
    return False


def test_connections_past_the_cap_are_refused_and_the_count_is_given_back(tmp_path: Path) -> None:
    """Test that the (cap+1)th connection from one address is refused while the first cap work.

    Closing those lets as many in again: the count is given back.
    """
    relay = _relay(tmp_path / "relay", connections_per_address=CAP)

    async def scenario() -> None:
        held = [await open_tls(relay, ATTACKER) for _ in range(CAP)]
        assert await _refused(relay, ATTACKER)
        assert await _refused(relay, ATTACKER)
        assert not await _refused(relay, "127.0.0.1"), "the cap is per address"
        for reader, writer in held:
            assert await _health(reader, writer) == b"HTTP/1.1 200 OK"
        for _, writer in held:
            writer.close()
            await writer.wait_closed()
        deadline = asyncio.get_running_loop().time() + REPLY_SECONDS
        while await _refused(relay, ATTACKER):
            assert asyncio.get_running_loop().time() < deadline, "closed connections were never uncounted"
        again = [await open_tls(relay, ATTACKER) for _ in range(CAP)]
        for _, writer in again:
            writer.close()

    asyncio.run(scenario())
    log = _log_after_start(relay)
    assert log.count(REFUSAL_LINE) == 1, log


def test_connections_from_all_addresses_together_stop_at_the_total(tmp_path: Path) -> None:
    """Test that past connections_total a connection from a further address is refused too, although
    that address has none open, and that one closing lets one in again."""
    relay = _relay(tmp_path / "relay", connections_per_address=CAP, connections_total=CAP + 1)

    async def scenario() -> None:
        held = [await open_tls(relay, ATTACKER) for _ in range(CAP)]
        last = await open_tls(relay, "127.0.0.3")
        assert await _refused(relay, "127.0.0.4"), "a further address got in past the total"
        _, writer = last
        writer.close()
        await writer.wait_closed()
        deadline = asyncio.get_running_loop().time() + REPLY_SECONDS
        while await _refused(relay, "127.0.0.4"):
            assert asyncio.get_running_loop().time() < deadline, "a closed connection was never uncounted"
        for _, held_writer in held:
            held_writer.close()

    asyncio.run(scenario())
    log = _log_after_start(relay)
    assert "connections_total" in log


def test_a_flood_of_unauthenticated_connections_leaves_an_honest_pair_talking(tmp_path: Path) -> None:
    """Test that two devices exchange every message while another address floods the relay.

    The flood holds the cap of connections that never authenticate and is refused more.
    """
    relay = _relay(
        tmp_path / "relay",
        tls_handshake_seconds=DEADLINE,
        request_head_seconds=DEADLINE,
        authentication_seconds=2,
        connections_per_address=CAP,
    )
    rounds = 20

    async def scenario() -> Flood:
        alice = await TestDevice(relay).join(new_account(relay.data_dir, "honest.a"))
        bob = await TestDevice(relay).join(new_account(relay.data_dir, "honest.b"))
        flood, stop = Flood(relay, closed_within=DEADLINE + MARGIN), asyncio.Event()
        attackers = [asyncio.create_task(flood.run(KINDS[i % len(KINDS)], stop)) for i in range(CAP + 4)]
        try:
            deadline = asyncio.get_running_loop().time() + REPLY_SECONDS
            while flood.refused == 0:
                assert asyncio.get_running_loop().time() < deadline, "the flood never reached the cap"
                await asyncio.wait(attackers, timeout=0.05)
            for i in range(rounds):
                for sender, recipient in ((alice, bob), (bob, alice)):
                    response, envelope = await sender.send(recipient.device_id, f"round {i}".encode())
                    assert response.status == Status.OK
                    pushed = await recipient.next_push()
                    assert pushed.envelope_id == envelope.envelope_id
                    assert (await recipient.ack(pushed)).status == Status.OK
            # A new honest connection gets in during the flood too.
            assert (await bob.reconnect()).status == Status.OK
        finally:
            stop.set()
            await asyncio.wait(attackers, timeout=DEADLINE + MARGIN + REPLY_SECONDS)
            for task in attackers:
                task.cancel()
            await alice.disconnect()
            await bob.disconnect()
        for task in attackers:
            task.result()  # an attacker the relay failed to close in time raised TimeoutError
        return flood

    flood = asyncio.run(scenario())
    assert flood.refused > 0 and flood.closed > 0
    log = _log_after_start(relay)
    assert log.count("connections_per_address") == 1, log
