"""A group change: one signed step of a group's state, as every member stores and forwards it.

A group's name, members, admins, timer, classification label and secret flag change only
through these. Each is signed by the device of its author (an admin, or a member who leaves)
with that device's identity key, and carries the author's device certificate, so any member
can check it whoever forwarded it: the pairwise session that brought it proves only who
forwarded it. The relay never sees one: they travel inside the encryption like any content.

Changes form a DAG: each names the changes its author had applied last (its *parents*, the
heads of its author's log) and a Lamport number one above its parents' highest. The first
change, the *genesis*, has no parents and number 0, and names no group id: the group id is
the first 16 bytes of its SHA-256, so two different geneses cannot claim one group. How a
set of changes resolves to one state is app/protocol/groupstate.py's.

Format (docs/PROTOCOL.md, "Group changes"): ``u8`` version, ``bytes16`` group id (zero in the
genesis), ``var16`` author certificate, ``u64`` Lamport number, ``u8`` parent count and that
many ``bytes32`` change ids, ``u64`` made at (ms, as the author's clock says: shown, never
trusted for order), ``u16`` operation count (1 to ``MAX_OPERATIONS``) and the operations, then
the ``bytes64`` Ed25519 signature over all of it, context ``enclave:v1:group-change``. A
change's id is the SHA-256 of its whole encoding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum

from app.base.codec import Reader, Writer
from app.base.errors import LocalProtocolError, RemoteProtocolError
from app.base.limits import MAX_ACCOUNT_ID_BYTES, MAX_TIMER_SECONDS, SIGNATURE_BYTES
from app.crypto.certificate import MAX_CERTIFICATE_BYTES, DeviceCertificate, name_refusal
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import SIGN_CONTEXT_GROUP_CHANGE, ed25519_verify

GROUP_CHANGE_VERSION = 1
GROUP_CHANGE_VERSIONS = frozenset({GROUP_CHANGE_VERSION})
GROUP_ID_BYTES = 16
CHANGE_ID_BYTES = 32
NONCE_BYTES = 16
MAX_PARENTS = 16
MAX_OPERATIONS = 1000
"""Enough to create a group of 1,000 members in one change."""
MAX_GROUP_NAME_BYTES = 128
MAX_LABEL_BYTES = 64
NO_GROUP = bytes(GROUP_ID_BYTES)


class Operation(IntEnum):
    CREATE = 1
    RENAME = 2
    ADD = 3
    REMOVE = 4
    PROMOTE = 5
    DEMOTE = 6
    LEAVE = 7
    SET_TIMER = 8
    SET_LABEL = 9


MEMBER_OPERATIONS = frozenset({Operation.ADD, Operation.REMOVE, Operation.PROMOTE, Operation.DEMOTE})
"""The operations that name an account."""


@dataclass(frozen=True, slots=True)
class Create:
    """The genesis's one operation: the group as it starts, its author its first admin."""

    nonce: bytes
    name: str
    timer_seconds: int = 0
    label: str = ""
    secret: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    """Any other operation: ``account_id`` for those of ``MEMBER_OPERATIONS``, ``text`` for a
    rename or a label, ``seconds`` for a timer."""

    operation: Operation
    account_id: str = ""
    text: str = ""
    seconds: int = 0


Op = Create | Step


@dataclass(frozen=True, slots=True)
class GroupChange:
    group_id: bytes
    """``NO_GROUP`` in the genesis (its id is derived from it: ``GroupChange.own_group_id``)."""
    author: DeviceCertificate
    lamport: int
    parents: tuple[bytes, ...]
    made_at: int
    operations: tuple[Op, ...]
    signature: bytes

    @property
    def is_genesis(self) -> bool:
        return not self.parents

    @classmethod
    def make(
        cls,
        author: IdentityKeyPair,
        certificate: DeviceCertificate,
        *,
        group_id: bytes,
        lamport: int,
        parents: tuple[bytes, ...],
        made_at: int,
        operations: tuple[Op, ...],
    ) -> GroupChange:
        """A change signed by ``author``, whose certificate names its public key."""
        if certificate.identity_key != author.public:
            raise LocalProtocolError("the certificate is another key's")
        unsigned = cls(group_id, certificate, lamport, parents, made_at, operations, b"")
        signature = author.sign(context=SIGN_CONTEXT_GROUP_CHANGE, message=unsigned._body())
        return cls(group_id, certificate, lamport, parents, made_at, operations, signature)

    def _body(self) -> bytes:
        _check(self)
        w = Writer("group change").u8(GROUP_CHANGE_VERSION)
        w.fixed(self.group_id, GROUP_ID_BYTES, "group id")
        w.var16(self.author.encode(), MAX_CERTIFICATE_BYTES, "author certificate")
        w.u64(self.lamport).u8(len(self.parents))
        for parent in self.parents:
            w.fixed(parent, CHANGE_ID_BYTES, "parent")
        w.u64(self.made_at).u16(len(self.operations))
        for op in self.operations:
            _write_op(w, op)
        return w.getvalue()

    def encode(self) -> bytes:
        return self._body() + self.signature

    @property
    def change_id(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()

    def own_group_id(self) -> bytes:
        """The id of the group this change founds (a genesis only)."""
        if not self.is_genesis:
            raise LocalProtocolError("only a genesis founds a group")
        return self.change_id[:GROUP_ID_BYTES]

    @classmethod
    def parse(cls, untrusted: bytes) -> GroupChange:
        """The change in ``untrusted``, its fields checked but not its signature (``verify``)."""
        r = Reader(untrusted, "group change")
        r.version(supported=GROUP_CHANGE_VERSIONS, known=GROUP_CHANGE_VERSIONS)
        group_id = r.fixed(GROUP_ID_BYTES)
        author = DeviceCertificate.parse(r.var16(MAX_CERTIFICATE_BYTES, "author certificate"))
        lamport = r.u64()
        count = r.u8()
        if count > MAX_PARENTS:
            raise r.fail(f"more than {MAX_PARENTS} parents")
        parents = tuple(r.fixed(CHANGE_ID_BYTES) for _ in range(count))
        made_at = r.u64()
        operations = tuple(_read_op(r) for _ in range(r.u16()))
        change = cls(group_id, author, lamport, parents, made_at, operations, r.fixed(SIGNATURE_BYTES))
        r.finish()
        try:
            _check(change)
        except LocalProtocolError as e:
            raise RemoteProtocolError(f"a group change is malformed: {e}") from e
        return change

    def verify(self) -> None:
        """``InvalidSignatureError`` unless the key of its author's certificate signed it. Whether
        that certificate is the organisation's, and its key the log's, is the caller's to check."""
        ed25519_verify(
            public_key=self.author.identity_key,
            context=SIGN_CONTEXT_GROUP_CHANGE,
            message=self._body(),
            signature=self.signature,
        )


def _check(change: GroupChange) -> None:
    """The rules of the format beyond its fields' sizes (``LocalProtocolError``)."""
    if not 1 <= len(change.operations) <= MAX_OPERATIONS:
        raise LocalProtocolError(f"a change has 1 to {MAX_OPERATIONS} operations")
    if len(change.parents) > MAX_PARENTS or len(set(change.parents)) != len(change.parents):
        raise LocalProtocolError(f"a change names at most {MAX_PARENTS} distinct parents")
    creates = [op for op in change.operations if isinstance(op, Create)]
    if change.is_genesis:
        if change.lamport != 0 or change.group_id != NO_GROUP:
            raise LocalProtocolError("a genesis has number 0 and no group id")
        if not isinstance(change.operations[0], Create) or len(creates) != 1:
            raise LocalProtocolError("a genesis starts with its one CREATE")
    elif creates or change.lamport == 0 or change.group_id == NO_GROUP:
        raise LocalProtocolError("only a genesis creates, has number 0 or no group id")


def _check_text(value: str, limit: int, field: str, *, empty: bool) -> None:
    if not value and not empty:
        raise LocalProtocolError(f"the {field} is empty")
    refusal = name_refusal(value) if value else None
    if refusal is not None:
        raise LocalProtocolError(f"the {field} {refusal}")
    if len(value.encode("utf-8")) > limit:
        raise LocalProtocolError(f"the {field} is longer than {limit} bytes")


def _check_timer(seconds: int) -> None:
    if not 0 <= seconds <= MAX_TIMER_SECONDS:
        raise LocalProtocolError(f"a timer is 0 to {MAX_TIMER_SECONDS} seconds")


def _write_op(w: Writer, op: Op) -> None:
    if isinstance(op, Create):
        _check_text(op.name, MAX_GROUP_NAME_BYTES, "group name", empty=False)
        _check_text(op.label, MAX_LABEL_BYTES, "label", empty=True)
        _check_timer(op.timer_seconds)
        w.u8(Operation.CREATE).fixed(op.nonce, NONCE_BYTES, "nonce")
        w.text16(op.name, MAX_GROUP_NAME_BYTES, "group name").u32(op.timer_seconds)
        w.text16(op.label, MAX_LABEL_BYTES, "label").u8(int(op.secret))
        return
    w.u8(op.operation)
    if op.operation in MEMBER_OPERATIONS:
        if not op.account_id:
            raise LocalProtocolError(f"{op.operation.name} names an account")
        w.text16(op.account_id, MAX_ACCOUNT_ID_BYTES, "account id")
    elif op.operation == Operation.RENAME:
        _check_text(op.text, MAX_GROUP_NAME_BYTES, "group name", empty=False)
        w.text16(op.text, MAX_GROUP_NAME_BYTES, "group name")
    elif op.operation == Operation.SET_LABEL:
        _check_text(op.text, MAX_LABEL_BYTES, "label", empty=True)
        w.text16(op.text, MAX_LABEL_BYTES, "label")
    elif op.operation == Operation.SET_TIMER:
        _check_timer(op.seconds)
        w.u32(op.seconds)
    elif op.operation != Operation.LEAVE:
        raise LocalProtocolError(f"{op.operation.name} is not a step")


def _read_op(r: Reader) -> Op:
    operation = r.enum(Operation, "group operation")
    if operation == Operation.CREATE:
        nonce = r.fixed(NONCE_BYTES)
        name = r.text16(MAX_GROUP_NAME_BYTES, "group name")
        timer = r.u32()
        label = r.text16(MAX_LABEL_BYTES, "label")
        secret = r.u8()
        if secret > 1:
            raise r.fail("the secret flag is 0 or 1")
        return _checked(Create(nonce, name, timer, label, bool(secret)), r)
    if operation in MEMBER_OPERATIONS:
        return _checked(Step(operation, account_id=r.text16(MAX_ACCOUNT_ID_BYTES, "account id")), r)
    if operation == Operation.RENAME:
        return _checked(Step(operation, text=r.text16(MAX_GROUP_NAME_BYTES, "group name")), r)
    if operation == Operation.SET_LABEL:
        return _checked(Step(operation, text=r.text16(MAX_LABEL_BYTES, "label")), r)
    if operation == Operation.SET_TIMER:
        return _checked(Step(operation, seconds=r.u32()), r)
    return Step(operation)


def _checked(op: Op, r: Reader) -> Op:
    """``op`` if it would encode, else the reader's refusal."""
    try:
        _write_op(Writer("check"), op)
    except LocalProtocolError as e:
        raise r.fail(str(e)) from e
    return op
