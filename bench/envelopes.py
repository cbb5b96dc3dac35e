"""What uniform envelopes cost: the bytes a relay stores and forwards for each kind of message,
sealed as Enclave seals them (padded to one of ``SEALED_SIZES``), against the same messages
unpadded, in the same run.

Each message is real: a session between two devices (X3DH, then the ratchet), real content
(``encode_content``) and a real version 2 certificate with a name and a department, sealed by
``app.crypto.sealed.seal``. "Unpadded" is what the same sealing would give without the padding
layer: its plaintext's length plus the 97 bytes of overhead. The ratio is the cost in bytes on
the wire and at rest; the CPU cost of padding (encrypting at most a bucket's bytes more) is
below what a timing on this machine resolves, so it is not timed. The mix is a day of one
official's traffic as a guess, stated so that it can be argued with: per text, one delivery
receipt and one read receipt; one file in ten texts; one timer change in fifty.

Run as ``.venv/bin/python bench/envelopes.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from nacl.utils import random

from app.base.limits import DELIVERY_KEY_BYTES, ENVELOPE_ID_BYTES
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair, OneTimePreKey, PreKeyBundle, SignedPreKey
from app.crypto.primitives import ed25519_keypair_from_seed
from app.crypto.sealed import SEALED_OVERHEAD_BYTES, seal
from app.crypto.session import PreKeyMessage, Session, accept_session, initiate_session
from app.protocol.checkpoint import Checkpoint, sign_checkpoint
from app.protocol.content import (
    Content,
    FileMessage,
    MessageHeader,
    Receipt,
    ReceiptType,
    TextMessage,
    TimerChange,
    encode_content,
)
from app.protocol.envelope import new_envelope_id
from app.protocol.logview import log_origin

SENT_AT = 1_800_000_000_000


@dataclass(frozen=True, slots=True)
class Result:
    kind: str
    weight: int
    """How many of these the mix holds per 50 texts."""
    padded: int
    unpadded: int


def _log_head() -> bytes:
    """A signed head of a 100,000-leaf log, as every text, file and timer change carries one."""
    public, secret = ed25519_keypair_from_seed(seed=bytes(32))
    origin = log_origin(public)
    return sign_checkpoint(Checkpoint(origin, 100_000, bytes(32)), key_name=origin, secret_key=secret)


LOG_HEAD = _log_head()


def _header(n: int) -> MessageHeader:
    return MessageHeader(n.to_bytes(16, "big"), SENT_AT, 0, log_head=LOG_HEAD)


def _contents() -> list[tuple[str, int, Content]]:
    text = "Проект приказа во вложении, прошу согласовать до пятницы. "
    return [
        ("receipt (delivered)", 50, Receipt(ReceiptType.DELIVERED, SENT_AT, (bytes(16),))),
        ("receipt (read)", 50, Receipt(ReceiptType.READ, SENT_AT, (bytes(16),))),
        ("text, 60 characters", 30, TextMessage(_header(1), text)),
        ("text, 600 characters", 15, TextMessage(_header(2), text * 10)),
        ("text, 3000 characters", 5, TextMessage(_header(3), text * 50)),
        (
            "file message",
            5,
            FileMessage(
                _header(4), b"A" * 32, bytes(32), bytes(32), 250_000, "приказ.pdf", "application/pdf", ""
            ),
        ),
        ("timer change", 1, TimerChange(86400, SENT_AT, log_head=LOG_HEAD)),
    ]


def _sessions() -> tuple[IdentityKeyPair, IdentityKeyPair, Session]:
    """Alice's session with Bob once Bob has replied, so her messages are plain ratchet messages."""
    alice, bob = IdentityKeyPair.generate(random), IdentityKeyPair.generate(random)
    signed, one_time = SignedPreKey.generate(bob, 1, random), OneTimePreKey.generate(7, random)
    bundle = PreKeyBundle(bob.public, 1, signed.keypair.public, signed.signature, 7, one_time.keypair.public)
    session = initiate_session(alice, bundle, random)
    first = session.encrypt(encode_content(TextMessage(_header(0), "Добрый день")))
    bob_session, _ = accept_session(bob, PreKeyMessage.parse(first.body), signed, one_time, random)
    session.decrypt(bob_session.encrypt(encode_content(TextMessage(_header(9), "Здравствуйте"))), random)
    return alice, bob, session


def run() -> list[Result]:
    alice, bob, session = _sessions()
    certificate = DeviceCertificate.issue(
        IdentityKeyPair.generate(random),
        account_id="a.ivanova",
        device_id=1_234_567_890,
        identity_key=alice.public,
        expires_at=1_900_000_000,
        display_name="Анна Сергеевна Иванова",
        department="Департамент бюджетной политики",
    )
    results = []
    for kind, weight, content in _contents():
        message = session.encrypt(encode_content(content))
        sealed = seal(
            sender=alice,
            certificate=certificate,
            recipient_identity=bob.public,
            envelope_id=new_envelope_id(random),
            delivery_key=alice.delivery_key,
            message=message,
            random=random,
        )
        inner = ENVELOPE_ID_BYTES + DELIVERY_KEY_BYTES + 2 + len(certificate.encode()) + 1 + len(message.body)
        results.append(Result(kind, weight, len(sealed), inner + SEALED_OVERHEAD_BYTES))
    return results


def mix_ratio(results: list[Result]) -> float:
    """Bytes of the whole mix padded over unpadded."""
    padded = sum(r.weight * r.padded for r in results)
    unpadded = sum(r.weight * r.unpadded for r in results)
    return padded / unpadded


def _report(results: list[Result]) -> None:
    print(f"{'message':24} {'sealed':>8} {'unpadded':>9} {'ratio':>6}")
    for r in results:
        print(f"{r.kind:24} {r.padded:8} {r.unpadded:9} {r.padded / r.unpadded:6.2f}")
    print(f"the mix (weights per 50 texts as listed): {mix_ratio(results):.2f} times the bytes unpadded")
    print(f"distinct sizes the relay sees: {sorted({r.padded for r in results})}")


if __name__ == "__main__":
    _report(run())
