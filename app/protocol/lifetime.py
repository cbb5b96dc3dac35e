"""How long a relay keeps an envelope: one lifetime for every kind, ending on a whole day.

A receipt, a timer change, a plain message and a disappearing message all get the same
expiry, and expiries are whole multiples of a day (00:00 UTC), rounded down so that no
envelope waits longer than the lifetime (the certificate and signed-prekey graces of
docs/PROTOCOL.md count on that). An expiry at the relay therefore tells neither the kind,
nor the timer, nor the second it was sent: only the day. A disappearing message's timer
travels sealed and is applied by the devices; the cost is that an undelivered one may
wait, encrypted, at the relay up to the whole lifetime (docs/PROTOCOL.md section 9).
"""

from __future__ import annotations

ENVELOPE_LIFETIME_SECONDS = 30 * 24 * 3600
"""The longest an undelivered envelope waits at the relay (which caps it at its retention)."""
EXPIRY_BUCKET_SECONDS = 24 * 3600
"""Expiries are whole multiples of this (00:00 UTC)."""


def whole_day(at: int) -> int:
    """The last bucket boundary at or before ``at`` (Unix seconds)."""
    return at // EXPIRY_BUCKET_SECONDS * EXPIRY_BUCKET_SECONDS


def envelope_expiry(now: float) -> int:
    """The ``expires_at`` of any envelope sealed at ``now``: 29 to 30 days ahead."""
    return whole_day(int(now) + ENVELOPE_LIFETIME_SECONDS)


def relay_expiry(now: int, retention: int) -> int:
    """Until when a relay with ``retention`` keeps any envelope it takes at ``now``: the last
    boundary within its retention, or the next one if its retention is under a day."""
    return max(whole_day(now + retention), whole_day(now) + EXPIRY_BUCKET_SECONDS)
