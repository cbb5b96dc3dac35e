"""``enclave-cli`` and the local workspace run as real subprocesses, as a person or a script runs them."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.deployment import deployment
from tests.support.relay import REPO, RelayProcess, new_account

PASSPHRASE = "correct horse battery staple"
RUN_SECONDS = 90


def passphrase_file(folder: Path, secret: str = PASSPHRASE) -> Path:
    path = folder / "passphrase.txt"
    path.write_text(secret + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class CliUser:
    """One profile and its passphrase file; ``run`` and ``start`` call ``enclave-cli`` on it."""

    account_id: str
    profile: Path
    passphrase: Path

    def command(self, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "cli.main",
            "--profile",
            str(self.profile),
            "--passphrase-file",
            str(self.passphrase),
            *args,
        ]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), cwd=REPO, capture_output=True, text=True, timeout=RUN_SECONDS, check=False
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


def import_organisation(relay: RelayProcess, user: CliUser) -> subprocess.CompletedProcess[str]:
    """``enclave-cli policy --import`` of the run's organisation config for ``relay``
    (tests/support/deployment.py), which makes ``user``'s profile if it is missing."""
    path = deployment().install(user.profile.with_name(user.profile.name + ".config") / "enclave.toml", relay)
    done = user.run("policy", "--import", str(path))
    if done.returncode != 0:
        raise AssertionError(f"policy --import failed: {done.stderr}")
    return done


def enrol_user(
    relay: RelayProcess, user: CliUser, name: str, *, account_id: str | None = None
) -> subprocess.CompletedProcess[str]:
    """What IT and a new colleague do: the account at the relay, the organisation's config on the
    profile, a code from the run's authority, and ``enclave-cli enrol --code`` (its result)."""
    account = account_id or user.account_id
    new_account(relay.data_dir, account, name)
    return enrol_device(relay, user, account)


def enrol_device(
    relay: RelayProcess, user: CliUser, account_id: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Enrol ``user``'s profile as a device of an existing account: config, code, ``enrol``."""
    import_organisation(relay, user)
    return user.run("enrol", "--code", deployment().code(account_id or user.account_id))


def enrol(relay: RelayProcess, user: CliUser, account_id: str | None = None) -> int:
    """Enrol ``user``'s profile (created if missing) as a device of the existing account; its id."""
    done = enrol_device(relay, user, account_id)
    if done.returncode != 0:
        raise AssertionError(f"enrol failed: {done.stderr}")
    return int(pairs(done.stdout)["device"])


def rows(stdout: str) -> list[list[str]]:
    """The tab-separated items of a command's output."""
    return [line.split("\t") for line in stdout.splitlines()]


def pairs(stdout: str) -> dict[str, str]:
    """The ``key: value`` lines of a command's output."""
    return dict(line.split(": ", 1) for line in stdout.splitlines())


class Interactive:
    """A process fed line by line on stdin, whose output a test waits for line by line."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def expect(self, text: str, timeout: float = RUN_SECONDS) -> str:
        """The first line from now on that contains ``text``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout} s; output:\n{''.join(self.output)}")

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = RUN_SECONDS) -> int:
        """Close stdin (end of input) and wait for the exit status."""
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        return self.process.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, which the workspace treats as Ctrl-C (it stops the relay it started); then SIGKILL."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(RUN_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
