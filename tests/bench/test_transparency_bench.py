"""Smoke test of bench/transparency.py: the benchmark runs on small logs and reports what it measures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH_PATH = Path(__file__).resolve().parents[2] / "bench" / "transparency.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("enclave_bench_transparency", BENCH_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_transparency_bench_measures_every_size() -> None:
    """Test that a tiny run gives, per size, positive times, proof bytes that grow with the log, and an
    audit that reads every entry."""
    bench = _load_bench()
    small, large = bench.run([16, 300], samples=5)
    assert (small.devices, large.devices) == (16, 300)
    for r in (small, large):
        assert (
            r.check_seconds > 0 and r.audit_seconds > 0 and r.floor_seconds > 0 and r.head_check_seconds > 0
        )
        assert r.audit_bytes > r.devices * 100
    assert large.check_bytes > small.check_bytes
