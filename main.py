"""Start Enclave.

Until the desktop window lands, this opens the local workspace (``cli.workspace``): a
relay on this machine, this user's enrolled profile and an interactive chat session.
"""

from __future__ import annotations

import sys

from cli import workspace


def main() -> int:
    return workspace.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
