"""A program run with an organisation config in the real system location (``/etc/enclave/``),
seen by that program alone.

The client has no switch that moves the system location: a user who could point it
elsewhere could hide the machine's mandatory policy. So a test that needs a system config
runs the program in a private mount namespace (``unshare --mount``, as root) where an
overlay on ``/etc`` adds the test's ``enclave/`` folder: the real code path reads the real
path, and the machine's own ``/etc`` is untouched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import require

OVERLAY_SCRIPT = (
    'mount -t overlay overlay -o lowerdir=/etc,upperdir="$1",workdir="$2" /etc && shift 2 && exec "$@"'
)


def with_system_folder(command: list[str], upper: Path) -> list[str]:
    """``command`` run where ``/etc`` also holds what ``upper`` holds (``upper/enclave/enclave.toml``)."""
    require(shutil.which("unshare"), "a private mount namespace needs unshare (util-linux) and root")
    work = upper.with_name(upper.name + "-work")
    work.mkdir(exist_ok=True)
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        OVERLAY_SCRIPT,
        "sh",
        str(upper),
        str(work),
        *command,
    ]
