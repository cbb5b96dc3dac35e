"""A pairwise session: X3DH to start it, the Double Ratchet to run it, bytes to store it.

The initiator (Alice) fetches Bob's ``PreKeyBundle`` and calls ``initiate_session``.
Until Bob's first reply arrives, every message she sends is wrapped in a
``PreKeyMessage`` that carries what Bob needs to run X3DH himself, so a lost first
message does not break the session. Bob parses it, looks up the prekeys it names, and
calls ``accept_session``; the one-time prekey must then be deleted by the caller.

X3DH (Signal's specification, section 3.3) with our key encoding:
``SK = HKDF(ikm = 0xFF*32 || DH1 || DH2 || DH3 [|| DH4], salt = 0x00*32, info = INFO_X3DH)``,
``AD = IK_initiator || IK_responder`` (Ed25519 public keys). A ``PreKeyMessage``'s own
fields are appended to the AD of the ratchet message it wraps, so none of its bytes
can be changed unnoticed. docs/PROTOCOL.md, "X3DH" and "Prekey message".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum

from app.base.codec import Reader, Writer
from app.base.errors import (
    CorruptStateError,
    DecryptionError,
    DuplicateMessageError,
    LocalProtocolError,
    RemoteProtocolError,
    UnsupportedStateVersionError,
)
from app.base.limits import (
    KEY_BYTES,
    MAX_RATCHET_MESSAGE_BYTES,
    MAX_SESSION_STATE_BYTES,
    MAX_STORED_SKIPPED_KEYS,
)
from app.crypto.keys import (
    NO_ONE_TIME_PREKEY,
    DHKeyPair,
    IdentityKeyPair,
    OneTimePreKey,
    PreKeyBundle,
    SignedPreKey,
    identity_dh_public,
)
from app.crypto.primitives import INFO_X3DH, RandomSource, hkdf, x25519
from app.crypto.ratchet import RatchetState, parse_message

X3DH_PREFIX = b"\xff" * KEY_BYTES
X3DH_SALT = b"\x00" * KEY_BYTES

PREKEY_MESSAGE_VERSION = 1
PREKEY_MESSAGE_VERSIONS = frozenset({PREKEY_MESSAGE_VERSION})

STATE_MAGIC = b"ENSS"
STATE_VERSION = 1
STATE_VERSIONS_KNOWN = frozenset({STATE_VERSION})
STATE_VERSIONS_SUPPORTED = frozenset({STATE_VERSION})
STATE_CHECKSUM_BYTES = 16

_F_INITIATOR = 0x01
_F_DHR = 0x02
_F_CKS = 0x04
_F_CKR = 0x08
_F_PENDING = 0x10
_F_ALL = 0x1F


class MessageKind(IntEnum):
    """Which parser reads a session message; travels inside the sealed envelope."""

    PREKEY = 1
    RATCHET = 2


@dataclass(frozen=True, slots=True)
class SessionMessage:
    kind: MessageKind
    body: bytes


@dataclass(frozen=True, slots=True)
class PreKeyMessage:
    """An initiator's message that also carries her X3DH inputs."""

    identity_key: bytes
    base_key: bytes
    signed_prekey_id: int
    one_time_prekey_id: int
    message: bytes

    def header(self) -> bytes:
        """The fields before the ratchet message; the ratchet authenticates them too."""
        return (
            Writer("prekey message")
            .u8(PREKEY_MESSAGE_VERSION)
            .fixed(self.identity_key, KEY_BYTES, "identity key")
            .fixed(self.base_key, KEY_BYTES, "base key")
            .u32(self.signed_prekey_id)
            .u32(self.one_time_prekey_id)
            .getvalue()
        )

    def encode(self) -> bytes:
        return self.header() + self.message

    @classmethod
    def parse(cls, untrusted: bytes) -> PreKeyMessage:
        r = Reader(untrusted, "prekey message")
        if len(untrusted) > MAX_RATCHET_MESSAGE_BYTES + 128:
            raise r.fail(f"{len(untrusted)} bytes exceeds the limit")
        r.version(supported=PREKEY_MESSAGE_VERSIONS, known=PREKEY_MESSAGE_VERSIONS)
        return cls(
            identity_key=r.fixed(KEY_BYTES),
            base_key=r.fixed(KEY_BYTES),
            signed_prekey_id=r.u32(),
            one_time_prekey_id=r.u32(),
            message=r.rest(),
        )


@dataclass(slots=True)
class PendingPreKey:
    """Until the responder replies, the initiator's messages carry these X3DH inputs."""

    signed_prekey_id: int
    one_time_prekey_id: int


def _x3dh_secret(dh_outputs: list[bytes]) -> bytes:
    return hkdf(ikm=X3DH_PREFIX + b"".join(dh_outputs), salt=X3DH_SALT, info=INFO_X3DH, length=KEY_BYTES)


class Session:
    """One device's view of a session with one remote device."""

    __slots__ = (
        "associated_data",
        "base_key",
        "is_initiator",
        "local_identity",
        "pending",
        "ratchet",
        "remote_identity",
    )

    def __init__(
        self,
        *,
        local_identity: bytes,
        remote_identity: bytes,
        base_key: bytes,
        is_initiator: bool,
        ratchet: RatchetState,
        pending: PendingPreKey | None,
    ) -> None:
        self.local_identity = local_identity
        self.remote_identity = remote_identity
        self.base_key = base_key
        self.is_initiator = is_initiator
        self.ratchet = ratchet
        self.pending = pending
        self.associated_data = (
            local_identity + remote_identity if is_initiator else remote_identity + local_identity
        )
        """X3DH's AD: the initiator's identity key, then the responder's."""

    def encrypt(self, plaintext: bytes) -> SessionMessage:
        if self.pending is None:
            return SessionMessage(MessageKind.RATCHET, self.ratchet.encrypt(plaintext, self.associated_data))
        header = PreKeyMessage(
            identity_key=self.local_identity,
            base_key=self.base_key,
            signed_prekey_id=self.pending.signed_prekey_id,
            one_time_prekey_id=self.pending.one_time_prekey_id,
            message=b"",
        ).header()
        body = self.ratchet.encrypt(plaintext, self.associated_data + header)
        return SessionMessage(MessageKind.PREKEY, header + body)

    def started_by(self, message: PreKeyMessage) -> bool:
        """Whether ``message`` is one of the prekey messages this (responder's) session began with."""
        return message.base_key == self.base_key and message.identity_key == self.remote_identity

    def _left_first_chain(self, message: PreKeyMessage) -> bool:
        """Whether this responder has moved past the chain every prekey message of its session is on.

        The initiator wraps only until she hears back, and she makes a new ratchet key only
        then, so all her prekey messages are on her first chain: the one this session was
        made from. Once its ratchet moved to a later chain of hers, the keys of that first
        chain it still lacks are stored skipped keys; any other is a message already read
        (a replay), or one whose skipped key was dropped (section 5's limit).
        """
        ratchet = self.ratchet
        if ratchet.dhr is None:
            return False  # nothing received yet: the first chain is still to come
        header, _, _ = parse_message(message.message)
        return header.dh != ratchet.dhr and (header.dh, header.number) not in ratchet.skipped

    def decrypt(self, message: SessionMessage, random: RandomSource) -> bytes:
        """Decrypt a message of this session; on any error the session is unchanged.

        A ``PreKeyMessage`` for a different base key belongs to a new session the peer
        started: ``DecryptionError`` tells the caller to run ``accept_session`` instead.
        """
        body, associated_data = message.body, self.associated_data
        if message.kind == MessageKind.PREKEY:
            wrapped = PreKeyMessage.parse(body)
            if not self.started_by(wrapped):
                raise DecryptionError("the message starts a new session")
            if self._left_first_chain(wrapped):
                raise DuplicateMessageError("a first-chain message whose key this session no longer has")
            body, associated_data = wrapped.message, associated_data + wrapped.header()
        plaintext = self.ratchet.decrypt(body, associated_data, random)
        if message.kind == MessageKind.RATCHET:
            self.pending = None
        return plaintext

    def to_bytes(self) -> bytes:
        """Versioned, checksummed bytes for the encrypted store (docs/PROTOCOL.md, "Session state")."""
        r = self.ratchet
        flags = (
            (_F_INITIATOR if self.is_initiator else 0)
            | (_F_DHR if r.dhr is not None else 0)
            | (_F_CKS if r.cks is not None else 0)
            | (_F_CKR if r.ckr is not None else 0)
            | (_F_PENDING if self.pending is not None else 0)
        )
        w = Writer("session state").raw(STATE_MAGIC).u8(STATE_VERSION).u8(flags)
        w.fixed(self.local_identity, KEY_BYTES, "local identity")
        w.fixed(self.remote_identity, KEY_BYTES, "remote identity")
        w.fixed(self.base_key, KEY_BYTES, "base key")
        w.fixed(r.dhs.private, KEY_BYTES, "ratchet key")
        if r.dhr is not None:
            w.fixed(r.dhr, KEY_BYTES, "remote ratchet key")
        w.fixed(r.rk, KEY_BYTES, "root key")
        for chain in (r.cks, r.ckr):
            if chain is not None:
                w.fixed(chain, KEY_BYTES, "chain key")
        w.u32(r.ns).u32(r.nr).u32(r.pn)
        if self.pending is not None:
            w.u32(self.pending.signed_prekey_id).u32(self.pending.one_time_prekey_id)
        w.u32(len(r.skipped))
        for (dh, n), message_key in r.skipped.items():
            w.fixed(dh, KEY_BYTES, "skipped ratchet key").u32(n).fixed(message_key, KEY_BYTES, "skipped key")
        body = w.getvalue()
        return body + hashlib.blake2b(body, digest_size=STATE_CHECKSUM_BYTES).digest()

    @classmethod
    def from_bytes(cls, untrusted: bytes) -> Session:
        """Load stored state; raise ``UnsupportedStateVersionError`` or ``CorruptStateError``."""
        if len(untrusted) > MAX_SESSION_STATE_BYTES:
            raise CorruptStateError("session state is larger than any valid state")
        if len(untrusted) < len(STATE_MAGIC) + 1 + STATE_CHECKSUM_BYTES or untrusted[:4] != STATE_MAGIC:
            raise CorruptStateError("this is not Enclave session state")
        version = untrusted[4]
        if version not in STATE_VERSIONS_SUPPORTED:
            raise UnsupportedStateVersionError(version, known=version in STATE_VERSIONS_KNOWN)
        body, checksum = untrusted[:-STATE_CHECKSUM_BYTES], untrusted[-STATE_CHECKSUM_BYTES:]
        if hashlib.blake2b(body, digest_size=STATE_CHECKSUM_BYTES).digest() != checksum:
            raise CorruptStateError("session state is damaged (checksum mismatch)")
        try:
            return cls._parse_state(Reader(body[5:], "session state"))
        except RemoteProtocolError as e:
            raise CorruptStateError(f"session state is damaged: {e}") from e

    @classmethod
    def _parse_state(cls, r: Reader) -> Session:
        flags = r.u8()
        if flags & ~_F_ALL:
            raise r.fail("unknown flags")
        local_identity, remote_identity, base_key = r.fixed(KEY_BYTES), r.fixed(KEY_BYTES), r.fixed(KEY_BYTES)
        dhs = DHKeyPair.from_private(r.fixed(KEY_BYTES))
        dhr = r.fixed(KEY_BYTES) if flags & _F_DHR else None
        rk = r.fixed(KEY_BYTES)
        cks = r.fixed(KEY_BYTES) if flags & _F_CKS else None
        ckr = r.fixed(KEY_BYTES) if flags & _F_CKR else None
        ns, nr, pn = r.u32(), r.u32(), r.u32()
        pending = PendingPreKey(r.u32(), r.u32()) if flags & _F_PENDING else None
        count = r.u32()
        if count > MAX_STORED_SKIPPED_KEYS:
            raise r.fail(f"{count} skipped keys exceeds the limit")
        skipped = {}
        for _ in range(count):
            dh, n, message_key = r.fixed(KEY_BYTES), r.u32(), r.fixed(KEY_BYTES)
            skipped[(dh, n)] = message_key
        r.finish()
        ratchet = RatchetState(
            dhs=dhs, dhr=dhr, rk=rk, cks=cks, ckr=ckr, ns=ns, nr=nr, pn=pn, skipped=skipped
        )
        return cls(
            local_identity=local_identity,
            remote_identity=remote_identity,
            base_key=base_key,
            is_initiator=bool(flags & _F_INITIATOR),
            ratchet=ratchet,
            pending=pending,
        )


def initiate_session(identity: IdentityKeyPair, bundle: PreKeyBundle, random: RandomSource) -> Session:
    """Alice's side of X3DH; ``bundle`` comes from the directory and is verified here."""
    bundle.verify()
    ephemeral = DHKeyPair.generate(random)
    outputs = [
        x25519(private_key=identity.dh.private, public_key=bundle.signed_prekey),
        x25519(private_key=ephemeral.private, public_key=identity_dh_public(bundle.identity_key)),
        x25519(private_key=ephemeral.private, public_key=bundle.signed_prekey),
    ]
    if bundle.one_time_prekey is not None:
        outputs.append(x25519(private_key=ephemeral.private, public_key=bundle.one_time_prekey))
    ratchet = RatchetState.initiator(_x3dh_secret(outputs), bundle.signed_prekey, random)
    return Session(
        local_identity=identity.public,
        remote_identity=bundle.identity_key,
        base_key=ephemeral.public,
        is_initiator=True,
        ratchet=ratchet,
        pending=PendingPreKey(bundle.signed_prekey_id, bundle.one_time_prekey_id),
    )


def accept_session(
    identity: IdentityKeyPair,
    message: PreKeyMessage,
    signed_prekey: SignedPreKey,
    one_time_prekey: OneTimePreKey | None,
    random: RandomSource,
) -> tuple[Session, bytes]:
    """Bob's side of X3DH: (the new session, the first plaintext).

    The caller looked up the prekeys ``message`` names. If it names a one-time prekey
    that is gone (used before: a replay), the message is refused.
    """
    if signed_prekey.key_id != message.signed_prekey_id:
        raise LocalProtocolError("the signed prekey passed is not the one the message names")
    if message.one_time_prekey_id != NO_ONE_TIME_PREKEY and (
        one_time_prekey is None or one_time_prekey.key_id != message.one_time_prekey_id
    ):
        raise DecryptionError("the one-time prekey this message names was already used or never existed")
    outputs = [
        x25519(
            private_key=signed_prekey.keypair.private, public_key=identity_dh_public(message.identity_key)
        ),
        x25519(private_key=identity.dh.private, public_key=message.base_key),
        x25519(private_key=signed_prekey.keypair.private, public_key=message.base_key),
    ]
    if message.one_time_prekey_id != NO_ONE_TIME_PREKEY and one_time_prekey is not None:
        outputs.append(x25519(private_key=one_time_prekey.keypair.private, public_key=message.base_key))
    ratchet = RatchetState.responder(_x3dh_secret(outputs), signed_prekey.keypair)
    session = Session(
        local_identity=identity.public,
        remote_identity=message.identity_key,
        base_key=message.base_key,
        is_initiator=False,
        ratchet=ratchet,
        pending=None,
    )
    plaintext = session.decrypt(SessionMessage(MessageKind.PREKEY, message.encode()), random)
    return session, plaintext
