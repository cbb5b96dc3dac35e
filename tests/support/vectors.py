"""The test vectors of docs/PROTOCOL.md, section 16, made from a fixed seed.

``python -m tests.support.vectors`` prints them; ``--write`` puts them into the doc
between its markers. tests/test_protocol_doc.py checks the doc holds what this makes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair, OneTimePreKey, PreKeyBundle, SignedPreKey
from app.crypto.safety import SafetyNumber
from app.crypto.sealed import seal
from app.crypto.session import PreKeyMessage, accept_session, initiate_session
from app.protocol.content import MessageHeader, TextMessage, encode_content
from app.protocol.envelope import Envelope, new_envelope_id
from tests.support.sessions import SeededRandom

SEED = b"enclave protocol v1 test vectors"
DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
BEGIN, END = "<!-- vectors:begin -->", "<!-- vectors:end -->"


def make() -> dict[str, str | int]:
    random = SeededRandom(SEED)
    alice, bob = IdentityKeyPair.generate(random), IdentityKeyPair.generate(random)
    signed_prekey = SignedPreKey.generate(bob, 1, random)
    one_time = OneTimePreKey.generate(7, random)
    bundle = PreKeyBundle(
        bob.public, 1, signed_prekey.keypair.public, signed_prekey.signature, 7, one_time.keypair.public
    )
    first_content = encode_content(
        TextMessage(MessageHeader(b"\x01" * 16, 1_800_000_000_000, 86400), "Привет")
    )
    alice_session = initiate_session(alice, bundle, random)
    first = alice_session.encrypt(first_content)
    bob_session, _ = accept_session(bob, PreKeyMessage.parse(first.body), signed_prekey, one_time, random)
    reply = bob_session.encrypt(b"reply")
    issuer = IdentityKeyPair.generate(random)
    certificate = DeviceCertificate.issue(
        issuer,
        account_id="a.ivanova",
        device_id=1,
        identity_key=alice.public,
        expires_at=1_900_000_000,
        display_name="Анна Иванова",
        department="Финансы",
    )
    envelope_id = new_envelope_id(random)
    sealed = seal(
        sender=alice,
        certificate=certificate,
        recipient_identity=bob.public,
        envelope_id=envelope_id,
        delivery_key=alice.delivery_key,
        message=first,
        random=random,
    )
    envelope = Envelope(envelope_id=envelope_id, expires_at=1_800_086_400, sealed=sealed)
    number = SafetyNumber.compute(
        local_identity=alice.public, local_id="a.ivanova", remote_identity=bob.public, remote_id="b.petrov"
    )
    return {
        "alice_identity_seed": alice.seed.hex(),
        "alice_identity_key": alice.public.hex(),
        "bob_identity_seed": bob.seed.hex(),
        "bob_identity_key": bob.public.hex(),
        "bob_signed_prekey_private": signed_prekey.keypair.private.hex(),
        "prekey_bundle": bundle.to_bytes().hex(),
        "bob_one_time_prekey_private": one_time.keypair.private.hex(),
        "first_content_padded": first_content.hex(),
        "first_message_kind": int(first.kind),
        "first_message": first.body.hex(),
        "reply_message": reply.body.hex(),
        "issuer_seed": issuer.seed.hex(),
        "device_certificate": certificate.encode().hex(),
        "alice_delivery_key": alice.delivery_key.hex(),
        "sealed_envelope": sealed.hex(),
        "envelope": envelope.encode().hex(),
        "safety_number": number.digits,
        "safety_qr_payload": number.qr_payload().hex(),
    }


def render(vectors: dict[str, str | int]) -> str:
    return f"{BEGIN}\n```json\n{json.dumps(vectors, indent=2)}\n```\n{END}"


def in_doc(text: str) -> dict[str, str | int]:
    block = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    return json.loads(block.strip().removeprefix("```json").removesuffix("```"))


if __name__ == "__main__":
    rendered = render(make())
    if "--write" in sys.argv:
        text = DOC.read_text(encoding="utf-8")
        start, end = text.index(BEGIN), text.index(END) + len(END)
        DOC.write_text(text[:start] + rendered + text[end:], encoding="utf-8")
    else:
        sys.stdout.write(rendered + "\n")
