"""The profile lock: one process at a time has a profile open.

Two processes on one profile are the same device twice: the relay keeps one connection
per device, so each knocks the other off every few seconds, and a message shows in
whichever of them happened to be connected. So ``Store.create`` and ``Store.open`` take
an exclusive OS lock on ``profile/lock`` before they read or write anything else, and
``Store.close`` releases it (as does a failed open). A second opener, in this process or
another, gets ``ProfileInUseError`` naming the holder.

The lock is ``app.base.oslock``'s (flock on Linux and macOS, a locked byte past the
text on Windows, so the holder's name stays readable). Only the OS lock counts, never
the file's existence or content. The OS drops the lock when its process ends, however
it ends, so a file left behind by a crashed process blocks nothing. The file is never
deleted: removing a lock file races with a process that has just opened it and would
then lock a name nobody else sees.

What the file says, written once the lock is held and emptied before it is released:
one JSON object ``{"version": 1, "pid": 1234, "program": "enclave-cli listen"}`` — the
holder's process id and what it is, never an account, a path or a secret. The program
is the caller's ``holder`` description, or the name of the running program
(``default_holder``: ``sys.argv[0]``'s file name, never the arguments, which may hold a
message's text). A process that finds the profile locked reads the file as untrusted
bytes (bounded, parsed strictly, control characters replaced) to name the holder.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from app.base.oslock import try_lock, unlock
from storage.errors import ProfileInUseError
from storage.fileio import PRIVATE_FILE_MODE, raise_if_disk_full

LOCK_NAME = "lock"
HOLDER_VERSION = 1
MAX_HOLDER_BYTES = 512
"""The most of the lock file read back; a holder's note is far shorter."""
MAX_PROGRAM_CHARACTERS = 100


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a profile, as its lock file says."""

    pid: int
    program: str


def default_holder() -> str:
    """The running program's file name (``enclave-cli``, ``main.py``); never its arguments."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name and name not in ("-c", "-m") else "a Python program"


class ProfileLock:
    """The held lock of one profile: take it with ``acquire``, ``release`` it when the store closes."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, profile_dir: Path, holder: str | None = None) -> ProfileLock:
        """Lock ``profile_dir`` (an existing folder) for this process and write who holds it.

        Raises ``ProfileInUseError`` if another open store, here or in another process,
        holds it; ``FileNotFoundError`` if the folder does not exist.
        """
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(profile_dir / LOCK_NAME, flags, PRIVATE_FILE_MODE)
        try:
            if not try_lock(fd):
                found = _read_holder(fd)
                if found is None:
                    raise ProfileInUseError(str(profile_dir))
                raise ProfileInUseError(str(profile_dir), found.pid, found.program)
            lock = cls(fd)
        except BaseException:
            os.close(fd)
            raise
        try:
            _write(fd, _note(os.getpid(), _printable(holder or default_holder())))
        except BaseException:
            lock.release()
            raise
        return lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Empty the file and drop the lock; a second call does nothing."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):  # an unwritable file must not keep the lock held
                os.ftruncate(fd, 0)
            unlock(fd)
        finally:
            os.close(fd)


def _note(pid: int, program: str) -> bytes:
    text = json.dumps({"version": HOLDER_VERSION, "pid": pid, "program": program}, ensure_ascii=False)
    return text.encode("utf-8")[:MAX_HOLDER_BYTES]


def _write(fd: int, data: bytes) -> None:
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
    except OSError as e:
        raise_if_disk_full(e)
        raise


def _read_holder(fd: int) -> Holder | None:
    """What the holder wrote; None if it wrote nothing yet, or nothing this version reads."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        untrusted = os.read(fd, MAX_HOLDER_BYTES + 1)
    except OSError:
        return None
    return parse_holder(untrusted)


def parse_holder(untrusted: bytes) -> Holder | None:
    """The holder named by a lock file's bytes; None for an empty, damaged or newer note."""
    if not untrusted or len(untrusted) > MAX_HOLDER_BYTES:
        return None
    try:
        fields = json.loads(untrusted.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(fields, dict) or fields.get("version") != HOLDER_VERSION:
        return None
    pid, program = fields.get("pid"), fields.get("program")
    if type(pid) is not int or pid <= 0 or not isinstance(program, str) or not program:
        return None
    return Holder(pid, _printable(program))


def _printable(text: str) -> str:
    """One short line: control and other unprintable characters become ``?``."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:MAX_PROGRAM_CHARACTERS]
