"""Running a program as another user, for what permissions do to it (the suite runs as root,
which no ``chmod`` stops): ``nobody`` through ``setpriv``, in a folder that user may enter."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import require

OTHER_USER = 65534
"""``nobody``."""


def as_other_user(command: list[str]) -> list[str]:
    """``command`` run as ``OTHER_USER`` with no supplementary groups."""
    return ["setpriv", f"--reuid={OTHER_USER}", f"--regid={OTHER_USER}", "--clear-groups", *command]


@contextmanager
def shared_folder() -> Iterator[Path]:
    """A new folder that ``OTHER_USER`` may enter (pytest's tmp_path is root's alone), removed after."""
    require(os.geteuid() == 0 and shutil.which("setpriv"), "running as another user needs root and setpriv")
    folder = Path(tempfile.mkdtemp(prefix="enclave-other-user-"))
    try:
        folder.chmod(0o755)
        yield folder
    finally:
        shutil.rmtree(folder)
