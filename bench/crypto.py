"""How fast Enclave's pairwise session runs, next to vodozemac and doubleratchet.

Measured: messages per second for 1 KiB messages, one message being one encrypt and one
decrypt of a fresh random 1024-byte payload, in two patterns:

- one-way: Alice sends, Bob receives, over and over. Only the symmetric-key ratchet turns.
- ping-pong: Alice and Bob take turns, so every message received starts a Diffie-Hellman
  ratchet step (a new X25519 key pair and two X25519 agreements).

The same run measures vodozemac (Olm, native Rust) and doubleratchet (Syndace's Double
Ratchet, protocol logic in pure Python over ``cryptography``), and prints Enclave's rate
as a ratio of theirs. Absolute rates say little: they move with the machine, its load and
its clock from one run to the next. The ratios, measured side by side in one run, are what
the targets are stated in. To make noise hit every library alike, each round measures
every library once, in an order that rotates from round to round, and the best round
counts (noise only ever slows a round down).

Every library starts from a fresh session pair in its steady state, set up outside the
timed loop, and warms up on it first. What crosses the "wire" in the timed loop:

- Enclave: the session message whose body is bytes, exactly what is sealed and sent.
- vodozemac: ``AnyOlmMessage.to_parts()`` (message type and raw bytes) on the sender and
  ``AnyOlmMessage.from_parts`` on the receiver, its own binary encoding; no base64 or JSON.
- doubleratchet: its ``EncryptedMessage`` object as returned, since the library defines no
  encoding (an application would add one; leaving it out flatters doubleratchet).

Decrypted payloads are compared with the sent ones after each timed loop; a mismatch raises.
Run as ``.venv/bin/python bench/crypto.py [--messages N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import doubleratchet
import vodozemac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from doubleratchet.recommended import (
    HashFunction,
    aead_aes_hmac,
    diffie_hellman_ratchet_curve25519,
    kdf_hkdf,
    kdf_separate_hmacs,
)
from nacl.utils import random

from app.base.limits import MAX_SKIP, MAX_STORED_SKIPPED_KEYS
from app.crypto.keys import IdentityKeyPair, OneTimePreKey, PreKeyBundle, SignedPreKey
from app.crypto.session import PreKeyMessage, accept_session, initiate_session

PAYLOAD_BYTES = 1024
ENCLAVE = "enclave"
VODOZEMAC = "vodozemac"
DOUBLERATCHET = "doubleratchet"
LIBRARIES = (ENCLAVE, VODOZEMAC, DOUBLERATCHET)
ONE_WAY = "one-way"
PING_PONG = "ping-pong"
PATTERNS = (ONE_WAY, PING_PONG)

DEFAULT_MESSAGES = 5000
DEFAULT_ROUNDS = 5

Direction = tuple[Callable[[bytes], Any], Callable[[Any], bytes]]
"""(encrypt on the sender, decrypt on the receiver) for one direction of a session pair."""

AsyncDirection = tuple[Callable[[bytes], Awaitable[Any]], Callable[[Any], Awaitable[bytes]]]


@dataclass(frozen=True, slots=True)
class Result:
    library: str
    pattern: str
    messages_per_second: float


@dataclass(frozen=True, slots=True)
class Target:
    """Enclave's rate must be at least ``minimum`` times ``baseline``'s in ``pattern``."""

    pattern: str
    baseline: str
    minimum: float


TARGETS = (
    Target(ONE_WAY, VODOZEMAC, 0.8),
    Target(PING_PONG, VODOZEMAC, 1.0),
    Target(ONE_WAY, DOUBLERATCHET, 3.0),
    Target(PING_PONG, DOUBLERATCHET, 3.0),
)


def _enclave_pair() -> tuple[Direction, Direction]:
    """Both directions of a session after X3DH and one reply: both sides send ratchet messages."""
    alice, bob = IdentityKeyPair.generate(random), IdentityKeyPair.generate(random)
    signed_prekey = SignedPreKey.generate(bob, 1, random)
    one_time_prekey = OneTimePreKey.generate(1, random)
    bundle = PreKeyBundle(
        bob.public,
        signed_prekey.key_id,
        signed_prekey.keypair.public,
        signed_prekey.signature,
        one_time_prekey.key_id,
        one_time_prekey.keypair.public,
    )
    a = initiate_session(alice, bundle, random)
    first = PreKeyMessage.parse(a.encrypt(b"hello").body)
    b, _ = accept_session(bob, first, signed_prekey, one_time_prekey, random)
    a.decrypt(b.encrypt(b"hi"), random)
    return (a.encrypt, partial(b.decrypt, random=random)), (b.encrypt, partial(a.decrypt, random=random))


def _olm_direction(sender: vodozemac.Session, receiver: vodozemac.Session) -> Direction:
    def encrypt(payload: bytes) -> tuple[int, bytes]:
        return sender.encrypt(payload).to_parts()

    def decrypt(parts: tuple[int, bytes]) -> bytes:
        return receiver.decrypt(vodozemac.AnyOlmMessage.from_parts(*parts))

    return encrypt, decrypt


def _vodozemac_pair() -> tuple[Direction, Direction]:
    """Both directions of an Olm session after its pre-key message and one reply."""
    alice, bob = vodozemac.Account(), vodozemac.Account()
    bob.generate_one_time_keys(1)
    one_time_key = next(iter(bob.one_time_keys.values()))
    a = alice.create_outbound_session(bob.curve25519_key, one_time_key)
    first = a.encrypt(b"hello").to_pre_key()
    b, _ = bob.create_inbound_session(alice.curve25519_key, first)
    a.decrypt(b.encrypt(b"hi"))
    return _olm_direction(a, b), _olm_direction(b, a)


class _SyndaceDoubleRatchet(doubleratchet.DoubleRatchet):
    @staticmethod
    def _build_associated_data(associated_data: bytes, header: doubleratchet.Header) -> bytes:
        return (
            associated_data
            + header.ratchet_pub
            + header.previous_sending_chain_length.to_bytes(8, "big")
            + header.sending_chain_length.to_bytes(8, "big")
        )


class _SyndaceDiffieHellmanRatchet(diffie_hellman_ratchet_curve25519.DiffieHellmanRatchet):
    pass


class _SyndaceAEAD(aead_aes_hmac.AEAD):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return b"enclave-bench:aead"


class _SyndaceRootChainKDF(kdf_hkdf.KDF):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return b"enclave-bench:root-chain"


class _SyndaceMessageChainKDF(kdf_separate_hmacs.KDF):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256


_SYNDACE_CONFIGURATION: dict[str, Any] = {
    "diffie_hellman_ratchet_class": _SyndaceDiffieHellmanRatchet,
    "root_chain_kdf": _SyndaceRootChainKDF,
    "message_chain_kdf": _SyndaceMessageChainKDF,
    # The chain key comes first in the KDF output: HMAC(ck, 0x02), then the message key HMAC(ck, 0x01).
    "message_chain_constant": b"\x02\x01",
    "dos_protection_threshold": MAX_SKIP,
    "max_num_skipped_message_keys": MAX_STORED_SKIPPED_KEYS,
    "aead": _SyndaceAEAD,
}


def _syndace_direction(
    sender: _SyndaceDoubleRatchet, receiver: _SyndaceDoubleRatchet, associated_data: bytes
) -> AsyncDirection:
    return (
        partial(sender.encrypt_message, associated_data=associated_data),
        partial(receiver.decrypt_message, associated_data=associated_data),
    )


async def _doubleratchet_pair() -> tuple[AsyncDirection, AsyncDirection]:
    """Both directions of a Double Ratchet after the initial message and one reply.

    The library starts from a shared secret and the responder's ratchet key; it has no X3DH,
    so both come from the random source here.
    """
    shared_secret, associated_data = random(32), random(64)
    bob_ratchet_key = X25519PrivateKey.generate()
    a, first = await _SyndaceDoubleRatchet.encrypt_initial_message(
        shared_secret=shared_secret,
        recipient_ratchet_pub=bob_ratchet_key.public_key().public_bytes_raw(),
        message=b"hello",
        associated_data=associated_data,
        **_SYNDACE_CONFIGURATION,
    )
    b, _ = await _SyndaceDoubleRatchet.decrypt_initial_message(
        shared_secret=shared_secret,
        own_ratchet_priv=bob_ratchet_key.private_bytes_raw(),
        message=first,
        associated_data=associated_data,
        **_SYNDACE_CONFIGURATION,
    )
    await a.decrypt_message(await b.encrypt_message(b"hi", associated_data), associated_data)
    return _syndace_direction(a, b, associated_data), _syndace_direction(b, a, associated_data)


def _exchange(directions: Sequence[Direction], payloads: Sequence[bytes]) -> list[bytes]:
    return [
        decrypt(encrypt(payload))
        for (encrypt, decrypt), payload in zip(itertools.cycle(directions), payloads)
    ]


async def _exchange_async(directions: Sequence[AsyncDirection], payloads: Sequence[bytes]) -> list[bytes]:
    return [
        await decrypt(await encrypt(payload))
        for (encrypt, decrypt), payload in zip(itertools.cycle(directions), payloads)
    ]


def _payloads(count: int) -> list[bytes]:
    return [os.urandom(PAYLOAD_BYTES) for _ in range(count)]


def _warmup_messages(messages: int) -> int:
    return max(1, messages // 10)


def _check(label: str, sent: Sequence[bytes], received: Sequence[bytes]) -> None:
    if list(sent) != list(received):
        raise RuntimeError(f"{label}: a decrypted message differs from the one sent")


def _seconds(label: str, pair: tuple[Direction, Direction], pattern: str, messages: int) -> float:
    directions = pair if pattern == PING_PONG else pair[:1]
    warmup, payloads = _payloads(_warmup_messages(messages)), _payloads(messages)
    _check(label, warmup, _exchange(directions, warmup))
    gc.collect()
    start = time.perf_counter()
    received = _exchange(directions, payloads)
    seconds = time.perf_counter() - start
    _check(label, payloads, received)
    return seconds


async def _seconds_async(label: str, pattern: str, messages: int) -> float:
    """``_seconds`` for doubleratchet, whose API is async; its session pair is made here."""
    pair = await _doubleratchet_pair()
    directions = pair if pattern == PING_PONG else pair[:1]
    warmup, payloads = _payloads(_warmup_messages(messages)), _payloads(messages)
    _check(label, warmup, await _exchange_async(directions, warmup))
    gc.collect()
    start = time.perf_counter()
    received = await _exchange_async(directions, payloads)
    seconds = time.perf_counter() - start
    _check(label, payloads, received)
    return seconds


def _messages_per_second(library: str, pattern: str, messages: int) -> float:
    """One measurement on a fresh session pair, after a warm-up of a tenth as many messages."""
    label = f"{library} {pattern}"
    if library == ENCLAVE:
        seconds = _seconds(label, _enclave_pair(), pattern, messages)
    elif library == VODOZEMAC:
        seconds = _seconds(label, _vodozemac_pair(), pattern, messages)
    else:
        seconds = asyncio.run(_seconds_async(label, pattern, messages))
    return messages / seconds


def run(messages: int, rounds: int) -> list[Result]:
    """The best rate of ``rounds`` rounds for every (library, pattern), patterns first."""
    best = dict.fromkeys(itertools.product(LIBRARIES, PATTERNS), 0.0)
    for round_index in range(rounds):
        shift = round_index % len(LIBRARIES)
        order = LIBRARIES[shift:] + LIBRARIES[:shift]
        for pattern in PATTERNS:
            for library in order:
                rate = _messages_per_second(library, pattern, messages)
                best[library, pattern] = max(best[library, pattern], rate)
    return [Result(library, pattern, best[library, pattern]) for pattern in PATTERNS for library in LIBRARIES]


def _report(results: Sequence[Result], messages: int, rounds: int) -> None:
    rate = {(r.library, r.pattern): r.messages_per_second for r in results}
    print(
        f"{PAYLOAD_BYTES}-byte messages, encrypt + decrypt; best of {rounds} round(s) "
        f"of {messages} messages each, after a warm-up of {_warmup_messages(messages)}"
    )
    print()
    print(f"{'pattern':<11} {'library':<15} {'messages/s':>12}")
    for r in results:
        print(f"{r.pattern:<11} {r.library:<15} {r.messages_per_second:>12,.0f}")
    print()
    print(f"{'pattern':<11} {'ratio':<25} {'value':>7} {'target':>8}  result")
    for target in TARGETS:
        ratio = rate[ENCLAVE, target.pattern] / rate[target.baseline, target.pattern]
        verdict = "MET" if ratio >= target.minimum else "MISSED"
        print(
            f"{target.pattern:<11} {f'{ENCLAVE} / {target.baseline}':<25} "
            f"{ratio:>6.2f}x {f'>= {target.minimum:.1f}x':>8}  {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--messages",
        type=int,
        default=DEFAULT_MESSAGES,
        help=f"messages per library, pattern and round (default {DEFAULT_MESSAGES})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"rounds; the best counts (default {DEFAULT_ROUNDS})",
    )
    args = parser.parse_args()
    if args.messages < 1 or args.rounds < 1:
        parser.error("--messages and --rounds must be at least 1")
    _report(run(args.messages, args.rounds), args.messages, args.rounds)


if __name__ == "__main__":
    main()
