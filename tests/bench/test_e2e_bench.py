"""Smoke test of bench/e2e.py: a tiny run delivers everything and reports sound numbers and shares."""

from __future__ import annotations

import importlib.util
import inspect
import math
import sys
from pathlib import Path
from types import ModuleType

from app.crypto.session import Session
from storage.database import Database

BENCH_PATH = Path(__file__).resolve().parents[2] / "bench" / "e2e.py"
PAIRS = 2
MESSAGES = 3


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("enclave_bench_e2e", BENCH_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_e2e_bench_delivers_everything_and_accounts_for_the_time() -> None:
    """Test that a tiny run delivers every message, orders its percentiles, and its shares add up to 100 %."""
    bench = _load_bench()
    originals = [inspect.getattr_static(Session, "encrypt"), inspect.getattr_static(Database, "transaction")]

    result = bench.run(pairs=PAIRS, messages=MESSAGES)

    assert (result.solo.pairs, result.loaded.pairs) == (1, PAIRS)
    assert (result.solo.delivered, result.loaded.delivered) == (MESSAGES, PAIRS * MESSAGES)
    for phase in (result.solo, result.loaded):
        assert math.isfinite(phase.messages_per_second) and phase.messages_per_second > 0, phase
        assert 0 < phase.p50_ms <= phase.p99_ms, phase
        # Each message's event comes after its commit, so every order statistic does too.
        assert phase.arrived_p50_ms >= phase.p50_ms and phase.arrived_p99_ms >= phase.p99_ms, phase
        shares = phase.shares
        parts = (shares.crypto, shares.storage, shares.transport)
        assert math.isclose(sum(parts), 100.0, abs_tol=1e-6) and min(parts) >= 0, shares
        assert shares.crypto > 0 and shares.storage > 0, "the instrumentation saw no crypto or storage"
        assert phase.cpu.crypto > 0 and phase.cpu.storage > 0, phase.cpu
        assert phase.raw.delivered == 2 * phase.pairs * MESSAGES, phase.raw
        # Every message came back delivered, by one receipt envelope of its own or one it shares.
        receipts = phase.receipts_per_message * phase.delivered
        assert 0 < phase.receipts_per_message <= 1 and math.isclose(receipts, round(receipts)), phase
    text = bench.report(result)
    assert "one pair alone" in text and f"{PAIRS} pairs at once" in text and "transport" in text
    assert "receipt envelopes per message" in text
    assert [inspect.getattr_static(Session, "encrypt"), inspect.getattr_static(Database, "transaction")] == (
        originals
    ), "the bench leaves the code under test as it found it"
