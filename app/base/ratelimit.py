"""Per-key token buckets, in memory: enrolment attempts, bundle fetches, directory look-ups,
attachment bytes.

Keys (a device id, or for enrolment the peer address) live only in this process's
memory, are never logged, and are forgotten once their bucket is full again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

HOUR_SECONDS = 3600.0


class RateLimiter:
    """``capacity`` tokens per key, refilled evenly over ``window_seconds`` (a minute unless said)."""

    def __init__(self, capacity: int, clock: Callable[[], float], *, window_seconds: float = 60.0) -> None:
        self._capacity = float(capacity)
        self._rate = capacity / window_seconds
        self._clock = clock
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def holds(self, key: Hashable, amount: float) -> bool:
        """Whether ``key``'s bucket holds ``amount`` tokens now (taking none)."""
        return self.available(key) >= amount

    def available(self, key: Hashable) -> float:
        """The tokens ``key``'s bucket holds now (taking none)."""
        return self._tokens(key, self._clock())

    def allow(self, key: Hashable, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens for ``key``; False, taking none, when its bucket holds fewer."""
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - cost, now)
        if len(self._buckets) > 10_000:
            self._forget_full(now)
        return True

    def _tokens(self, key: Hashable, now: float) -> float:
        tokens, last = self._buckets.get(key, (self._capacity, now))
        return min(self._capacity, tokens + (now - last) * self._rate)

    def _forget_full(self, now: float) -> None:
        for key, (tokens, last) in list(self._buckets.items()):
            if tokens + (now - last) * self._rate >= self._capacity:
                del self._buckets[key]
