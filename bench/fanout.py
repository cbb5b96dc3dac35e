"""What one message to a group of N devices costs its sender: pairwise sessions or sender keys.

Whatever the key scheme, the relay must see one envelope per recipient device, sealed for that
device (``app.crypto.sealed.seal``: an ephemeral X25519 agreement, the static one and the sender
certificate inside), so every scheme pays N seals. What differs is the encryption inside. For one
1 KiB text (``encode_content`` of a ``TextMessage`` of 1024 bytes of Russian in UTF-8), measured
in the same run:

- pairwise: N x (``Session.encrypt`` on the sender's session with that device, then ``seal``).
  ``Session.encrypt`` is always one step of the symmetric chain: the ratchet's Diffie-Hellman step
  is paid when a reply is decrypted, not here.
- sender keys (Signal's and WhatsApp's scheme): one chain step (two HMAC-SHA256), one
  XChaCha20-Poly1305 encryption (the AEAD of ``app.crypto.primitives``) and one Ed25519 signature
  by the sender key's own signing key (``SenderKey``), and that one ciphertext sealed N times. It is
  sealed as a ``RATCHET`` session message, since Enclave has no kind for it; ``seal`` does not read
  the kind, so the cost and the size are what a new kind would give.
- seal alone: N x ``seal`` of one message made beforehand, the floor every scheme pays.

The two schemes differ by N - 1 encryptions of a few microseconds among N seals of some hundred
and fifty, less than a run's noise on the totals, so the insides are also timed alone: "pairwise,
encrypt" is N x ``Session.encrypt``, "sender keys, encrypt" one ``SenderKey.encrypt`` (timed N
times over and divided by N, being too short to time once).

And what sender keys cost when a device leaves the group: every remaining device must make a new
sender key and send it pairwise to each of the others, or the removed one reads on. The group is
the sender and N recipient devices; one recipient is removed, so N devices remain and each sends
N - 1 key messages (``Session.encrypt`` and ``seal`` of 32 random bytes, a new chain key; a real
one also carries the signing key and an id, which changes neither bucket nor cost measurably).
One device's share is measured on the sender's sessions; the group's total is N times it, computed,
and so is the relay's: N x (N - 1) envelopes. Pairwise needs no re-key: the removed device is
simply no longer sent to.

The figures that matter are ratios, measured side by side: pairwise over the seal floor and over
sender keys, whole and inside alone, and how many messages' savings one removal eats (the group's
re-key CPU over what sender keys save on one message, the difference of the insides). Absolute
times move with the machine and its load. Each round measures every scheme once, in an order that
rotates from round to round, and the best round counts (noise only ever slows a round down).
Sessions, keys and the certificate are made outside the timed loops, from tests/support/sessions.py's
devices; one thread, ``time.perf_counter``. Nothing here asserts on speed; after each timed loop,
one envelope of it is opened as its recipient would (``open_envelope``) and a wrong plaintext raises.

Run from the repository root as a module (it uses tests/support's devices)::

    .venv/bin/python -m bench.fanout [--devices 100 500 1000] [--rounds R] [--quick]
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:
    sys.exit("run it as a module from the repository root: .venv/bin/python -m bench.fanout")

import argparse
import gc
import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from nacl.utils import random

from app.base.limits import SIGNATURE_BYTES, XCHACHA_NONCE_BYTES
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import (
    CHAIN_MESSAGE_KEY_INPUT,
    CHAIN_NEXT_KEY_INPUT,
    aead_decrypt,
    aead_encrypt,
    ed25519_verify,
    hmac_sha256,
)
from app.crypto.sealed import seal, unseal
from app.crypto.session import MessageKind, Session, SessionMessage, initiate_session
from app.protocol.content import MessageHeader, TextMessage, encode_content
from app.protocol.envelope import new_envelope_id
from tests.support.sessions import Device, SeededRandom

PAIRWISE = "pairwise"
SENDER_KEYS = "sender keys"
SEAL_FLOOR = "seal alone"
REKEY = "re-key, one device"
"""One remaining device's share of a removal under sender keys: N - 1 pairwise key messages."""
PAIRWISE_ENCRYPT = "pairwise, encrypt"
"""N x ``Session.encrypt``: what pairwise pays inside the seals."""
SENDER_KEYS_ENCRYPT = "sender keys, encrypt"
"""1 x ``SenderKey.encrypt``: what sender keys pay inside the seals."""
SCHEMES = (PAIRWISE, SENDER_KEYS, SEAL_FLOOR)
MEASURED = (*SCHEMES, REKEY, PAIRWISE_ENCRYPT, SENDER_KEYS_ENCRYPT)

DEFAULT_DEVICES = (100, 500, 1000)
DEFAULT_ROUNDS = 5
QUICK_DEVICES = (10,)
QUICK_ROUNDS = 1

TEXT_BYTES = 1024
NEW_KEY_BYTES = 32
SENT_AT = 1_800_000_000_000
CERTIFICATE_EXPIRES_AT = 1_900_000_000
NOW = 1_850_000_000
SIGN_CONTEXT_SENDER_KEY = b"enclave-bench:sender-key"
ITERATION_BYTES = 4

T = TypeVar("T")


@dataclass
class SenderKey:
    """The sending half of a sender key: a chain key that turns once a message, and a signing key.

    A message is ``iteration (4 bytes) || nonce || AEAD(message key, plaintext) || signature``, the
    signature over all before it, as Signal's sender key message is laid out.
    """

    chain_key: bytes
    signer: IdentityKeyPair
    iteration: int = 0

    def encrypt(self, plaintext: bytes) -> bytes:
        message_key = hmac_sha256(key=self.chain_key, data=CHAIN_MESSAGE_KEY_INPUT)
        self.chain_key = hmac_sha256(key=self.chain_key, data=CHAIN_NEXT_KEY_INPUT)
        nonce = random(XCHACHA_NONCE_BYTES)
        header = self.iteration.to_bytes(ITERATION_BYTES, "big") + nonce
        self.iteration += 1
        ciphertext = aead_encrypt(key=message_key, nonce=nonce, associated_data=header, plaintext=plaintext)
        signed = header + ciphertext
        return signed + self.signer.sign(context=SIGN_CONTEXT_SENDER_KEY, message=signed)


def open_sender_key_message(*, first_chain_key: bytes, signing_key: bytes, body: bytes) -> bytes:
    """The plaintext of ``body`` for a member given the sender key at iteration 0."""
    signed, signature = body[:-SIGNATURE_BYTES], body[-SIGNATURE_BYTES:]
    ed25519_verify(
        public_key=signing_key, context=SIGN_CONTEXT_SENDER_KEY, message=signed, signature=signature
    )
    header_bytes = ITERATION_BYTES + XCHACHA_NONCE_BYTES
    header, ciphertext = signed[:header_bytes], signed[header_bytes:]
    chain_key = first_chain_key
    for _ in range(int.from_bytes(header[:ITERATION_BYTES], "big")):
        chain_key = hmac_sha256(key=chain_key, data=CHAIN_NEXT_KEY_INPUT)
    message_key = hmac_sha256(key=chain_key, data=CHAIN_MESSAGE_KEY_INPUT)
    return aead_decrypt(
        key=message_key, nonce=header[ITERATION_BYTES:], associated_data=header, ciphertext=ciphertext
    )


@dataclass
class Member:
    """A recipient device of the group, with both ends of its session with the sender."""

    device: Device
    inbound: Session
    """The member's session with the sender: what opens a pairwise message."""
    outbound: Session
    """The sender's session with the member: what a pairwise message is encrypted on."""


@dataclass
class Group:
    sender: IdentityKeyPair
    delivery_key: bytes
    certificate: DeviceCertificate
    trust_root: bytes
    members: list[Member]
    sender_key: SenderKey
    first_chain_key: bytes
    """The sender key as every member received it, before the first message."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One sealed envelope and what its recipient needs to open it."""

    recipient: int
    """Index into ``Group.members``."""
    envelope_id: bytes
    sealed: bytes


@dataclass(frozen=True, slots=True)
class Result:
    devices: int
    scheme: str
    seconds: float
    """The best round's time to make all of the scheme's envelopes."""
    sealed_bytes: int | None
    """The length of one sealed envelope, as the relay stores it (None: encryption alone)."""
    message_bytes: int | None
    """The length of the message inside, before sealing pads it to a bucket."""


@dataclass(frozen=True, slots=True)
class Run:
    results: list[Result]
    group: Group
    """The group of the last size measured."""
    last_envelopes: dict[str, list[Envelope]]
    """Every scheme's envelopes from the last round of the last size."""


def text_payload() -> bytes:
    """The 1 KiB text every scheme sends: the padded content a session message encrypts."""
    utf8 = ("Совещание переносится на четверг, 10:00. " * 64).encode()[:TEXT_BYTES]
    text = utf8.decode(errors="ignore")
    return encode_content(TextMessage(MessageHeader(bytes(16), SENT_AT, 0, group_id=bytes(16)), text))


def _member(sender: Device, random_source: SeededRandom) -> Member:
    """A device with a session both ways with ``sender``; it has replied once, so the sender's
    messages are plain ratchet messages."""
    device = Device.create(random_source, prekeys=1)
    outbound = initiate_session(sender.identity, device.bundle(), random_source)
    inbound, _ = device.accept(outbound.encrypt(b"hello"), random_source)
    outbound.decrypt(inbound.encrypt(b"welcome"), random_source)
    return Member(device=device, inbound=inbound, outbound=outbound)


def make_group(devices: int, seed: bytes = b"fanout") -> Group:
    random_source = SeededRandom(seed)
    sender = Device.create(random_source, prekeys=0)
    issuer = IdentityKeyPair.generate(random_source)
    certificate = DeviceCertificate.issue(
        issuer,
        account_id="a.ivanova",
        device_id=1_234_567_890,
        identity_key=sender.identity.public,
        expires_at=CERTIFICATE_EXPIRES_AT,
        display_name="Анна Сергеевна Иванова",
        department="Департамент бюджетной политики",
    )
    first_chain_key = random_source(32)
    return Group(
        sender=sender.identity,
        delivery_key=sender.identity.delivery_key,
        certificate=certificate,
        trust_root=issuer.public,
        members=[_member(sender, random_source) for _ in range(devices)],
        sender_key=SenderKey(first_chain_key, IdentityKeyPair.generate(random_source)),
        first_chain_key=first_chain_key,
    )


def _seal(group: Group, recipient: int, message: SessionMessage) -> Envelope:
    envelope_id = new_envelope_id(random)
    sealed = seal(
        sender=group.sender,
        certificate=group.certificate,
        recipient_identity=group.members[recipient].device.identity.public,
        envelope_id=envelope_id,
        delivery_key=group.delivery_key,
        message=message,
        random=random,
    )
    return Envelope(recipient, envelope_id, sealed)


def _pairwise(group: Group, payload: bytes, recipients: range) -> list[Envelope]:
    return [_seal(group, i, group.members[i].outbound.encrypt(payload)) for i in recipients]


def _sender_keys(group: Group, payload: bytes) -> list[Envelope]:
    message = SessionMessage(MessageKind.RATCHET, group.sender_key.encrypt(payload))
    return [_seal(group, i, message) for i in range(len(group.members))]


def _seal_floor(group: Group, message: SessionMessage) -> list[Envelope]:
    return [_seal(group, i, message) for i in range(len(group.members))]


def open_envelope(group: Group, scheme: str, envelope: Envelope) -> bytes:
    """What the envelope's recipient reads in it: unsealed with its identity key, then decrypted
    on its session with the sender (pairwise, re-key) or with the sender key (sender keys)."""
    member = group.members[envelope.recipient]
    message = unseal(
        recipient=member.device.identity,
        untrusted=envelope.sealed,
        envelope_id=envelope.envelope_id,
        trust_root=group.trust_root,
        now=NOW,
    ).message
    if scheme in {PAIRWISE, REKEY}:
        return member.inbound.decrypt(message, random)
    return open_sender_key_message(
        first_chain_key=group.first_chain_key, signing_key=group.sender_key.signer.public, body=message.body
    )


def _timed(make: Callable[[], T]) -> tuple[float, T]:
    gc.collect()
    start = time.perf_counter()
    made = make()
    return time.perf_counter() - start, made


def _measure(group: Group, payload: bytes, rounds: int) -> tuple[dict[str, float], dict[str, list[Envelope]]]:
    """The best time of ``rounds`` rounds per scheme, and each sealing scheme's envelopes of the last
    round. One sender key encryption is too short to time alone: it is timed N times over, divided by N."""
    n = len(group.members)
    floor_message = SessionMessage(MessageKind.RATCHET, SenderKey(bytes(32), group.sender).encrypt(payload))
    new_key = os.urandom(NEW_KEY_BYTES)
    sealing: dict[str, tuple[Callable[[], list[Envelope]], bytes | None]] = {
        PAIRWISE: (lambda: _pairwise(group, payload, range(n)), payload),
        SENDER_KEYS: (lambda: _sender_keys(group, payload), payload),
        SEAL_FLOOR: (lambda: _seal_floor(group, floor_message), None),
        REKEY: (lambda: _pairwise(group, new_key, range(1, n)), new_key),
    }
    encrypting: dict[str, tuple[Callable[[], object], int]] = {
        PAIRWISE_ENCRYPT: (lambda: [m.outbound.encrypt(payload) for m in group.members], 1),
        SENDER_KEYS_ENCRYPT: (lambda: [group.sender_key.encrypt(payload) for _ in range(n)], n),
    }
    best = dict.fromkeys(MEASURED, float("inf"))
    last: dict[str, list[Envelope]] = {}
    for round_index in range(rounds):
        shift = round_index % len(MEASURED)
        for scheme in MEASURED[shift:] + MEASURED[:shift]:
            if scheme in encrypting:
                encrypt, times_over = encrypting[scheme]
                seconds = _timed(encrypt)[0] / times_over
            else:
                make, expected = sealing[scheme]
                seconds, last[scheme] = _timed(make)
                if expected is not None and open_envelope(group, scheme, last[scheme][-1]) != expected:
                    raise RuntimeError(f"{scheme}: an envelope opens to another plaintext than the one sent")
            best[scheme] = min(best[scheme], seconds)
    return best, last


def _message_bytes(group: Group, envelope: Envelope) -> int:
    member = group.members[envelope.recipient]
    return len(
        unseal(
            recipient=member.device.identity,
            untrusted=envelope.sealed,
            envelope_id=envelope.envelope_id,
            trust_root=group.trust_root,
            now=NOW,
        ).message.body
    )


def run(devices: Sequence[int], rounds: int) -> Run:
    """Every scheme's best time for each group size; a fresh group of sessions per size."""
    if not devices:
        raise ValueError("no group size to measure")
    payload = text_payload()
    results: list[Result] = []
    for n in devices:
        group = make_group(n)
        best, last = _measure(group, payload, rounds)
        for scheme in MEASURED:
            sizes = (None, None)
            if scheme in last:
                envelope = last[scheme][0]
                sizes = (len(envelope.sealed), _message_bytes(group, envelope))
            results.append(Result(n, scheme, best[scheme], *sizes))
    return Run(results, group, last)


def envelopes_made(scheme: str, devices: int) -> int:
    """How many envelopes the scheme's job makes (or, for encryption alone, is made for)."""
    return devices - 1 if scheme == REKEY else devices


def _bytes(value: int | None) -> str:
    return "-" if value is None else str(value)


def _report(results: Sequence[Result], rounds: int) -> None:
    print(
        f"sender's time to make the envelopes of one {TEXT_BYTES}-byte text to N devices, "
        f"best of {rounds} round(s)"
    )
    print()
    print(f"{'N':>5} {'scheme':<21} {'ms':>9} {'µs/envelope':>12} {'sealed B':>9} {'message B':>10}")
    for r in results:
        per_envelope = r.seconds / envelopes_made(r.scheme, r.devices)
        print(
            f"{r.devices:>5} {r.scheme:<21} {r.seconds * 1e3:>9.3f} {per_envelope * 1e6:>12.2f} "
            f"{_bytes(r.sealed_bytes):>9} {_bytes(r.message_bytes):>10}"
        )
    print()
    print(
        f"{'N':>5} {'pairwise/floor':>15} {'pairwise/sender keys':>21} {'encrypt only':>13} "
        f"{'removal, group ms':>18} {'relay envelopes':>16} {'messages per removal':>21}"
    )
    by_size = {
        n: {r.scheme: r.seconds for r in group}
        for n, group in itertools.groupby(results, key=lambda r: r.devices)
    }
    for n, seconds in by_size.items():
        removal = n * seconds[REKEY]
        saving = seconds[PAIRWISE_ENCRYPT] - seconds[SENDER_KEYS_ENCRYPT]
        break_even = f"{removal / saving:,.0f}" if saving > 0 else "never"
        print(
            f"{n:>5} {seconds[PAIRWISE] / seconds[SEAL_FLOOR]:>14.3f}x "
            f"{seconds[PAIRWISE] / seconds[SENDER_KEYS]:>20.3f}x "
            f"{seconds[PAIRWISE_ENCRYPT] / seconds[SENDER_KEYS_ENCRYPT]:>12.1f}x "
            f"{removal * 1e3:>18,.0f} {n * (n - 1):>16,} {break_even:>21}"
        )
    print()
    print(
        f"encrypt only: {PAIRWISE_ENCRYPT!r} over {SENDER_KEYS_ENCRYPT!r}, the inside without the seals.\n"
        "removal, group ms: the N remaining devices x one device's re-key (computed); "
        "pairwise re-keys nothing.\n"
        "messages per removal: the removal's CPU over what sender keys save on one message "
        "(the encrypt-only difference)."
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--devices",
        type=int,
        nargs="+",
        default=list(DEFAULT_DEVICES),
        help=f"group sizes N, recipient devices (default {' '.join(map(str, DEFAULT_DEVICES))})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"rounds; the best counts (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a tiny run: N = {' '.join(map(str, QUICK_DEVICES))}, {QUICK_ROUNDS} round",
    )
    args = parser.parse_args(argv)
    devices, rounds = (QUICK_DEVICES, QUICK_ROUNDS) if args.quick else (args.devices, args.rounds)
    if rounds < 1 or min(devices) < 2:
        parser.error("--rounds must be at least 1 and every --devices at least 2")
    _report(run(devices, rounds).results, rounds)


if __name__ == "__main__":
    main()
