"""The first messages this device accepted, by base key, so that a replay never runs X3DH again.

A prekey message carries its sender's identity key and base key (``EK_A_pub``); X3DH runs
for a pair not seen before, and the pair is kept here in the transaction that keeps the
session it made. A relay that replays a first message under a new envelope id then finds
the pair here even after that session was replaced or deleted, and the replay is dropped
instead of rolling the session back (docs/PROTOCOL.md, "Prekey message").

The bound: each pair is kept exactly as long as the signed prekey its message named (the
row goes with it, by a foreign key). Once that key is deleted X3DH cannot be run for the
message at all (``SignedPreKeyGoneError``), so forgetting the pair then reopens nothing,
whatever a relay kept and whenever it replays. That is at most 7 days of use and 31 days
of grace after rotation (docs/PROTOCOL.md, section 3): one row per session a colleague
started in that time, as ``seen_envelopes`` holds one per envelope for 30 days.
"""

from __future__ import annotations

from collections.abc import Callable

from app.base.limits import KEY_BYTES
from storage.database import Database

Clock = Callable[[], float]


class AcceptedBaseKeyRepository:
    def __init__(self, db: Database, *, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def add(self, identity_key: bytes, base_key: bytes, *, signed_prekey_id: int) -> None:
        """Record that X3DH ran for this sender key and base key; join the transaction keeping the session."""
        if len(identity_key) != KEY_BYTES or len(base_key) != KEY_BYTES:
            raise ValueError("an identity key and a base key are 32 bytes each")
        with self._db.transaction():
            self._db.execute(
                """INSERT OR IGNORE INTO accepted_base_keys
                    (identity_key, base_key, signed_prekey_id, accepted_at) VALUES (?, ?, ?, ?)""",
                (identity_key, base_key, signed_prekey_id, self._clock()),
            )

    def contains(self, identity_key: bytes, base_key: bytes) -> bool:
        row = self._db.one(
            "SELECT 1 FROM accepted_base_keys WHERE identity_key = ? AND base_key = ?",
            (identity_key, base_key),
        )
        return row is not None
