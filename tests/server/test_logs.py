"""The filter on aiohttp's loggers (app/base/requestlog.py), driven in-process with a clock of the test's."""

from __future__ import annotations

import logging

import pytest

from app.base.requestlog import (
    MAX_LINES,
    WINDOW_SECONDS,
    ClientErrorFilter,
    summarise_suppressed,
    tame_aiohttp_loggers,
)

SUMMARY = "lines about bad requests were suppressed"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _line() -> logging.LogRecord:
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", (), None)


def _summaries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "enclave.requests" and SUMMARY in r.getMessage()
    ]


def test_summarise_writes_how_many_were_suppressed_once(caplog: pytest.LogCaptureFixture) -> None:
    """Test that past MAX_LINES in a window the rest are suppressed, and summarise() writes their
    count in one line, once: a second call has nothing to say."""
    clock = Clock()
    taming = ClientErrorFilter(clock)
    with caplog.at_level(logging.INFO):
        passed = [taming.filter(_line()) for _ in range(MAX_LINES + 7)]
        assert passed == [True] * MAX_LINES + [False] * 7
        assert _summaries(caplog) == []
        taming.summarise()
        taming.summarise()
    assert _summaries(caplog) == [f"7 {SUMMARY}"]


def test_a_new_window_writes_the_summary_and_lets_lines_through(caplog: pytest.LogCaptureFixture) -> None:
    """Test that the first line after the window ends brings the summary and passes again."""
    clock = Clock()
    taming = ClientErrorFilter(clock)
    with caplog.at_level(logging.INFO):
        for _ in range(MAX_LINES + 3):
            taming.filter(_line())
        clock.now += WINDOW_SECONDS
        assert taming.filter(_line())
    assert _summaries(caplog) == [f"3 {SUMMARY}"]


def test_summarise_suppressed_flushes_the_filter_on_aiohttps_loggers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Test that summarise_suppressed(), what the relay calls as it stops, writes the count of
    the lines the installed filter suppressed in its current minute."""
    tame_aiohttp_loggers()
    installed = next(
        f for f in logging.getLogger("aiohttp.server").filters if isinstance(f, ClientErrorFilter)
    )
    summarise_suppressed()  # whatever an earlier test left
    with caplog.at_level(logging.INFO):
        caplog.clear()
        suppressed = [installed.filter(_line()) for _ in range(2 * MAX_LINES + 1)].count(False)
        summarise_suppressed()
    assert suppressed > 0
    assert _summaries(caplog) == [f"{suppressed} {SUMMARY}"]
