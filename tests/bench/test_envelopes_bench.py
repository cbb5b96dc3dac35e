"""Smoke test of bench/envelopes.py: every kind of message it seals lands in one of the few sizes,
and the cost it reports is the padded bytes over the unpadded."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from app.crypto.sealed import SEALED_SIZES

BENCH_PATH = Path(__file__).resolve().parents[2] / "bench" / "envelopes.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("enclave_bench_envelopes", BENCH_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_kind_is_sealed_to_a_bucket_and_the_cost_is_measured() -> None:
    """Test that each message of the mix seals to one of SEALED_SIZES, never below its unpadded
    size; that receipts, a short text and a timer change share one size; and that the mix's
    ratio lies among the kinds' own."""
    bench = _load_bench()
    results = {r.kind: r for r in bench.run()}
    assert all(r.padded in SEALED_SIZES and r.padded >= r.unpadded for r in results.values())
    alike = {"receipt (delivered)", "receipt (read)", "text, 60 characters", "timer change"}
    assert len({results[kind].padded for kind in alike}) == 1
    assert len({r.unpadded for r in results.values()}) > 3  # unpadded, the kinds would differ
    ratio = bench.mix_ratio(list(results.values()))
    each = [r.padded / r.unpadded for r in results.values()]
    assert 1 < min(each) <= ratio <= max(each)  # a weighted mean of the kinds' costs
