"""Test helpers for the store: a settable clock, file snapshots, and a private Secret Service."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keyring.backends.SecretService
import secretstorage

from storage.profilelock import LOCK_NAME
from storage.store import DATABASE_NAME

PASSPHRASE = "correct horse battery staple"
SECRET_SERVICE_PASSWORD = b"enclave-test-keyring"


class FakeClock:
    """A clock the test moves by hand (unix seconds)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


FileState = tuple[str, int, int]


def snapshot(folder: Path) -> dict[str, FileState]:
    """Every file under ``folder``: its SHA-256, size and modification time in ns.

    The profile lock file is left out: every open writes who holds it, and empties it again.
    """
    state = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.relative_to(folder) != Path(LOCK_NAME):
            info = path.stat()
            state[str(path.relative_to(folder))] = (
                hashlib.sha256(path.read_bytes()).hexdigest(),
                info.st_size,
                info.st_mtime_ns,
            )
    return state


def database_files(profile: Path) -> dict[str, bytes]:
    """The raw bytes of the database, its WAL and its shared-memory index, where they exist."""
    files = {}
    for suffix in ("", "-wal", "-shm"):
        path = profile / (DATABASE_NAME + suffix)
        if path.exists():
            files[path.name] = path.read_bytes()
    return files


def tree_bytes(folder: Path) -> bytes:
    """Every file under ``folder`` concatenated, to look for a secret anywhere in it."""
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@dataclass
class SecretService:
    """gnome-keyring's Secret Service on a private D-Bus session bus, with its own HOME."""

    address: str
    bus_pid: int
    root: Path

    @classmethod
    def available(cls) -> bool:
        return all(shutil.which(tool) for tool in ("dbus-daemon", "gnome-keyring-daemon"))

    @classmethod
    def start(cls, root: Path) -> SecretService:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for name in ("home", "data", "config", "run"):
            (root / name).mkdir(mode=0o700, parents=True, exist_ok=True)
        env |= {
            "HOME": str(root / "home"),
            "XDG_DATA_HOME": str(root / "data"),
            "XDG_CONFIG_HOME": str(root / "config"),
            "XDG_RUNTIME_DIR": str(root / "run"),
        }
        bus = subprocess.run(
            ["dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        address, pid = bus.stdout.split()[:2]
        service = cls(address, int(pid), root)
        try:
            subprocess.run(
                ["gnome-keyring-daemon", "--unlock", "--components=secrets", "--daemonize"],
                env=env | {"DBUS_SESSION_BUS_ADDRESS": address},
                input=SECRET_SERVICE_PASSWORD,
                capture_output=True,
                timeout=30,
                check=True,
            )
            service._wait_ready()
        except BaseException:
            service.stop()
            raise
        return service

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            with self.connection() as conn:
                if secretstorage.check_service_availability(conn):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("gnome-keyring did not appear on the private bus")
            time.sleep(0.05)

    @contextlib.contextmanager
    def connection(self) -> Iterator[secretstorage.DBusConnection]:
        previous = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = self.address
        try:
            conn = secretstorage.dbus_init()
        finally:
            if previous is None:
                del os.environ["DBUS_SESSION_BUS_ADDRESS"]
            else:
                os.environ["DBUS_SESSION_BUS_ADDRESS"] = previous
        try:
            yield conn
        finally:
            conn.close()

    def backend(self) -> keyring.backends.SecretService.Keyring:
        """The keyring backend for this service (the bus address is read from the environment per call)."""
        return keyring.backends.SecretService.Keyring()

    def lock(self) -> None:
        with self.connection() as conn:
            secretstorage.get_default_collection(conn).lock()

    def secrets(self) -> list[bytes]:
        """Every secret stored in the default collection."""
        with self.connection() as conn:
            return [item.get_secret() for item in secretstorage.get_default_collection(conn).get_all_items()]

    def stop(self) -> None:
        """Stop the bus; gnome-keyring exits when its bus goes away."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.bus_pid, signal.SIGTERM)
