"""What text a field exchanged with others may hold: the one definition the frames, the
certificates and enclave-admin share."""

from __future__ import annotations

import re

CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")
"""What no text field of a frame or a certificate may hold: the C0 controls (NUL, tab,
newline, escape ...), DEL and the C1 controls, Unicode category Cc. A NUL cannot be stored
by PostgreSQL, and a newline or an escape sequence in a name or a reason would forge lines
on a terminal or in a log; docs/PROTOCOL.md, "Relay frames"."""


def control_character(text: str) -> str | None:
    """The first character of ``text`` that no frame may carry, as ``U+XXXX``; None if none.

    The one definition of what text the relay and its clients exchange may hold: the frames
    (app/protocol/frames.py) refuse it both ways, certificates refuse it in the names they
    carry, and enclave-admin refuses it in the names and ids it stores, since a directory
    answer or a certificate holding one could not be encoded."""
    found = CONTROL_CHARACTERS.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"
