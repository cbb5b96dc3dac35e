"""enclave-authority as a program: bound first, one per data folder, a key that must open,
requests rate-limited per address, and a log with no request lines, addresses or tracebacks."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from pathlib import Path

from nacl.utils import random

from app.crypto.keys import IdentityKeyPair
from app.protocol.authority import CertifyRequest
from tests.support.authority import REPO, AuthorityProcess, Organisation, issue_code

TOO_MANY, FORBIDDEN = 429, 403


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authority.main", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_second_authority_on_the_folder_stops(authority: AuthorityProcess) -> None:
    """Test that a second authority on a data folder in use exits 2 with one line saying so,
    and the first keeps serving."""
    second = _run("--data", str(authority.data_dir), "--passphrase-file", str(authority.passphrase_file))
    assert second.returncode == 2
    assert authority.process is not None
    held_by = f"another enclave-authority (process {authority.process.pid}) is running on the data folder"
    assert held_by in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    code = issue_code(authority.data_dir, "m.still")
    request = CertifyRequest.make(
        code=code, account_id="m.still", device_id=1, identity=IdentityKeyPair.generate(random)
    )
    assert authority.client().post("/v1/certify", request.encode())[0] == 200


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
