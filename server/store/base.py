"""The storage interface the relay and the admin tool use, whatever the backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from app.base.errors import EnclaveError


class StoreError(EnclaveError):
    """The relay's store refused an operation."""


class MailboxFullError(StoreError):
    """The recipient's mailbox is at its quota; the sender is told, nothing is dropped."""


class DeviceGoneError(StoreError):
    """The recipient device is revoked or does not exist: nothing may be queued for it."""


class DuplicateError(StoreError):
    """An account, device key or envelope id that must be unique already exists."""


class CodeRefusedError(StoreError):
    """The enrolment code is unknown, spent or expired."""


class AccountInactiveError(StoreError):
    """The enrolment code's account is disabled or revoked: it enrols no device."""


class AccountState(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    display_name: str
    department: str
    state: AccountState


@dataclass(frozen=True, slots=True)
class Device:
    device_id: int
    account_id: str
    identity_key: bytes
    signed_prekey_id: int
    signed_prekey: bytes
    signed_prekey_signature: bytes
    revoked: bool


@dataclass(frozen=True, slots=True)
class OneTimePreKey:
    key_id: int
    public: bytes


@dataclass(frozen=True, slots=True)
class SignedPreKey:
    key_id: int
    public: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class QueuedEnvelope:
    sequence: int
    """Arrival order within the relay, for in-order delivery; not a time."""
    envelope_id: bytes
    blob: bytes


@dataclass(frozen=True, slots=True)
class Quota:
    max_envelopes: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class AdminLogEntry:
    sequence: int
    at: int
    actor: str
    action: str
    details: str
    """JSON text of the action's arguments (never a key or a code)."""
    previous_hash: bytes
    entry_hash: bytes


def directory_search_key(account_id: str, display_name: str, department: str) -> str:
    """What directory look-ups match against, case-folded here so every script (Cyrillic,
    Hangul, Persian) is matched without case, whatever the database's collation."""
    return "\n".join((account_id, display_name, department)).casefold()


@dataclass(frozen=True, slots=True)
class NewDevice:
    """What an enrolling device registers: its identity key and its first prekeys."""

    identity_key: bytes
    signed_prekey: SignedPreKey
    one_time_prekeys: tuple[OneTimePreKey, ...]


T = TypeVar("T")

WakeUp = Callable[[int], Awaitable[None] | None]
"""Called with a device id when an envelope for it was stored (on any relay process)."""


class RelayStore(ABC):
    """Every method is a coroutine and one transaction; errors are ``StoreError`` types."""

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    # Accounts and the directory.
    @abstractmethod
    async def create_account(self, account_id: str, display_name: str, department: str) -> Account: ...

    @abstractmethod
    async def get_account(self, account_id: str) -> Account | None: ...

    @abstractmethod
    async def account_ids(self) -> list[str]:
        """Every account's id, whatever its state (a new id is compared with all of them)."""

    @abstractmethod
    async def set_account_state(self, account_id: str, state: AccountState) -> bool: ...

    @abstractmethod
    async def search_directory(self, query: str, limit: int) -> list[Account]:
        """Active accounts whose ``directory_search_key`` contains ``query.casefold()``."""

    # Enrolment codes (stored hashed).
    @abstractmethod
    async def add_enrolment_code(self, code_hash: bytes, account_id: str, expires_at: int) -> None: ...

    @abstractmethod
    async def enrol(self, code_hash: bytes, now: int, new: NewDevice, answer: Callable[[Device], T]) -> T:
        """Spend the code and add the device, in one transaction that ends with ``answer(device)``.

        ``answer`` is the relay's certificate and reply: if it raises, or the code is
        unknown, spent or expired (``CodeRefusedError``), or its account is not active
        (``AccountInactiveError``), or the identity key is enrolled already
        (``DuplicateError``), the transaction is rolled back, so no failure leaves a spent
        code beside a device its owner never heard of. Concurrent spends of one code
        enrol one device.
        """

    # Devices and prekeys.

    @abstractmethod
    async def get_device(self, device_id: int) -> Device | None: ...

    @abstractmethod
    async def list_devices(self, account_id: str | None = None) -> list[Device]: ...

    @abstractmethod
    async def revoke_device(self, device_id: int) -> bool:
        """Mark revoked, delete its prekeys and its mailbox; False if there is no such device."""

    @abstractmethod
    async def set_signed_prekey(self, device_id: int, signed_prekey: SignedPreKey) -> None: ...

    @abstractmethod
    async def add_one_time_prekeys(self, device_id: int, keys: list[OneTimePreKey]) -> int:
        """Store new one-time prekeys (ids already held are ignored); how many the device now has."""

    @abstractmethod
    async def count_one_time_prekeys(self, device_id: int) -> int: ...

    @abstractmethod
    async def take_bundles(self, account_id: str) -> list[tuple[Device, OneTimePreKey | None]]:
        """Each active device of the account with one one-time prekey, which is deleted."""

    # Mailboxes.
    @abstractmethod
    async def enqueue(
        self, device_id: int, envelope_id: bytes, blob: bytes, expires_at: int, quota: Quota
    ) -> None:
        """Store durably; ``MailboxFullError`` over quota, ``DuplicateError`` for a repeated id."""

    @abstractmethod
    async def pending(self, device_id: int, after: int, now: int, limit: int) -> list[QueuedEnvelope]:
        """Unexpired envelopes with a sequence above ``after``, oldest first."""

    @abstractmethod
    async def acknowledge(self, device_id: int, envelope_ids: list[bytes]) -> int:
        """Delete delivered envelopes; how many were deleted."""

    @abstractmethod
    async def drop_expired(self, now: int) -> int:
        """Delete expired envelopes and attachments; how many rows went."""

    # Attachments.
    @abstractmethod
    async def put_attachment(self, attachment_id: str, blob: bytes, expires_at: int) -> None: ...

    @abstractmethod
    async def get_attachment(self, attachment_id: str, now: int) -> bytes | None: ...

    # The admin log.
    @abstractmethod
    async def append_admin_log(self, at: int, actor: str, action: str, details: str) -> AdminLogEntry: ...

    @abstractmethod
    async def admin_log(self) -> list[AdminLogEntry]: ...

    # Counts only.
    @abstractmethod
    async def statistics(self) -> dict[str, int]: ...

    # Cross-process wake-ups.
    @abstractmethod
    async def subscribe(self, wake_up: WakeUp) -> None:
        """Call ``wake_up(device_id)`` whenever an envelope is enqueued for a device, by any process."""
