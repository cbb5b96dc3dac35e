"""RFC 9162's tree, proofs and the reader's frontier (app/crypto/merkle.py)."""

from __future__ import annotations

import hashlib

import pytest

from app.base.errors import InvalidProofError, RemoteProtocolError
from app.crypto.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    encode_proof,
    inclusion_proof,
    leaf_hash,
    parse_proof,
    root,
    verify_consistency,
    verify_inclusion,
)

# The RFC 6962 reference leaves and roots, as Certificate Transparency and
# transparency-dev/merkle publish them (testonly/constants.go): data only.
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CONSISTENCY = [
    (
        2,
        8,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
HASHES = [leaf_hash(e) for e in LEAVES]
MANY = [leaf_hash(n.to_bytes(2, "big")) for n in range(40)]


def _flipped(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


def test_roots_are_the_reference_roots() -> None:
    """Test that the empty tree and every prefix of the reference leaves have RFC 6962's roots."""
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert [root(HASHES[:n]).hex() for n in range(1, 9)] == ROOTS


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION)
def test_inclusion_proofs_are_the_reference_proofs(index: int, size: int, expected: list[str]) -> None:
    """Test that the published inclusion proofs are what this module makes, and that they verify."""
    proof = inclusion_proof(HASHES, index, size)
    assert [h.hex() for h in proof] == expected
    verify_inclusion(
        leaf_hash=HASHES[index], index=index, size=size, proof=proof, root=bytes.fromhex(ROOTS[7])
    )


@pytest.mark.parametrize(("old", "new", "expected"), CONSISTENCY)
def test_consistency_proofs_are_the_reference_proofs(old: int, new: int, expected: list[str]) -> None:
    """Test that the published consistency proofs are what this module makes, and that they verify."""
    proof = consistency_proof(HASHES, old, new)
    assert [h.hex() for h in proof] == expected
    verify_consistency(
        old_size=old,
        new_size=new,
        old_root=bytes.fromhex(ROOTS[old - 1]),
        new_root=bytes.fromhex(ROOTS[new - 1]),
        proof=proof,
    )


def test_every_inclusion_proof_verifies_and_every_change_to_it_fails() -> None:
    """Test that for every tree of up to 40 leaves each leaf's proof verifies, and that another index,
    the next size with its root, another leaf, a flipped proof hash, a shorter or longer proof, or
    another root fail."""
    for size in range(1, len(MANY) + 1):
        r = root(MANY[:size])
        for index in range(size):
            proof = inclusion_proof(MANY, index, size)
            verify_inclusion(leaf_hash=MANY[index], index=index, size=size, proof=proof, root=r)
            wrong = [
                {"index": (index + 1) % size} if size > 1 else {"index": 1},
                {"size": size + 1, "root": root(MANY[: size + 1])} if size < len(MANY) else {"size": index},
                {"leaf_hash": _flipped(MANY[index])},
                {"root": _flipped(r)},
                {"proof": [*proof, MANY[0]]},
            ]
            if proof:
                wrong += [{"proof": proof[:-1]}, {"proof": [_flipped(proof[0]), *proof[1:]]}]
            for change in wrong:
                arguments = {
                    "leaf_hash": MANY[index],
                    "index": index,
                    "size": size,
                    "proof": proof,
                    "root": r,
                }
                arguments.update(change)  # type: ignore[arg-type]
                with pytest.raises(InvalidProofError):
                    verify_inclusion(**arguments)  # type: ignore[arg-type]


def test_every_consistency_proof_verifies_and_every_change_to_it_fails() -> None:
    """Test that for every pair of sizes up to 40 the proof verifies, and that a flipped hash, a
    dropped or added hash, or either root changed fails."""
    roots = [root(MANY[:n]) for n in range(len(MANY) + 1)]
    for new in range(1, len(MANY) + 1):
        for old in range(1, new + 1):
            proof = consistency_proof(MANY, old, new)
            good = {
                "old_size": old,
                "new_size": new,
                "old_root": roots[old],
                "new_root": roots[new],
                "proof": proof,
            }
            verify_consistency(**good)  # type: ignore[arg-type]
            wrong: list[dict[str, object]] = [
                {"old_root": _flipped(roots[old])},
                {"new_root": _flipped(roots[new])},
                {"proof": [*proof, MANY[0]]},
            ]
            if proof:
                wrong += [{"proof": proof[:-1]}, {"proof": [*proof[:-1], _flipped(proof[-1])]}]
            for change in wrong:
                with pytest.raises(InvalidProofError):
                    verify_consistency(**{**good, **change})  # type: ignore[arg-type]


def test_impossible_sizes_are_refused() -> None:
    """Test that a proof from the empty tree, from a larger tree, or of a leaf past the end is refused."""
    with pytest.raises(InvalidProofError):
        verify_consistency(old_size=0, new_size=3, old_root=EMPTY_ROOT, new_root=root(MANY[:3]), proof=[])
    with pytest.raises(InvalidProofError):
        verify_consistency(old_size=4, new_size=3, old_root=root(MANY[:4]), new_root=root(MANY[:3]), proof=[])
    with pytest.raises(InvalidProofError):
        verify_inclusion(leaf_hash=MANY[3], index=3, size=3, proof=[], root=root(MANY[:3]))
    with pytest.raises(ValueError):
        inclusion_proof(MANY, 5, 5)
    with pytest.raises(ValueError):
        consistency_proof(MANY, 0, 5)


def test_the_frontier_gives_every_root_and_round_trips() -> None:
    """Test that a frontier appended leaf by leaf has the tree's root at every size up to 70, one
    hash per set bit of its size, and parses back from its encoding."""
    leaves = [leaf_hash(n.to_bytes(2, "big")) for n in range(70)]
    frontier = Frontier.empty()
    assert frontier.root() == EMPTY_ROOT
    for size in range(1, 71):
        frontier.append(leaves[size - 1])
        assert frontier.size == size and frontier.root() == root(leaves[:size])
        assert len(frontier.hashes) == size.bit_count()
        again = Frontier.parse(frontier.encode())
        assert again.size == size and again.hashes == frontier.hashes


def test_a_frontier_with_the_wrong_number_of_hashes_is_refused() -> None:
    """Test that a frontier whose hashes do not match its size's set bits does not parse."""
    encoded = Frontier.of(MANY[:5]).encode()  # 5 = 0b101: two hashes
    for bad in (encoded[:-32], encoded + bytes(32), (6).to_bytes(8, "big") + encoded[8:-32] + bytes(1)):
        with pytest.raises(RemoteProtocolError):
            Frontier.parse(bad)
    with pytest.raises(RemoteProtocolError):
        Frontier.parse((1 << 63).to_bytes(8, "big"))


def test_proofs_round_trip_and_malformed_ones_are_refused() -> None:
    """Test that a proof's encoding parses back, and a truncated, extended or over-long one does not."""
    proof = inclusion_proof(MANY, 3, 40)
    encoded = encode_proof(proof)
    assert encoded[0] == len(proof) and parse_proof(encoded) == proof
    for bad in (encoded[:-1], encoded + b"\x00", bytes([65]) + bytes(65 * 32), b""):
        with pytest.raises(RemoteProtocolError):
            parse_proof(bad)
