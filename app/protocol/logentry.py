"""The entries of the organisation's key log, and the key directory they replay to.

The key log (docs/PROTOCOL.md, "Key log") is one RFC 9162 Merkle tree per organisation
(app/crypto/merkle.py) whose leaves are these entries, in the order they were appended;
its heads are C2SP checkpoints (app/protocol/checkpoint.py) signed by the log key the
organisation config names. Every binding of an identity key to a device of an account is
an entry, and so is every revocation and every admin action, so that the log is the admin
log too and whoever holds a copy can replay it.

``entry = u8 version (1) || u8 kind || u64 at || body``, ``at`` in Unix seconds:

- ``DEVICE_ADDED`` (1): ``var16 certificate``, the device certificate the enrolment
  authority signed (app/crypto/certificate.py) as the relay registered it. It names the
  account, the device id and the identity key; the authority's signature is checked on
  replay, so a log cannot invent a binding the authority never made.
- ``DEVICE_REVOKED`` (2): ``text16 account || u32 device``.
- ``ADMIN_ACTION`` (3): ``text16 admin || [32] admin key || text16 action || var32 details
  || [64] signature``; ``details`` is a UTF-8 JSON object; the signature is the admin key's
  over ``"enclave:v1:admin-action" || every byte of the entry before it``, so the log says
  which admin acted and nobody else could have made the entry.

``KeyDirectory`` replays entries into the bindings they state and says what is wrong with
any that break the rules (a second binding of a device or of an identity key, a
revocation of a device never added, a certificate or an admin signature that does not
verify). A parser failure is ``RemoteProtocolError`` and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Protocol

from app.base.codec import Reader, Writer
from app.base.errors import CertificateError, InvalidSignatureError, RemoteProtocolError
from app.base.limits import KEY_BYTES, MAX_ACCOUNT_ID_BYTES, SIGNATURE_BYTES
from app.crypto.certificate import MAX_CERTIFICATE_BYTES, DeviceCertificate
from app.crypto.primitives import SIGN_CONTEXT_ADMIN_ACTION, ed25519_sign, ed25519_verify

ENTRY_VERSION = 1
ENTRY_VERSIONS = frozenset({ENTRY_VERSION})
MAX_ADMIN_NAME_BYTES = 128
MAX_ACTION_BYTES = 64
MAX_DETAILS_BYTES = 16 * 1024
MAX_ENTRY_BYTES = (
    1 + 1 + 8 + 2 + MAX_ADMIN_NAME_BYTES + KEY_BYTES + 2 + MAX_ACTION_BYTES + 4 + MAX_DETAILS_BYTES
) + SIGNATURE_BYTES
"""The largest entry of any kind (an admin action's); a device entry is far smaller."""


class EntryKind(IntEnum):
    DEVICE_ADDED = 1
    DEVICE_REVOKED = 2
    ADMIN_ACTION = 3


@dataclass(frozen=True, slots=True)
class DeviceAdded:
    at: int
    certificate: bytes
    """The encoded certificate; ``binding`` is it parsed."""
    binding: DeviceCertificate

    def encode(self) -> bytes:
        return device_added_entry(self.at, self.certificate)


def device_added_entry(at: int, certificate: bytes) -> bytes:
    """The bytes of a ``DEVICE_ADDED`` entry, for a log that took the certificate as it was given."""
    return (
        _head(EntryKind.DEVICE_ADDED, at).var16(certificate, MAX_CERTIFICATE_BYTES, "certificate").getvalue()
    )


@dataclass(frozen=True, slots=True)
class DeviceRevoked:
    at: int
    account_id: str
    device_id: int

    def encode(self) -> bytes:
        return (
            _head(EntryKind.DEVICE_REVOKED, self.at)
            .text16(self.account_id, MAX_ACCOUNT_ID_BYTES, "account id")
            .u32(self.device_id)
            .getvalue()
        )


@dataclass(frozen=True, slots=True)
class AdminAction:
    at: int
    admin: str
    """The admin's name, as the config lists it beside ``admin_key``."""
    admin_key: bytes
    action: str
    """``account.create``, ``device.revoke``, ``config.publish``... (docs/PROTOCOL.md)."""
    details: str
    """A JSON object, as text."""
    signature: bytes

    @staticmethod
    def _signed(at: int, admin: str, admin_key: bytes, action: str, details: str) -> bytes:
        return (
            _head(EntryKind.ADMIN_ACTION, at)
            .text16(admin, MAX_ADMIN_NAME_BYTES, "admin")
            .fixed(admin_key, KEY_BYTES, "admin key")
            .text16(action, MAX_ACTION_BYTES, "action")
            .var32(details.encode("utf-8"), MAX_DETAILS_BYTES, "details")
            .getvalue()
        )

    @classmethod
    def sign(
        cls, *, at: int, admin: str, admin_public: bytes, admin_secret: bytes, action: str, details: str
    ) -> AdminAction:
        signed = cls._signed(at, admin, admin_public, action, details)
        signature = ed25519_sign(secret_key=admin_secret, context=SIGN_CONTEXT_ADMIN_ACTION, message=signed)
        return cls(at, admin, admin_public, action, details, signature)

    def encode(self) -> bytes:
        return self._signed(self.at, self.admin, self.admin_key, self.action, self.details) + self.signature

    def verify(self) -> None:
        """Raise ``InvalidSignatureError`` unless ``admin_key`` signed this entry."""
        ed25519_verify(
            public_key=self.admin_key,
            context=SIGN_CONTEXT_ADMIN_ACTION,
            message=self._signed(self.at, self.admin, self.admin_key, self.action, self.details),
            signature=self.signature,
        )


LogEntry = DeviceAdded | DeviceRevoked | AdminAction


def _head(kind: EntryKind, at: int) -> Writer:
    return Writer("key log entry").u8(ENTRY_VERSION).u8(kind).u64(at)


def parse_entry(untrusted: bytes) -> LogEntry:
    """The entry in ``untrusted``, or ``RemoteProtocolError`` (trailing bytes included)."""
    if len(untrusted) > MAX_ENTRY_BYTES:
        raise RemoteProtocolError(f"a key log entry of {len(untrusted)} bytes exceeds {MAX_ENTRY_BYTES}")
    r = Reader(untrusted, "key log entry")
    r.version(supported=ENTRY_VERSIONS, known=ENTRY_VERSIONS)
    kind = r.enum(EntryKind, "entry kind")
    at = r.u64()
    entry: LogEntry
    if kind is EntryKind.DEVICE_ADDED:
        certificate = r.var16(MAX_CERTIFICATE_BYTES, "certificate")
        entry = DeviceAdded(at, certificate, DeviceCertificate.parse(certificate))
    elif kind is EntryKind.DEVICE_REVOKED:
        account_id = r.text16(MAX_ACCOUNT_ID_BYTES, "account id")
        if not account_id:
            raise r.fail("empty account id")
        entry = DeviceRevoked(at, account_id, r.u32())
    else:
        admin = r.text16(MAX_ADMIN_NAME_BYTES, "admin")
        admin_key, action = r.fixed(KEY_BYTES), r.text16(MAX_ACTION_BYTES, "action")
        raw_details = r.var32(MAX_DETAILS_BYTES, "details")
        entry = AdminAction(at, admin, admin_key, action, _details(r, raw_details), r.fixed(SIGNATURE_BYTES))
    r.finish()
    return entry


def _details(r: Reader, raw: bytes) -> str:
    """``raw`` as the JSON object text it must be."""
    try:
        text = raw.decode("utf-8")
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError) as e:
        raise r.fail("the details are not UTF-8 JSON") from e
    if not isinstance(value, dict):
        raise r.fail("the details are not a JSON object")
    return text


@dataclass(frozen=True, slots=True)
class Binding:
    """A device's identity key as the log states it: added at leaf ``added``, and revoked at
    leaf ``revoked`` if it was."""

    account_id: str
    device_id: int
    identity_key: bytes
    added: int
    added_at: int
    revoked: int | None = None
    revoked_at: int | None = None


class BindingStore(Protocol):
    """Where a ``KeyDirectory`` keeps the bindings it replayed: memory for an audit, the
    profile's database for a device, which keeps its directory between runs."""

    def get(self, account_id: str, device_id: int) -> Binding | None: ...

    def put(self, binding: Binding) -> None:
        """Add the binding, or replace the one of its device."""

    def has_key(self, identity_key: bytes) -> bool: ...

    def of_account(self, account_id: str) -> list[Binding]: ...


class MemoryBindings:
    def __init__(self) -> None:
        self._devices: dict[tuple[str, int], Binding] = {}
        self._keys: set[bytes] = set()

    def get(self, account_id: str, device_id: int) -> Binding | None:
        return self._devices.get((account_id, device_id))

    def put(self, binding: Binding) -> None:
        self._devices[(binding.account_id, binding.device_id)] = binding
        self._keys.add(binding.identity_key)

    def has_key(self, identity_key: bytes) -> bool:
        return identity_key in self._keys

    def of_account(self, account_id: str) -> list[Binding]:
        return [b for (account, _), b in self._devices.items() if account == account_id]


class KeyDirectory:
    """The bindings a log's entries state, replayed in order from its first leaf.

    ``authority_key`` is the enrolment authority's (the config's): a ``DEVICE_ADDED`` whose
    certificate it did not sign is a problem. Certificates are checked for their signature
    only; their expiry matters when a message arrives, not to the log that recorded them.
    ``bindings`` and ``size`` resume a directory replayed before (``size`` leaves into it).
    ``admins`` maps each admin key the config lists to the admin's name: an admin action by
    another key, or under another name, is a problem (None: admin keys are not checked).
    """

    def __init__(
        self,
        authority_key: bytes,
        bindings: BindingStore | None = None,
        size: int = 0,
        admins: Mapping[bytes, str] | None = None,
    ) -> None:
        self._authority_key = authority_key
        self._bindings: BindingStore = bindings if bindings is not None else MemoryBindings()
        self._admins = admins
        self.size = size

    def apply_leaf(self, untrusted_entry: bytes) -> tuple[LogEntry | None, str | None]:
        """Parse and apply the next leaf: the entry applied, or None and what is wrong with it. A
        leaf that does not parse (a kind of a newer version) is counted all the same: the tree
        holds it."""
        try:
            entry = parse_entry(untrusted_entry)
        except RemoteProtocolError as e:
            self.size += 1
            return None, f"leaf {self.size - 1}: not an entry this Enclave reads ({e})"
        problem = self.apply(entry)
        return (None, problem) if problem is not None else (entry, None)

    def apply(self, entry: LogEntry) -> str | None:
        """Apply the next leaf's entry; what is wrong with it (it then changes nothing), or None."""
        index, self.size = self.size, self.size + 1
        if isinstance(entry, DeviceAdded):
            return self._add(index, entry)
        if isinstance(entry, DeviceRevoked):
            return self._revoke(index, entry)
        return self._admin_action(index, entry)

    def _admin_action(self, index: int, entry: AdminAction) -> str | None:
        try:
            entry.verify()
        except InvalidSignatureError:
            return f"leaf {index}: the admin action {entry.action!r} is not signed by the key it names"
        listed = None if self._admins is None else self._admins.get(entry.admin_key)
        if self._admins is not None and listed is None:
            return (
                f"leaf {index}: the admin action {entry.action!r} by {entry.admin!r} is signed by a key the"
                " config does not list as an admin's"
            )
        if listed is not None and listed != entry.admin:
            return (
                f"leaf {index}: the admin action {entry.action!r} names {entry.admin!r}, but the config"
                f" lists its key under the name {listed!r}"
            )
        return None

    def _add(self, index: int, entry: DeviceAdded) -> str | None:
        b = entry.binding
        try:
            b.verify(trust_root=self._authority_key, now=0)
        except CertificateError:
            return f"leaf {index}: device {b.device_id} of {b.account_id} is not certified by the authority"
        if self._bindings.get(b.account_id, b.device_id) is not None:
            return f"leaf {index}: device {b.device_id} of {b.account_id} is added a second time"
        if self._bindings.has_key(b.identity_key):
            return f"leaf {index}: the identity key of device {b.device_id} is another device's already"
        self._bindings.put(Binding(b.account_id, b.device_id, b.identity_key, index, entry.at))
        return None

    def _revoke(self, index: int, entry: DeviceRevoked) -> str | None:
        binding = self._bindings.get(entry.account_id, entry.device_id)
        if binding is None:
            return (
                f"leaf {index}: device {entry.device_id} of {entry.account_id} is revoked but was never added"
            )
        if binding.revoked is not None:
            return f"leaf {index}: device {entry.device_id} of {entry.account_id} is revoked a second time"
        self._bindings.put(replace(binding, revoked=index, revoked_at=entry.at))
        return None

    def binding(self, account_id: str, device_id: int) -> Binding | None:
        return self._bindings.get(account_id, device_id)

    def devices_of(self, account_id: str) -> list[Binding]:
        return sorted(self._bindings.of_account(account_id), key=lambda b: b.added)
