"""What the relay and the enrolment authority log about requests that aiohttp handles, and how often.

aiohttp logs a bad request (a header that does not parse, a body that does not decode,
a client hanging up) on ``aiohttp.server`` with a full traceback and "from <address>".
Anyone can send those without a token, so left alone they would fill the log and put
client addresses in it, against docs/ADMIN.md. ``ClientErrorFilter`` sits on aiohttp's
loggers (and asyncio's, which warns "socket.send() raised exception." for every
write into a connection the client reset) and:

- turns a client's fault (``CLIENT_FAULTS`` anywhere in the exception's chain) into one
  line with no traceback and no address: INFO for bad input, DEBUG for a hang-up;
- keeps the traceback of anything else (a bug of ours), but drops the address;
- lets at most ``MAX_LINES`` such lines through per ``WINDOW_SECONDS``; past that it
  writes one line saying it is suppressing, and when the window ends (or the service
  stops: ``summarise_suppressed``) one summary line with how many it suppressed. A
  client can therefore add at most ``MAX_LINES + 2`` lines a minute, however fast it
  sends.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

AIOHTTP_LOGGERS = ("aiohttp.server", "aiohttp.access", "aiohttp.web", "aiohttp.websocket", "asyncio")
MAX_LINES = 10
WINDOW_SECONDS = 60.0
HANG_UPS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
CLIENT_FAULTS = (HttpProcessingError, web.RequestPayloadError, ssl.SSLError, *HANG_UPS)

log = logging.getLogger("enclave.requests")


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 16:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


class ClientErrorFilter(logging.Filter):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._window_start = clock()
        self._passed = 0
        self._suppressed = 0
        self._summary_scheduled = False

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        chain = _chain(exc)
        if any(isinstance(e, CLIENT_FAULTS) for e in chain):
            hang_up = all(not isinstance(e, CLIENT_FAULTS) or isinstance(e, HANG_UPS) for e in chain)
            names = " from ".join(type(e).__name__ for e in chain)
            record.levelno, record.levelname = (logging.DEBUG, "DEBUG") if hang_up else (logging.INFO, "INFO")
            record.msg = "a client hung up (%s)" if hang_up else "a client sent a bad request (%s)"
            record.args = (names,)
            record.exc_info, record.exc_text, record.stack_info = None, None, None
            if not logging.getLogger(record.name).isEnabledFor(record.levelno):
                return False
        elif isinstance(record.msg, str) and record.msg.startswith("Error handling request from"):
            record.msg, record.args = "Error handling request", ()
        return self._admit()

    def _admit(self) -> bool:
        now = self._clock()
        if now - self._window_start >= WINDOW_SECONDS:
            self.summarise()
            self._window_start, self._passed = now, 0
        if self._passed < MAX_LINES:
            self._passed += 1
            return True
        if self._suppressed == 0:
            log.warning(
                "more than %d lines about bad requests in %d s; suppressing them for the rest of the minute",
                MAX_LINES,
                int(WINDOW_SECONDS),
            )
            self._schedule_summary()
        self._suppressed += 1
        return False

    def _schedule_summary(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if not self._summary_scheduled:
            self._summary_scheduled = True
            delay = max(0.0, self._window_start + WINDOW_SECONDS - self._clock())
            loop.call_later(delay, self._scheduled_summary)

    def _scheduled_summary(self) -> None:
        self._summary_scheduled = False
        self.summarise()
        self._window_start, self._passed = self._clock(), 0

    def summarise(self) -> None:
        """Write the summary line of what was suppressed, if anything was."""
        if self._suppressed:
            log.warning("%d lines about bad requests were suppressed", self._suppressed)
            self._suppressed = 0


def summarise_suppressed() -> None:
    """Write the summary line of the filter on aiohttp's loggers now, if it is suppressing.

    Called when the service stops: the summary is otherwise written when the minute ends,
    which a process shutting down does not wait for, and the count would be lost.
    """
    for f in logging.getLogger(AIOHTTP_LOGGERS[0]).filters:
        if isinstance(f, ClientErrorFilter):
            f.summarise()


def tame_aiohttp_loggers() -> None:
    """Put one ``ClientErrorFilter`` on aiohttp's loggers; calling it again changes nothing."""
    loggers = [logging.getLogger(name) for name in AIOHTTP_LOGGERS]
    if any(isinstance(f, ClientErrorFilter) for f in loggers[0].filters):
        return
    shared = ClientErrorFilter()
    for logger in loggers:
        logger.addFilter(shared)
