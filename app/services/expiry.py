"""The expiry schedule: the store's disappearing-message sweeper, woken on the worker loop.

The sweeper (``storage.sweeper``) knows the earliest expiry and asks for an alarm at
that time; here the alarm is set on the loop, and what a sweep deleted is told to the
face so it leaves the screen too.
"""

from __future__ import annotations

from app.services.clock import Clock
from app.services.events import Emitter, MessagesExpired
from app.services.tasks import Tasks
from storage.store import Store
from storage.sweeper import ExpirySweeper


class ExpirySchedule:
    def __init__(self, store: Store, *, emitter: Emitter, tasks: Tasks, clock: Clock) -> None:
        self._emitter = emitter
        self._clock = clock
        self._alarm = tasks.alarm()
        self._sweeper = ExpirySweeper(store, self._schedule)

    def close(self) -> None:
        self._sweeper.close()

    def _schedule(self, at: float | None) -> None:
        if at is None:
            self._alarm.cancel()
        else:
            self._alarm.set(at - self._clock(), self._sweep)

    def _sweep(self) -> None:
        deleted = self._sweeper.fire()
        if deleted:
            self._emitter.emit(MessagesExpired(tuple(deleted)))
