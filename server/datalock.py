"""One relay per data folder: an OS lock on ``relay.lock``, held while the relay runs.

Two relays on one data folder would each think they own its SQLite file, its keys and
its config; the second would also print a banner with its own port while clients talk
to the first. So the relay takes ``app.base.oslock``'s exclusive lock on
``<data>/relay.lock`` right after binding its port and before it reads or writes
anything else there; a second relay on the folder stops with ``DataFolderInUseError``,
naming the holder's process id. The OS drops the lock when the relay ends, however it
ends (SIGKILL, a crash), so a stale file never blocks a restart.

Several relays sharing one PostgreSQL database each have their own data folder, holding
copies of the same key files (docs/ADMIN.md §6). ``enclave-admin`` does not take the lock:
an admin creates accounts and codes while the relay runs.

``check_data_folder`` turns what the OS says about the folder itself (missing parent,
not a folder, no permission) into ``DataFolderError``, one line naming the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.base.oslock import try_lock, unlock
from server.config import ConfigError

LOCK_NAME = "relay.lock"
MAX_NOTE_BYTES = 64
"""The most of the holder's note read back (``pid 1234``)."""


class DataFolderError(ConfigError):
    """The data folder cannot be made, read or written; the message names it and the cause."""


class DataFolderInUseError(DataFolderError):
    """Another relay has this data folder open."""


def check_data_folder(data_dir: Path) -> None:
    """Make ``data_dir`` (mode 0700) if it is missing and check that this user may read and write it."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError as e:
        raise DataFolderError(f"the data folder {data_dir} is a file, not a folder") from e
    except OSError as e:
        raise DataFolderError(f"cannot make the data folder {data_dir}: {e.strerror}") from e
    if not data_dir.is_dir():
        raise DataFolderError(f"the data folder {data_dir} is not a folder")
    if not os.access(data_dir, os.R_OK | os.W_OK | os.X_OK):
        raise DataFolderError(
            f"the data folder {data_dir} cannot be read and written by this user (uid {_uid()}); "
            "check its owner and permissions"
        )


class DataFolderLock:
    """The held lock of one data folder; ``release`` it when the relay stops."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataFolderLock:
        """Lock ``data_dir`` (checked by ``check_data_folder``) for this relay, or raise why not."""
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
        path = data_dir / LOCK_NAME
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as e:
            raise DataFolderError(f"cannot open {path}: {e.strerror}") from e
        try:
            if not try_lock(fd):
                raise DataFolderInUseError(
                    f"another relay ({_holder(fd)}) is running on the data folder {data_dir}; "
                    "stop it first, or give this relay its own data folder"
                )
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"pid {os.getpid()}".encode("ascii"))
        except OSError as e:
            os.close(fd)
            raise DataFolderError(f"cannot write {path}: {e.strerror}") from e
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


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else "?"
