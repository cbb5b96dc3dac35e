"""An enrolment authority of one test's own, beside the run's (tests/support/deployment.py), for
what the shared one cannot be made to do: another certificate lifetime, a restart, a revocation
that must not reach other tests' devices.

It holds the same key as the run's authority (``TEST_AUTHORITY``'s, its sealed key file copied
into a data folder of its own, as docs/ADMIN.md sets a second machine up), so the test relays
trust what it signs and the run's configs accept it; a config naming it is the run's config
with ``changes()``. Codes and revocations go through the real ``enclave-admin authority``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.support.authority import AuthorityProcess, issue_code, run_admin
from tests.support.deployment import KEY_FILE, deployment

UNLIMITED = ("--attempts-per-minute", "100000")
"""Every request of a test comes from 127.0.0.1: the per-address limit is for real networks."""


@dataclass
class OwnAuthority:
    process: AuthorityProcess

    @classmethod
    def start(cls, data_dir: Path, *options: str) -> OwnAuthority:
        """A new authority over ``data_dir`` started with ``options`` (``--certificate-days 1``)."""
        run = deployment().authority()
        data_dir.mkdir(mode=0o700, parents=True)
        shutil.copy2(run.data_dir / KEY_FILE, data_dir / KEY_FILE)
        return cls(AuthorityProcess(data_dir, run.passphrase_file, *UNLIMITED, *options).start())

    @property
    def data_dir(self) -> Path:
        return self.process.data_dir

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.process.port}"

    def changes(self) -> dict[str, object]:
        """What a config of the run (``Deployment.config``) changes to name this authority."""
        return {"authority_urls": (self.url,), "authority_pins": (self.process.pin,)}

    def code(self, account_id: str) -> str:
        return issue_code(self.data_dir, account_id)

    def revoke(self, account_id: str, device_id: int) -> None:
        """``enclave-admin authority revoke``: the device renews no more here."""
        revoked = run_admin(
            "authority", "revoke", account_id, str(device_id), "--authority-data", str(self.data_dir)
        )
        if revoked.returncode != 0:
            raise RuntimeError(revoked.stderr)

    def restart(self, *options: str) -> None:
        """Stop, then start again on the same folder and port with ``options`` instead."""
        self.process.stop()
        self.process = AuthorityProcess(
            self.data_dir, self.process.passphrase_file, *UNLIMITED, *options, port=self.process.port
        ).start()

    def stop(self) -> None:
        self.process.stop()
