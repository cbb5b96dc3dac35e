"""Passphrase-sealed key files of the organisation root and the enrolment authority."""

from __future__ import annotations

import nacl.utils
import pytest

from app.crypto.primitives import SIGN_CONTEXT_ORG_CONFIG, ed25519_verify
from app.provisioning.keyfile import (
    KEY_FILE_BYTES,
    MINIMUM,
    KeyFileError,
    Role,
    WrongKeyPassphraseError,
    new_key_file,
    open_key_file,
    untrusted_public_key,
)
from app.provisioning.signature import sign_config


def test_a_key_file_opens_with_its_passphrase_and_signs() -> None:
    """Test that a key file opens with its passphrase (in any Unicode normal form) and its key signs."""
    data, key = new_key_file(Role.ROOT, "Caf\u0065\u0301", random=nacl.utils.random, cost=MINIMUM)
    assert len(data) == KEY_FILE_BYTES
    opened = open_key_file(data, "Caf\u00e9", role=Role.ROOT, source="root.key")
    assert opened == key
    assert untrusted_public_key(data, role=Role.ROOT, source="root.key") == key.public_key
    signature = sign_config(b"config", root_public=opened.public_key, root_secret=opened.secret_key)
    ed25519_verify(
        public_key=key.public_key,
        context=SIGN_CONTEXT_ORG_CONFIG,
        message=b"config",
        signature=signature.signature,
    )


def test_a_key_file_refuses_a_wrong_passphrase_a_changed_byte_and_the_wrong_role() -> None:
    """Test that a wrong passphrase, any altered byte of header or ciphertext, a truncation and the
    other role's file are each refused by a typed error, never a wrong key."""
    data, _ = new_key_file(Role.AUTHORITY, "secret", random=nacl.utils.random, cost=MINIMUM)
    with pytest.raises(WrongKeyPassphraseError, match=r"does not open authority\.key"):
        open_key_file(data, "Secret", role=Role.AUTHORITY, source="authority.key")
    with pytest.raises(
        KeyFileError, match="holds the enrolment authority key, not the organisation root key"
    ):
        open_key_file(data, "secret", role=Role.ROOT, source="authority.key")
    with pytest.raises(KeyFileError, match="damaged"):
        open_key_file(data[:-1], "secret", role=Role.AUTHORITY, source="authority.key")
    with pytest.raises(KeyFileError, match="not an Enclave signing key file"):
        open_key_file(b"ENCLAVEK" + data[8:], "secret", role=Role.AUTHORITY, source="authority.key")
    for offset in (10, 23, 39, 63, 100):  # KDF, salt, nonce, public key, ciphertext
        altered = bytearray(data)
        altered[offset] ^= 1
        with pytest.raises((KeyFileError, WrongKeyPassphraseError)):
            open_key_file(bytes(altered), "secret", role=Role.AUTHORITY, source="authority.key")
