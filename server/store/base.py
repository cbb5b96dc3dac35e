"""The storage interface the relay and the admin tool use, whatever the backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO

from app.base.errors import EnclaveError
from app.protocol.frames import MAX_DEVICES_PER_ACCOUNT
from app.protocol.logentry import DeviceRevoked, device_added_entry


class StoreError(EnclaveError):
    """The relay's store refused an operation."""


class MailboxFullError(StoreError):
    """The recipient's mailbox is at its quota; the sender is told, nothing is dropped."""


class DeviceGoneError(StoreError):
    """The recipient device is revoked or does not exist: nothing may be queued for it."""


class DuplicateError(StoreError):
    """An account, device key or envelope id that must be unique already exists."""


class AccountUnknownError(StoreError):
    """A device's certificate names an account this relay does not have."""


class AccountInactiveError(StoreError):
    """The account is disabled or revoked: it registers no device."""


class TooManyDevicesError(StoreError):
    """The account has ``MAX_DEVICES_PER_ACCOUNT`` unrevoked devices: as many as one bundle answer
    carries, so it registers no more until one is revoked."""


ATTACHMENT_CHUNK_BYTES = 256 * 1024
"""An attachment is stored, and read back, in pieces of this size: neither an upload nor a download
holds a whole one (up to ``attachment_max_bytes``) in memory."""


@dataclass(frozen=True, slots=True)
class StoredAttachment:
    size: int
    chunks: AsyncIterator[bytes]
    """Its bytes, one chunk at a time, each read from the database when it is asked for: a download
    holds no transaction open while the client is slow. ``StoreError`` if it went meanwhile."""


async def read_chunks(size: int, fetch: Callable[[int], Awaitable[bytes | None]]) -> AsyncIterator[bytes]:
    """The chunks of an attachment of ``size`` bytes, ``fetch(index)`` one by one until ``size`` came
    (an attachment stored by an older schema may be one chunk of any size)."""
    index = read = 0
    while read < size:
        chunk = await fetch(index)
        if chunk is None:
            raise StoreError("the attachment expired while it was being read")
        read += len(chunk)
        index += 1
        yield chunk


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
    certificate: bytes
    """The latest valid certificate the device presented (signed by the enrolment authority,
    never by the relay); served with its bundles."""


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
    """Arrival order within its mailbox (each mailbox counts from 1), for in-order delivery; not a time."""
    envelope_id: bytes
    blob: bytes


@dataclass(frozen=True, slots=True)
class Quota:
    max_envelopes: int
    max_bytes: int


def directory_search_key(account_id: str, display_name: str, department: str) -> str:
    """What directory look-ups match against, case-folded here so every script (Cyrillic,
    Hangul, Persian) is matched without case, whatever the database's collation."""
    return "\n".join((account_id, display_name, department)).casefold()


@dataclass(frozen=True, slots=True)
class NewDevice:
    """What an enrolling device registers: what its certificate names, the certificate, and its
    first prekeys."""

    device_id: int
    account_id: str
    identity_key: bytes
    certificate: bytes
    signed_prekey: SignedPreKey
    one_time_prekeys: tuple[OneTimePreKey, ...]
    registered_at: int
    """Unix seconds; the key log's entry for the device says when it was added."""


def device_added(at: int, certificate: bytes) -> bytes:
    """The key log entry of a device registered with ``certificate`` (app/protocol/logentry.py)."""
    return device_added_entry(at, certificate)


def device_revoked(at: int, account_id: str, device_id: int) -> bytes:
    return DeviceRevoked(at, account_id, device_id).encode()


def backfill(devices: Iterable[tuple[bytes, str, int, bool]], now: int) -> list[bytes]:
    """The key log of a database from before it (schema 2): each device's entry, in the order given
    (``(certificate, account, device, revoked)``), and a revocation after it for
    each revoked one, all dated ``now``, when the log began; the database keeps no order of
    registration, so the caller gives them in device id order."""
    entries, revoked = [], []
    for certificate, account_id, device_id, is_revoked in devices:
        entries.append(device_added(now, certificate))
        if is_revoked:
            revoked.append(device_revoked(now, account_id, device_id))
    return entries + revoked


def schema_refusal(found: int, supported: int) -> str:
    """Why a relay database of another schema is not opened; schema 1 predates the enrolment
    authority (its devices hold relay-signed certificates, which no client accepts now)."""
    if found == 1:
        return (
            "the relay database is of schema 1, from before device certificates came from the "
            "enrolment authority; its devices cannot be carried over: move the database aside, "
            "create the accounts again and have every device enrol again (docs/ADMIN.md)"
        )
    return f"relay database schema {found} is not the supported {supported}"


def registered_again(existing: Device, new: NewDevice) -> bool:
    """``register``'s answer when ``new.device_id`` is taken: False if it is this very device (whose
    prekeys the caller then replaces with ``new``'s); else refused as ``register`` says."""
    if existing.revoked:
        raise DeviceGoneError(f"device {existing.device_id} was revoked")
    if (existing.account_id, existing.identity_key) != (new.account_id, new.identity_key):
        raise DuplicateError(f"device {existing.device_id} is another device's")
    return False


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
    async def create_account(
        self, account_id: str, display_name: str, department: str, *, admin_entry: bytes
    ) -> Account:
        """A new active account, ``admin_entry`` (the admin's signed action) appended to the key log
        in the same transaction."""

    @abstractmethod
    async def get_account(self, account_id: str) -> Account | None: ...

    @abstractmethod
    async def account_ids(self) -> list[str]:
        """Every account's id, whatever its state (a new id is compared with all of them)."""

    @abstractmethod
    async def set_account_state(self, account_id: str, state: AccountState, *, admin_entry: bytes) -> bool:
        """Set the state (a revoked account's devices are revoked with it), ``admin_entry`` appended
        first in the same transaction; False, changing nothing, if there is no such account."""

    @abstractmethod
    async def search_directory(self, query: str, limit: int) -> list[Account]:
        """Active accounts whose ``directory_search_key`` contains ``query.casefold()``."""

    # Devices and prekeys.

    @abstractmethod
    async def register(self, new: NewDevice) -> bool:
        """Add the device, its certificate and first prekeys in one transaction: True.

        False if this very device (id, account and identity key) is registered already: an
        enrolment whose answer was lost, sent again. Its signed and one-time prekeys are then
        replaced by these (the device kept the private halves of the last ones it sent, and
        proved it holds the identity key); its certificate stays. Refused, changing
        nothing: an account the relay does not have (``AccountUnknownError``) or that is not
        active (``AccountInactiveError``), a revoked device id (``DeviceGoneError``), an id or
        identity key that is another device's (``DuplicateError``), an account with
        ``MAX_DEVICES_PER_ACCOUNT`` unrevoked devices already (``TooManyDevicesError``).
        """

    @abstractmethod
    async def set_certificate(self, device_id: int, certificate: bytes) -> None:
        """Keep ``certificate`` as the device's (the relay has checked it is the device's and
        newer than the one kept)."""

    @abstractmethod
    async def get_device(self, device_id: int) -> Device | None: ...

    @abstractmethod
    async def list_devices(self, account_id: str | None = None) -> list[Device]: ...

    @abstractmethod
    async def revoke_device(self, device_id: int, *, admin_entry: bytes) -> bool:
        """Mark revoked, delete its prekeys and its mailbox, ``admin_entry`` appended to the key log
        before the revocation's own entry; False, changing nothing, if there is no such device or
        it is revoked already."""

    @abstractmethod
    async def set_signed_prekey(self, device_id: int, signed_prekey: SignedPreKey) -> None: ...

    @abstractmethod
    async def set_delivery_key(self, device_id: int, key_hash: bytes) -> None:
        """The SHA-256 of the device's delivery key from now on (it replaces the one before)."""

    @abstractmethod
    async def delivery_key(self, device_id: int) -> bytes | None:
        """The SHA-256 of the device's delivery key; None if it has registered none."""

    @abstractmethod
    async def add_one_time_prekeys(self, device_id: int, keys: list[OneTimePreKey]) -> int:
        """Store new one-time prekeys (ids already held are ignored); how many the device now has."""

    @abstractmethod
    async def count_one_time_prekeys(self, device_id: int) -> int: ...

    @abstractmethod
    async def take_bundles(
        self, account_id: str, *, one_time_limit: int = MAX_DEVICES_PER_ACCOUNT
    ) -> list[tuple[Device, OneTimePreKey | None]]:
        """Each active device of the account, the first ``one_time_limit`` of them (by device id)
        with one one-time prekey each, which is deleted; the others, and a device with none
        left, with None."""

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
    async def put_attachment(self, attachment_id: str, spool: BinaryIO, expires_at: int) -> int:
        """Store the blob in ``spool`` (a file, read from its start in ``ATTACHMENT_CHUNK_BYTES``
        pieces) in one transaction; its size. ``DuplicateError`` for an id taken."""

    @abstractmethod
    async def get_attachment(self, attachment_id: str, now: int) -> StoredAttachment | None:
        """The unexpired attachment, or None."""

    # The key log (app/protocol/logentry.py): a device's entry is appended in the transaction that
    # registers it, a revocation's in the one that revokes it, so the log and the devices agree.
    @abstractmethod
    async def log_size(self) -> int: ...

    @abstractmethod
    async def log_entries(self, start: int, count: int) -> list[bytes]:
        """The entries of leaves ``start`` to ``start + count - 1`` (fewer past the end)."""

    @abstractmethod
    async def append_admin_entry(self, admin_entry: bytes) -> None:
        """Append an admin's signed action that changes nothing in this database (a code issued,
        a config published) to the key log."""

    # Counts only.
    @abstractmethod
    async def statistics(self) -> dict[str, int]: ...

    # Cross-process wake-ups.
    @abstractmethod
    async def subscribe(self, wake_up: WakeUp) -> None:
        """Call ``wake_up(device_id)`` whenever an envelope is enqueued for a device, by any process."""
