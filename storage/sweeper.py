"""The disappearing-message timer, without a timer of its own.

Storage knows no event loop, so the caller owns the clock's alarm: it passes a
``schedule(at)`` callback (``at`` in unix seconds, or None for "nothing is due")
and calls ``fire()`` when that time comes. The sweeper keeps the alarm set to the
earliest expiry in the store: after each sweep, and whenever a transaction commits an
expiry earlier than the one armed. No polling: between expiries nothing runs.

In the client, ``schedule`` is ``loop.call_at`` on the core's asyncio loop (cancel the
previous handle first), and ``fire`` runs on that loop's thread, the store's own. The
start-up sweep is not here: ``Store.open`` does it before returning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.store import Store

log = logging.getLogger(__name__)

Schedule = Callable[[float | None], None]


class ExpirySweeper:
    def __init__(self, store: Store, schedule: Schedule) -> None:
        self._store = store
        self._schedule = schedule
        self._armed_at: float | None = None
        store.messages.expiry_listener = self._expiry_written
        self._arm()

    @property
    def armed_at(self) -> float | None:
        return self._armed_at

    def fire(self) -> list[int]:
        """The alarm went off: sweep what is due, re-arm, and return the deleted ids for the UI."""
        deleted = self._store.sweep()
        self._arm()
        return deleted

    def close(self) -> None:
        """Stop following the store's expiries and cancel the alarm."""
        self._store.messages.expiry_listener = None
        self._armed_at = None
        self._schedule(None)

    def _arm(self) -> None:
        self._armed_at = self._store.next_expiry()
        self._schedule(self._armed_at)

    def _expiry_written(self, at: float) -> None:
        if self._armed_at is None or at < self._armed_at:
            self._armed_at = at
            self._schedule(at)
