"""Start Enclave.

Until the store, the relay and the desktop window land (the next issues), this shows
what exists: two devices in this process set up a session with X3DH, exchange sealed,
ratcheted messages both ways, and compute the safety number they would compare.
"""

from __future__ import annotations

import sys
import time

from nacl.utils import random

from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair, OneTimePreKey, PreKeyBundle, SignedPreKey
from app.crypto.safety import SafetyNumber
from app.crypto.sealed import seal, unseal
from app.crypto.session import PreKeyMessage, accept_session, initiate_session

CERTIFICATE_LIFETIME_SECONDS = 3600


def main() -> int:
    print("Enclave 0.1.0: the end-to-end crypto core is in place; the encrypted store, the relay")
    print("and the desktop window arrive with the next issues. A demonstration in this process:\n")
    issuer = IdentityKeyPair.generate(random)
    alice, bob = IdentityKeyPair.generate(random), IdentityKeyPair.generate(random)
    certificate = DeviceCertificate.issue(
        issuer,
        account_id="alice",
        device_id=1,
        identity_key=alice.public,
        expires_at=int(time.time()) + CERTIFICATE_LIFETIME_SECONDS,
    )
    signed_prekey, one_time = SignedPreKey.generate(bob, 1, random), OneTimePreKey.generate(1, random)
    bundle = PreKeyBundle(
        bob.public, 1, signed_prekey.keypair.public, signed_prekey.signature, 1, one_time.keypair.public
    )

    alice_session = initiate_session(alice, bundle, random)
    sealed = seal(
        sender=alice,
        certificate=certificate,
        recipient_identity=bob.public,
        message=alice_session.encrypt(b"Good morning, Bob. The draft is ready."),
        random=random,
    )
    print(f"  the relay would see {len(sealed)} opaque bytes addressed to Bob's device")
    opened = unseal(recipient=bob, untrusted=sealed, trust_root=issuer.public, now=int(time.time()))
    prekey_message = PreKeyMessage.parse(opened.message.body)
    bob_session, text = accept_session(bob, prekey_message, signed_prekey, one_time, random)
    print(f"  Bob opened it: from {opened.sender.account_id!r}: {text.decode()!r}")
    reply = alice_session.decrypt(bob_session.encrypt(b"Thank you, Alice."), random)
    print(f"  Alice read the reply: {reply.decode()!r}")

    number = SafetyNumber.compute(
        local_identity=alice.public, local_id="alice", remote_identity=bob.public, remote_id="bob"
    )
    print("  their safety number:", " ".join(number.groups()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
