"""One authority per data folder: an OS lock on ``authority.lock``, held while it runs.

Two authorities on one folder would each serve the same codes from their own view of the
file; the second would also print a pin for a port nobody should use. As the relay does
(server/datalock.py, whose code the authority may not import), the lock is
``app.base.oslock``'s, taken right after binding and before anything else in the folder is
read or written, and the OS drops it however the process ends.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.base.errors import EnclaveError
from app.base.oslock import try_lock, unlock

LOCK_NAME = "authority.lock"


class DataFolderError(EnclaveError):
    """The data folder cannot be made, locked or written; the message names it."""


class DataFolderInUseError(DataFolderError):
    """Another authority has this data folder open."""


class DataFolderLock:
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataFolderLock:
        """Make ``data_dir`` (0700) if missing and lock it for this process, or raise why not."""
        path = data_dir / LOCK_NAME
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as e:
            raise DataFolderError(f"cannot open {path}: {e.strerror}") from e
        if not try_lock(fd):
            os.close(fd)
            raise DataFolderInUseError(
                f"another enclave-authority is running on the data folder {data_dir}; stop it first"
            )
        return cls(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            unlock(fd)
            os.close(fd)
