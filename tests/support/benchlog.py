"""The organisation's key log for devices that have no relay (tests/support/devices.py's bench).

It answers the three requests ``Transparency`` makes of a relay (docs/PROTOCOL.md, "The
relay's log") from a list in memory, with the real tree, proofs and signed heads of
app/crypto/merkle.py and app/protocol/checkpoint.py: a stand-in for the relay's HTTP paths
only, which the bench does not run (tests/server/test_keylog.py tests the real ones).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import nacl.utils

from app.base.errors import RelayRefusedError
from app.crypto.certificate import DeviceCertificate
from app.crypto.merkle import Frontier, consistency_proof, encode_proof, leaf_hash
from app.crypto.primitives import ed25519_keypair_from_seed
from app.protocol.checkpoint import Checkpoint, sign_checkpoint
from app.protocol.logentry import device_added_entry
from app.protocol.logview import log_origin


class BenchLog:
    def __init__(self) -> None:
        self.public, self._secret = ed25519_keypair_from_seed(seed=nacl.utils.random(32))
        self.origin = log_origin(self.public)
        self.entries: list[bytes] = []
        self.requests: list[str] = []
        """Every path asked for, in order."""

    def fork(self, keep: int) -> BenchLog:
        """Another log under the same key holding the first ``keep`` entries of this one: what a
        relay that shows different people different logs would sign."""
        other = BenchLog()
        other.public, other._secret, other.origin = self.public, self._secret, self.origin
        other.entries = self.entries[:keep]
        return other

    def add(self, certificate: DeviceCertificate, at: int) -> None:
        self.entries.append(device_added_entry(at, certificate.encode()))

    def head(self, size: int | None = None) -> bytes:
        """The signed head of the first ``size`` leaves (all of them by default)."""
        leaves = self.entries[: len(self.entries) if size is None else size]
        root = Frontier.of([leaf_hash(e) for e in leaves]).root()
        return sign_checkpoint(
            Checkpoint(self.origin, len(leaves), root), key_name=self.origin, secret_key=self._secret
        )

    async def key_log(self, path: str, upload_token: bytes, limit: int) -> bytes:
        self.requests.append(path)
        parts = urlsplit(path)
        query = {name: int(values[0]) for name, values in parse_qs(parts.query).items()}
        if parts.path == "/v1/log/head":
            return self.head()
        if parts.path == "/v1/log/entries":
            page = self.entries[query["start"] : query["start"] + query["count"]]
            return b"".join(len(e).to_bytes(2, "big") + e for e in page)
        if parts.path == "/v1/log/consistency":
            leaves = [leaf_hash(e) for e in self.entries]
            return encode_proof(consistency_proof(leaves, query["old"], query["new"]))
        raise RelayRefusedError("HTTP 404", f"no {parts.path} on the bench's log")
