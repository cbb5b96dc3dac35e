"""The key log as the relay serves it: signed heads, entries, and consistency proofs.

The leaves live in the relay's store (``key_log``), appended in the transaction that
registers or revokes a device (server/store/). This process keeps their hashes in memory,
read once and then only the new ones, so a head is one frontier fold and a signature, and
a consistency proof never reads the database again. Several relay processes on one
PostgreSQL database each do so, and sign the same head for the same leaves (Ed25519 is
deterministic), with the one ``log.key`` they share.

The relay holds the log key, so it could sign a head of a rewritten log or show different
devices different logs; what it cannot do is make a reader who kept an earlier head, or
who compares heads with a colleague, take either (app/protocol/logview.py).
"""

from __future__ import annotations

import asyncio

from app.crypto.merkle import Frontier, consistency_proof, leaf_hash
from app.protocol.checkpoint import Checkpoint, sign_checkpoint
from app.protocol.logview import log_origin
from server.store.base import RelayStore

READ_BATCH = 10_000
"""Leaves read from the store at a time when catching up."""


class KeyLog:
    def __init__(self, store: RelayStore, *, log_public: bytes, log_secret: bytes) -> None:
        self._store = store
        self._secret = log_secret
        self.origin = log_origin(log_public)
        self._leaves: list[bytes] = []
        self._frontier = Frontier.empty()
        self._note = b""
        self._noted_size = -1
        self._lock = asyncio.Lock()

    async def _catch_up(self) -> int:
        """Read the leaves appended since the last call; the log's size."""
        size = await self._store.log_size()
        while len(self._leaves) < size:
            for entry in await self._store.log_entries(len(self._leaves), READ_BATCH):
                self._leaves.append(leaf_hash(entry))
                self._frontier.append(self._leaves[-1])
        return len(self._leaves)

    async def head(self) -> bytes:
        """The signed checkpoint of the whole log as it is now."""
        async with self._lock:
            size = await self._catch_up()
            if size != self._noted_size:
                checkpoint = Checkpoint(self.origin, size, self._frontier.root())
                self._note = sign_checkpoint(checkpoint, key_name=self.origin, secret_key=self._secret)
                self._noted_size = size
            return self._note

    async def entries(self, start: int, count: int) -> list[bytes]:
        return await self._store.log_entries(start, count)

    async def consistency(self, old_size: int, new_size: int) -> list[bytes] | None:
        """RFC 9162's proof from ``old_size`` to ``new_size`` leaves, or None if the log is not that
        large or the sizes are not ``0 < old_size <= new_size``."""
        async with self._lock:
            size = await self._catch_up()
        if not 0 < old_size <= new_size <= size:
            return None
        return consistency_proof(self._leaves, old_size, new_size)
