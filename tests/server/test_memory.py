"""server/memory.py: giving freed memory back to the system is harmless, and runs until cancelled."""

from __future__ import annotations

import asyncio
import platform
import sys

import pytest

from server import memory


def test_giving_memory_back_is_harmless_and_repeatable() -> None:
    """Test that give_back_memory can be called at any time, again and again, and leaves data intact."""
    kept = [bytes([i % 256]) * 1000 for i in range(10_000)]
    freed = [bytearray(300 * 1024) for _ in range(50)]
    del freed
    assert all(isinstance(memory.give_back_memory(), bool) for _ in range(3))
    assert all(block == bytes([i % 256]) * 1000 for i, block in enumerate(kept))


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_glibc_s_malloc_trim_is_found() -> None:
    """Test that on glibc the relay finds malloc_trim, so it does give memory back."""
    assert memory._malloc_trim() is not None


def test_the_relay_gives_memory_back_until_cancelled() -> None:
    """Test that give_back_memory_forever, with the real allocator call, keeps running round after
    round (a failing call would end the task) and stops only when cancelled."""

    async def scenario() -> None:
        task = asyncio.create_task(memory.give_back_memory_forever(seconds=0))
        for _ in range(50):
            await asyncio.sleep(0)
        assert not task.done(), task
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
