"""Start Enclave.

Until the store, the relay and the desktop window land (issues 4 to 6 and later), this
shows what exists: two devices in this process set up a session with X3DH, exchange
sealed, ratcheted messages and compare their safety number.
"""

from __future__ import annotations

import sys
import time

from nacl.utils import random

from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair, OneTimePreKey, PreKeyBundle, SignedPreKey
from app.crypto.safety import SafetyNumber
from app.crypto.sealed import seal, unseal
from app.crypto.session import PreKeyMessage, Session, accept_session, initiate_session

CERTIFICATE_LIFETIME_SECONDS = 3600


def _exchange(
    sender: IdentityKeyPair,
    certificate: DeviceCertificate,
    session: Session,
    text: str,
    recipient: IdentityKeyPair,
    issuer: IdentityKeyPair,
) -> tuple[str, bytes]:
    sealed = seal(
        sender=sender,
        certificate=certificate,
        recipient_identity=recipient.public,
        message=session.encrypt(text.encode()),
        random=random,
    )
    opened = unseal(recipient=recipient, untrusted=sealed, trust_root=issuer.public, now=int(time.time()))
    return opened.sender.account_id, sealed


def main() -> int:
    print("Enclave 0.1.0: the end-to-end crypto core is in place; the encrypted store, the relay")
    print("and the desktop window arrive with the next issues. A demonstration in this process:\n")
    issuer = IdentityKeyPair.generate(random)
    alice, bob = IdentityKeyPair.generate(random), IdentityKeyPair.generate(random)
    expires = int(time.time()) + CERTIFICATE_LIFETIME_SECONDS
    alice_cert = DeviceCertificate.issue(
        issuer, account_id="alice", device_id=1, identity_key=alice.public, expires_at=expires
    )
    signed_prekey, one_time = SignedPreKey.generate(bob, 1, random), OneTimePreKey.generate(1, random)
    bundle = PreKeyBundle(
        bob.public, 1, signed_prekey.keypair.public, signed_prekey.signature, 1, one_time.keypair.public
    )

    alice_session = initiate_session(alice, bundle, random)
    first = alice_session.encrypt("Good morning, Bob.".encode())
    bob_session, plaintext = accept_session(
        bob, PreKeyMessage.parse(first.body), signed_prekey, one_time, random
    )
    print(f"  bob received over X3DH: {plaintext.decode()!r}")

    sender, sealed = _exchange(alice, alice_cert, alice_session, "The draft is ready.", bob, issuer)
    print(f"  a sealed envelope of {len(sealed)} bytes; inside, the sender is {sender!r}")

    number = SafetyNumber.compute(
        local_identity=alice.public, local_id="alice", remote_identity=bob.public, remote_id="bob"
    )
    print("  safety number:", " ".join(number.groups()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
