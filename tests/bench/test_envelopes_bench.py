"""Smoke test of bench/envelopes.py: every kind of message it seals lands in one of the few sizes,
and the cost it reports is the padded bytes over the unpadded."""

from __future__ import annotations

import importlib

from app.crypto.sealed import SEALED_SIZES


def test_every_kind_is_sealed_to_a_bucket_and_the_cost_is_measured() -> None:
    """Test that each message of the mix seals to one of SEALED_SIZES, never below its unpadded
    size; that receipts, a short text and a timer change share one size; and that the mix's
    ratio lies among the kinds' own."""
    bench = importlib.import_module("bench.envelopes")
    results = {r.kind: r for r in bench.run()}
    assert all(r.padded in SEALED_SIZES and r.padded >= r.unpadded for r in results.values())
    alike = {"receipt (delivered)", "receipt (read)", "text, 60 characters", "timer change"}
    assert len({results[kind].padded for kind in alike}) == 1
    assert len({r.unpadded for r in results.values()}) > 3  # unpadded, the kinds would differ
    ratio = bench.mix_ratio(list(results.values()))
    each = [r.padded / r.unpadded for r in results.values()]
    assert 1 < min(each) <= ratio <= max(each)  # a weighted mean of the kinds' costs
