"""A real enrolment authority in a subprocess, its key made by the real ``enclave-admin org
init``, and a minimal HTTPS client that checks the authority's pin.

``Organisation.init`` runs org init once (two Argon2id seals at the production cost) into a
folder; ``AuthorityProcess`` runs ``python -m authority.main`` on 127.0.0.1 over a data
folder holding a copy of the sealed authority key, and reads its pin and port from its
output. With ``passphrase_on_stdin`` it is given ``--passphrase-file -`` and a real pipe as
its standard input, with the passphrase on it, as the local workspace starts it.
``AuthorityClient.post`` opens a fresh TLS connection, refuses it unless the server's
public key has the printed pin, and returns the status and body.
"""

from __future__ import annotations

import http.client
import shutil
import sqlite3
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app.base.tlsfiles import public_key_pin
from app.crypto.keys import IdentityKeyPair
from app.provisioning.keyfile import Role, open_key_file
from tests.support.services import Banner, start_service, stop_service

REPO = Path(__file__).resolve().parents[2]
AUTHORITY_BANNER = Banner("authority", "Authority public-key pin:", "enclave-authority listening on")
AUTHORITY_PASSPHRASE = "authority passphrase for tests"
ROOT_PASSPHRASE = "root passphrase for tests"


def run_admin(*args: str) -> subprocess.CompletedProcess[str]:
    """The real ``enclave-admin`` as a program."""
    return subprocess.run(
        [sys.executable, "-m", "server.admin", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass(frozen=True)
class Organisation:
    folder: Path
    passphrase_file: Path
    authority_public: bytes

    @classmethod
    def init(cls, folder: Path) -> Organisation:
        folder.mkdir(parents=True, exist_ok=True)
        root_pass, authority_pass = folder / "root.pass", folder / "authority.pass"
        root_pass.write_text(ROOT_PASSPHRASE + "\n")
        authority_pass.write_text(AUTHORITY_PASSPHRASE + "\n")
        made = run_admin(
            "org",
            "init",
            "--out",
            str(folder / "org"),
            "--passphrase-file",
            str(root_pass),
            "--authority-passphrase-file",
            str(authority_pass),
        )
        if made.returncode != 0:
            raise RuntimeError(made.stderr)
        public = bytes.fromhex((folder / "org" / "authority" / "authority.pub").read_text().strip())
        return cls(folder, authority_pass, public)

    @property
    def key_file(self) -> Path:
        return self.folder / "org" / "authority" / "authority.key"

    def authority_key(self) -> IdentityKeyPair:
        """The authority's signing key, opened as the authority opens it (for forging tests)."""
        key = open_key_file(
            self.key_file.read_bytes(), AUTHORITY_PASSPHRASE, role=Role.AUTHORITY, source="test"
        )
        return IdentityKeyPair.from_seed(key.secret_key[:32])

    def data_folder(self, path: Path) -> Path:
        """A new authority data folder holding a copy of the sealed key, as ADMIN.md sets one up."""
        path.mkdir(mode=0o700, parents=True)
        shutil.copy2(self.key_file, path / "authority.key")
        return path


PIPE_LAUNCHER = """
import os, sys
from pathlib import Path
read, write = os.pipe()
os.write(write, Path(sys.argv[1]).read_bytes().splitlines()[0] + b"\\n")
os.close(write)
os.dup2(read, 0)
os.close(read)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""
"""Plays the local workspace: puts the passphrase on a pipe that becomes standard input, then
becomes the authority itself (exec), so its process id, output and signals are the authority's."""


class AuthorityProcess:
    def __init__(
        self,
        data_dir: Path,
        passphrase_file: Path,
        *extra: str,
        port: int = 0,
        passphrase_on_stdin: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.passphrase_file = passphrase_file
        self.extra = extra
        self.port = port
        self.passphrase_on_stdin = passphrase_on_stdin
        self.pin = ""
        self.output: list[str] = []
        self.process: subprocess.Popen[str] | None = None

    def command(self) -> list[str]:
        if self.passphrase_on_stdin:
            start, passphrase = [sys.executable, "-c", PIPE_LAUNCHER, str(self.passphrase_file)], "-"
        else:
            start, passphrase = [sys.executable], str(self.passphrase_file)
        return [
            *start,
            "-m",
            "authority.main",
            "--data",
            str(self.data_dir),
            "--passphrase-file",
            passphrase,
            "--port",
            str(self.port),
            *self.extra,
        ]

    def start(self) -> AuthorityProcess:
        self.process, self.pin, self.port = start_service(
            self.command(), AUTHORITY_BANNER, self.output, cwd=REPO
        )
        return self

    def stop(self) -> None:
        stop_service(self.process, self.output)
        self.process = None

    def client(self) -> AuthorityClient:
        return AuthorityClient(self.port, self.pin, self.data_dir / "tls.crt")

    def rows(self) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        """Every code and device row, to show that a refused request changed nothing."""
        with sqlite3.connect(self.data_dir / "authority.sqlite3") as db:
            codes = db.execute("SELECT * FROM codes ORDER BY code_id").fetchall()
            devices = db.execute("SELECT * FROM devices ORDER BY device_id").fetchall()
        return codes, devices


class PinMismatch(Exception):
    """The server's TLS key is not the one pinned."""


@dataclass(frozen=True)
class AuthorityClient:
    port: int
    pin: str
    certificate: Path

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        context = ssl.create_default_context(cafile=str(self.certificate))
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=30)
        try:
            connection.connect()
            assert connection.sock is not None
            der = connection.sock.getpeercert(binary_form=True)
            pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
            if public_key_pin(pem) != self.pin:
                raise PinMismatch(self.pin)
            connection.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream"})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


SCHEMA_1 = """
CREATE TABLE codes (
    code_id BLOB PRIMARY KEY, code_key BLOB NOT NULL, account_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL, spent_at INTEGER
);
CREATE TABLE devices (
    account_id TEXT NOT NULL, device_id INTEGER NOT NULL, identity_key BLOB NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0, certified_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, device_id)
);
INSERT INTO devices VALUES ('a.first', 1, zeroblob(32), 0, 1700000000);
PRAGMA user_version = 1;
"""
"""The first build's store: devices keyed by (account, the device id the device chose)."""


def make_schema_1_store(data_dir: Path) -> bytes:
    """An ``authority.sqlite3`` in ``data_dir`` as the first build left it, with one device; its bytes."""
    path = data_dir / "authority.sqlite3"
    db = sqlite3.connect(path)
    try:
        db.executescript(SCHEMA_1)
    finally:
        db.close()
    return path.read_bytes()


def issue_code(data_dir: Path, account: str, *extra: str) -> str:
    """A code from the real ``enclave-admin authority code``."""
    issued = run_admin("authority", "code", account, "--authority-data", str(data_dir), *extra)
    if issued.returncode != 0:
        raise RuntimeError(issued.stderr)
    return issued.stdout.strip()
