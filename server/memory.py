"""Give memory the relay has freed back to the system, so that a flood's peak does not stay.

Every connection costs the relay about 300 KiB while it is open, most of it the 256 KiB
read buffer asyncio's TLS layer gives it (app/base/guard.py). When connections close,
Python frees all of that, but glibc's allocator keeps the freed memory in its heap
for reuse rather than return it: a buffer of 256 KiB is above glibc's first mmap
threshold, yet freeing one raises that threshold, so later buffers come from the heap,
and a heap hands pages back only from its top, which some live allocation almost
always holds. Measured with bench/flood.py (256 connections from one address, the
default cap): the relay's RSS went from 52 MB to about 130 MB and stayed there after
every connection had closed; ``malloc_trim(0)``, which also releases the free pages in
the middle of each heap (glibc 2.8 and later), brought it back to 55-60 MB.

So the relay calls it every ``TRIM_SECONDS``. A call with little to give back costs
well under a millisecond. Elsewhere than on glibc (musl, macOS, Windows) it does
nothing; those allocators have their own policies.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import sys
from collections.abc import Callable

TRIM_SECONDS = 5.0


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is None:
        return None  # not glibc
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def give_back_memory() -> bool:
    """Return the allocator's free pages to the system; True if there were any (glibc only)."""
    trim = _malloc_trim()
    return trim is not None and trim(0) == 1


async def give_back_memory_forever(seconds: float = TRIM_SECONDS) -> None:
    """``give_back_memory`` every ``seconds``, until cancelled."""
    while True:
        await asyncio.sleep(seconds)
        give_back_memory()
