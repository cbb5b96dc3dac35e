"""Leases (app.base.leases): held while their process lives, however it ends."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.base.leases import CHECK_SECONDS, GRACE_SECONDS, SUFFIX, Lease, live_leases, stop_when_unleased
from tests.support.relay import REPO

HOLDER_SCRIPT = """
import sys
from pathlib import Path
from app.base.leases import Lease
lease = Lease.take(Path(sys.argv[1]))
print(lease.path, flush=True)
sys.stdin.read()
"""


def _after_grace() -> float:
    """A ``now`` at which every lease made so far is old enough to be judged by its lock."""
    return time.time() + GRACE_SECONDS + 1


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process holding a lease in ``tmp_path / "leases"``, and its lease file."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(tmp_path / "leases")],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    path = Path(process.stdout.readline().strip())
    yield process, path
    if process.poll() is None:
        process.kill()
    process.wait()


def test_a_lease_held_by_a_living_process_counts_after_the_grace(
    tmp_path: Path, holder: tuple[subprocess.Popen[str], Path]
) -> None:
    """Test that another process's lease counts, and is kept, when only its lock can tell."""
    _, path = holder
    assert live_leases(tmp_path / "leases", now=_after_grace()) == 1
    assert path.exists()


def test_a_lease_of_a_killed_process_is_not_counted_and_is_deleted(
    tmp_path: Path, holder: tuple[subprocess.Popen[str], Path]
) -> None:
    """Test that SIGKILL (no clean-up at all) ends a lease: it no longer counts, and its file goes."""
    process, path = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert path.exists()
    assert live_leases(tmp_path / "leases", now=_after_grace()) == 0
    assert not path.exists()


def test_a_new_unlocked_lease_counts_until_the_grace_ends(tmp_path: Path) -> None:
    """Test that a lease file not locked yet (just created) counts, and stops counting after the grace."""
    folder = tmp_path / "leases"
    folder.mkdir()
    (folder / ("taking" + SUFFIX)).write_bytes(b"")
    assert live_leases(folder) == 1
    assert live_leases(folder, now=_after_grace()) == 0


def test_a_released_lease_is_gone_and_others_remain(tmp_path: Path) -> None:
    """Test that release deletes only its own lease; the other held one still counts."""
    folder = tmp_path / "leases"
    mine, other = Lease.take(folder), Lease.take(folder)
    try:
        assert live_leases(folder, now=_after_grace()) == 2
        mine.release()
        mine.release()
        assert not mine.path.exists()
        assert live_leases(folder, now=_after_grace()) == 1
    finally:
        other.release()
    assert live_leases(folder, now=_after_grace()) == 0


def test_a_missing_folder_holds_no_lease(tmp_path: Path) -> None:
    """Test that a folder nobody made yet counts no lease (the relay then stops)."""
    assert live_leases(tmp_path / "absent") == 0


def test_the_watcher_sets_stop_once_the_last_lease_is_released(tmp_path: Path) -> None:
    """Test that stop_when_unleased leaves ``stop`` unset while a lease is held and sets it, and
    returns, within a check of the last lease's release."""
    lease = Lease.take(tmp_path / "leases")

    async def watch() -> None:
        stop = asyncio.Event()
        watcher = asyncio.create_task(stop_when_unleased(tmp_path / "leases", stop))
        await asyncio.sleep(2 * CHECK_SECONDS)
        assert not stop.is_set()
        lease.release()
        await asyncio.wait_for(watcher, timeout=2 * CHECK_SECONDS)
        assert stop.is_set()

    try:
        asyncio.run(watch())
    finally:
        lease.release()
