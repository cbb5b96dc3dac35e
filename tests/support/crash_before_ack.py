"""A recipient process that dies (SIGKILL) right after committing an envelope, before acking it.

Run as ``python -m tests.support.crash_before_ack PROFILE``. The only change to the real
client is a fault injected into ``RelayLink.ack``: the moment the engine acknowledges
an envelope, which is after its store transaction has committed, the process kills
itself, as a power cut or a crash at the worst moment would.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from app.sync.link import RelayLink
from tests.support.clients import open_client

LIFETIME_SECONDS = 60


async def _die(self: RelayLink, envelope_id: bytes) -> None:
    sys.stdout.write("committed; dying before the ack\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    RelayLink.ack = _die  # type: ignore[method-assign]
    open_client(Path(sys.argv[1]))
    sys.stdout.write("listening\n")
    sys.stdout.flush()
    time.sleep(LIFETIME_SECONDS)


if __name__ == "__main__":
    main()
