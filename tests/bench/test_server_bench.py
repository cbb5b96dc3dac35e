"""Smoke test of bench/server.py: a tiny run yields a sound result for every transport and N,
the relay's envelopes by SEND and by DELIVER on the unidentified path alike."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import socket
import sys
from pathlib import Path
from types import ModuleType

import asyncpg
import pytest

from tests.conftest import require

BENCH_PATH = Path(__file__).resolve().parents[2] / "bench" / "server.py"
DEVICES = (2, 4)
MESSAGES = 5


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("enclave_bench_server", BENCH_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5):
            return True
    except OSError:
        return False


def _postgres_answers(dsn: str) -> bool:
    async def probe() -> bool:
        try:
            connection = await asyncpg.connect(dsn, timeout=5)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        await connection.close()
        return True

    return asyncio.run(probe())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_server_bench_measures_every_transport_and_device_count(backend: str) -> None:
    """Test that a tiny run delivers everything, by SEND and by DELIVER, and reports sound rates and
    latencies per (transport, N)."""
    bench = _load_bench()
    require(
        _listening(bench.MQTT_HOST, bench.MQTT_PORT),
        f"Mosquitto is not listening on {bench.MQTT_HOST}:{bench.MQTT_PORT}",
    )
    if backend == bench.POSTGRES:
        require(_postgres_answers(bench.POSTGRES_DSN), f"PostgreSQL is not reachable at {bench.POSTGRES_DSN}")

    results = bench.run(devices=DEVICES, messages=MESSAGES, backends=[backend])

    transports = (bench.MOSQUITTO, backend, backend + bench.UNIDENTIFIED)
    expected = [(transport, n) for transport in transports for n in DEVICES]
    assert sorted((r.transport, r.devices) for r in results) == sorted(expected)
    for result in results:
        assert result.delivered == result.devices * MESSAGES, result
        assert result.messages_per_device == MESSAGES, result
        assert math.isfinite(result.envelopes_per_second) and result.envelopes_per_second > 0, result
        assert math.isfinite(result.p99_ms) and 0 < result.p50_ms <= result.p99_ms, result
