"""Smoke test of bench/crypto.py: the benchmark runs and reports a rate for everything it measures."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

BENCH_PATH = Path(__file__).resolve().parents[2] / "bench" / "crypto.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("enclave_bench_crypto", BENCH_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_crypto_bench_runs_every_library_and_pattern() -> None:
    """Test that a tiny benchmark run yields one positive, finite rate per (library, pattern)."""
    bench = _load_bench()
    results = bench.run(messages=20, rounds=1)
    pairs = [(r.library, r.pattern) for r in results]
    assert sorted(pairs) == sorted((lib, pattern) for lib in bench.LIBRARIES for pattern in bench.PATTERNS)
    for result in results:
        assert math.isfinite(result.messages_per_second) and result.messages_per_second > 0, result
