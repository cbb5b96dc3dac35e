"""Smoke test of bench/storage.py: a tiny run measures every variant and reports every ratio."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

BENCH_PATH = Path(__file__).resolve().parents[2] / "bench" / "storage.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("enclave_bench_storage", BENCH_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_storage_bench_runs_at_tiny_sizes(tmp_path: Path) -> None:
    """Test that a tiny run yields positive, finite timings for each variant, commit and open ratio."""
    bench = _load_bench()
    config = bench.Config(
        messages=300,
        sweep=30,
        history_small=50,
        history_large=400,
        page_reads=5,
        searches=3,
        single_commits=5,
        opens=2,
        memsec_scale=3,
    )
    result = bench.run(config, tmp_path)
    assert sorted(result.variants) == ["cipher", "cipher-scaled", "memsec-scaled", "plain"]
    for timings in result.variants.values():
        for value in (timings.insert_s, timings.page_ms, timings.search_ms, timings.sweep_s):
            assert math.isfinite(value) and value > 0
    assert set(result.commit_ms) == {"FULL", "NORMAL"} and all(v > 0 for v in result.commit_ms.values())
    assert math.isfinite(result.open_ratio) and result.open_ratio > 0
    text = bench.report(result)
    assert "cipher/plain" in text and ("MET" in text or "MISSED" in text)
    assert list(tmp_path.iterdir()) == [], "the bench removes its profiles"
