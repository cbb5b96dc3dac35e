"""Work the core starts and nobody awaits: background coroutines and alarms, ended together.

Every part that runs something later gets its ``Tasks`` in its constructor, so closing
the profile cancels all of it in one place and no failure goes unlogged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine

log = logging.getLogger(__name__)


class Alarm:
    """One pending call at a time: setting it again replaces the earlier one."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None

    def set(self, delay: float, callback: Callable[[], None]) -> None:
        self.cancel()
        self._handle = self._loop.call_later(max(0.0, delay), self._ring, callback)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _ring(self, callback: Callable[[], None]) -> None:
        self._handle = None
        callback()


class Tasks:
    """The worker loop's background work for one open profile."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._running: set[asyncio.Task[None]] = set()
        self._alarms: list[Alarm] = []

    def spawn(self, coroutine: Coroutine[None, None, None], name: str | None = None) -> asyncio.Task[None]:
        """Run a coroutine nobody awaits; a failure is logged, never lost."""
        task = self.loop.create_task(coroutine, name=name)
        self._running.add(task)
        task.add_done_callback(self._finished)
        return task

    def alarm(self) -> Alarm:
        alarm = Alarm(self.loop)
        self._alarms.append(alarm)
        return alarm

    async def close(self) -> None:
        for alarm in self._alarms:
            alarm.cancel()
        running = list(self._running)
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a background task failed", exc_info=task.exception())
