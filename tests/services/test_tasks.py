"""Tasks and Alarm: the core's background work on a running loop, replaced, cancelled and logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

import pytest

from app.services.tasks import Tasks

WAIT_SECONDS = 5.0


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as running:
        yield running


@pytest.fixture
def tasks(runner: asyncio.Runner) -> Iterator[Tasks]:
    made = Tasks(runner.get_loop())
    yield made
    runner.run(made.close())


def _until(runner: asyncio.Runner, condition: Callable[[], bool], what: str) -> None:
    async def waiting() -> None:
        async with asyncio.timeout(WAIT_SECONDS):
            while not condition():
                await asyncio.sleep(0.001)

    try:
        runner.run(waiting())
    except TimeoutError:
        raise AssertionError(f"not within {WAIT_SECONDS} s: {what}") from None


def _fence(runner: asyncio.Runner, delay: float) -> None:
    """Run the loop until a call scheduled ``delay`` seconds from now has run (and all due before it)."""
    passed: list[bool] = []
    runner.get_loop().call_later(delay, passed.append, True)
    _until(runner, lambda: bool(passed), "the fence")


def test_an_alarm_set_again_replaces_the_earlier_one(runner: asyncio.Runner, tasks: Tasks) -> None:
    """Test that setting an alarm again drops the earlier call, even one due sooner."""
    rang: list[str] = []
    alarm = tasks.alarm()
    alarm.set(0.0, lambda: rang.append("earlier"))
    alarm.set(0.02, lambda: rang.append("later"))
    _until(runner, lambda: bool(rang), "the alarm rang")
    assert rang == ["later"]


def test_an_alarm_that_rang_can_be_set_again_and_a_past_time_rings_at_once(
    runner: asyncio.Runner, tasks: Tasks
) -> None:
    """Test that an alarm rings once per set, a negative delay meaning now."""
    rang: list[str] = []
    alarm = tasks.alarm()
    alarm.set(-30.0, lambda: rang.append("overdue"))
    _until(runner, lambda: len(rang) == 1, "the overdue alarm rang")
    alarm.set(0.0, lambda: rang.append("again"))
    _until(runner, lambda: len(rang) == 2, "the alarm rang again")
    _fence(runner, 0.01)
    assert rang == ["overdue", "again"]


def test_a_cancelled_alarm_does_not_ring(runner: asyncio.Runner, tasks: Tasks) -> None:
    """Test that cancel stops a pending call."""
    rang: list[str] = []
    alarm = tasks.alarm()
    alarm.set(0.0, lambda: rang.append("cancelled"))
    alarm.cancel()
    _fence(runner, 0.01)
    assert rang == []


def test_close_cancels_alarms_and_running_tasks(runner: asyncio.Runner, tasks: Tasks) -> None:
    """Test that closing cancels every pending alarm and every running background task."""
    rang: list[str] = []
    saw: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            saw.append("cancelled")
            raise

    task = tasks.spawn(forever(), name="forever")
    tasks.alarm().set(0.005, lambda: rang.append("alarm"))
    runner.run(asyncio.sleep(0))
    runner.run(tasks.close())
    assert task.cancelled() and saw == ["cancelled"]
    _fence(runner, 0.02)
    assert rang == []


def test_a_failing_background_task_is_logged_not_raised(
    runner: asyncio.Runner, tasks: Tasks, caplog: pytest.LogCaptureFixture
) -> None:
    """Test that an exception in a spawned task is logged with its traceback and reaches no caller."""
    caplog.set_level(logging.ERROR, logger="app.services.tasks")

    async def boom() -> None:
        raise RuntimeError("boom")

    task = tasks.spawn(boom())
    runner.run(asyncio.wait([task]))
    [record] = [r for r in caplog.records if r.name == "app.services.tasks"]
    assert record.levelno == logging.ERROR and "background task failed" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert str(record.exc_info[1]) == "boom"
    runner.run(tasks.close())  # a failed task does not make closing fail
