"""The Double Ratchet (Signal's specification, revision 4), over libsodium and HKDF.

- KDF_RK: HKDF-SHA256 with the root key as salt and the DH output as input key
  material, info ``INFO_ROOT``, 64 bytes out: the new root key, then the chain key.
- KDF_CK: HMAC-SHA256 keyed by the chain key; input 0x01 gives the message key, input
  0x02 the next chain key (the specification's recommendation).
- ENCRYPT: XChaCha20-Poly1305 keyed by the message key with a constant all-zero nonce.
  Each message key encrypts exactly one message and is then erased, which is why the
  specification (section 5.2) allows a constant nonce; deriving a nonce by HKDF would
  cost a third of the per-message time for no security gain (bench/crypto.py). The
  associated data is the session's AD (both identity keys) followed by the encoded
  header, so the header is authenticated.

Decryption is all-or-nothing: every new value is computed in locals and written to the
state only after the message authenticates, so a forged, replayed or damaged message
leaves the session exactly as it was. A used message key or chain key is replaced or
deleted from the state at once (Python cannot promise to wipe the old ``bytes`` from
memory; docs/PROTOCOL.md, "Known limitations", says so).

The byte layout of headers and messages is in docs/PROTOCOL.md, "Ratchet message".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from app.base.codec import Reader
from app.base.errors import (
    DuplicateMessageError,
    LocalProtocolError,
    TooManySkippedMessagesError,
)
from app.base.limits import (
    AEAD_TAG_BYTES,
    KEY_BYTES,
    MAX_CHAIN_LENGTH,
    MAX_PLAINTEXT_BYTES,
    MAX_RATCHET_MESSAGE_BYTES,
    MAX_SKIP,
    MAX_STORED_SKIPPED_KEYS,
    XCHACHA_NONCE_BYTES,
)
from app.crypto.keys import DHKeyPair
from app.crypto.primitives import (
    CHAIN_MESSAGE_KEY_INPUT,
    CHAIN_NEXT_KEY_INPUT,
    INFO_ROOT,
    RandomSource,
    aead_decrypt,
    aead_encrypt,
    hkdf,
    hmac_sha256,
    x25519,
)

RATCHET_VERSION = 1
RATCHET_VERSIONS = frozenset({RATCHET_VERSION})
_HEADER = struct.Struct(">B32sII")
HEADER_BYTES = _HEADER.size
MESSAGE_NONCE = b"\x00" * XCHACHA_NONCE_BYTES

SkippedKeys = dict[tuple[bytes, int], bytes]
"""(sender's ratchet public key, message number) -> message key, oldest first."""


def kdf_rk(root_key: bytes, dh_out: bytes) -> tuple[bytes, bytes]:
    """(new root key, new chain key)."""
    out = hkdf(ikm=dh_out, salt=root_key, info=INFO_ROOT, length=2 * KEY_BYTES)
    return out[:KEY_BYTES], out[KEY_BYTES:]


def kdf_ck(chain_key: bytes) -> tuple[bytes, bytes]:
    """(message key, next chain key)."""
    return (
        hmac_sha256(key=chain_key, data=CHAIN_MESSAGE_KEY_INPUT),
        hmac_sha256(key=chain_key, data=CHAIN_NEXT_KEY_INPUT),
    )


@dataclass(frozen=True, slots=True)
class Header:
    dh: bytes
    previous_chain_length: int
    number: int

    def encode(self) -> bytes:
        return _HEADER.pack(RATCHET_VERSION, self.dh, self.previous_chain_length, self.number)


def parse_message(untrusted: bytes) -> tuple[Header, bytes, bytes]:
    """(header, encoded header, ciphertext) of a ratchet message; refuses malformed bytes."""
    r = Reader(untrusted, "ratchet message")
    if len(untrusted) > MAX_RATCHET_MESSAGE_BYTES:
        raise r.fail(f"{len(untrusted)} bytes exceeds the limit")
    if len(untrusted) < HEADER_BYTES + AEAD_TAG_BYTES:
        r.version(supported=RATCHET_VERSIONS, known=RATCHET_VERSIONS)
        raise r.fail("shorter than a header and a tag")
    version, dh, previous_chain_length, number = _HEADER.unpack_from(untrusted)
    if version != RATCHET_VERSION:
        r.version(supported=RATCHET_VERSIONS, known=RATCHET_VERSIONS)
    return Header(dh, previous_chain_length, number), untrusted[:HEADER_BYTES], untrusted[HEADER_BYTES:]


def _seal(message_key: bytes, associated_data: bytes, header: bytes, plaintext: bytes) -> bytes:
    return aead_encrypt(
        key=message_key, nonce=MESSAGE_NONCE, associated_data=associated_data + header, plaintext=plaintext
    )


def _open(message_key: bytes, associated_data: bytes, header: bytes, ciphertext: bytes) -> bytes:
    return aead_decrypt(
        key=message_key, nonce=MESSAGE_NONCE, associated_data=associated_data + header, ciphertext=ciphertext
    )


def _skip(
    chain_key: bytes, dh: bytes, start: int, until: int
) -> tuple[bytes, list[tuple[tuple[bytes, int], bytes]]]:
    """Derive the keys of messages ``start .. until-1``; (chain key at ``until``, keys)."""
    if until - start > MAX_SKIP:
        raise TooManySkippedMessagesError(
            f"the message is {until - start} messages ahead; at most {MAX_SKIP} are kept"
        )
    skipped = []
    for n in range(start, until):
        message_key, chain_key = kdf_ck(chain_key)
        skipped.append(((dh, n), message_key))
    return chain_key, skipped


@dataclass(slots=True)
class RatchetState:
    """The mutable state of one side of a Double Ratchet session (the specification's names)."""

    dhs: DHKeyPair = field(repr=False)
    dhr: bytes | None
    rk: bytes = field(repr=False)
    cks: bytes | None = field(repr=False)
    ckr: bytes | None = field(repr=False)
    ns: int = 0
    nr: int = 0
    pn: int = 0
    skipped: SkippedKeys = field(default_factory=dict, repr=False)

    @classmethod
    def initiator(cls, shared_secret: bytes, remote_ratchet_key: bytes, random: RandomSource) -> RatchetState:
        """Alice's state: she knows Bob's signed prekey and sends first."""
        dhs = DHKeyPair.generate(random)
        rk, cks = kdf_rk(shared_secret, x25519(private_key=dhs.private, public_key=remote_ratchet_key))
        return cls(dhs=dhs, dhr=remote_ratchet_key, rk=rk, cks=cks, ckr=None)

    @classmethod
    def responder(cls, shared_secret: bytes, own_ratchet_key: DHKeyPair) -> RatchetState:
        """Bob's state: his signed prekey is his first ratchet key; he must receive first."""
        return cls(dhs=own_ratchet_key, dhr=None, rk=shared_secret, cks=None, ckr=None)

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        if self.cks is None:
            raise LocalProtocolError("this side cannot send before it has received a message")
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise LocalProtocolError(f"plaintext of {len(plaintext)} bytes exceeds {MAX_PLAINTEXT_BYTES}")
        if self.ns >= MAX_CHAIN_LENGTH:
            raise LocalProtocolError("the sending chain is exhausted; the session must be renewed")
        message_key, self.cks = kdf_ck(self.cks)
        header = Header(self.dhs.public, self.pn, self.ns).encode()
        self.ns += 1
        return header + _seal(message_key, associated_data, header, plaintext)

    def decrypt(self, untrusted: bytes, associated_data: bytes, random: RandomSource) -> bytes:
        """Decrypt one message; on any error the state is unchanged."""
        header, raw_header, ciphertext = parse_message(untrusted)
        slot = (header.dh, header.number)
        message_key = self.skipped.get(slot)
        if message_key is not None:
            plaintext = _open(message_key, associated_data, raw_header, ciphertext)
            del self.skipped[slot]
            return plaintext
        if header.dh == self.dhr:
            return self._decrypt_current_chain(header, raw_header, ciphertext, associated_data)
        return self._decrypt_new_chain(header, raw_header, ciphertext, associated_data, random)

    def _decrypt_current_chain(
        self, header: Header, raw_header: bytes, ciphertext: bytes, associated_data: bytes
    ) -> bytes:
        if header.number < self.nr or self.ckr is None:
            raise DuplicateMessageError("this message was already received")
        chain_key, new_skipped = _skip(self.ckr, header.dh, self.nr, header.number)
        message_key, chain_key = kdf_ck(chain_key)
        plaintext = _open(message_key, associated_data, raw_header, ciphertext)
        self._store_skipped(new_skipped)
        self.ckr = chain_key
        self.nr = header.number + 1
        return plaintext

    def _decrypt_new_chain(
        self,
        header: Header,
        raw_header: bytes,
        ciphertext: bytes,
        associated_data: bytes,
        random: RandomSource,
    ) -> bytes:
        """A DH ratchet step; the new sending key is made only once the message authenticates."""
        old_skipped: list[tuple[tuple[bytes, int], bytes]] = []
        if self.ckr is not None and self.dhr is not None:
            _, old_skipped = _skip(self.ckr, self.dhr, self.nr, header.previous_chain_length)
        root_key, chain_key = kdf_rk(self.rk, x25519(private_key=self.dhs.private, public_key=header.dh))
        chain_key, new_skipped = _skip(chain_key, header.dh, 0, header.number)
        message_key, chain_key = kdf_ck(chain_key)
        plaintext = _open(message_key, associated_data, raw_header, ciphertext)

        dhs = DHKeyPair.generate(random)
        root_key, sending_chain = kdf_rk(root_key, x25519(private_key=dhs.private, public_key=header.dh))
        self._store_skipped(old_skipped + new_skipped)
        self.pn, self.ns, self.nr = self.ns, 0, header.number + 1
        self.dhr, self.dhs = header.dh, dhs
        self.rk, self.cks, self.ckr = root_key, sending_chain, chain_key
        return plaintext

    def _store_skipped(self, keys: list[tuple[tuple[bytes, int], bytes]]) -> None:
        self.skipped.update(keys)
        excess = len(self.skipped) - MAX_STORED_SKIPPED_KEYS
        if excess > 0:
            for slot in list(self.skipped)[:excess]:
                del self.skipped[slot]
