"""Identity keys, Diffie-Hellman key pairs and prekeys.

A device's identity is one Ed25519 key pair. It signs (prekeys) with Ed25519 and takes
part in X3DH through its Montgomery form, computed by libsodium's birational map. The
X3DH specification (section 2.3) allows either this or XEdDSA; one key with a
published, library-provided conversion keeps us off hand-written curve code.

Private keys are generated from a ``RandomSource`` the caller passes in, so tests can
make them deterministic; production passes ``nacl.utils.random``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from app.base.codec import Reader, Writer
from app.base.errors import InvalidKeyError
from app.base.limits import DELIVERY_KEY_BYTES, KEY_BYTES, SIGNATURE_BYTES
from app.crypto.primitives import (
    INFO_DELIVERY_KEY,
    SIGN_CONTEXT_SIGNED_PREKEY,
    RandomSource,
    ed25519_keypair_from_seed,
    ed25519_sign,
    ed25519_to_x25519_private,
    ed25519_to_x25519_public,
    ed25519_verify,
    hkdf,
    x25519_public,
)

BUNDLE_VERSION = 1
BUNDLE_VERSIONS = frozenset({BUNDLE_VERSION})

NO_ONE_TIME_PREKEY = 0xFFFFFFFF
IDENTITY_DH_CACHE = 4096
"""Identity keys whose X25519 form is kept: more than the devices of the largest group."""
"""Prekey id meaning "no one-time prekey was available" (valid ids are below it)."""


@dataclass(frozen=True, slots=True)
class DHKeyPair:
    """An X25519 key pair."""

    private: bytes = field(repr=False)
    public: bytes

    @classmethod
    def generate(cls, random: RandomSource) -> DHKeyPair:
        private = random(KEY_BYTES)
        return cls(private=private, public=x25519_public(private_key=private))

    @classmethod
    def from_private(cls, private: bytes) -> DHKeyPair:
        return cls(private=private, public=x25519_public(private_key=private))


@dataclass(frozen=True, slots=True)
class IdentityKeyPair:
    """A device's long-term Ed25519 identity, with its X25519 form for X3DH."""

    seed: bytes = field(repr=False)
    public: bytes
    _secret: bytes = field(repr=False)
    dh: DHKeyPair = field(repr=False)

    @classmethod
    def from_seed(cls, seed: bytes) -> IdentityKeyPair:
        public, secret = ed25519_keypair_from_seed(seed=seed)
        dh_private = ed25519_to_x25519_private(secret_key=secret)
        return cls(seed=seed, public=public, _secret=secret, dh=DHKeyPair.from_private(dh_private))

    @classmethod
    def generate(cls, random: RandomSource) -> IdentityKeyPair:
        return cls.from_seed(random(KEY_BYTES))

    def sign(self, *, context: bytes, message: bytes) -> bytes:
        return ed25519_sign(secret_key=self._secret, context=context, message=message)

    @property
    def delivery_key(self) -> bytes:
        """What a colleague must show the relay to leave an envelope for this device unidentified
        (docs/PROTOCOL.md section 15). Derived from the seed, so nothing more is stored; the
        price is that it changes only with the identity key (section 14)."""
        return hkdf(ikm=self.seed, salt=b"", info=INFO_DELIVERY_KEY, length=DELIVERY_KEY_BYTES)


@functools.lru_cache(maxsize=IDENTITY_DH_CACHE)
def identity_dh_public(identity_key: bytes) -> bytes:
    """The X25519 form of someone's Ed25519 identity key; a bad key raises ``InvalidKeyError``
    (not cached). Kept for the most recent keys: sealing a group message converts each member's
    key once per copy otherwise, a fifth of a seal's time (bench/groups.py)."""
    return ed25519_to_x25519_public(public_key=identity_key)


@dataclass(frozen=True, slots=True)
class SignedPreKey:
    """A medium-term X25519 prekey signed by the identity key."""

    key_id: int
    keypair: DHKeyPair = field(repr=False)
    signature: bytes

    @classmethod
    def generate(cls, identity: IdentityKeyPair, key_id: int, random: RandomSource) -> SignedPreKey:
        keypair = DHKeyPair.generate(random)
        signature = identity.sign(
            context=SIGN_CONTEXT_SIGNED_PREKEY, message=signed_prekey_message(key_id, keypair.public)
        )
        return cls(key_id=key_id, keypair=keypair, signature=signature)


def signed_prekey_message(key_id: int, public: bytes) -> bytes:
    """The bytes a signed prekey's signature covers (after the context prefix)."""
    return Writer("signed prekey").u32(key_id).fixed(public, KEY_BYTES, "prekey").getvalue()


@dataclass(frozen=True, slots=True)
class OneTimePreKey:
    key_id: int
    keypair: DHKeyPair = field(repr=False)

    @classmethod
    def generate(cls, key_id: int, random: RandomSource) -> OneTimePreKey:
        if not 0 <= key_id < NO_ONE_TIME_PREKEY:
            raise InvalidKeyError(f"one-time prekey id {key_id} is out of range")
        return cls(key_id=key_id, keypair=DHKeyPair.generate(random))


@dataclass(frozen=True, slots=True)
class PreKeyBundle:
    """What the directory hands out for one device: enough to start a session with it.

    Built from untrusted directory data; ``verify()`` checks the prekey signature and
    the identity key before X3DH uses any of it.
    """

    identity_key: bytes
    signed_prekey_id: int
    signed_prekey: bytes
    signed_prekey_signature: bytes
    one_time_prekey_id: int = NO_ONE_TIME_PREKEY
    one_time_prekey: bytes | None = None

    def verify(self) -> None:
        identity_dh_public(self.identity_key)
        ed25519_verify(
            public_key=self.identity_key,
            context=SIGN_CONTEXT_SIGNED_PREKEY,
            message=signed_prekey_message(self.signed_prekey_id, self.signed_prekey),
            signature=self.signed_prekey_signature,
        )
        if (self.one_time_prekey is None) != (self.one_time_prekey_id == NO_ONE_TIME_PREKEY):
            raise InvalidKeyError("a one-time prekey and its id must come together")

    def to_bytes(self) -> bytes:
        w = (
            Writer("prekey bundle")
            .u8(BUNDLE_VERSION)
            .fixed(self.identity_key, KEY_BYTES, "identity key")
            .u32(self.signed_prekey_id)
            .fixed(self.signed_prekey, KEY_BYTES, "signed prekey")
            .fixed(self.signed_prekey_signature, SIGNATURE_BYTES, "signature")
            .u32(self.one_time_prekey_id)
        )
        if self.one_time_prekey is not None:
            w.fixed(self.one_time_prekey, KEY_BYTES, "one-time prekey")
        return w.getvalue()

    @classmethod
    def from_bytes(cls, untrusted: bytes) -> PreKeyBundle:
        r = Reader(untrusted, "prekey bundle")
        r.version(supported=BUNDLE_VERSIONS, known=BUNDLE_VERSIONS)
        identity_key = r.fixed(KEY_BYTES)
        spk_id = r.u32()
        spk = r.fixed(KEY_BYTES)
        signature = r.fixed(SIGNATURE_BYTES)
        opk_id = r.u32()
        opk = None if opk_id == NO_ONE_TIME_PREKEY else r.fixed(KEY_BYTES)
        r.finish()
        return cls(identity_key, spk_id, spk, signature, opk_id, opk)
