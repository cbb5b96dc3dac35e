"""Sealed sender: what the relay can and cannot see, and what the recipient checks."""

from __future__ import annotations

import pytest

from app.base.errors import (
    CertificateError,
    CryptoError,
    DecryptionError,
    EnvelopeIdMismatchError,
    LocalProtocolError,
    RemoteProtocolError,
    UnsupportedVersionError,
)
from app.base.limits import DELIVERY_KEY_BYTES, ENVELOPE_ID_BYTES, MAX_SEALED_BYTES
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.sealed import SEALED_OVERHEAD_BYTES, SEALED_SIZES, seal, unseal
from app.crypto.session import MessageKind, SessionMessage
from tests.support.sessions import SeededRandom

NOW = 1_800_000_000
LATER = NOW + 3600
ENVELOPE_ID = bytes(range(16))


@pytest.fixture
def random() -> SeededRandom:
    return SeededRandom(b"sealed")


@pytest.fixture
def issuer(random: SeededRandom) -> IdentityKeyPair:
    return IdentityKeyPair.generate(random)


@pytest.fixture
def alice(random: SeededRandom) -> IdentityKeyPair:
    return IdentityKeyPair.generate(random)


@pytest.fixture
def bob(random: SeededRandom) -> IdentityKeyPair:
    return IdentityKeyPair.generate(random)


def _certificate(
    issuer: IdentityKeyPair, who: IdentityKeyPair, account: str = "a.ivanova"
) -> DeviceCertificate:
    return DeviceCertificate.issue(
        issuer, account_id=account, device_id=3, identity_key=who.public, expires_at=LATER
    )


def _seal(
    alice: IdentityKeyPair, certificate: DeviceCertificate, bob: IdentityKeyPair, random: SeededRandom
) -> bytes:
    message = SessionMessage(MessageKind.RATCHET, b"ratchet bytes")
    return seal(
        sender=alice,
        certificate=certificate,
        recipient_identity=bob.public,
        envelope_id=ENVELOPE_ID,
        delivery_key=alice.delivery_key,
        message=message,
        random=random,
    )


def test_recipient_learns_sender_and_message(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that unsealing returns the sender's certificate and the session message."""
    sealed = _seal(alice, _certificate(issuer, alice), bob, random)
    opened = unseal(
        recipient=bob, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW
    )
    assert opened.sender.account_id == "a.ivanova"
    assert opened.sender.identity_key == alice.public
    assert opened.message == SessionMessage(MessageKind.RATCHET, b"ratchet bytes")
    assert opened.delivery_key == alice.delivery_key != bob.delivery_key


def test_relay_sees_nothing_that_names_the_sender(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that the sealed bytes contain neither the sender's key, account id, certificate nor message."""
    certificate = _certificate(issuer, alice)
    sealed = _seal(alice, certificate, bob, random)
    for secret in (alice.public, alice.dh.public, b"a.ivanova", certificate.signature, b"ratchet bytes"):
        assert secret not in sealed


def test_only_the_recipient_can_unseal(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that another device cannot open an envelope addressed to Bob."""
    sealed = _seal(alice, _certificate(issuer, alice), bob, random)
    eve = IdentityKeyPair.generate(random)
    with pytest.raises(DecryptionError):
        unseal(recipient=eve, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW)


def test_flipping_any_byte_of_a_sealed_envelope_is_refused(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that every one-byte change of a sealed envelope is refused."""
    sealed = _seal(alice, _certificate(issuer, alice), bob, random)
    for index in range(len(sealed)):
        tampered = sealed[:index] + bytes((sealed[index] ^ 0x01,)) + sealed[index + 1 :]
        with pytest.raises((CryptoError, RemoteProtocolError)):
            unseal(
                recipient=bob, untrusted=tampered, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW
            )


def test_certificate_from_another_issuer_is_refused(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that a certificate not signed by the organisation's trust root is refused."""
    rogue = IdentityKeyPair.generate(random)
    sealed = _seal(alice, _certificate(rogue, alice), bob, random)
    with pytest.raises(CertificateError):
        unseal(recipient=bob, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW)


def test_expired_certificate_is_refused(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that a certificate past its expiry is refused."""
    sealed = _seal(alice, _certificate(issuer, alice), bob, random)
    with pytest.raises(CertificateError):
        unseal(recipient=bob, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=LATER)


def test_stolen_certificate_does_not_let_another_key_impersonate(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that Mallory sealing with her own key and Alice's certificate is refused."""
    mallory = IdentityKeyPair.generate(random)
    sealed = _seal(mallory, _certificate(issuer, alice), bob, random)
    with pytest.raises(CertificateError):
        unseal(recipient=bob, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW)


def test_certificate_round_trips_and_refuses_trailing_bytes(
    issuer: IdentityKeyPair, alice: IdentityKeyPair
) -> None:
    """Test that a certificate parses back to itself and extra bytes after it are refused."""
    certificate = _certificate(issuer, alice, account="Ким Минсу")
    assert DeviceCertificate.parse(certificate.encode()) == certificate
    with pytest.raises(RemoteProtocolError):
        DeviceCertificate.parse(certificate.encode() + b"\x00")


def _sealed_body(
    body_bytes: int,
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    issuer: IdentityKeyPair,
    random: SeededRandom,
) -> tuple[bytes, SessionMessage]:
    """A genuine sealed envelope of a session message of ``body_bytes``, and that message."""
    message = SessionMessage(MessageKind.RATCHET, bytes(body_bytes))
    sealed = seal(
        sender=alice,
        certificate=_certificate(issuer, alice),
        recipient_identity=bob.public,
        envelope_id=ENVELOPE_ID,
        delivery_key=alice.delivery_key,
        message=message,
        random=random,
    )
    return sealed, message


def test_every_sealed_envelope_has_one_of_the_few_sizes(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that messages of any length seal to one of SEALED_SIZES, the smallest that holds them
    (a receipt and a short text alike), and open to what was sealed."""
    sizes = {}
    for body_bytes in (1, 200, 700, 900, 3000, 15000, 60000, 200000):
        sealed, message = _sealed_body(body_bytes, alice, bob, issuer, random)
        opened = unseal(
            recipient=bob, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW
        )
        assert opened.message == message
        sizes[body_bytes] = len(sealed)
    assert sizes == {
        1: 1024,
        200: 1024,
        700: 1024,
        900: 4096,
        3000: 4096,
        15000: 16384,
        60000: 65536,
        200000: MAX_SEALED_BYTES,
    }
    assert SEALED_SIZES[-1] == MAX_SEALED_BYTES


def test_the_largest_message_fills_the_largest_size_and_a_byte_more_is_refused_at_sealing(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that the longest session message that fits seals to MAX_SEALED_BYTES and opens, and that
    one byte more is refused before anything is sent (LocalProtocolError)."""
    certificate = _certificate(issuer, alice)
    room = (
        MAX_SEALED_BYTES
        - SEALED_OVERHEAD_BYTES
        - 1
        - (ENVELOPE_ID_BYTES + DELIVERY_KEY_BYTES + 2 + len(certificate.encode()) + 1)
    )
    sealed, message = _sealed_body(room, alice, bob, issuer, random)
    assert len(sealed) == MAX_SEALED_BYTES
    opened = unseal(
        recipient=bob, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW
    )
    assert opened.message == message
    with pytest.raises(LocalProtocolError, match="do not fit"):
        _sealed_body(room + 1, alice, bob, issuer, random)


def test_bytes_of_any_other_length_are_refused_before_decryption(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that a sealed envelope cut or lengthened by one byte is malformed: no size but the few."""
    sealed, _ = _sealed_body(10, alice, bob, issuer, random)
    for untrusted in (sealed[:-1], sealed + b"\x00", sealed * 300):
        with pytest.raises(RemoteProtocolError, match="not one of the sizes"):
            unseal(
                recipient=bob, untrusted=untrusted, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW
            )


def test_an_envelope_id_other_than_the_sealed_one_is_refused_naming_the_sender(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that sealed bytes put under another envelope id are refused, with the sender they name."""
    sealed = _seal(alice, _certificate(issuer, alice), bob, random)
    other = bytes(reversed(ENVELOPE_ID))
    with pytest.raises(EnvelopeIdMismatchError) as refused:
        unseal(recipient=bob, untrusted=sealed, envelope_id=other, trust_root=issuer.public, now=NOW)
    assert (refused.value.account_id, refused.value.device_id) == ("a.ivanova", 3)
    assert unseal(recipient=bob, untrusted=sealed, envelope_id=ENVELOPE_ID, trust_root=issuer.public, now=NOW)


def test_sealing_refuses_an_envelope_id_of_another_length(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that an envelope id that is not 16 bytes is a programming error, caught before sealing."""
    message = SessionMessage(MessageKind.RATCHET, b"ratchet bytes")
    with pytest.raises(LocalProtocolError):
        seal(
            sender=alice,
            certificate=_certificate(issuer, alice),
            recipient_identity=bob.public,
            envelope_id=ENVELOPE_ID[:15],
            delivery_key=alice.delivery_key,
            message=message,
            random=random,
        )


def test_a_sealed_envelope_of_version_1_without_a_delivery_key_is_refused_as_older(
    alice: IdentityKeyPair, bob: IdentityKeyPair, issuer: IdentityKeyPair, random: SeededRandom
) -> None:
    """Test that the version before the delivery key is known and refused, before anything is decrypted."""
    sealed = _seal(alice, _certificate(issuer, alice), bob, random)
    with pytest.raises(UnsupportedVersionError) as refused:
        unseal(
            recipient=bob,
            untrusted=b"\x01" + sealed[1:],
            envelope_id=ENVELOPE_ID,
            trust_root=issuer.public,
            now=NOW,
        )
    assert refused.value.known
