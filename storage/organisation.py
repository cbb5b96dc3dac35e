"""The organisation this profile belongs to, and the configs it accepted, by origin.

``org_trust`` holds the root key of the first organisation config the profile accepted;
it never changes (a trigger refuses it), so a config signed by another root is refused.
``org_configs`` holds, per origin (``system``, ``user``), the exact bytes and signature of
the config accepted last and its version; a trigger refuses lowering a version, so no
code path can downgrade, whatever the caller checked. The checks themselves are
``app.provisioning.accept``'s; this repository only keeps what it accepted, in the
encrypted store, never as a plaintext file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from storage.database import Database

Clock = Callable[[], float]
ORIGINS = ("system", "user")


@dataclass(frozen=True, slots=True)
class AcceptedConfig:
    origin: str
    version: int
    config: bytes
    signature: bytes
    accepted_at: float


class OrganisationRepository:
    def __init__(self, db: Database, *, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def root_key(self) -> bytes | None:
        """The root key this profile trusts; None before its first config."""
        value: bytes | None = self._db.scalar("SELECT root_key FROM org_trust WHERE id = 1")
        return value

    def config(self, origin: str) -> AcceptedConfig | None:
        row = self._db.one(
            "SELECT origin, version, config, signature, accepted_at FROM org_configs WHERE origin = ?",
            (origin,),
        )
        return None if row is None else AcceptedConfig(*row)

    def accept(self, origin: str, *, root_key: bytes, version: int, config: bytes, signature: bytes) -> None:
        """Keep ``config`` as the one in force for ``origin``; the first one also sets the root.

        Raises ``ValueError`` for another root than the trusted one or a lower version (the
        caller has refused those already; this is the store's own guard).
        """
        if origin not in ORIGINS:
            raise ValueError(f"unknown config origin {origin!r}")
        if len(root_key) != 32:
            raise ValueError("a root key is 32 bytes")
        with self._db.transaction():
            trusted = self.root_key()
            if trusted is None:
                self._db.execute(
                    "INSERT INTO org_trust (id, root_key, pinned_at) VALUES (1, ?, ?)",
                    (root_key, self._clock()),
                )
            elif trusted != root_key:
                raise ValueError("the config is signed by another organisation's root")
            self._db.execute(
                """INSERT INTO org_configs (origin, version, config, signature, accepted_at)
                    VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET
                    version = excluded.version, config = excluded.config,
                    signature = excluded.signature, accepted_at = excluded.accepted_at""",
                (origin, version, config, signature, self._clock()),
            )
