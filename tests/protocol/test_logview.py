"""A reader's view of the key log: heads taken only when the entries lead to them, forks caught
(app/protocol/logview.py)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.utils import random

from app.base.errors import InvalidSignatureError, RemoteProtocolError
from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.merkle import Frontier, consistency_proof, leaf_hash, parse_proof, root
from app.crypto.primitives import ed25519_keypair_from_seed
from app.protocol.checkpoint import Checkpoint, SignedCheckpoint, sign_checkpoint
from app.protocol.logentry import DeviceAdded, DeviceRevoked, MemoryBindings
from app.protocol.logview import LogForkError, LogView, log_origin, parse_entry_page

AUTHORITY = IdentityKeyPair.from_seed(b"\x03" * 32)
LOG_PUBLIC, LOG_SECRET = ed25519_keypair_from_seed(seed=b"\x04" * 32)
ORIGIN = log_origin(LOG_PUBLIC)


def device(account: str, device_id: int) -> bytes:
    certificate = DeviceCertificate.issue(
        AUTHORITY,
        account_id=account,
        device_id=device_id,
        identity_key=IdentityKeyPair.generate(random).public,
        expires_at=2_000_000_000,
    )
    return DeviceAdded(1_700_000_000 + device_id, certificate.encode(), certificate).encode()


class Log:
    """An honest log: its entries, and heads signed over any prefix of them."""

    def __init__(self, entries: list[bytes]) -> None:
        self.entries = entries

    def head(self, size: int | None = None) -> bytes:
        size = len(self.entries) if size is None else size
        checkpoint = Checkpoint(ORIGIN, size, root([leaf_hash(e) for e in self.entries[:size]]))
        return sign_checkpoint(checkpoint, key_name=ORIGIN, secret_key=LOG_SECRET)

    def proof(self, old: int, new: int) -> list[bytes]:
        return consistency_proof([leaf_hash(e) for e in self.entries], old, new)


def view(account: str | None = "bob") -> LogView:
    return LogView(log_key=LOG_PUBLIC, authority_key=AUTHORITY.public, watched_account=account)


LOG = Log(
    [
        device("alice", 1),
        device("bob", 2),
        device("carol", 3),
        device("bob", 4),
        DeviceRevoked(9, "bob", 4).encode(),
    ]
)


def test_a_view_follows_the_log_and_reports_the_watched_accounts_devices() -> None:
    """Test that heads taken in steps give the directory of the whole log, and that each step names
    the devices added to the watched account in it, with their leaves."""
    v = view()
    first = v.advance(LOG.head(2), LOG.entries[:2])
    assert [(b.device_id, b.added) for b in first.watched] == [(2, 1)]
    second = v.advance(LOG.head(), LOG.entries[2:])
    assert [(b.device_id, b.added) for b in second.watched] == [(4, 3)]
    assert not first.problems and not second.problems
    assert v.size == 5 and v.head is not None and v.head.checkpoint.size == 5
    bob4 = v.directory.binding("bob", 4)
    assert bob4 is not None and bob4.revoked == 4
    assert v.frontier.root() == v.head.checkpoint.root


def test_a_view_resumes_from_a_kept_head_and_its_bindings() -> None:
    """Test that a view made from a head and frontier it kept, with the bindings replayed so far,
    goes on exactly as the one that never stopped; a frontier that is not the head's tree is
    refused."""
    first = view()
    first.advance(LOG.head(3), LOG.entries[:3])
    bindings = MemoryBindings()
    for account, device_id in (("alice", 1), ("bob", 2), ("carol", 3)):
        kept = first.directory.binding(account, device_id)
        assert kept is not None
        bindings.put(kept)
    head = LOG.head(3)
    resumed = LogView(
        log_key=LOG_PUBLIC,
        authority_key=AUTHORITY.public,
        watched_account="bob",
        bindings=bindings,
        kept=(head, first.frontier.encode()),
    )
    advanced = resumed.advance(LOG.head(), LOG.entries[3:])
    assert [b.device_id for b in advanced.watched] == [4] and not advanced.problems
    assert [b.device_id for b in resumed.directory.devices_of("bob")] == [2, 4]
    with pytest.raises(RemoteProtocolError, match="frontier"):
        LogView(
            log_key=LOG_PUBLIC, authority_key=AUTHORITY.public, kept=(LOG.head(2), first.frontier.encode())
        )


def test_an_entry_page_is_var16_entries_back_to_back() -> None:
    """Test that a page of entries parses to the entries, and a cut one is a protocol error."""
    page = b"".join(len(e).to_bytes(2, "big") + e for e in LOG.entries)
    assert parse_entry_page(page) == LOG.entries and parse_entry_page(b"") == []
    with pytest.raises(RemoteProtocolError):
        parse_entry_page(page[:-1])


def test_a_hidden_entry_is_caught_and_changes_nothing() -> None:
    """Test that entries with one left out, one added, one altered or two swapped do not lead to the
    signed head: a fork, and the view keeps the head it had."""
    v = view()
    v.advance(LOG.head(1), LOG.entries[:1])
    before = v.frontier.encode()
    altered = bytearray(LOG.entries[3])
    altered[-1] ^= 1
    for entries in (
        [LOG.entries[1], LOG.entries[3], LOG.entries[4], LOG.entries[2]],
        [LOG.entries[1], LOG.entries[2], bytes(altered), LOG.entries[4]],
        [LOG.entries[2], LOG.entries[1], LOG.entries[3], LOG.entries[4]],
    ):
        with pytest.raises(LogForkError) as caught:
            v.advance(LOG.head(), entries)
        assert len(caught.value.evidence) == 2
    with pytest.raises(RemoteProtocolError):
        v.advance(LOG.head(), LOG.entries[1:4])  # one too few for the head's size
    assert v.frontier.encode() == before and v.size == 1 and v.directory.size == 1


def test_a_rewritten_log_is_caught_by_a_reader_that_kept_an_old_head() -> None:
    """Test that a log rewritten from its start and signed again (an extra device for Bob at leaf 1)
    cannot be taken by a view that kept the honest head, whatever entries come with it."""
    v = view()
    v.advance(LOG.head(3), LOG.entries[:3])
    rewritten = Log([LOG.entries[0], device("bob", 66), *LOG.entries[1:]])
    with pytest.raises(LogForkError):
        v.advance(rewritten.head(), rewritten.entries[3:])
    with pytest.raises(LogForkError):
        v.check_head(rewritten.head(), rewritten.proof(3, len(rewritten.entries)))


def test_two_views_of_different_logs_are_caught_by_comparing_heads() -> None:
    """Test that a reader shown the honest log and a colleague shown a forked one (same signer, Bob's
    extra device only in the fork) find out when one checks the other's head, in either direction;
    while a head of the same log, older or newer, checks out."""
    honest = view()
    honest.advance(LOG.head(), LOG.entries)
    forked_log = Log([*LOG.entries[:3], device("bob", 77)])
    forked = view("alice")
    forked.advance(forked_log.head(), forked_log.entries)
    with pytest.raises(LogForkError):
        honest.check_head(forked_log.head(), LOG.proof(4, 5))
    with pytest.raises(LogForkError):
        forked.check_head(LOG.head(), LOG.proof(4, 5))
    honest.check_head(LOG.head(2), LOG.proof(2, 5))
    older = view()
    older.advance(LOG.head(2), LOG.entries[:2])
    older.check_head(LOG.head(), LOG.proof(2, 5))
    older.check_head(LOG.head(0), [])


def test_heads_signed_by_another_key_or_for_another_log_are_refused() -> None:
    """Test that a head not signed by the log key, or naming another origin, is refused untouched."""
    _, other_secret = ed25519_keypair_from_seed(seed=b"\x05" * 32)
    checkpoint = Checkpoint(ORIGIN, 1, root([leaf_hash(LOG.entries[0])]))
    v = view()
    with pytest.raises(InvalidSignatureError):
        v.advance(sign_checkpoint(checkpoint, key_name=ORIGIN, secret_key=other_secret), LOG.entries[:1])
    elsewhere = Checkpoint("enclave/key-log/0000000000000000", 1, checkpoint.root)
    with pytest.raises((RemoteProtocolError, InvalidSignatureError)):
        v.advance(sign_checkpoint(elsewhere, key_name=ORIGIN, secret_key=LOG_SECRET), LOG.entries[:1])
    assert v.size == 0 and v.head is None


def test_entries_that_break_the_rules_are_leaves_that_state_nothing() -> None:
    """Test that an unreadable entry and a binding the authority did not sign are counted as leaves
    (the head is taken) but reported and not applied."""
    stranger = IdentityKeyPair.generate(random)
    forged = DeviceCertificate.issue(
        stranger, account_id="bob", device_id=5, identity_key=stranger.public, expires_at=2_000_000_000
    )
    log = Log([b"\x07junk", DeviceAdded(1, forged.encode(), forged).encode(), device("bob", 6)])
    v = view()
    advanced = v.advance(log.head(), log.entries)
    assert (
        len(advanced.problems) == 2 and "leaf 0" in advanced.problems[0] and "leaf 1" in advanced.problems[1]
    )
    assert [b.device_id for b in advanced.watched] == [6]
    assert v.directory.binding("bob", 5) is None and v.size == 3


FUZZ_HEAD = LOG.head()


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0), st.binary(min_size=1, max_size=4))
def test_mutated_heads_raise_only_typed_errors(position: int, data: bytes) -> None:
    """Test that a head with bytes overwritten either parses or raises the protocol's or the
    signature's typed error, never anything else."""
    note = bytearray(FUZZ_HEAD)
    at = position % len(note)
    note[at : at + len(data)] = data
    with contextlib.suppress(RemoteProtocolError, InvalidSignatureError):
        SignedCheckpoint.parse(bytes(note), key_name=ORIGIN, public_key=LOG_PUBLIC, origin=ORIGIN)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_proofs_frontiers_and_heads_raise_only_typed_errors(data: bytes) -> None:
    """Test that random bytes given to the proof, frontier and head parsers raise only their typed errors."""
    for parse in (
        parse_proof,
        Frontier.parse,
        parse_entry_page,
        lambda b: SignedCheckpoint.parse(b, key_name=ORIGIN, public_key=LOG_PUBLIC, origin=ORIGIN),
    ):
        with contextlib.suppress(RemoteProtocolError, InvalidSignatureError):
            parse(data)
