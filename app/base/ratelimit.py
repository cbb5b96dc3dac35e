"""Per-key token buckets, in memory: enrolment attempts, bundle fetches, directory look-ups.

Keys (a device id, or for enrolment the peer address) live only in this process's
memory, are never logged, and are forgotten once their bucket is full again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def allow(self, key: Hashable) -> bool:
        """Take one token for ``key``; False when its bucket is empty."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:
            self._forget_full(now)
        return True

    def _forget_full(self, now: float) -> None:
        for key, (tokens, last) in list(self._buckets.items()):
            if tokens + (now - last) * self._rate >= self._capacity:
                del self._buckets[key]
