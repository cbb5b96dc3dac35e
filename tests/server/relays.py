"""Real relay processes for the server's end-to-end tests, on either backend, and the waiting
they need: ``relays`` backs the ``start_relay`` fixtures of tests/server/conftest.py."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.server.stores import POSTGRES_DSN, drop_schema
from tests.support.relay import RelayProcess

POLL_SECONDS = 0.05
"""How often a test looks again at a condition it waits for (always with a deadline)."""
SCENARIO_SECONDS = 120

RelayFactory = Callable[..., RelayProcess]


def configure(data_dir: Path, backend: str, settings: dict[str, object]) -> str | None:
    """Write the relay's server.toml; return the PostgreSQL schema to drop afterwards."""
    data_dir.mkdir(parents=True, exist_ok=True)
    schema = None
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    if backend == "postgres":
        schema = "t_" + uuid.uuid4().hex[:12]
        lines += ['backend = "postgres"', f'postgres_dsn = "{POSTGRES_DSN}"', f'postgres_schema = "{schema}"']
    (data_dir / "server.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return schema


def relays(tmp_path: Path, backend: str) -> Iterator[RelayFactory]:
    """``start(data_dir=None, **settings)``: a started relay on ``backend``, configured with
    ``settings`` unless ``data_dir`` is configured already; every one is stopped at the end."""
    started: list[RelayProcess] = []
    schemas: list[str] = []

    def start(data_dir: Path | None = None, **settings: object) -> RelayProcess:
        folder = data_dir or tmp_path / f"relay{len(started)}"
        if not (folder / "server.toml").exists():
            schema = configure(folder, backend, settings)
            if schema:
                schemas.append(schema)
        relay = RelayProcess(folder).start()
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.stop()
    for schema in schemas:
        asyncio.run(drop_schema(schema))


async def eventually(condition: Callable[[], Awaitable[bool]], what: str, within: float = 10) -> None:
    """Look at ``condition`` until it holds; fail, saying ``what`` did not happen, after ``within`` s."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {within} s")
        await asyncio.sleep(POLL_SECONDS)


def run(coroutine: Awaitable[None]) -> None:
    """Run a test's scenario in an event loop of its own, within ``SCENARIO_SECONDS``."""
    asyncio.run(asyncio.wait_for(coroutine, SCENARIO_SECONDS))  # type: ignore[arg-type]
