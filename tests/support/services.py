"""Starting and stopping Enclave's services (the relay, the enrolment authority) as real
processes: wait for the start-up banner, read the pin and port from it, stop with SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

STARTUP_SECONDS = 30
STOP_SECONDS = 15


@dataclass(frozen=True)
class Banner:
    """The start-up lines a service prints: its key pin, then the address it listens on."""

    what: str
    pin_prefix: str
    listening_prefix: str


def start_service(
    command: list[str], banner: Banner, output: list[str], *, cwd: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str, int]:
    """Start ``command``; once it says where it listens, the process, its pin and its port.

    What it printed goes to ``output``; a process that exits first is a RuntimeError with it.
    """
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert process.stdout is not None
    pin = ""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {banner.what} exited during start-up:\n" + "".join(output))
        output.append(line)
        if line.startswith(banner.pin_prefix):
            pin = line.rsplit(" ", 1)[1].strip()
        if line.startswith(banner.listening_prefix):
            return process, pin, int(line.rsplit(":", 1)[1])
    raise RuntimeError(f"the {banner.what} did not start in time")


def stop_service(process: subprocess.Popen[str] | None, output: list[str]) -> None:
    """SIGTERM (SIGKILL if it does not stop in time), then what it printed meanwhile to ``output``."""
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    collect(process, output)


def collect(process: subprocess.Popen[str], output: list[str]) -> None:
    """What an ended process printed after its banner, added to ``output``."""
    if process.stdout is not None:
        with contextlib.suppress(ValueError):
            output.extend(process.stdout.readlines())
        process.stdout.close()
