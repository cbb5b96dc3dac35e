"""RFC 9162's Merkle tree (section 2.1) over SHA-256: roots, proofs, and a reader's frontier.

The key log (docs/PROTOCOL.md, "Key log") is such a tree. The log computes roots and
proofs over the leaf hashes it holds (``root``, ``inclusion_proof``, ``consistency_proof``,
each O(n) in the leaves, with no quadratic step); a reader checks them with RFC 9162's
verification algorithms (``verify_inclusion``, ``verify_consistency``), which raise
``InvalidProofError`` for any proof that does not lead to the root it should. A reader
that follows the log keeps a ``Frontier``: the roots of the perfect subtrees that make up
the tree, enough to append leaves and compute the next root without the leaves before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from app.base.codec import Reader, Writer
from app.base.errors import InvalidProofError

HASH_BYTES = 32
MAX_PROOF_HASHES = 64
"""A proof in a tree of fewer than 2^63 leaves has at most 2 * 63 hashes in theory, but RFC
9162's proofs have at most one per level: 63 for inclusion, 64 for consistency."""
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The tree's root (RFC 9162's MTH), computed bottom-up through a frontier: O(n)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return Frontier.of(leaf_hashes).root()


def _subtree(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    return root(leaves[start:end]) if end - start > 1 else leaves[start]


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """RFC 9162's PATH(index, D[0:size]), deepest sibling first."""
    if not 0 <= index < size <= len(leaf_hashes):
        raise ValueError(f"leaf {index} is not in a tree of {size} of the {len(leaf_hashes)} leaves")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            proof.append(_subtree(leaf_hashes, start + k, end))
            end = start + k
        else:
            proof.append(_subtree(leaf_hashes, start, start + k))
            start += k
    proof.reverse()
    return proof


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162's PROOF(old_size, D[0:new_size]) (its SUBPROOF), for 0 < old_size <= new_size."""
    if not 0 < old_size <= new_size <= len(leaf_hashes):
        raise ValueError(f"no consistency proof from {old_size} to {new_size} of {len(leaf_hashes)} leaves")
    proof: list[bytes] = []
    start, end, m, complete = 0, new_size, old_size, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                proof.append(_subtree(leaf_hashes, start, end))
            break
        k = _split(n)
        if m <= k:
            proof.append(_subtree(leaf_hashes, start + k, end))
            end = start + k
        else:
            proof.append(_subtree(leaf_hashes, start, start + k))
            start, m, complete = start + k, m - k, False
    proof.reverse()
    return proof


def _to_set_bit(fn: int, sn: int) -> tuple[int, int]:
    """Shift both right until ``fn``'s lowest bit is set or it is 0 (RFC 9162's inner step)."""
    while fn and not fn & 1:
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def verify_inclusion(*, leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 section 2.1.3.2: raise ``InvalidProofError`` unless ``proof`` leads from the leaf
    at ``index`` to ``root`` in a tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise InvalidProofError(f"leaf {index} is not in a tree of {size} leaves")
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise InvalidProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            fn, sn = _to_set_bit(fn, sn)
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or r != root:
        raise InvalidProofError(f"the inclusion proof of leaf {index} does not lead to the root")


def verify_consistency(
    *, old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2: raise ``InvalidProofError`` unless ``proof`` shows that the tree of
    ``new_size`` leaves with ``new_root`` extends the one of ``old_size`` with ``old_root``."""
    if not 0 < old_size <= new_size:
        raise InvalidProofError(f"no consistency proof exists from {old_size} to {new_size} leaves")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise InvalidProofError("two trees of one size are consistent only with one root")
        return
    if not proof:
        raise InvalidProofError("the consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the proof's first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProofError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            fn, sn = _to_set_bit(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise InvalidProofError(f"the tree of {new_size} leaves does not extend the one of {old_size}")


def encode_proof(hashes: Sequence[bytes]) -> bytes:
    """``u8 count || count * bytes32``, as proofs travel (docs/PROTOCOL.md, "Key log")."""
    w = Writer("proof")
    if len(hashes) > MAX_PROOF_HASHES:
        raise ValueError(f"a proof has at most {MAX_PROOF_HASHES} hashes")
    w.u8(len(hashes))
    for h in hashes:
        w.fixed(h, HASH_BYTES, "proof hash")
    return w.getvalue()


def parse_proof(untrusted: bytes) -> list[bytes]:
    r = Reader(untrusted, "proof")
    count = r.u8()
    if count > MAX_PROOF_HASHES:
        raise r.fail(f"{count} hashes; a proof has at most {MAX_PROOF_HASHES}")
    hashes = [r.fixed(HASH_BYTES) for _ in range(count)]
    r.finish()
    return hashes


class Frontier:
    """The roots of the perfect subtrees of a tree of ``size`` leaves, largest first."""

    def __init__(self, size: int, hashes: list[bytes]) -> None:
        self.size = size
        self._hashes = hashes

    @classmethod
    def empty(cls) -> Frontier:
        return cls(0, [])

    @classmethod
    def of(cls, leaf_hashes: Sequence[bytes]) -> Frontier:
        frontier = cls.empty()
        for h in leaf_hashes:
            frontier.append(h)
        return frontier

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> None:
        """Add the next leaf: push it, then merge the two last subtrees while they are of one size
        (one merge per trailing 1 bit of the old size)."""
        self._hashes.append(leaf)
        merges, size = 0, self.size
        while size & 1:
            merges, size = merges + 1, size >> 1
        for _ in range(merges):
            right = self._hashes.pop()
            self._hashes[-1] = node_hash(self._hashes[-1], right)
        self.size += 1

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        r = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            r = node_hash(h, r)
        return r

    def encode(self) -> bytes:
        w = Writer("frontier").u64(self.size)
        for h in self._hashes:
            w.fixed(h, HASH_BYTES, "frontier hash")
        return w.getvalue()

    @classmethod
    def parse(cls, untrusted: bytes) -> Frontier:
        r = Reader(untrusted, "frontier")
        size = r.u64()
        if size >= 1 << 63:
            raise r.fail("a tree of 2^63 leaves or more")
        hashes = [r.fixed(HASH_BYTES) for _ in range(size.bit_count())]
        r.finish()
        return cls(size, hashes)
