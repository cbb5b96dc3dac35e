"""The authority's checks (authority/service.py) without HTTP: how it draws a device id from
the random source it is given."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.utils import random

from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import RandomSource
from app.protocol import enrolment
from app.protocol.authority import CertifyRequest
from authority.service import Authority
from authority.store import AuthorityStore

NOW = 1_700_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuthorityStore]:
    opened = AuthorityStore.open(tmp_path)
    yield opened
    opened.close()


def _scripted(*draws: bytes) -> RandomSource:
    """A random source that returns ``draws`` in order (each of the length asked for)."""
    pending = iter(draws)

    def source(n: int) -> bytes:
        draw = next(pending)
        if len(draw) != n:
            raise ValueError(f"asked for {n} bytes, scripted {len(draw)}")
        return draw

    return source


def _certify(store: AuthorityStore, random_source: RandomSource, account: str) -> DeviceCertificate:
    code = enrolment.new_enrolment_code(random)
    store.add_code(
        code_id=enrolment.code_id(code),
        code_key=enrolment.code_key(code),
        account_id=account,
        expires_at=NOW + 60,
    )
    authority = Authority(
        issuer=IdentityKeyPair.generate(random),
        store=store,
        clock=lambda: NOW,
        random=random_source,
        lifetime_seconds=3600,
        grace_seconds=0,
    )
    request = CertifyRequest.make(code=code, identity=IdentityKeyPair.generate(random))
    return DeviceCertificate.parse(authority.certify(request.encode()))


def test_a_device_id_is_31_random_bits_and_never_0(store: AuthorityStore) -> None:
    """Test that the device id is the low 31 bits of four random bytes (big-endian), that a draw
    of 0 is drawn again, and that the highest id, 2^31 - 1, can be drawn."""
    first = _certify(store, _scripted(b"\x80\x00\x00\x00", b"\x80\x00\x00\x05"), "s.first")
    assert (first.account_id, first.device_id) == ("s.first", 5)
    assert _certify(store, _scripted(b"\xff\xff\xff\xff"), "s.highest").device_id == 2**31 - 1


def test_a_taken_device_id_is_drawn_again(store: AuthorityStore) -> None:
    """Test that a second device whose first draw is the first device's id gets the next draw."""
    assert _certify(store, _scripted(b"\x00\x00\x00\x09"), "s.taken").device_id == 9
    again = _certify(store, _scripted(b"\x00\x00\x00\x09", b"\x00\x00\x01\x00"), "s.taken")
    assert again.device_id == 256
