"""app/base/guard.py on its own: its count of open connections per address, and its TLS handshakes."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from app.base.guard import AddressCounts, ConnectionGate
from app.base.listener import server_tls_context
from server.keys import load_or_create_keys
from tests.support.flood import until_closed
from tests.support.relay import REPLY_SECONDS


def test_an_address_is_counted_up_to_its_cap_and_forgotten_at_zero() -> None:
    """Test that an address gets at most cap connections, others are apart, and one at zero is dropped."""
    counts = AddressCounts(2, total=10)
    assert counts.acquire("192.0.2.1") and counts.acquire("192.0.2.1")
    assert not counts.acquire("192.0.2.1")
    assert counts.acquire("2001:db8::1")
    assert len(counts) == 2
    counts.release("192.0.2.1")
    assert counts.acquire("192.0.2.1")
    for _ in range(2):
        counts.release("192.0.2.1")
    counts.release("2001:db8::1")
    assert len(counts) == 0


def test_all_addresses_together_are_counted_up_to_the_total() -> None:
    """Test that past the total no address gets a connection, even one with none open, and that a
    release gives one back."""
    counts = AddressCounts(2, total=3)
    assert counts.acquire("192.0.2.1") and counts.acquire("192.0.2.2") and counts.acquire("192.0.2.3")
    assert not counts.acquire("192.0.2.4")
    assert not counts.acquire("192.0.2.1")
    counts.release("192.0.2.2")
    assert counts.acquire("192.0.2.4")
    assert len(counts) == 3


def _tls_layers() -> int:
    return sum(isinstance(o, asyncio.sslproto.SSLProtocol) for o in gc.get_objects())


@pytest.mark.parametrize("first_bytes", [b"", b"GET / HTTP/1.1\r\n\r\n"], ids=["timed-out", "failed"])
def test_a_handshake_that_does_not_finish_frees_its_tls_layer(tmp_path: Path, first_bytes: bytes) -> None:
    """Test that a TLS handshake that times out or fails leaves no TLS layer for the garbage collector.

    Each one holds a 256 KiB buffer; a flood of them would outrun the collector.
    """
    keys = load_or_create_keys(tmp_path, "127.0.0.1")
    tls = server_tls_context()
    tls.load_cert_chain(keys.tls_cert_path, keys.tls_key_path)
    gate = ConnectionGate(
        asyncio.Protocol, tls, connections_per_address=8, connections_total=64, handshake_seconds=1
    )

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(gate, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(first_bytes)
                await until_closed(reader, REPLY_SECONDS)
                writer.close()
            deadline = loop.time() + REPLY_SECONDS
            while len(gate.counts) or _tls_layers():
                assert loop.time() < deadline, f"{_tls_layers()} TLS layers wait for the garbage collector"
                await asyncio.sleep(0.05)
        finally:
            server.close()
            await server.wait_closed()

    gc.collect()
    gc.disable()
    try:
        asyncio.run(scenario())
    finally:
        gc.enable()
