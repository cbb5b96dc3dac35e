"""Contacts and their devices, with each device's identity key and trust state.

A device's key moves between three states: ``unverified`` when first seen,
``verified`` once the user compared safety numbers for that exact key, ``changed`` when
the device presents a different key (the old one is kept so the UI can say so; sending
stays blocked until the user accepts the new key, which makes it ``unverified``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from app.base.limits import DELIVERY_KEY_BYTES, KEY_BYTES
from storage.database import Database
from storage.errors import InvalidTransitionError, NotFoundError
from storage.records import Contact, ContactDevice, Trust

Clock = Callable[[], float]


def _device(row: Sequence[Any]) -> ContactDevice:
    return ContactDevice(row[0], row[1], row[2], Trust(row[3]), row[4], row[5])


class ContactRepository:
    def __init__(self, db: Database, *, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def upsert(self, account_id: str, display_name: str, department: str = "") -> Contact:
        with self._db.transaction():
            self._db.execute(
                """INSERT INTO contacts (account_id, display_name, department, created_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT (account_id) DO UPDATE SET display_name = excluded.display_name,
                    department = excluded.department""",
                (account_id, display_name, department, self._clock()),
            )
            return self.get(account_id)

    def get(self, account_id: str) -> Contact:
        row = self._db.one(
            "SELECT account_id, display_name, department, created_at FROM contacts WHERE account_id = ?",
            (account_id,),
        )
        if row is None:
            raise NotFoundError(f"no contact {account_id}")
        return Contact(*row)

    def list(self) -> list[Contact]:
        rows = self._db.all(
            """SELECT account_id, display_name, department, created_at
                FROM contacts ORDER BY display_name, account_id"""
        )
        return [Contact(*row) for row in rows]

    def delete(self, account_id: str) -> None:
        """Forget a contact and its devices (conversations and messages stay)."""
        with self._db.transaction():
            self._db.execute("DELETE FROM contacts WHERE account_id = ?", (account_id,))

    def device(self, account_id: str, device_id: int) -> ContactDevice | None:
        row = self._db.one(
            """SELECT account_id, device_id, identity_key, trust, previous_identity_key, updated_at
                FROM contact_devices WHERE account_id = ? AND device_id = ?""",
            (account_id, device_id),
        )
        return None if row is None else _device(row)

    def devices(self, account_id: str) -> list[ContactDevice]:
        rows = self._db.all(
            """SELECT account_id, device_id, identity_key, trust, previous_identity_key, updated_at
                FROM contact_devices WHERE account_id = ? ORDER BY device_id""",
            (account_id,),
        )
        return [_device(row) for row in rows]

    def record_device_key(
        self, account_id: str, device_id: int, identity_key: bytes, *, replaces: bytes | None = None
    ) -> ContactDevice:
        """Note the identity key a device presented; a different key than before marks it ``changed``.

        ``replaces``: for a device seen for the first time, the key of the contact's device
        it appears to replace (a reinstall); the new device then starts as ``changed`` too.
        """
        if len(identity_key) != KEY_BYTES:
            raise ValueError("an identity key is 32 bytes")
        with self._db.transaction():
            self.get(account_id)
            known = self.device(account_id, device_id)
            if known is None:
                trust = Trust.UNVERIFIED if replaces is None else Trust.CHANGED
                self._db.execute(
                    """INSERT INTO contact_devices (account_id, device_id, identity_key, trust,
                        previous_identity_key, updated_at)
                        VALUES (?, ?, ?, ?, ?, ?)""",
                    (account_id, device_id, identity_key, trust.value, replaces, self._clock()),
                )
            elif known.identity_key != identity_key:
                self._db.execute(
                    """UPDATE contact_devices SET identity_key = ?, trust = ?, previous_identity_key = ?,
                        delivery_key = NULL, updated_at = ? WHERE account_id = ? AND device_id = ?""",
                    (
                        identity_key,
                        Trust.CHANGED.value,
                        known.identity_key,
                        self._clock(),
                        account_id,
                        device_id,
                    ),
                )
            return self._require_device(account_id, device_id)

    def delivery_key(self, account_id: str, device_id: int) -> bytes | None:
        """The device's delivery key as its last envelope told it; None before it wrote to us."""
        value: bytes | None = self._db.scalar(
            "SELECT delivery_key FROM contact_devices WHERE account_id = ? AND device_id = ?",
            (account_id, device_id),
        )
        return value

    def set_delivery_key(self, account_id: str, device_id: int, key: bytes | None) -> None:
        """Keep (None: forget) the device's delivery key; a device we hold no key of is left alone.
        Its key goes when its identity key changes (``record_device_key``): it was the old one's."""
        if key is not None and len(key) != DELIVERY_KEY_BYTES:
            raise ValueError(f"a delivery key is {DELIVERY_KEY_BYTES} bytes")
        with self._db.transaction():
            self._db.execute(
                "UPDATE contact_devices SET delivery_key = ? WHERE account_id = ? AND device_id = ?",
                (key, account_id, device_id),
            )

    def mark_verified(self, account_id: str, device_id: int, identity_key: bytes) -> ContactDevice:
        """Record that the user verified ``identity_key``; refused if the device's key is another one."""
        with self._db.transaction():
            device = self._require_device(account_id, device_id)
            if device.identity_key != identity_key:
                raise InvalidTransitionError("the device's key changed since the safety number was compared")
            if device.trust is Trust.CHANGED:
                raise InvalidTransitionError("accept the changed key before verifying it")
            self._set_trust(account_id, device_id, Trust.VERIFIED)
            return self._require_device(account_id, device_id)

    def accept_changed_key(self, account_id: str, device_id: int) -> ContactDevice:
        """The user accepts a changed key: it becomes ``unverified`` and sending is allowed again."""
        with self._db.transaction():
            if self._require_device(account_id, device_id).trust is not Trust.CHANGED:
                raise InvalidTransitionError("the device's key has not changed")
            self._set_trust(account_id, device_id, Trust.UNVERIFIED)
            return self._require_device(account_id, device_id)

    def remove_device(self, account_id: str, device_id: int) -> None:
        with self._db.transaction():
            self._db.execute(
                "DELETE FROM contact_devices WHERE account_id = ? AND device_id = ?", (account_id, device_id)
            )

    def _set_trust(self, account_id: str, device_id: int, trust: Trust) -> None:
        self._db.execute(
            """UPDATE contact_devices SET trust = ?, previous_identity_key = NULL, updated_at = ?
                WHERE account_id = ? AND device_id = ?""",
            (trust.value, self._clock(), account_id, device_id),
        )

    def _require_device(self, account_id: str, device_id: int) -> ContactDevice:
        device = self.device(account_id, device_id)
        if device is None:
            raise NotFoundError(f"contact {account_id} has no device {device_id}")
        return device
