"""Where a received file is saved. Its name comes from the sender, so it is untrusted."""

from __future__ import annotations

import re
from pathlib import Path

MAX_NAME_CHARACTERS = 200
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
"""Path separators, control characters and what Windows forbids in a name."""


def save_path(directory: Path, untrusted_name: str) -> Path:
    """A new file in ``directory`` named like the sender's file: never outside it, never over a file."""
    name = _UNSAFE.sub("_", untrusted_name).strip(" .")[:MAX_NAME_CHARACTERS] or "file"
    stem, dot, suffix = name.rpartition(".")
    if not stem:
        stem, dot, suffix = name, "", ""
    candidate, copy = directory / name, 1
    while candidate.exists():
        candidate = directory / f"{stem} ({copy}){dot}{suffix}"
        copy += 1
    return candidate
