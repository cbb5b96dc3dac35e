"""``enclave-admin log audit`` and ``log verify``: replay the key log from a relay's database, or
any copy of it; ``log show`` lists it.

Every leaf is read and hashed, every entry replayed (app/protocol/logentry.py's
``KeyDirectory``: a binding the enrolment authority did not sign, a device or key added
twice, a revocation of a device never added, a forged admin signature are each named),
and the root of the whole log computed. With ``--head FILE``, a signed head someone kept
(a device, a colleague, an earlier audit: the note ``GET /v1/log/head`` gave), the log must
have at least its leaves, and the root of its first that many must be the head's: a log
rewritten from its start, or cut, is caught against any head of the honest one. The log
key is the data folder's (``log.key``) unless ``--log-key`` names another, and the
authority key the relay's (``authority.pub``) unless ``--authority-key`` does; the admins
whose keys may sign admin actions are those of the config published on the relay, or of
``--config``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from app.base.errors import EnclaveError, InvalidSignatureError, RemoteProtocolError
from app.crypto.merkle import leaf_hash, root
from app.protocol.checkpoint import SignedCheckpoint
from app.protocol.logentry import DeviceAdded, DeviceRevoked, KeyDirectory, parse_entry
from app.protocol.logview import log_origin
from server.store.base import RelayStore

READ_BATCH = 10_000


class AuditRefused(EnclaveError):
    """The head given is not one the log key signed, or not of this log."""


@dataclass
class Audit:
    size: int = 0
    root: bytes = b""
    added: int = 0
    revoked: int = 0
    admin_actions: int = 0
    problems: list[str] = field(default_factory=list)


async def audit(
    store: RelayStore,
    *,
    log_key: bytes,
    authority_key: bytes,
    kept_head: bytes | None = None,
    admins: Mapping[bytes, str] | None = None,
) -> Audit:
    """Replay the whole log in ``store``; against ``kept_head`` too, if given. ``admins`` (each
    admin's key and name) as ``KeyDirectory`` takes them."""
    head = None
    if kept_head is not None:
        origin = log_origin(log_key)
        try:
            head = SignedCheckpoint.parse(
                kept_head, key_name=origin, public_key=log_key, origin=origin
            ).checkpoint
        except (RemoteProtocolError, InvalidSignatureError) as e:
            raise AuditRefused(f"the head given is not one this log key signed: {e}") from e
    result, directory, leaves = Audit(), KeyDirectory(authority_key, admins=admins), []
    while entries := await store.log_entries(len(leaves), READ_BATCH):
        for untrusted_entry in entries:
            leaves.append(leaf_hash(untrusted_entry))
            _replay(untrusted_entry, directory, result)
    result.size, result.root = len(leaves), root(leaves)
    if head is not None and len(leaves) < head.size:
        result.problems.append(
            f"the log has {len(leaves)} leaves, fewer than the {head.size} of the head kept: entries were cut"
        )
    elif head is not None and root(leaves[: head.size]) != head.root:
        result.problems.append(
            f"the first {head.size} leaves do not have the root of the head kept: the log was rewritten"
        )
    return result


def _replay(untrusted_entry: bytes, directory: KeyDirectory, result: Audit) -> None:
    entry, problem = directory.apply_leaf(untrusted_entry)
    if problem is not None:
        result.problems.append(problem)
    elif isinstance(entry, DeviceAdded):
        result.added += 1
    elif isinstance(entry, DeviceRevoked):
        result.revoked += 1
    elif entry is not None:
        result.admin_actions += 1


def entry_lines(untrusted_entries: Sequence[bytes]) -> list[str]:
    """One tab-separated line per leaf: its number, its time (UTC), what it states."""
    lines = []
    for leaf, untrusted_entry in enumerate(untrusted_entries):
        try:
            entry = parse_entry(untrusted_entry)
        except RemoteProtocolError as e:
            lines.append(f"{leaf}\t\tunreadable\t{e}")
            continue
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.at))
        if isinstance(entry, DeviceAdded):
            b = entry.binding
            what = f"device.added\t{b.account_id}\tdevice {b.device_id}\tkey {b.identity_key.hex()}"
        elif isinstance(entry, DeviceRevoked):
            what = f"device.revoked\t{entry.account_id}\tdevice {entry.device_id}"
        else:
            what = f"{entry.action}\tby {entry.admin} ({entry.admin_key.hex()[:16]}…)\t{entry.details}"
        lines.append(f"{leaf}\t{when}\t{what}")
    return lines
