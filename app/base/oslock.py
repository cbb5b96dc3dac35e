"""An exclusive, advisory OS lock on an open file, dropped by the OS when its process ends.

Used for what must be held by one process at a time and must not outlive it, however it
ends (a crash, SIGKILL, a power cut): a client profile (``storage.profilelock``), a
service's data folder (``app.base.folderlock``), a local workspace's claim on its relay. Only
the lock counts, never a file's existence or content, so a file left behind blocks
nothing.

- Linux and macOS: ``flock(LOCK_EX | LOCK_NB)`` on the whole file. An flock belongs to
  the open file description, so a second open in the same process conflicts as well (a
  POSIX ``fcntl`` record lock would not: it belongs to the process).
- Windows: ``msvcrt.locking(LK_NBLCK)`` of one byte at ``LOCK_OFFSET``, far past any
  text. Windows locks are mandatory, so a locked byte cannot even be read by another
  process; locking a byte beyond the text keeps what the holder wrote readable.
"""

from __future__ import annotations

import errno
import os
import sys

LOCK_OFFSET = 1 << 20
"""Windows: the byte locked, beyond any text the file holds."""

if sys.platform == "win32":
    import msvcrt

    _CONFLICTS = frozenset({errno.EACCES, errno.EDEADLK})
    """What ``_locking`` sets when another handle holds the byte (EDEADLOCK is EDEADLK there)."""

    def try_lock(fd: int) -> bool:
        """Take the lock of ``fd``; False (at once) if another open file holds it."""
        os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as e:
            if e.errno in _CONFLICTS:
                return False
            raise
        return True

    def unlock(fd: int) -> None:
        os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def try_lock(fd: int) -> bool:
        """Take the lock of ``fd``; False (at once) if another open file holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
