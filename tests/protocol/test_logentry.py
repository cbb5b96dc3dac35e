"""The key log's entries and the key directory they replay to (app/protocol/logentry.py)."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.utils import random

from app.base.errors import RemoteProtocolError
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.primitives import ed25519_keypair_from_seed
from app.protocol.logentry import (
    MAX_ENTRY_BYTES,
    AdminAction,
    DeviceAdded,
    DeviceRevoked,
    KeyDirectory,
    parse_entry,
)

AUTHORITY = IdentityKeyPair.from_seed(b"\x01" * 32)
ADMIN_PUBLIC, ADMIN_SECRET = ed25519_keypair_from_seed(seed=b"\x02" * 32)


def added(
    account: str, device: int, *, key: bytes | None = None, issuer: IdentityKeyPair = AUTHORITY
) -> DeviceAdded:
    certificate = DeviceCertificate.issue(
        issuer,
        account_id=account,
        device_id=device,
        identity_key=key if key is not None else IdentityKeyPair.generate(random).public,
        expires_at=2_000_000_000,
    )
    return DeviceAdded(1_700_000_000, certificate.encode(), certificate)


def action(details: str = '{"account": "bob"}') -> AdminAction:
    return AdminAction.sign(
        at=1_700_000_100,
        admin="Olga Petrova",
        admin_public=ADMIN_PUBLIC,
        admin_secret=ADMIN_SECRET,
        action="account.create",
        details=details,
    )


def test_every_kind_round_trips_byte_for_byte() -> None:
    """Test that each entry kind parses back to what was encoded, and encodes to the same bytes."""
    for entry in (added("bob", 7), DeviceRevoked(1_700_000_050, "bob", 7), action()):
        encoded = entry.encode()
        assert parse_entry(encoded) == entry
        assert parse_entry(encoded).encode() == encoded
        assert len(encoded) <= MAX_ENTRY_BYTES


def test_a_device_entry_carries_the_authoritys_certificate() -> None:
    """Test that the fixed layout of a device entry is version, kind, time, then the certificate."""
    entry = added("bob", 7)
    encoded = entry.encode()
    assert encoded[:2] == b"\x01\x01"
    assert int.from_bytes(encoded[2:10], "big") == entry.at
    assert int.from_bytes(encoded[10:12], "big") == len(entry.certificate)
    assert encoded[12:] == entry.certificate


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:-1],
        lambda b: b + b"\x00",
        lambda b: b"\x02" + b[1:],
        lambda b: b[:1] + b"\x09" + b[2:],
        lambda b: b"",
    ],
    ids=["truncated", "trailing", "version", "kind", "empty"],
)
def test_malformed_entries_are_refused_with_the_protocols_error(mutate: object) -> None:
    """Test that a truncated, extended, unknown-version or unknown-kind entry is RemoteProtocolError."""
    for entry in (added("bob", 7), DeviceRevoked(1, "bob", 7), action()):
        with pytest.raises(RemoteProtocolError):
            parse_entry(mutate(entry.encode()))  # type: ignore[operator]


def test_admin_details_must_be_a_json_object() -> None:
    """Test that an admin action whose details are not a JSON object does not parse."""
    for details in ("[1, 2]", "not json", '"text"'):
        with pytest.raises(RemoteProtocolError):
            parse_entry(action(details).encode())
    assert json.loads(parse_entry(action().encode()).details) == {"account": "bob"}  # type: ignore[union-attr]


def test_the_directory_replays_additions_and_revocations() -> None:
    """Test that the directory holds each binding at its leaf, and its revocation's leaf once revoked."""
    directory = KeyDirectory(AUTHORITY.public)
    first, second = added("bob", 7), added("bob", 9)
    for entry in (first, action(), second, DeviceRevoked(5, "bob", 7)):
        assert directory.apply(entry) is None
    assert directory.size == 4
    bob7 = directory.binding("bob", 7)
    assert bob7 is not None and bob7.added == 0 and bob7.revoked == 3
    assert bob7.identity_key == first.binding.identity_key
    assert [b.device_id for b in directory.devices_of("bob")] == [7, 9]
    assert directory.binding("alice", 7) is None


def test_the_directory_names_every_broken_rule_and_keeps_nothing_of_it() -> None:
    """Test that a binding not signed by the authority, a device or key added twice, a revocation of
    an unknown or revoked device and a forged admin signature are each reported with their leaf."""
    directory = KeyDirectory(AUTHORITY.public)
    key = IdentityKeyPair.generate(random).public
    assert directory.apply(added("bob", 7, key=key)) is None
    forged = action()
    forged = AdminAction(
        forged.at, forged.admin, forged.admin_key, "account.revoke", forged.details, forged.signature
    )
    problems = [
        directory.apply(added("bob", 8, issuer=IdentityKeyPair.generate(random))),
        directory.apply(added("bob", 7)),
        directory.apply(added("carol", 1, key=key)),
        directory.apply(DeviceRevoked(1, "bob", 99)),
        directory.apply(forged),
    ]
    assert problems[0] is not None and "leaf 1" in problems[0] and "not certified" in problems[0]
    assert problems[1] is not None and "second time" in problems[1]
    assert problems[2] is not None and "another device's" in problems[2]
    assert problems[3] is not None and "never added" in problems[3]
    assert problems[4] is not None and "not signed" in problems[4]
    assert directory.binding("bob", 8) is None and directory.binding("carol", 1) is None
    assert directory.apply(DeviceRevoked(1, "bob", 7)) is None
    second = directory.apply(DeviceRevoked(2, "bob", 7))
    assert second is not None and "second time" in second
    assert directory.size == 8


def test_an_admin_action_counts_only_by_a_key_the_config_lists_under_its_name() -> None:
    """Test that with the config's admins given, an admin action by a listed key and name is
    taken, one by an unlisted key or naming another admin than the key's is reported with its
    leaf, and that without the list only the signature is checked."""
    other_public, other_secret = ed25519_keypair_from_seed(seed=b"\x03" * 32)
    stranger = AdminAction.sign(
        at=1,
        admin="Olga Petrova",
        admin_public=other_public,
        admin_secret=other_secret,
        action="account.create",
        details="{}",
    )
    posing = AdminAction.sign(
        at=1,
        admin="Ivan Sidorov",
        admin_public=ADMIN_PUBLIC,
        admin_secret=ADMIN_SECRET,
        action="x",
        details="{}",
    )
    listed = KeyDirectory(AUTHORITY.public, admins={ADMIN_PUBLIC: "Olga Petrova"})
    assert listed.apply(action()) is None
    unlisted = listed.apply(stranger)
    assert unlisted is not None and unlisted.startswith("leaf 1:") and "does not list" in unlisted
    renamed = listed.apply(posing)
    assert renamed is not None and renamed.startswith("leaf 2:")
    assert "names 'Ivan Sidorov', but the config lists its key under the name 'Olga Petrova'" in renamed
    unchecked = KeyDirectory(AUTHORITY.public)
    assert [unchecked.apply(entry) for entry in (action(), stranger, posing)] == [None, None, None]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_the_protocols_error(data: bytes) -> None:
    """Test that random bytes either parse or raise RemoteProtocolError, never anything else."""
    with contextlib.suppress(RemoteProtocolError):
        parse_entry(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0, 1, 2]), st.integers(min_value=0), st.binary(min_size=1, max_size=3))
def test_mutated_entries_raise_only_the_protocols_error(which: int, position: int, bytes_: bytes) -> None:
    """Test that an entry with bytes overwritten either parses or raises RemoteProtocolError."""
    encoded = bytearray((added("bob", 7), DeviceRevoked(1, "bob", 7), action())[which].encode())
    at = position % len(encoded)
    encoded[at : at + len(bytes_)] = bytes_
    with contextlib.suppress(RemoteProtocolError):
        parse_entry(bytes(encoded))
