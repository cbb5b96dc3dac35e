"""Comparing and accepting colleagues' keys: safety numbers, verified marks, accepted changes."""

from __future__ import annotations

import contextlib

from app.base.errors import OfflineError
from app.crypto.safety import SafetyNumber
from app.services.credentials import Credentials
from app.services.errors import NoDeviceError
from app.services.outgoing import Sending
from app.services.sessions import Sessions
from app.services.types import SafetyNumberView
from storage.records import Trust
from storage.store import Store


class Verification:
    def __init__(
        self, store: Store, *, credentials: Credentials, sessions: Sessions, sending: Sending
    ) -> None:
        self._store = store
        self._credentials = credentials
        self._sessions = sessions
        self._sending = sending

    def safety_numbers(self, account_id: str) -> list[SafetyNumberView]:
        """One per device of the colleague that this device can reach or must decide about."""
        account, identity = self._credentials.require()
        views = []
        for device in self._store.contacts.devices(account_id):
            if device.trust is not Trust.CHANGED and not self._sessions.has(account_id, device.device_id):
                continue
            number = SafetyNumber.compute(
                local_identity=identity.public,
                local_id=account.account_id,
                remote_identity=device.identity_key,
                remote_id=account_id,
            )
            views.append(
                SafetyNumberView(
                    account_id, device.device_id, number.digits, number.qr_payload(), device.trust
                )
            )
        return views

    async def fetched_safety_numbers(self, account_id: str) -> list[SafetyNumberView]:
        """``safety_numbers``, first fetching the colleague's keys from the directory when this
        device can reach none of their devices yet: so a key can be compared before the first
        message, which a policy requiring verified keys would otherwise never let leave.
        Offline, it shows what is known; a colleague with no device is ``NoDeviceError``.
        """
        if not self.safety_numbers(account_id):
            with contextlib.suppress(OfflineError):
                await self._sessions.ensure(account_id, None)
        return self.safety_numbers(account_id)

    def mark_verified(self, account_id: str, device_id: int) -> None:
        """The user compared the safety number of this device's current key."""
        device = self._store.contacts.device(account_id, device_id)
        if device is None:
            raise NoDeviceError(f"no known device {device_id} of {account_id}")
        self._store.contacts.mark_verified(account_id, device_id, device.identity_key)

    async def accept_key_change(self, account_id: str) -> None:
        """The user accepts the new keys of a contact; the messages held for them leave."""
        with self._store.transaction():
            for device in self._store.contacts.devices(account_id):
                if device.trust is Trust.CHANGED:
                    self._store.contacts.accept_changed_key(account_id, device.device_id)
        await self._sending.seal_pending()
