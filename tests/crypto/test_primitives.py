"""Known-answer tests: our wrappers against the primitives' published vectors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl import bindings

from app.base.errors import DecryptionError, InvalidKeyError, InvalidSignatureError
from app.crypto.keys import IdentityKeyPair, identity_dh_public
from app.crypto.primitives import (
    aead_decrypt,
    aead_encrypt,
    ed25519_keypair_from_seed,
    ed25519_sign,
    ed25519_verify,
    hkdf,
    hmac_sha256,
    x25519,
    x25519_public,
)

h = bytes.fromhex


def test_x25519_matches_rfc7748_section_6_1() -> None:
    """Test that X25519 gives RFC 7748's Diffie-Hellman vector on both sides."""
    alice = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    bob = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    assert x25519_public(private_key=alice) == h(
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    )
    assert x25519_public(private_key=bob) == h(
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    )
    shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert x25519(private_key=alice, public_key=x25519_public(private_key=bob)) == shared
    assert x25519(private_key=bob, public_key=x25519_public(private_key=alice)) == shared


def test_x25519_refuses_a_low_order_point() -> None:
    """Test that a public key giving an all-zero shared secret raises InvalidKeyError."""
    with pytest.raises(InvalidKeyError):
        x25519(private_key=b"\x01" * 32, public_key=b"\x00" * 32)


def test_hkdf_matches_rfc5869_case_1() -> None:
    """Test that HKDF-SHA256 gives RFC 5869's first vector."""
    okm = hkdf(
        ikm=b"\x0b" * 22, salt=h("000102030405060708090a0b0c"), info=h("f0f1f2f3f4f5f6f7f8f9"), length=42
    )
    assert okm == h("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")


def test_hmac_sha256_matches_rfc4231_case_1() -> None:
    """Test that the chain KDF's HMAC-SHA256 gives RFC 4231's first vector."""
    mac = hmac_sha256(key=b"\x0b" * 20, data=b"Hi There")
    assert mac == h("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")


XCHACHA_PLAINTEXT = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
    b"sunscreen would be it."
)
XCHACHA_KEY = bytes(range(0x80, 0xA0))
XCHACHA_NONCE = bytes(range(0x40, 0x58))
XCHACHA_AAD = h("50515253c0c1c2c3c4c5c6c7")
XCHACHA_CIPHERTEXT = h(
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c21"
    "6cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b"
    "13b52e"
    "c0875924c1c7987947deafd8780acf49"
)


def test_xchacha20poly1305_matches_the_cfrg_draft_vector() -> None:
    """Test that the AEAD gives draft-irtf-cfrg-xchacha's A.3.1 vector and opens it again."""
    sealed = aead_encrypt(
        key=XCHACHA_KEY, nonce=XCHACHA_NONCE, associated_data=XCHACHA_AAD, plaintext=XCHACHA_PLAINTEXT
    )
    assert sealed == XCHACHA_CIPHERTEXT
    opened = aead_decrypt(
        key=XCHACHA_KEY, nonce=XCHACHA_NONCE, associated_data=XCHACHA_AAD, ciphertext=sealed
    )
    assert opened == XCHACHA_PLAINTEXT


def test_aead_refuses_altered_associated_data() -> None:
    """Test that changing one bit of the associated data makes decryption fail."""
    with pytest.raises(DecryptionError):
        aead_decrypt(
            key=XCHACHA_KEY,
            nonce=XCHACHA_NONCE,
            associated_data=b"\x51" + XCHACHA_AAD[1:],
            ciphertext=XCHACHA_CIPHERTEXT,
        )


def test_ed25519_matches_rfc8032_test_1() -> None:
    """Test that Ed25519 with an empty context gives RFC 8032's first signature."""
    public, secret = ed25519_keypair_from_seed(
        seed=h("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
    assert public == h("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    signature = ed25519_sign(secret_key=secret, context=b"", message=b"")
    assert signature == h(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    ed25519_verify(public_key=public, context=b"", message=b"", signature=signature)


def test_ed25519_signature_is_bound_to_its_context() -> None:
    """Test that a signature made under one context does not verify under another."""
    identity = IdentityKeyPair.from_seed(b"\x07" * 32)
    signature = identity.sign(context=b"enclave:v1:a", message=b"m")
    with pytest.raises(InvalidSignatureError):
        ed25519_verify(public_key=identity.public, context=b"enclave:v1:b", message=b"m", signature=signature)


def test_identity_key_dh_agrees_through_the_montgomery_form() -> None:
    """Test that two identities agree on a DH secret through their converted keys."""
    a, b = IdentityKeyPair.from_seed(b"\x01" * 32), IdentityKeyPair.from_seed(b"\x02" * 32)
    assert identity_dh_public(a.public) == a.dh.public
    ab = x25519(private_key=a.dh.private, public_key=identity_dh_public(b.public))
    ba = x25519(private_key=b.dh.private, public_key=identity_dh_public(a.public))
    assert ab == ba


def test_identity_key_that_is_not_a_point_is_refused() -> None:
    """Test that an identity key off the curve raises InvalidKeyError, not a library error."""
    with pytest.raises(InvalidKeyError):
        identity_dh_public(b"\xff" * 32)


@given(
    key=st.binary(min_size=32, max_size=32),
    nonce=st.binary(min_size=24, max_size=24),
    associated_data=st.binary(max_size=200),
    plaintext=st.binary(max_size=2000),
)
def test_aead_fast_path_matches_pynacls_public_binding(
    key: bytes, nonce: bytes, associated_data: bytes, plaintext: bytes
) -> None:
    """Test that our direct libsodium AEAD call gives exactly what nacl.bindings gives, both ways."""
    ours = aead_encrypt(key=key, nonce=nonce, associated_data=associated_data, plaintext=plaintext)
    theirs = bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, associated_data, nonce, key)
    assert ours == theirs
    assert aead_decrypt(key=key, nonce=nonce, associated_data=associated_data, ciphertext=theirs) == plaintext
