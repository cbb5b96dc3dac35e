"""One process per data folder: an OS lock on a file in it, held while the process runs.

Two relays (or two enrolment authorities) on one data folder would each think they own
its database, keys and config; the second would also print a banner with its own port
while clients talk to the first. So each service takes ``app.base.oslock``'s exclusive
lock on ``<data>/<name>`` right after binding its port and before it reads or writes
anything else there; a second one on the folder stops with ``FolderInUseError``, naming
the holder's process id. The OS drops the lock when the process ends, however it ends
(SIGKILL, a crash), so a stale file never blocks a restart. The file says ``pid 1234``
once the lock is held; it is read back as untrusted bytes, only to name the holder.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.base.errors import EnclaveError
from app.base.oslock import try_lock, unlock

MAX_NOTE_BYTES = 64
"""The most of the holder's note read back (``pid 1234``)."""


class FolderLockError(EnclaveError):
    """The lock file cannot be opened or written; the message names it and the cause."""


class FolderInUseError(FolderLockError):
    """Another process of the same program has this data folder open."""


class FolderLock:
    """The held lock of one data folder; ``release`` it when the service stops."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path, *, name: str, program: str) -> FolderLock:
        """Lock ``data_dir`` (an existing folder) through its file ``name`` for this ``program``."""
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
        path = data_dir / name
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as e:
            raise FolderLockError(f"cannot open {path}: {e.strerror}") from e
        try:
            if not try_lock(fd):
                raise FolderInUseError(
                    f"another {program} ({_holder(fd)}) is running on the data folder {data_dir}; "
                    f"stop it first, or give this {program} its own data folder"
                )
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"pid {os.getpid()}".encode("ascii"))
        except OSError as e:
            os.close(fd)
            raise FolderLockError(f"cannot write {path}: {e.strerror}") from e
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    def release(self) -> None:
        """Drop the lock; a second call does nothing."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            unlock(fd)
        finally:
            os.close(fd)


def _holder(fd: int) -> str:
    """The holder's note (``pid 1234``) if it reads as one, else a neutral description."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        untrusted = os.read(fd, MAX_NOTE_BYTES + 1)
    except OSError:
        untrusted = b""
    text = untrusted.decode("ascii", "replace")
    pid = text.removeprefix("pid ")
    return f"process {pid}" if text.startswith("pid ") and pid.isascii() and pid.isdigit() else "a process"
