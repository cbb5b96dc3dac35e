"""The clock the core reads: unix seconds, injected so that tests can choose the time."""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]


def millis(clock: Clock) -> int:
    return int(clock() * 1000)
