"""The admin log: append-only, each entry hashing the one before, so any edit shows.

``entry_hash = SHA-256(previous_hash || u64 sequence || u64 at || text16 actor ||
text16 action || text32 details)``; the first entry's previous hash is 32 zero bytes.
``verify`` recomputes the chain and reports every entry that was edited, removed,
inserted or moved. Anyone in the organisation may be given the log to audit; it holds
who did what to which account or device, never a key, a code or a message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from app.base.codec import Writer
from server.store.base import AdminLogEntry

GENESIS_HASH = b"\x00" * 32
MAX_FIELD_BYTES = 4096


def chain_hash(
    previous_hash: bytes, *, sequence: int, at: int, actor: str, action: str, details: str
) -> bytes:
    body = (
        Writer("admin log entry")
        .fixed(previous_hash, 32, "previous hash")
        .u64(sequence)
        .u64(at)
        .text16(actor, MAX_FIELD_BYTES, "actor")
        .text16(action, MAX_FIELD_BYTES, "action")
        .var32(details.encode("utf-8"), 1 << 20, "details")
        .getvalue()
    )
    return hashlib.sha256(body).digest()


def verify(entries: Sequence[AdminLogEntry]) -> list[str]:
    """Problems found in the chain, one line each; empty when the log is intact."""
    problems = []
    previous = GENESIS_HASH
    for expected_sequence, entry in enumerate(entries, start=1):
        if entry.sequence != expected_sequence:
            problems.append(
                f"entry {entry.sequence}: expected entry {expected_sequence} here (removed or moved)"
            )
        if entry.previous_hash != previous:
            problems.append(f"entry {entry.sequence}: does not follow the entry before it")
        recomputed = chain_hash(
            entry.previous_hash,
            sequence=entry.sequence,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            details=entry.details,
        )
        if recomputed != entry.entry_hash:
            problems.append(f"entry {entry.sequence}: its content was changed")
        previous = entry.entry_hash
    return problems
