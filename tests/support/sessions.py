"""Two devices with an established session, and randomness a test can replay."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from app.crypto.keys import IdentityKeyPair, OneTimePreKey, PreKeyBundle, SignedPreKey
from app.crypto.session import PreKeyMessage, Session, SessionMessage, accept_session, initiate_session


class SeededRandom:
    """A deterministic ``RandomSource``: SHAKE-256 of a seed and a counter.

    For tests only: it proves every random byte the crypto core uses is injected.
    """

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0

    def __call__(self, n: int) -> bytes:
        self._counter += 1
        return hashlib.shake_256(self._seed + self._counter.to_bytes(8, "big")).digest(n)


@dataclass
class Device:
    identity: IdentityKeyPair
    signed_prekey: SignedPreKey
    one_time_prekeys: dict[int, OneTimePreKey] = field(default_factory=dict)

    @classmethod
    def create(cls, random: SeededRandom, prekeys: int = 4) -> Device:
        identity = IdentityKeyPair.generate(random)
        return cls(
            identity=identity,
            signed_prekey=SignedPreKey.generate(identity, 1, random),
            one_time_prekeys={i: OneTimePreKey.generate(i, random) for i in range(prekeys)},
        )

    def bundle(self) -> PreKeyBundle:
        key_id, one_time = next(iter(self.one_time_prekeys.items()))
        spk = self.signed_prekey
        return PreKeyBundle(
            self.identity.public,
            spk.key_id,
            spk.keypair.public,
            spk.signature,
            key_id,
            one_time.keypair.public,
        )

    def accept(self, message: SessionMessage, random: SeededRandom) -> tuple[Session, bytes]:
        """Bob's side: run X3DH for a prekey message and spend its one-time prekey."""
        parsed = PreKeyMessage.parse(message.body)
        one_time = self.one_time_prekeys.get(parsed.one_time_prekey_id)
        session, plaintext = accept_session(self.identity, parsed, self.signed_prekey, one_time, random)
        self.one_time_prekeys.pop(parsed.one_time_prekey_id, None)
        return session, plaintext


@dataclass
class SessionPair:
    """Alice and Bob with a session in both directions (Bob has replied once)."""

    alice: Session
    bob: Session
    random: SeededRandom

    @classmethod
    def establish(cls, seed: bytes = b"pair") -> SessionPair:
        random = SeededRandom(seed)
        alice_device, bob_device = Device.create(random), Device.create(random)
        alice = initiate_session(alice_device.identity, bob_device.bundle(), random)
        bob, first = bob_device.accept(alice.encrypt(b"hello"), random)
        if first != b"hello":
            raise AssertionError("session set-up failed")
        alice.decrypt(bob.encrypt(b"welcome"), random)
        return cls(alice=alice, bob=bob, random=random)

    def a_to_b(self, plaintext: bytes) -> bytes:
        return self.bob.decrypt(self.alice.encrypt(plaintext), self.random)

    def b_to_a(self, plaintext: bytes) -> bytes:
        return self.alice.decrypt(self.bob.encrypt(plaintext), self.random)
