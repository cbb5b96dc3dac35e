"""One reader's view of the organisation's key log, checked as it grows, sans-I/O.

A view holds the newest signed head it has checked, the frontier of the tree at that head
(app/crypto/merkle.py's ``Frontier``, at most 64 hashes) and the key directory the entries
so far replay to (app/protocol/logentry.py). ``advance`` takes the next signed head and the
entries between the two heads: it folds each entry into the frontier and accepts the head
only if the frontier's root is the head's root. That one comparison proves at once that
every entry was shown (none hidden, none added), that they are the log's leaves in order,
and that the new head is consistent with the old one; a head it refuses changes nothing.
``check_head`` takes a head someone else saw (a colleague's, from inside an end-to-end
message) and a consistency proof between it and this view's head, in whichever order
their sizes put them. Either refusal is ``LogForkError``: two heads that no append-only log
could both have signed, the evidence that the log was rewritten or shows different
readers different logs.

A reader that is handed nothing new learns nothing: ``advance`` with the head it has and
no entries is a no-op, and a head older than its own must be checked with ``check_head``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from app.base.codec import Reader
from app.base.errors import CryptoError, InvalidProofError, RemoteProtocolError
from app.crypto.merkle import Frontier, leaf_hash, verify_consistency
from app.protocol.checkpoint import Checkpoint, SignedCheckpoint
from app.protocol.logentry import MAX_ENTRY_BYTES, Binding, BindingStore, DeviceAdded, KeyDirectory

ORIGIN_PREFIX = "enclave/key-log/"
ORIGIN_KEY_HEX = 16
"""The origin is ``ORIGIN_PREFIX`` and the first 16 hex digits of the log key: it names the log
(C2SP's origin line, and the signed note's key name), while the key itself is what is trusted."""


def log_origin(log_key: bytes) -> str:
    return ORIGIN_PREFIX + log_key.hex()[:ORIGIN_KEY_HEX]


def parse_entry_page(untrusted: bytes) -> list[bytes]:
    """The entries of one answer of ``GET /v1/log/entries``: each ``var16``, back to back.
    ``RemoteProtocolError`` for bytes that are not that."""
    r = Reader(untrusted, "key log entries")
    entries = []
    while r.remaining():
        entries.append(r.var16(MAX_ENTRY_BYTES, "entry"))
    return entries


class LogForkError(CryptoError):
    """The log showed a head that cannot follow the one this reader checked before, or entries
    that do not lead to the head it signed: it was rewritten, or shows different readers
    different logs. ``evidence`` holds the two signed heads (or the head and what failed)."""

    def __init__(self, message: str, evidence: tuple[bytes, ...]) -> None:
        super().__init__(message)
        self.evidence = evidence


@dataclass
class Advanced:
    """What one ``advance`` added: the bindings of the watched account, and the entries that
    broke a rule (they are leaves of the log, but state nothing)."""

    watched: list[Binding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class LogView:
    def __init__(
        self,
        *,
        log_key: bytes,
        authority_key: bytes,
        watched_account: str | None = None,
        bindings: BindingStore | None = None,
        kept: tuple[bytes, bytes] | None = None,
        admins: Mapping[bytes, str] | None = None,
    ) -> None:
        """A view from the empty log, or resumed from ``kept`` (a head this view accepted and its
        frontier's encoding) with ``bindings`` holding what the entries up to it replayed to;
        ``admins`` as ``KeyDirectory`` takes them.
        ``RemoteProtocolError`` (or ``InvalidSignatureError``) if ``kept`` is not such a pair."""
        self._log_key = log_key
        self._origin = log_origin(log_key)
        self._watched = watched_account
        self.frontier = Frontier.empty()
        self.head: SignedCheckpoint | None = None
        if kept is not None:
            head, frontier = self.signed(kept[0]), Frontier.parse(kept[1])
            if (frontier.size, frontier.root()) != (head.checkpoint.size, head.checkpoint.root):
                raise RemoteProtocolError("the kept frontier is not the tree of the kept head")
            self.head, self.frontier = head, frontier
        self.directory = KeyDirectory(authority_key, bindings, size=self.frontier.size, admins=admins)

    @property
    def size(self) -> int:
        return self.frontier.size

    def signed(self, untrusted_note: bytes) -> SignedCheckpoint:
        """The head in ``untrusted_note`` if the log key signed it for this log's origin."""
        return SignedCheckpoint.parse(
            untrusted_note, key_name=self._origin, public_key=self._log_key, origin=self._origin
        )

    def advance(self, untrusted_note: bytes, untrusted_entries: Sequence[bytes]) -> Advanced:
        """Take the head in ``untrusted_note`` and the entries from this view's size to its size.

        ``RemoteProtocolError`` or ``InvalidSignatureError`` for a head that does not parse or
        verify, ``RemoteProtocolError`` for the wrong number of entries, ``LogForkError`` when
        the entries do not lead to its root, or it is smaller than the head this view holds:
        each leaves the view as it was.
        """
        head = self.signed(untrusted_note)
        new = head.checkpoint
        if new.size < self.size:
            raise RemoteProtocolError(
                f"a head of {new.size} leaves is older than this view's {self.size}; check it with check_head"
            )
        if len(untrusted_entries) != new.size - self.size:
            raise RemoteProtocolError(
                f"{len(untrusted_entries)} entries given for {new.size - self.size} new leaves"
            )
        frontier = Frontier.parse(self.frontier.encode())
        for entry in untrusted_entries:
            frontier.append(leaf_hash(entry))
        if frontier.root() != new.root:
            raise LogForkError(
                f"the log's entries up to leaf {new.size} do not lead to the head it signed, or that head"
                f" does not extend the one of {self.size} leaves checked before",
                self._evidence(head),
            )
        advanced = Advanced()
        for entry in untrusted_entries:
            self._replay(entry, advanced)
        self.frontier, self.head = frontier, head
        return advanced

    def _replay(self, untrusted_entry: bytes, advanced: Advanced) -> None:
        entry, problem = self.directory.apply_leaf(untrusted_entry)
        if problem is not None:
            advanced.problems.append(problem)
        elif isinstance(entry, DeviceAdded) and entry.binding.account_id == self._watched:
            binding = self.directory.binding(entry.binding.account_id, entry.binding.device_id)
            if binding is not None:
                advanced.watched.append(binding)

    def check_head(self, untrusted_note: bytes, untrusted_proof: Sequence[bytes]) -> None:
        """Check a head someone else saw against this view's, with the consistency proof from the
        smaller of the two to the larger; ``LogForkError`` if they cannot both be the log's."""
        other = self.signed(untrusted_note)
        if self.head is None:
            raise RemoteProtocolError("this view has no head yet to compare with")
        mine, theirs = self.head.checkpoint, other.checkpoint
        old, new = (theirs, mine) if theirs.size <= mine.size else (mine, theirs)
        try:
            _consistent(old, new, untrusted_proof)
        except InvalidProofError as e:
            raise LogForkError(
                f"the head of {theirs.size} leaves and the one of {mine.size} checked before cannot both be"
                " this log's: it was rewritten or shows different people different logs",
                self._evidence(other),
            ) from e

    def _evidence(self, other: SignedCheckpoint) -> tuple[bytes, ...]:
        return (other.note,) if self.head is None else (self.head.note, other.note)


def _consistent(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    if old.size == 0:  # every tree extends the empty one (RFC 9162 defines no proof for it)
        if proof:
            raise InvalidProofError("a consistency proof from the empty tree must be empty")
        return
    if old.size == new.size:
        if old.root != new.root:
            raise InvalidProofError("two heads of one size with different roots")
        return
    verify_consistency(
        old_size=old.size, new_size=new.size, old_root=old.root, new_root=new.root, proof=list(proof)
    )
