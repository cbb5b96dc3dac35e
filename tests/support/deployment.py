"""The organisation every test of a test run belongs to, deployed as ADMIN.md deploys one.

Its enrolment authority key is ``TEST_AUTHORITY``, the key every test relay trusts
(``RelayProcess``'s ``--authority-key``): the server tests sign device certificates with it
in the test process (``TestDevice.certify``), and the tests of real clients get theirs from
a real ``enclave-authority`` holding that key sealed in its data folder (as ``org init``
seals it), started on first use and shared by the run (``Deployment.authority``), with
codes from the real ``enclave-admin authority code``. A client is told where its relay and
the authority are by a config the organisation's root (a key pair of the run) signs for
that relay (``Deployment.install``), as an admin would sign one. The tests of ``org init``
itself, and ADMIN.md's walk-through, run the real tool.

The session fixture in tests/conftest.py stops the authority at the end of the run.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from nacl.utils import random

from app.provisioning.keyfile import Role, seal_key
from tests.support import organisation
from tests.support.adminkey import ADMIN_NAME, ADMIN_PUBLIC
from tests.support.authority import AUTHORITY_PASSPHRASE, AuthorityProcess, issue_code
from tests.support.relay import TEST_AUTHORITY

KEY_FILE = "authority.key"


class Reachable(Protocol):
    """A relay as a config names it (``RelayProcess``): where, its TLS pin, its log's key."""

    @property
    def https(self) -> str: ...

    @property
    def pin(self) -> str: ...

    @property
    def log_key(self) -> bytes: ...


@dataclass
class Deployment:
    folder: Path
    signer: organisation.Organisation = field(
        default_factory=lambda: organisation.Organisation(authority=(TEST_AUTHORITY.public, b""))
    )
    """The root's key pair and the authority's public key, with which configs are made and signed."""
    _authority: AuthorityProcess | None = field(default=None, repr=False)

    def authority(self) -> AuthorityProcess:
        """The run's enrolment authority, started on first use."""
        if self._authority is None:
            data = self.folder / "authority-data"
            data.mkdir(mode=0o700)
            sealed, _ = seal_key(Role.AUTHORITY, AUTHORITY_PASSPHRASE, TEST_AUTHORITY.seed, random=random)
            (data / KEY_FILE).write_bytes(sealed)
            passphrase = self.folder / "authority.pass"
            passphrase.write_text(AUTHORITY_PASSPHRASE + "\n", encoding="utf-8")
            # Every test enrols from 127.0.0.1: the per-address limit would refuse the run.
            self._authority = AuthorityProcess(data, passphrase, "--attempts-per-minute", "100000").start()
        return self._authority

    @property
    def authority_url(self) -> str:
        return f"https://127.0.0.1:{self.authority().port}"

    def code(self, account_id: str, name: str = "", department: str = "") -> str:
        """A one-time enrolment code for ``account_id`` from the run's authority, whose device's
        certificates carry ``name`` and ``department`` (as ``enclave-admin enrol`` issues them)."""
        names = ("--name", name, "--department", department) if name else ()
        return issue_code(self.authority().data_dir, account_id, *names)

    def config(self, relay: Reachable, **changes: object) -> bytes:
        """The example config naming ``relay`` (its address, pin and log key) and the run's
        authority, with no policy (Enclave's defaults) unless ``changes`` give one (as
        ``organisation.Organisation.config`` takes them)."""
        authority = self.authority()
        options: dict[str, object] = {
            "relay_urls": (relay.https,),
            "relay_pins": (relay.pin,),
            "log_key": relay.log_key,
            "admins": ((ADMIN_NAME, ADMIN_PUBLIC),),
            "authority_urls": (self.authority_url,),
            "authority_pins": (authority.pin,),
            "mandatory": "",
            "recommended": "",
            **changes,
        }
        return self.signer.config(**options)  # type: ignore[arg-type]

    def install(self, path: Path, relay: Reachable, **changes: object) -> Path:
        """A signed config for ``relay`` at ``path`` (its ``.sig`` beside it); the path."""
        return self.signer.write(path, self.config(relay, **changes))

    def stop(self) -> None:
        if self._authority is not None:
            self._authority.stop()
            self._authority = None
        shutil.rmtree(self.folder, ignore_errors=True)


_RUN: list[Deployment] = []
"""The run's deployment once made (a list, so the module's functions share it without a global)."""


def deployment() -> Deployment:
    """The test run's organisation, made on first use."""
    if not _RUN:
        _RUN.append(Deployment(Path(tempfile.mkdtemp(prefix="enclave-organisation-"))))
    return _RUN[0]


def stop_deployment() -> None:
    while _RUN:
        _RUN.pop().stop()
