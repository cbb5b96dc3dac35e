"""A real enrolment authority in a subprocess, its key made by the real ``enclave-admin org
init``, and a minimal HTTPS client that checks the authority's pin.

``Organisation.init`` runs org init once (two Argon2id seals at the production cost) into a
folder; ``AuthorityProcess`` runs ``python -m authority.main`` on 127.0.0.1 over a data
folder holding a copy of the sealed authority key, and reads its pin and port from its
output. ``AuthorityClient.post`` opens a fresh TLS connection, refuses it unless the
server's public key has the printed pin, and returns the status and body.
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


class AuthorityProcess:
    def __init__(self, data_dir: Path, passphrase_file: Path, *extra: str, port: int = 0) -> None:
        self.data_dir = data_dir
        self.passphrase_file = passphrase_file
        self.extra = extra
        self.port = port
        self.pin = ""
        self.output: list[str] = []
        self.process: subprocess.Popen[str] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "authority.main",
            "--data",
            str(self.data_dir),
            "--passphrase-file",
            str(self.passphrase_file),
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
            devices = db.execute("SELECT * FROM devices ORDER BY account_id, device_id").fetchall()
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


def issue_code(data_dir: Path, account: str, *extra: str) -> str:
    """A code from the real ``enclave-admin authority code``."""
    issued = run_admin("authority", "code", account, "--authority-data", str(data_dir), *extra)
    if issued.returncode != 0:
        raise RuntimeError(issued.stderr)
    return issued.stdout.strip()
