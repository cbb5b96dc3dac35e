"""Device certificates (app/crypto/certificate.py): version 2 carries the account's name and
department under the issuer's signature; version 1, which the key log holds, stays readable."""

from __future__ import annotations

import dataclasses

import pytest
from nacl.utils import random

from app.base.errors import CertificateError, LocalProtocolError, RemoteProtocolError
from app.crypto.certificate import MAX_CERTIFICATE_BYTES, DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import SIGN_CONTEXT_DEVICE_CERTIFICATE

ISSUER = IdentityKeyPair.from_seed(b"\x05" * 32)
NOW = 1_800_000_000


def _issue(display_name: str = "Анна Иванова", department: str = "Финансы") -> DeviceCertificate:
    return DeviceCertificate.issue(
        ISSUER,
        account_id="a.ivanova",
        device_id=7,
        identity_key=IdentityKeyPair.generate(random).public,
        expires_at=NOW + 60,
        display_name=display_name,
        department=department,
    )


def test_a_certificate_carries_its_names_signed_and_round_trips() -> None:
    """Test that a certificate parses back to what was issued, names included, verifies, and that
    another name under the same signature does not verify."""
    certificate = _issue()
    encoded = certificate.encode()
    assert DeviceCertificate.parse(encoded) == certificate and encoded[0] == 2
    certificate.verify(trust_root=ISSUER.public, now=NOW)
    renamed = dataclasses.replace(certificate, display_name="Иван Петров")
    with pytest.raises(CertificateError, match="not signed"):
        DeviceCertificate.parse(renamed.encode()).verify(trust_root=ISSUER.public, now=NOW)
    longest = _issue("я" * 64, "ю" * 64)
    assert len(longest.encode()) <= MAX_CERTIFICATE_BYTES


def test_a_version_1_certificate_still_parses_and_verifies_without_names() -> None:
    """Test that a version 1 certificate (no names; as the key log holds them) is read and checked,
    and that a version 1 certificate cannot be made to carry a name."""
    unsigned = DeviceCertificate("a.old", 3, bytes(range(32)), NOW + 60, b"", version=1)
    signature = ISSUER.sign(context=SIGN_CONTEXT_DEVICE_CERTIFICATE, message=unsigned.encode())
    old = DeviceCertificate.parse(dataclasses.replace(unsigned, signature=signature).encode())
    assert (old.version, old.display_name, old.department) == (1, "", "")
    old.verify(trust_root=ISSUER.public, now=NOW)
    with pytest.raises(LocalProtocolError, match="carries no name"):
        dataclasses.replace(old, display_name="X").encode()


@pytest.mark.parametrize("name", ["Anna\nIvanova", "A\x1b[2J", "\x85x"])
def test_a_control_character_in_a_name_is_refused_both_ways(name: str) -> None:
    """Test that a name holding a control character is refused when issuing (LocalProtocolError)
    and in bytes that hold it (RemoteProtocolError)."""
    with pytest.raises(LocalProtocolError, match="control character"):
        _issue(display_name=name)
    size = len(name.encode())
    holding = _issue(display_name="y" * size).encode().replace(b"y" * size, name.encode())
    with pytest.raises(RemoteProtocolError, match="control character"):
        DeviceCertificate.parse(holding)


def test_a_name_over_128_bytes_is_refused_both_ways() -> None:
    """Test that a 129-byte name is refused when issuing and when its length is read."""
    with pytest.raises(LocalProtocolError):
        _issue(display_name="x" * 129)
    account = b"a.ivanova"
    untrusted = b"\x02" + len(account).to_bytes(2, "big") + account + (129).to_bytes(2, "big") + b"x" * 129
    with pytest.raises(RemoteProtocolError, match="display name of 129 bytes exceeds the limit of 128"):
        DeviceCertificate.parse(untrusted + bytes(200))
