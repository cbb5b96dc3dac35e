"""The local workspace's services: ``enclave-authority`` and ``enclave-server`` in subprocesses on
127.0.0.1, and the admin tool.

One enrolment authority and one relay per data folder, on fixed ports (the relay's, and
the next one for the authority), so a second terminal finds the services the first one
started instead of starting its own. Each makes its TLS key and certificate on its first
start; a pin comes from that certificate file and is checked against the key actually
served on the port, so another program there is never taken for the service. The
authority is given its key's passphrase on a pipe (``--passphrase-file -``), never in a
file; the relay is given the authority's public key (``--authority-key``).

The services run as long as any workspace uses them, and no longer, however the
workspaces end (``/quit``, Ctrl-C, a closed terminal, SIGKILL): each one holds a lease in
``<relay data>/workspaces/`` (``app.base.leases``) from before it looks for them until it
is done, and both are started with ``--while-leased`` on that folder, so they stop
themselves within a second or two of the last lease going. They run in sessions of their
own, so a Ctrl-C in the terminal of the workspace that started them does not reach them
while others still use them. The next workspace starts them again, from the same data and keys.

Accounts and codes are made by running ``enclave-admin`` (``python -m server.admin``) on
the relay's and the authority's data folders, as an IT admin would, signed with the
workspace's admin key (cli/localorg.py); the client never imports the server.
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
from cli.localorg import Endpoint, LocalOrganisation, RelayEndpoint, Secrets

HOST = "127.0.0.1"
CERTIFICATE_FILE = "tls.crt"
"""Where the relay keeps its certificate in its data folder (``server/keys.py``)."""
LOG_PUBLIC_FILE = "log.pub"
"""Where the relay writes its log key's public half, in hex (``server/keys.py``)."""
LOG_FILE = "relay.log"
AUTHORITY_LOG_FILE = "authority.log"
LEASE_FOLDER = "workspaces"
REFUSAL_PREFIXES = ("enclave-server: ", "enclave-authority: ")
MAX_REFUSAL_BYTES = 64 * 1024
START_SECONDS = 30.0
STOP_SECONDS = 15.0
PROBE_SECONDS = 3.0
ADMIN_SECONDS = 60.0
ADMIN_REFUSED = 1
"""``enclave-admin``'s exit status when it refuses; for ``account create``, the account exists."""


@dataclass(frozen=True, slots=True)
class LocalServices:
    data_dir: Path
    """The relay's data folder."""
    organisation: LocalOrganisation
    relay: RelayEndpoint
    authority: Endpoint
    started: bool
    """Whether this process started the relay (they stop when the last workspace using them is gone)."""
    secrets: Secrets
    """The admin key's passphrase, for the changes the workspace makes as its admin."""

    @property
    def url(self) -> str:
        return self.relay.url

    def create_account(self, account_id: str, name: str) -> bool:
        """Create the account at the relay; False if it already exists."""
        done = self._admin("account", "create", account_id, "--name", name, "--department", "Local workspace")
        if done.returncode == ADMIN_REFUSED:
            return False
        self._check(done)
        return True

    def issue_code(self, account_id: str) -> str:
        """A code from ``enclave-admin enrol``, issued in the authority's store as IT would."""
        done = self._check(
            self._admin(
                "enrol",
                account_id,
                "--config",
                str(self.organisation.config),
                "--authority-data",
                str(self.organisation.authority_folder),
            )
        )
        lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
        return lines["code"]

    def _admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``enclave-admin`` as the workspace's admin, the admin key's passphrase on its standard input."""
        command = [sys.executable, "-m", "server.admin", "--data", str(self.data_dir)]
        return subprocess.run(  # noqa: S603 - our own interpreter and module, arguments as a list
            [*command, *self.organisation.admin_options(), *args],
            input=self.secrets.of("admin") + "\n",
            capture_output=True,
            text=True,
            timeout=ADMIN_SECONDS,
            check=False,
        )

    @staticmethod
    def _check(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
        if done.returncode != 0:
            raise CliError(f"enclave-admin failed: {done.stderr.strip() or done.returncode}")
        return done


@contextlib.contextmanager
def local_services(
    data_dir: Path, port: int, organisation: LocalOrganisation, secrets: Secrets
) -> Iterator[LocalServices]:
    """The relay of ``data_dir`` on ``port`` and the authority on ``port + 1``, leased for this block:
    the ones running there, or ones started now; with the config that names them signed."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lease = Lease.take(data_dir / LEASE_FOLDER)
    leases = ["--while-leased", str(data_dir / LEASE_FOLDER)]
    authority_dir, authority_port = organisation.authority_folder, port + 1
    try:
        relay = [sys.executable, "-m", "server.main", "--data", str(data_dir), "--host", HOST]
        relay += ["--port", str(port), "--authority-key", organisation.authority_key, *leases]
        started = _served_pin(port) is None and _start(relay, port, data_dir / LOG_FILE, None)
        if _served_pin(authority_port) is None:
            authority = [sys.executable, "-m", "authority.main", "--data", str(authority_dir)]
            authority += ["--host", HOST, "--port", str(authority_port), "--passphrase-file", "-", *leases]
            _start(authority, authority_port, authority_dir / AUTHORITY_LOG_FILE, secrets.of("authority"))
        relay_end = RelayEndpoint(
            f"https://{HOST}:{port}", _checked_pin(data_dir, port, "relay"), _log_key(data_dir)
        )
        authority_end = Endpoint(
            f"https://{HOST}:{authority_port}",
            _checked_pin(authority_dir, authority_port, "enrolment authority"),
        )
        organisation.signed_config(relay_end, authority_end, secrets)
        yield LocalServices(
            data_dir, organisation, relay_end, authority_end, started=started, secrets=secrets
        )
    finally:
        lease.release()


def _start(command: list[str], port: int, log: Path, passphrase: str | None) -> bool:
    """Start the service and wait until it answers on ``port``; False if another session's won the
    port meanwhile. ``passphrase`` goes on its standard input, then the pipe is closed."""
    with log.open("ab") as log_file:
        written_before = log_file.tell()
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, arguments as a list
            command,
            stdin=subprocess.PIPE if passphrase is not None else subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
        )
    if process.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(((passphrase or "") + "\n").encode("utf-8"))
        process.stdin.close()
    what = "the local enrolment authority" if "authority.main" in command else "the local relay"
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        answering = _served_pin(port) is not None
        if process.poll() is not None:
            if answering:
                return False
            raise CliError(f"{what} did not start: {_refusal(log, written_before)}; see {log}")
        if answering:
            return True
        time.sleep(0.1)
    _stop(process)
    raise CliError(f"{what} did not answer within {START_SECONDS:.0f} s; see {log}")


def _refusal(log: Path, offset: int) -> str:
    """The relay's one-line reason for refusing to start (``enclave-server: ...``), from its log."""
    try:
        with log.open("rb") as written:
            written.seek(offset)
            lines = written.read(MAX_REFUSAL_BYTES).decode("utf-8", "replace").splitlines()
    except OSError:
        lines = []
    reasons = [line.split(": ", 1)[1] for line in lines if line.startswith(REFUSAL_PREFIXES) and ": " in line]
    return reasons[-1] if reasons else "it stopped during start-up"


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _checked_pin(data_dir: Path, port: int, what: str) -> str:
    """The pin of the service's certificate file, once the key served on ``port`` is seen to match it."""
    certificate = data_dir / CERTIFICATE_FILE
    try:
        pin = relay_pin(ssl.PEM_cert_to_DER_cert(certificate.read_text(encoding="ascii")))
    except FileNotFoundError:
        pin = None
    except (OSError, ValueError) as e:
        raise CliError(f"the local {what}'s certificate {certificate} cannot be read: {e}") from e
    if pin is None or _served_pin(port) != pin:
        raise CliError(
            f"another program answers on {HOST}:{port}, not the local {what} of {data_dir}; "
            "choose another port with --port"
        )
    return pin


def _log_key(data_dir: Path) -> str:
    """The relay's log key from its ``log.pub``, which it writes before it answers on its port."""
    path = data_dir / LOG_PUBLIC_FILE
    try:
        key = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        key = ""
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"the local relay's log key {path} cannot be read: {e}") from e
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise CliError(
            f"{path} holds no log key: the local relay writes it when it starts, so this one was started"
            " by an older Enclave or the file was damaged; close every workspace, then start again"
        )
    return key


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
