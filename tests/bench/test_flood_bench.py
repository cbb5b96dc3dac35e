"""Smoke test of bench/flood.py: a tiny flood of each kind yields sound latencies and memory readings."""

from __future__ import annotations

import importlib

CAP = 8
ENVELOPES = 10


def test_flood_bench_measures_each_scenario() -> None:
    """Test that a tiny run holds the cap in every scenario and reports ordered latencies and RSS ratios."""
    # Imported by name, not from its path: the attacker runs in a process of its own, which imports it.
    bench = importlib.import_module("bench.flood")
    config = bench.Config(cap=CAP, envelopes=ENVELOPES, flood_seconds=0.5, settle_seconds=0.5)

    results = bench.run(config)

    assert [r.scenario for r in results] == list(bench.SCENARIOS)
    for r in results:
        assert r.held_peak >= CAP, r
        for latency in (r.quiet, r.flood):
            assert latency.envelopes >= ENVELOPES and 0 < latency.p50_ms <= latency.p99_ms, r
        assert min(r.rss_before_kib, r.rss_after_kib) > 0 and r.rss_during_kib >= r.rss_before_kib, r
    text = bench.report(results, config)
    assert all(scenario in text for scenario in bench.SCENARIOS) and "after x" in text
