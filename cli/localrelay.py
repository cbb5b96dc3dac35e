"""The local workspace's relay: ``enclave-server`` in a subprocess on 127.0.0.1, and its admin tool.

One relay per data folder, on a fixed port, so a second terminal finds the relay the
first one started instead of starting its own. The relay makes its TLS key and
certificate on its first start; the pin comes from that certificate file and is checked
against the key actually served on the port, so another program there is never taken
for it.

The relay runs as long as any workspace uses it, and no longer, however the workspaces
end (``/quit``, Ctrl-C, a closed terminal, SIGKILL): each one holds a lease in
``<data>/workspaces/`` (``app.base.leases``) from before it looks for the relay until it
is done, and the relay is started with ``--while-leased`` on that folder, so it stops
itself within a second or two of the last lease going. It runs in a session of its own,
so a Ctrl-C in the terminal of the workspace that started it does not reach it while
others still use it. The next workspace starts it again, from the same data and keys.

Accounts and codes are made by running ``enclave-admin`` (``python -m server.admin``) on
the relay's data folder, as an IT admin would; the client never imports the server.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.base.leases import Lease
from app.services.relay import relay_pin
from cli.errors import CliError

HOST = "127.0.0.1"
CERTIFICATE_FILE = "tls.crt"
"""Where the relay keeps its certificate in its data folder (``server/keys.py``)."""
LOG_FILE = "relay.log"
LEASE_FOLDER = "workspaces"
REFUSAL_PREFIX = "enclave-server: "
MAX_REFUSAL_BYTES = 64 * 1024
START_SECONDS = 30.0
STOP_SECONDS = 15.0
PROBE_SECONDS = 3.0
ADMIN_SECONDS = 60.0
ADMIN_ACTOR = "local-workspace"
ADMIN_REFUSED = 1
"""``enclave-admin``'s exit status when it refuses; for ``account create``, the account exists."""


@dataclass(frozen=True, slots=True)
class LocalRelay:
    data_dir: Path
    port: int
    pin: str
    started: bool
    """Whether this process started the relay (it stops when the last workspace using it is gone)."""

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def create_account(self, account_id: str, name: str) -> bool:
        """Create the account; False if it already exists."""
        done = self._admin("account", "create", account_id, "--name", name, "--department", "Local workspace")
        if done.returncode == ADMIN_REFUSED:
            return False
        self._check(done)
        return True

    def issue_code(self, account_id: str) -> str:
        return self._check(self._admin("code", "issue", account_id)).stdout.strip()

    def _admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "server.admin", "--data", str(self.data_dir), "--actor", ADMIN_ACTOR]
        return subprocess.run(  # noqa: S603 - our own interpreter and module, arguments as a list
            [*command, *args], capture_output=True, text=True, timeout=ADMIN_SECONDS, check=False
        )

    @staticmethod
    def _check(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
        if done.returncode != 0:
            raise CliError(f"enclave-admin failed: {done.stderr.strip() or done.returncode}")
        return done


@contextlib.contextmanager
def local_relay(data_dir: Path, port: int) -> Iterator[LocalRelay]:
    """The relay of ``data_dir`` on ``port``, leased for this block: the one running there, or one started."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lease = Lease.take(data_dir / LEASE_FOLDER)
    try:
        started = _served_pin(port) is None and _start(data_dir, port)
        yield LocalRelay(data_dir, port, _checked_pin(data_dir, port), started=started)
    finally:
        lease.release()


def _start(data_dir: Path, port: int) -> bool:
    """Start the relay and wait until it answers; False if another session's relay won the port meanwhile."""
    log = data_dir / LOG_FILE
    command = [sys.executable, "-m", "server.main", "--data", str(data_dir), "--host", HOST]
    leases = ["--while-leased", str(data_dir / LEASE_FOLDER)]
    with log.open("ab") as log_file:
        written_before = log_file.tell()
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, arguments as a list
            [*command, "--port", str(port), *leases],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
        )
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        answering = _served_pin(port) is not None
        if process.poll() is not None:
            if answering:
                return False
            raise CliError(f"the local relay did not start: {_refusal(log, written_before)}; see {log}")
        if answering:
            return True
        time.sleep(0.1)
    _stop(process)
    raise CliError(f"the local relay did not answer within {START_SECONDS:.0f} s; see {log}")


def _refusal(log: Path, offset: int) -> str:
    """The relay's one-line reason for refusing to start (``enclave-server: ...``), from its log."""
    try:
        with log.open("rb") as written:
            written.seek(offset)
            lines = written.read(MAX_REFUSAL_BYTES).decode("utf-8", "replace").splitlines()
    except OSError:
        lines = []
    reasons = [line.removeprefix(REFUSAL_PREFIX) for line in lines if line.startswith(REFUSAL_PREFIX)]
    return reasons[-1] if reasons else "it stopped during start-up"


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _checked_pin(data_dir: Path, port: int) -> str:
    """The pin of the relay's certificate file, once the key served on ``port`` is seen to match it."""
    certificate = data_dir / CERTIFICATE_FILE
    try:
        pin = relay_pin(ssl.PEM_cert_to_DER_cert(certificate.read_text(encoding="ascii")))
    except FileNotFoundError:
        pin = None
    except (OSError, ValueError) as e:
        raise CliError(f"the local relay's certificate {certificate} cannot be read: {e}") from e
    if pin is None or _served_pin(port) != pin:
        raise CliError(
            f"another program answers on {HOST}:{port}, not the local relay of {data_dir}; "
            "choose another port with --port"
        )
    return pin


def _served_pin(port: int) -> str | None:
    """The key pin of the TLS server on ``port``; None if nothing listens there, "" if it is not TLS."""
    context = ssl.create_default_context()
    # Only the key is looked at, and it is compared with the pin; no CA signed the relay's certificate.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((HOST, port), timeout=PROBE_SECONDS) as raw,
            context.wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ConnectionRefusedError:
        return None
    except (OSError, ssl.SSLError):
        return ""
    return relay_pin(der) if der else ""
