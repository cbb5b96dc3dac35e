"""The local workspace's organisation: what ``./run.sh`` makes on its first start, so that the
two-command set-up runs the trust model of a real deployment (docs/ADMIN.md).

In the data folder (``cli.profile.data_home``), beside ``local-relay/``:

- ``local-organisation/``: the root and authority keys as ``enclave-admin org init`` makes
  them (``root/``, ``authority/``), the workspace's admin key as ``enclave-admin admin init``
  makes it (``admin/``: it signs the accounts and codes the workspace makes into the key
  log), and the config the root signs, ``enclave.toml`` and ``enclave.toml.sig``, naming the
  local relay (with its log key), the local enrolment authority and that admin;
- ``local-authority/``: the enrolment authority's data folder, holding its copy of the
  sealed authority key. The relay's folder holds no key a client accepts.

The keys are sealed with passphrases kept in the OS keystore (``kept_secret``, one per key),
never in a file. With no keystore, all take the passphrase the workspace was given
(``--passphrase-file``) or one typed once per start, as the profile does. Everything is
done by running ``enclave-admin`` as an admin would, with the passphrases on its standard
input, and under a lock in the organisation's folder, so two terminals starting at once
make one organisation and sign one config.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.base import oslock
from app.base.errors import StorageError
from app.services.profiles import kept_secret, keystore_available
from cli.errors import CliError
from cli.profile import read_passphrase

ORGANISATION_FOLDER = "local-organisation"
AUTHORITY_FOLDER = "local-authority"
CONFIG_FILE = "enclave.toml"
LOCK_FILE = "organisation.lock"
AUTHORITY_KEY_FILE = "authority.key"
"""Where ``enclave-authority`` looks for its sealed key in its data folder."""
ADMIN_SECONDS = 120.0
LOCK_SECONDS = 120.0
CONFIG_YEARS = 10
ORGANISATION_NAME = "Local workspace"
ADMIN_NAME = "Local workspace admin"
"""The admin the workspace acts as when it makes accounts and codes."""


@dataclass
class Secrets:
    """The passphrases of the local organisation's keys, asked for only when needed."""

    home: Path
    passphrase_file: Path | None
    _typed: str | None = field(default=None, repr=False)

    def of(self, role: str) -> str:
        """The passphrase of the ``root``, ``authority`` or ``admin`` key."""
        if keystore_available():
            try:
                return kept_secret(f"local-organisation {self.home.resolve()} {role}")
            except StorageError as e:
                raise CliError(f"the local organisation's {role} key needs the system keystore: {e}") from e
        if self.passphrase_file is not None:
            return read_passphrase(self.passphrase_file)
        if self._typed is None:
            self._typed = getpass.getpass("Passphrase for the local organisation's keys: ")
            if not self._typed:
                raise CliError("a passphrase must not be empty")
        return self._typed


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a local service answers and the pin of its TLS key."""

    url: str
    pin: str


@dataclass(frozen=True, slots=True)
class RelayEndpoint(Endpoint):
    """The local relay: where it answers, its pin, and the key it signs its key log's heads with."""

    log_key: str
    """64 hex digits, as the relay wrote them to its ``log.pub``."""


@dataclass(frozen=True, slots=True)
class LocalOrganisation:
    folder: Path
    authority_folder: Path
    authority_key: str
    """The enrolment authority's public key, 64 hex digits (the relay's ``--authority-key``)."""
    admin_key: str
    """The workspace admin's public key, 64 hex digits (the config lists it)."""

    @property
    def config(self) -> Path:
        return self.folder / CONFIG_FILE

    @property
    def root_key(self) -> Path:
        return self.folder / "root" / "root.key"

    @property
    def admin_key_file(self) -> Path:
        return self.folder / "admin" / "admin.key"

    def admin_options(self) -> list[str]:
        """``enclave-admin``'s options that make the workspace's admin the acting one, the
        passphrase to come on standard input."""
        return [
            "--admin-key",
            str(self.admin_key_file),
            "--admin-name",
            ADMIN_NAME,
            "--admin-passphrase-file",
            "-",
        ]

    def signed_config(self, relay: RelayEndpoint, authority: Endpoint, secrets: Secrets) -> Path:
        """The config naming ``relay`` and ``authority``, signed by the root: the one signed
        before if it names them as they are, else a new version signed now."""
        with _locked(self.folder):
            text = config_text(self, relay, authority, version=1)
            previous = _version(self.config)
            if previous is not None and _names(self.config) == _names_of(text):
                return self.config
            version = (previous or 0) + 1
            self.config.write_text(config_text(self, relay, authority, version=version), encoding="utf-8")
            _admin(
                "config",
                "sign",
                str(self.config),
                "--root-key",
                str(self.root_key),
                "--passphrase-file",
                "-",
                secrets=[secrets.of("root")],
            )
        return self.config


def local_organisation(home: Path, secrets: Secrets) -> LocalOrganisation:
    """The organisation of the workspace in ``home``, made (``org init``) if it does not exist yet."""
    folder, authority_folder = home / ORGANISATION_FOLDER, home / AUTHORITY_FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(folder):
        sealed = folder / "authority" / AUTHORITY_KEY_FILE
        if not (folder / "root" / "root.key").exists():
            _admin(
                "org",
                "init",
                "--out",
                str(folder),
                "--passphrase-file",
                "-",
                "--authority-passphrase-file",
                "-",
                secrets=[secrets.of("root"), secrets.of("authority")],
            )
        if not (folder / "admin" / "admin.key").exists():
            _admin(
                "admin",
                "init",
                "--name",
                ADMIN_NAME,
                "--out",
                str(folder / "admin"),
                "--passphrase-file",
                "-",
                secrets=[secrets.of("admin")],
            )
        authority_folder.mkdir(mode=0o700, exist_ok=True)
        if not (authority_folder / AUTHORITY_KEY_FILE).exists():
            shutil.copy2(sealed, authority_folder / AUTHORITY_KEY_FILE)
        public = (folder / "authority" / "authority.pub").read_text(encoding="ascii").strip()
        admin = (folder / "admin" / "admin.pub").read_text(encoding="ascii").strip()
    return LocalOrganisation(folder, authority_folder, public, admin)


def config_text(
    organisation: LocalOrganisation, relay: RelayEndpoint, authority: Endpoint, *, version: int
) -> str:
    """The local organisation's config: its relay and its log key, its authority, no admins,
    Enclave's default policy."""
    root = (organisation.folder / "root" / "root.pub").read_text(encoding="ascii").strip()
    issued = dt.datetime.now(dt.UTC).replace(microsecond=0)
    expires = issued.replace(year=issued.year + CONFIG_YEARS)
    return "\n".join(
        [
            "# The local workspace's organisation (made by ./run.sh; cli/localorg.py).",
            "format = 1",
            f"version = {version}",
            f"issued = {issued.isoformat().replace('+00:00', 'Z')}",
            f"expires = {expires.isoformat().replace('+00:00', 'Z')}",
            "",
            "[organisation]",
            f"name = {json.dumps(ORGANISATION_NAME)}",
            f'root_key = "{root}"',
            "",
            "[relay]",
            f"urls = [{json.dumps(relay.url)}]",
            f"pins = [{json.dumps(relay.pin)}]",
            "",
            "[enrolment]",
            f'authority_key = "{organisation.authority_key}"',
            f"urls = [{json.dumps(authority.url)}]",
            f"pins = [{json.dumps(authority.pin)}]",
            "",
            "[transparency]",
            f'log_key = "{relay.log_key}"',
            f"admins = [{{ name = {json.dumps(ADMIN_NAME)}, key = {json.dumps(organisation.admin_key)} }}]",
            "",
        ]
    )


def _version(path: Path) -> int | None:
    try:
        value = tomllib.loads(path.read_text(encoding="utf-8")).get("version")
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, int) else None


def _names(path: Path) -> object:
    try:
        return _names_of(path.read_text(encoding="utf-8"))
    except OSError:
        return None


def _names_of(text: str) -> object:
    """What a local config says that can change between starts: the relay's (its log key too) and
    the authority's."""
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None
    return parsed.get("relay"), parsed.get("enrolment"), parsed.get("transparency")


def _admin(*args: str, secrets: list[str]) -> subprocess.CompletedProcess[str]:
    """``enclave-admin`` as a program, the passphrases one per line on its standard input."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and module, arguments as a list
        [sys.executable, "-m", "server.admin", *args],
        input="".join(secret + "\n" for secret in secrets),
        capture_output=True,
        text=True,
        timeout=ADMIN_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise CliError(f"enclave-admin {args[0]} {args[1]} failed: {done.stderr.strip() or done.returncode}")
    return done


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the organisation folder's lock (another workspace making or signing waits)."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + LOCK_SECONDS
        while not oslock.try_lock(fd):
            if time.monotonic() > deadline:
                raise CliError(f"another workspace holds {folder / LOCK_FILE} for too long")
            time.sleep(0.1)
        try:
            yield
        finally:
            oslock.unlock(fd)
    finally:
        os.close(fd)
