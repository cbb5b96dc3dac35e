"""Small durable-file helpers: private modes, fsync of a folder, atomic replacement.

A file that must survive a crash is written to a temporary name in the same folder,
fsynced, renamed over the final name with ``os.replace`` and the folder fsynced, so a
reader sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from storage.errors import StoreFullError

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
TEMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (a no-op where folders cannot be opened)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) readable by the owner only."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)


def open_private_new(path: Path) -> int:
    """Open a new file for writing, mode 0600, refusing to follow or reuse an existing name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    return os.open(path, flags, PRIVATE_FILE_MODE)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """Write ``path`` through a private temporary file, renamed over it once the block succeeds.

    The temporary file is fsynced before the rename and the folder after it; if the
    block raises, the temporary file is removed and ``path`` is left as it was. A full
    disk becomes ``StoreFullError``.
    """
    temp = path.with_name(path.name + TEMP_SUFFIX)
    temp.unlink(missing_ok=True)
    try:
        with os.fdopen(open_private_new(temp), "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except OSError as e:
        temp.unlink(missing_ok=True)
        raise_if_disk_full(e)
        raise
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably, mode 0600."""
    with replacing(path) as out:
        out.write(data)


def raise_if_disk_full(error: OSError) -> None:
    """Turn "no space left" (or an exhausted quota) into ``StoreFullError``."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        raise StoreFullError(error.filename or "the message store") from error
