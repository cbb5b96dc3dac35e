"""The relay's data folder: checked before use, and locked (``relay.lock``) while the relay runs.

The lock is ``app.base.folderlock``'s, shared with the enrolment authority: one relay
per data folder, a second one told which process holds it.

Several relays sharing one PostgreSQL database each have their own data folder, holding
copies of the same key files (docs/ADMIN.md §6). ``enclave-admin`` does not take the lock:
an admin creates accounts and codes while the relay runs.

``check_data_folder`` turns what the OS says about the folder itself (missing parent,
not a folder, no permission) into ``DataFolderError``, one line naming the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from server.config import ConfigError

LOCK_NAME = "relay.lock"


class DataFolderError(ConfigError):
    """The data folder cannot be made, read or written; the message names it and the cause."""


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


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else "?"
