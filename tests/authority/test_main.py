"""enclave-authority as a program: bound first, one per data folder, a key that must open,
requests rate-limited per address, and a log with no request lines, addresses or tracebacks."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nacl.utils import random

from app.base.leases import CHECK_SECONDS, Lease
from app.crypto.keys import IdentityKeyPair
from app.protocol.authority import CertifyRequest
from authority.store import STORE_FILE
from tests.support.authority import REPO, AuthorityProcess, Organisation, issue_code, make_schema_1_store
from tests.support.services import STOP_SECONDS

TOO_MANY, FORBIDDEN = 429, 403


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authority.main", *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _certifies(authority: AuthorityProcess, account: str) -> bool:
    """Whether ``authority`` answers a certify request with a fresh code of ``account`` with 200."""
    request = CertifyRequest.make(
        code=issue_code(authority.data_dir, account), identity=IdentityKeyPair.generate(random)
    )
    return authority.client().post("/v1/certify", request.encode())[0] == 200


def test_a_second_authority_on_the_folder_stops(authority: AuthorityProcess) -> None:
    """Test that a second authority on a data folder in use exits 2 with one line saying so,
    and the first keeps serving."""
    second = _run("--data", str(authority.data_dir), "--passphrase-file", str(authority.passphrase_file))
    assert second.returncode == 2
    assert authority.process is not None
    held_by = f"another enclave-authority (process {authority.process.pid}) is running on the data folder"
    assert held_by in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert _certifies(authority, "m.still")


def test_a_taken_port_writes_nothing(organisation: Organisation, tmp_path: Path) -> None:
    """Test that an authority whose port is taken exits 2 naming host and port, before it makes
    its data folder, keys or database."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = tmp_path / "never"
        result = _run(
            "--data", str(data), "--passphrase-file", str(organisation.passphrase_file), "--port", str(port)
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert not data.exists()


def test_a_wrong_passphrase_opens_nothing(organisation: Organisation, tmp_path: Path) -> None:
    """Test that a passphrase that does not open the key file is exit 1, one line, no TLS key made."""
    data = organisation.data_folder(tmp_path / "data")
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    result = _run("--data", str(data), "--passphrase-file", str(wrong), "--port", "0")
    assert result.returncode == 1
    assert "the passphrase does not open" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (data / "tls.key").exists()


def test_the_passphrase_on_standard_input_opens_the_key(organisation: Organisation, tmp_path: Path) -> None:
    """Test that with --passphrase-file - the authority reads its passphrase from a real pipe on
    its standard input, opens its key and serves."""
    data = organisation.data_folder(tmp_path / "data")
    process = AuthorityProcess(data, organisation.passphrase_file, passphrase_on_stdin=True)
    command = process.command()
    assert command[command.index("--passphrase-file") + 1] == "-"
    process.start()
    try:
        assert f"Authority key: {organisation.authority_public.hex()}\n" in process.output
        assert _certifies(process, "m.stdin")
    finally:
        process.stop()


@pytest.mark.parametrize("stdin", ["not the passphrase\n", "", "\n"])
def test_a_wrong_or_missing_passphrase_on_standard_input_serves_nothing(
    organisation: Organisation, tmp_path: Path, stdin: str
) -> None:
    """Test that a wrong passphrase on standard input is exit 1, and none (closed at once, or an
    empty line) exit 2, each with one line, no pin printed, no TLS key or database made."""
    data = organisation.data_folder(tmp_path / "data")
    result = _run("--data", str(data), "--passphrase-file", "-", "--port", "0", stdin=stdin)
    if stdin.strip():
        assert result.returncode == 1
        assert "the passphrase does not open" in result.stderr
    else:
        assert result.returncode == 2
        assert "enclave-authority: standard input has an empty first line" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "pin" not in result.stdout
    assert "listening" not in result.stdout
    assert not (data / "tls.key").exists()
    assert not (data / "authority.sqlite3").exists()


def test_while_leased_stops_once_the_last_lease_is_released(
    organisation: Organisation, tmp_path: Path
) -> None:
    """Test that with --while-leased the authority serves while a lease is held, keeps serving
    when one of two is released, and stops by itself (exit 0) once the last one is."""
    leases = tmp_path / "leases"
    first, last = Lease.take(leases), Lease.take(leases)
    data = organisation.data_folder(tmp_path / "data")
    process = AuthorityProcess(data, organisation.passphrase_file, "--while-leased", str(leases)).start()
    try:
        first.release()
        time.sleep(2 * CHECK_SECONDS)  # the watcher counts once a second: give it two rounds
        assert _certifies(process, "m.leased")
        last.release()
        assert process.process is not None
        assert process.process.wait(timeout=STOP_SECONDS) == 0
    finally:
        last.release()
        process.stop()
    assert any("no process holds a lease" in line for line in process.output)


def test_a_store_of_schema_1_is_refused(organisation: Organisation, tmp_path: Path) -> None:
    """Test that an authority whose database is of schema 1 (devices keyed by the ids devices chose)
    exits 1 saying it predates assigned device ids and must be moved aside, and leaves it as it was."""
    data = organisation.data_folder(tmp_path / "data")
    old = make_schema_1_store(data)
    result = _run("--data", str(data), "--passphrase-file", str(organisation.passphrase_file), "--port", "0")
    assert result.returncode == 1
    assert "is of schema 1, which predates device ids assigned by the authority" in result.stderr
    assert "move the file aside" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "listening" not in result.stdout
    assert old == (data / STORE_FILE).read_bytes()


def test_attempts_are_limited_per_address_and_nothing_is_logged_per_request(
    organisation: Organisation, tmp_path: Path
) -> None:
    """Test that past --attempts-per-minute an address gets 429, and that the log holds no line
    per request, no client address and no traceback, even for a request that is not HTTP."""
    data = organisation.data_folder(tmp_path / "data")
    process = AuthorityProcess(data, organisation.passphrase_file, "--attempts-per-minute", "2").start()
    try:
        client = process.client()
        assert [client.post("/v1/certify", b"\x01")[0] for _ in range(3)] == [400, 400, TOO_MANY]
        context = ssl.create_default_context(cafile=str(data / "tls.crt"))
        with (
            socket.create_connection(("127.0.0.1", process.port)) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            assert b" 400 Bad Request" in tls.recv(100)
    finally:
        process.stop()
    after = "".join(process.output).split("enclave-authority listening on", 1)[1].split("\n", 1)[1]
    assert "127.0.0.1" not in after
    assert "Traceback" not in after
    assert len(after.strip().splitlines()) <= 1


def test_admin_md_states_the_programs_defaults() -> None:
    """Test that docs/ADMIN.md §10 gives each setting of enclave-authority with its real default,
    and the revocation bound as the certificate lifetime."""
    from authority.main import _parser

    doc = (REPO / "docs" / "ADMIN.md").read_text(encoding="utf-8")
    defaults = vars(_parser().parse_args(["--data", "d", "--passphrase-file", "p"]))
    for name in (
        "certificate_days",
        "renew_grace_days",
        "attempts_per_minute",
        "connections_per_address",
        "connections_total",
        "tls_handshake_seconds",
        "request_head_seconds",
    ):
        assert f"`--{name.replace('_', '-')}` ({defaults[name]})" in doc, name
    assert f"**{defaults['certificate_days']} days** by default" in doc
