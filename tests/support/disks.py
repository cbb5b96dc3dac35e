"""Small disks of a test's own: a real tmpfs mount (tests run as root, which ignores
``chmod``, so a read-only or full disk is the honest way to make a write fail). Where
``mount`` is not allowed, a test needing one skips, or fails under CI=true."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import require

FILLER = "filler"


@contextlib.contextmanager
def tmpfs(target: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``target`` for the block, then unmounted."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        problem = None if done.returncode == 0 else f"cannot mount a tmpfs here: {done.stderr.strip()}"
    except OSError as e:
        problem = f"no mount command: {e}"
    require(problem is None, problem or "")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def remount(target: Path, mode: str) -> None:
    """``ro`` or ``rw``."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(target)], check=True)


def fill(disk: Path) -> Path:
    """Write ``disk/filler`` until the disk is full; delete the file to give the space back."""
    path = disk / FILLER
    with open(path, "wb") as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"\0" * 65536)
            filler.flush()
            os.fsync(filler.fileno())
    return path
