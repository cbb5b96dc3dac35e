"""Leases: how processes say "I am using this" so that a shared helper outlives none of them.

The local workspace's relay is shared by every workspace on the machine and must stop
when the last of them is gone, however it ended (``/quit``, Ctrl-C, a closed terminal,
SIGKILL, a crash). A workspace therefore holds a lease while it runs: a file
``<folder>/<random>.lease`` that it keeps locked with ``app.base.oslock``. The OS drops
the lock when the process ends, whatever ends it, so the relay (``enclave-server
--while-leased <folder>``) needs no message from its users: it counts the leases still
locked and stops when there are none (``stop_when_unleased``). The local enrolment
authority (``enclave-authority --while-leased``) stops the same way.

A lease is taken by creating the file and then locking it, so for a moment a new file
is unlocked; a lease younger than ``GRACE_SECONDS`` therefore counts whether locked or
not. An older unlocked lease belongs to a process that is gone, and is deleted (its name
is random, so nobody will take it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from pathlib import Path

from app.base.oslock import try_lock, unlock

log = logging.getLogger(__name__)
SUFFIX = ".lease"
GRACE_SECONDS = 3.0
"""How long a new lease counts before its lock is looked at (it is locked within microseconds)."""
CHECK_SECONDS = 1.0
"""How often ``stop_when_unleased`` counts the leases."""


class Lease:
    """A held lease; ``release`` it when the process stops using the shared thing."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def take(cls, folder: Path) -> Lease:
        """Create and lock a new lease in ``folder`` (made if missing)."""
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / (secrets.token_hex(8) + SUFFIX)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        if not try_lock(fd):  # a fresh file with a random name: nobody else can hold it
            os.close(fd)
            raise RuntimeError(f"a new lease {path} was locked by another process")
        return cls(path, fd)

    def release(self) -> None:
        """Unlock and delete the lease; a second call does nothing."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            unlock(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def live_leases(folder: Path, now: float | None = None) -> int:
    """How many leases in ``folder`` are held (or too new to tell); deletes those whose holder is gone."""
    now = time.time() if now is None else now
    count = 0
    try:
        paths = list(folder.glob("*" + SUFFIX))
    except OSError:
        return 0
    for path in paths:
        if _live(path, now):
            count += 1
    return count


async def stop_when_unleased(folder: Path, stop: asyncio.Event) -> None:
    """``--while-leased``: set ``stop`` once no process holds a lease in ``folder``."""
    while live_leases(folder) > 0:
        await asyncio.sleep(CHECK_SECONDS)
    log.info("no process holds a lease in %s any more; stopping", folder)
    stop.set()


def _live(path: Path, now: float) -> bool:
    try:
        if now - path.stat().st_mtime < GRACE_SECONDS:
            return True
        fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return False  # released meanwhile
    except OSError:
        return True  # a lease we cannot look into may be held: never stop on a guess
    try:
        if not try_lock(fd):
            return True
        unlock(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return False
