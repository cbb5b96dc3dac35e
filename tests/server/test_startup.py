"""What an admin sees when the relay cannot start: one line naming the cause, no traceback."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.datalock import LOCK_NAME
from server.store.base import schema_refusal
from server.store.sqlite import SCHEMA_VERSION
from tests.server.stores import PostgresBackend, StoreBackend
from tests.support.otheruser import OTHER_USER, as_other_user, shared_folder
from tests.support.relay import REPO, TEST_AUTHORITY, RelayProcess

START_SECONDS = 60


def _start(
    data: Path,
    port: int = 0,
    *,
    as_other: bool = False,
    authority_key: str | None = TEST_AUTHORITY.public.hex(),
) -> subprocess.CompletedProcess[str]:
    """Run the relay to its end (these relays stop at start-up), trusting ``authority_key``
    (``--authority-key``; None gives none)."""
    command = [sys.executable, "-m", "server.main", "--data", str(data), "--port", str(port)]
    if authority_key is not None:
        command += ["--authority-key", authority_key]
    if as_other:
        command = as_other_user(command)
    return subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
        check=False,
    )


def _one_line_refusal(done: subprocess.CompletedProcess[str]) -> str:
    """The relay's error line, once it is seen to have stopped with nothing but that line."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "pin" not in done.stdout
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr.strip()


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder the relay, run as another user, may enter."""
    with shared_folder() as folder:
        yield folder


def test_a_host_with_a_trailing_space_is_refused_naming_the_setting(tmp_path: Path) -> None:
    """Test that host = "0.0.0.0 " in server.toml stops the relay with one line naming host and the value."""
    (tmp_path / "server.toml").write_text('host = "0.0.0.0 "\n', encoding="utf-8")
    done = _start(tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "host '0.0.0.0 '" in done.stderr
    assert not (tmp_path / "tls.key").exists()


def test_a_host_that_does_not_resolve_is_refused_naming_the_setting(tmp_path: Path) -> None:
    """Test that a host name that does not resolve (.invalid, RFC 2606) stops the relay naming host."""
    (tmp_path / "server.toml").write_text('host = "relay.invalid"\n', encoding="utf-8")
    done = _start(tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "host 'relay.invalid' does not resolve" in done.stderr
    assert not (tmp_path / "tls.key").exists()


def test_a_second_relay_on_a_data_folder_is_refused_naming_the_first(tmp_path: Path) -> None:
    """Test that a second relay on a running relay's data folder stops naming the first's process.

    The first keeps serving, and once it is killed (SIGKILL: no clean-up at all) a new
    relay starts on the folder: the lock file left behind blocks nothing.
    """
    first = RelayProcess(tmp_path / "relay").start()
    try:
        assert first.process is not None
        line = _one_line_refusal(_start(first.data_dir))
        assert f"another relay (process {first.process.pid}) is running on the data folder" in line
        assert first.process.poll() is None
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        assert (first.data_dir / LOCK_NAME).exists()
        first.start()
    finally:
        first.stop()


def test_a_taken_port_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """Test that a relay whose port is taken names host and port, prints no pin and makes no folder or key."""
    data = tmp_path / "relay"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        line = _one_line_refusal(_start(data, port))
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert "in use" in line
    assert not data.exists()


def test_a_data_folder_that_is_a_file_is_refused_naming_it(tmp_path: Path) -> None:
    """Test that --data naming a file stops the relay with one line saying so."""
    data = tmp_path / "relay"
    data.write_bytes(b"not a folder")
    line = _one_line_refusal(_start(data))
    assert str(data) in line
    assert "is not a folder" in line
    assert data.read_bytes() == b"not a folder"


def test_a_data_folder_the_service_user_cannot_read_is_refused_naming_it(shared_tmp: Path) -> None:
    """Test that a data folder only root may enter stops the relay, run as another user, with one line."""
    data = shared_tmp / "relay"
    data.mkdir(mode=0o700)
    (data / "server.toml").write_text("port = 0\n", encoding="utf-8")
    line = _one_line_refusal(_start(data, as_other=True))
    assert f"cannot read {data / 'server.toml'}: Permission denied" in line
    assert sorted(p.name for p in data.iterdir()) == ["server.toml"]


def test_a_data_folder_the_service_user_cannot_write_is_refused_naming_it(shared_tmp: Path) -> None:
    """Test that a data folder the relay's user may read but not write stops it with one line naming it."""
    data = shared_tmp / "relay"
    data.mkdir(mode=0o755)
    line = _one_line_refusal(_start(data, as_other=True))
    assert f"the data folder {data} cannot be read and written by this user (uid {OTHER_USER})" in line
    assert list(data.iterdir()) == []


def test_a_relay_without_the_authority_key_is_refused_naming_the_setting(tmp_path: Path) -> None:
    """Test that a relay given no authority_key (neither in server.toml nor as --authority-key)
    stops, exit 2, with one line naming the setting, the flag and its server.toml, and writes
    no key: it could register no device."""
    data = tmp_path / "relay"
    data.mkdir()
    (data / "server.toml").write_text("port = 0\n", encoding="utf-8")
    line = _one_line_refusal(_start(data, authority_key=None))
    assert f"set authority_key in {data / 'server.toml'} (or --authority-key)" in line
    assert sorted(p.name for p in data.iterdir()) == ["server.toml"]


@pytest.mark.parametrize(
    "key",
    [
        TEST_AUTHORITY.public.hex()[:63],
        TEST_AUTHORITY.public.hex() + "0",
        TEST_AUTHORITY.public.hex().upper(),
        " " + TEST_AUTHORITY.public.hex(),
        "z" * 64,
        "",
    ],
    ids=["63 digits", "65 digits", "upper case", "leading space", "not hex", "empty"],
)
@pytest.mark.parametrize("where", ["flag", "server.toml"])
def test_a_malformed_authority_key_is_refused_naming_the_setting(
    tmp_path: Path, key: str, where: str
) -> None:
    """Test that an authority_key that is not 64 lower-case hex digits, given as the flag or in
    server.toml, stops the relay, exit 2, with one line naming authority_key, writing no key."""
    data = tmp_path / "relay"
    data.mkdir()
    settings = f"authority_key = {key!r}\n".replace("'", '"') if where == "server.toml" else ""
    (data / "server.toml").write_text("port = 0\n" + settings, encoding="utf-8")
    line = _one_line_refusal(_start(data, authority_key=key if where == "flag" else None))
    assert "authority_key" in line
    if key:
        assert "authority_key must be an Ed25519 public key in 64 lower-case hex digits" in line
    assert sorted(p.name for p in data.iterdir()) == ["server.toml"]


def test_a_schema_1_database_stops_the_relay_with_the_schema_refusal(
    tmp_path: Path, backend: StoreBackend
) -> None:
    """Test that a relay on a database that a relay of schema 1 left (relay-signed devices, codes
    of its own), SQLite file or PostgreSQL schema, stops at start-up, exit 1, with schema_refusal's
    message and no traceback, leaving the old rows as they were."""
    asyncio.run(backend.write_schema_1())
    before = asyncio.run(backend.snapshot())
    if isinstance(backend, PostgresBackend):
        settings = {"backend": "postgres", "postgres_dsn": backend.dsn, "postgres_schema": backend.schema}
        lines = [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
        (tmp_path / "server.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = _start(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"enclave-server: {schema_refusal(1, SCHEMA_VERSION)}"]
    assert asyncio.run(backend.snapshot()) == before
