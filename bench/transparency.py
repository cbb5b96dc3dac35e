"""What the key log costs a reader: checking one colleague's key, and auditing the whole log.

For logs of 10,000 and 100,000 devices (one ``DEVICE_ADDED`` entry each, its certificate
signed by an authority key of the run), in the same run:

- **per-key check**: what a reader does before it first uses a colleague's key: verify the
  inclusion proof of the colleague's entry against a signed head it holds, parse the
  entry and check the authority's signature on its certificate. Time per key (mean over
  sampled keys) and bytes (the entry and the proof).
- **head check**: a colleague's head of half the log's size against the reader's, with the
  consistency proof between them: time and proof bytes.
- **audit**: a reader that knows nothing replays the whole log (``LogView.advance`` from the
  empty tree): every entry hashed into the frontier, parsed and its certificate checked,
  the root compared with the signed head. Time and bytes (the entries and the head).

Absolute times move with the machine, so each audit is also given as a ratio of its
floor in the same run: every entry parsed, hashed once with SHA-256 and its certificate's
Ed25519 signature verified, the work no audit can skip (a ratio near 1 means the log's bookkeeping costs
little beyond it). The targets are the issue's: the audit of 100,000 devices within
seconds (here at most 10 s) and the per-key check within milliseconds (at most 5 ms).
Run as ``.venv/bin/python bench/transparency.py [--sizes 10000 100000] [--samples 50]``.
"""

from __future__ import annotations

import argparse
import hashlib
import random as insecure_random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from nacl.utils import random

from app.crypto.certificate import DeviceCertificate
from app.crypto.keys import IdentityKeyPair
from app.crypto.merkle import (
    consistency_proof,
    encode_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_inclusion,
)
from app.crypto.primitives import SIGN_CONTEXT_DEVICE_CERTIFICATE, ed25519_keypair_from_seed, ed25519_verify
from app.protocol.checkpoint import Checkpoint, sign_checkpoint
from app.protocol.logentry import DeviceAdded, parse_entry
from app.protocol.logview import LogView, log_origin

DEFAULT_SIZES = (10_000, 100_000)
DEFAULT_SAMPLES = 50
AUDIT_TARGET_SECONDS = 10.0
CHECK_TARGET_SECONDS = 0.005


@dataclass(frozen=True, slots=True)
class Result:
    devices: int
    check_seconds: float
    check_bytes: int
    head_check_seconds: float
    head_check_bytes: int
    audit_seconds: float
    audit_bytes: int
    floor_seconds: float


class Log:
    """A log of ``devices`` device entries, its leaf hashes, and heads the log key signs."""

    def __init__(self, devices: int) -> None:
        self.authority = IdentityKeyPair.generate(random)
        self.log_public, self.log_secret = ed25519_keypair_from_seed(seed=random(32))
        self.entries = [self._entry(n) for n in range(devices)]
        self.leaves = [leaf_hash(e) for e in self.entries]

    def _entry(self, n: int) -> bytes:
        certificate = DeviceCertificate.issue(
            self.authority,
            account_id=f"official.{n // 2}",
            device_id=n + 1,
            identity_key=IdentityKeyPair.generate(random).public,
            expires_at=2_000_000_000,
        )
        return DeviceAdded(1_700_000_000 + n, certificate.encode(), certificate).encode()

    def head(self, size: int) -> bytes:
        origin = log_origin(self.log_public)
        checkpoint = Checkpoint(origin=origin, size=size, root=root(self.leaves[:size]))
        return sign_checkpoint(checkpoint, key_name=origin, secret_key=self.log_secret)


def _check_key(log: Log, index: int, head_root: bytes, proof: Sequence[bytes]) -> None:
    entry = log.entries[index]
    verify_inclusion(
        leaf_hash=leaf_hash(entry), index=index, size=len(log.entries), proof=proof, root=head_root
    )
    parsed = parse_entry(entry)
    assert isinstance(parsed, DeviceAdded)
    parsed.binding.verify(trust_root=log.authority.public, now=0)


def measure(devices: int, samples: int) -> Result:
    log = Log(devices)
    size = len(log.entries)
    note = log.head(size)
    head_root = root(log.leaves)
    chosen = insecure_random.Random(devices).sample(range(size), min(samples, size))
    proofs = {i: inclusion_proof(log.leaves, i, size) for i in chosen}
    started = time.perf_counter()
    for i in chosen:
        _check_key(log, i, head_root, proofs[i])
    check_seconds = (time.perf_counter() - started) / len(chosen)
    check_bytes = sum(len(log.entries[i]) + len(encode_proof(proofs[i])) for i in chosen) // len(chosen)

    view = LogView(log_key=log.log_public, authority_key=log.authority.public)
    started = time.perf_counter()
    advanced = view.advance(note, log.entries)
    audit_seconds = time.perf_counter() - started
    assert not advanced.problems and view.size == size

    half = log.head(size // 2)
    proof = consistency_proof(log.leaves, size // 2, size)
    started = time.perf_counter()
    view.check_head(half, proof)
    head_check_seconds = time.perf_counter() - started

    started = time.perf_counter()
    for entry in log.entries:
        hashlib.sha256(b"\x00" + entry).digest()
        parsed = parse_entry(entry)
        assert isinstance(parsed, DeviceAdded)
        body = parsed.certificate[: -len(parsed.binding.signature)]
        ed25519_verify(
            public_key=log.authority.public,
            context=SIGN_CONTEXT_DEVICE_CERTIFICATE,
            message=body,
            signature=parsed.binding.signature,
        )
    floor_seconds = time.perf_counter() - started
    return Result(
        devices=size,
        check_seconds=check_seconds,
        check_bytes=check_bytes,
        head_check_seconds=head_check_seconds,
        head_check_bytes=len(encode_proof(proof)) + len(half),
        audit_seconds=audit_seconds,
        audit_bytes=sum(map(len, log.entries)) + len(note),
        floor_seconds=floor_seconds,
    )


def run(sizes: Sequence[int], samples: int) -> list[Result]:
    return [measure(devices, samples) for devices in sizes]


def _report(results: Sequence[Result]) -> None:
    print("key log: per-key check, head check and whole-log audit, same run")
    print()
    print(
        f"{'devices':>8} {'check ms':>9} {'check B':>8} {'head ms':>8} {'head B':>7}"
        f" {'audit s':>8} {'audit MB':>9} {'audit/floor':>12}"
    )
    for r in results:
        print(
            f"{r.devices:>8,} {r.check_seconds * 1000:>9.3f} {r.check_bytes:>8,}"
            f" {r.head_check_seconds * 1000:>8.3f}"
            f" {r.head_check_bytes:>7,} {r.audit_seconds:>8.2f} {r.audit_bytes / 1e6:>9.2f}"
            f" {r.audit_seconds / r.floor_seconds:>11.2f}x"
        )
    print()
    largest = max(results, key=lambda r: r.devices)
    for what, value, target in (
        (f"audit of {largest.devices:,} devices", largest.audit_seconds, AUDIT_TARGET_SECONDS),
        (f"per-key check at {largest.devices:,} devices", largest.check_seconds, CHECK_TARGET_SECONDS),
    ):
        verdict = "MET" if value <= target else "MISSED"
        print(f"{what:<36} {value:>9.4f} s  target <= {target:g} s  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="devices per log")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="keys checked per log")
    args = parser.parse_args()
    if min(args.sizes) < 2 or args.samples < 1:
        parser.error("--sizes must be at least 2 and --samples at least 1")
    _report(run(args.sizes, args.samples))


if __name__ == "__main__":
    main()
