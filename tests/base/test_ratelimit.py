"""The in-memory token buckets (app/base/ratelimit.py): per key, refilled over their window,
charged by cost."""

from __future__ import annotations

from app.base.ratelimit import RateLimiter
from tests.storage.harness import FakeClock


def test_a_key_gets_its_capacity_then_refills_evenly_over_its_window() -> None:
    """Test that a key takes its capacity at once, is refused the next token, and gets one back
    after a window's share of time; another key is untouched."""
    clock = FakeClock(1000.0)
    limiter = RateLimiter(3, clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")
    clock.advance(20)  # a third of a minute: one token of three
    assert limiter.allow("a") and not limiter.allow("a")


def test_a_cost_is_taken_whole_or_not_at_all_and_holds_takes_nothing() -> None:
    """Test that a cost larger than what is left is refused without taking any of it, that holds
    answers without taking, and that an hourly budget refills by the hour."""
    clock = FakeClock(1000.0)
    budget = RateLimiter(10_000, clock, window_seconds=3600)
    assert budget.allow(7, cost=6000)
    assert budget.holds(7, 4000) and not budget.holds(7, 4001)
    assert not budget.allow(7, cost=5000)
    assert budget.allow(7, cost=4000) and not budget.holds(7, 1)
    clock.advance(1800)
    assert budget.holds(7, 5000) and not budget.holds(7, 5001)
