"""Encrypted attachment files: streamed both ways, tamper and truncation detected, never orphaned."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from storage.attachfile import CHUNK_BYTES
from storage.errors import (
    AttachmentCorruptError,
    AttachmentMissingError,
    AttachmentTooLargeError,
    StoreFullError,
)
from storage.records import Conversation, MessageStatus, NewMessage
from storage.store import ATTACHMENTS_NAME, Store
from tests.conftest import require
from tests.storage.harness import FakeClock


class Pattern(io.RawIOBase):
    """``size`` bytes of a repeating pattern, produced on demand (never held whole)."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._block = bytes(range(256)) * 256

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left, len(self._block))
        buffer[:n] = self._block[:n]
        self._left -= n
        return n


def _message(store: Store, conversation: Conversation) -> int:
    return store.messages.add(
        NewMessage(conversation.id, os.urandom(8), "file", MessageStatus.SENT, sent_at=1)
    ).id


def _only_file(store: Store) -> Path:
    (path,) = list((store.profile_dir / ATTACHMENTS_NAME).iterdir())
    return path


def _drain(chunks: Iterator[bytes]) -> bytes:
    return b"".join(chunks)


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES])
def test_round_trip_at_chunk_boundaries(store: Store, direct: Conversation, size: int) -> None:
    """Test that files of every size around the chunk boundary come back byte for byte."""
    data = os.urandom(size)
    attachment = store.attachments.add(_message(store, direct), io.BytesIO(data), name="f", mime_type="x/y")
    assert attachment.size == size
    assert _drain(store.attachments.read(attachment.id)) == data
    raw = _only_file(store).read_bytes()
    assert raw.startswith(b"ENCATT\x01") and (size < 16 or data[:16] not in raw)
    assert _only_file(store).stat().st_mode & 0o777 == 0o600


def test_large_file_is_streamed_not_held(store: Store, direct: Conversation, tmp_path: Path) -> None:
    """Test that encrypting and exporting a 24 MiB file never holds more than a few chunks in memory."""
    size = 24 * 1024 * 1024
    message = _message(store, direct)
    tracemalloc.start()
    try:
        attachment = store.attachments.add(
            message, io.BufferedReader(Pattern(size)), name="big", mime_type="x/y"
        )
        exported = store.attachments.export(attachment.id, tmp_path / "out.bin")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert exported == size
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes: the file was held in memory"
    expected = hashlib.sha256()
    source: BinaryIO = io.BufferedReader(Pattern(size))
    while block := source.read(1 << 20):
        expected.update(block)
    assert hashlib.sha256((tmp_path / "out.bin").read_bytes()).digest() == expected.digest()


def test_truncated_file_is_detected(store: Store, direct: Conversation, tmp_path: Path) -> None:
    """Test that a file cut at a chunk boundary fails at its end, and export leaves no partial file."""
    attachment = store.attachments.add(
        _message(store, direct), io.BytesIO(os.urandom(3 * CHUNK_BYTES)), name="f", mime_type="x/y"
    )
    path = _only_file(store)
    with path.open("r+b") as f:
        f.truncate(7 + 24 + 2 * (CHUNK_BYTES + 17))
    with pytest.raises(AttachmentCorruptError, match="truncated"):
        _drain(store.attachments.read(attachment.id))
    with pytest.raises(AttachmentCorruptError):
        store.attachments.export(attachment.id, tmp_path / "out.bin")
    assert list(tmp_path.glob("out.bin*")) == []


@pytest.mark.parametrize("where", ["flip", "append", "header"])
def test_altered_file_is_detected(store: Store, direct: Conversation, where: str) -> None:
    """Test that a flipped byte, appended bytes or a replaced header make reading fail."""
    attachment = store.attachments.add(
        _message(store, direct), io.BytesIO(os.urandom(CHUNK_BYTES + 10)), name="f", mime_type="x/y"
    )
    path = _only_file(store)
    data = bytearray(path.read_bytes())
    if where == "flip":
        data[100] ^= 1
    elif where == "append":
        data += b"extra"
    else:
        data[:6] = b"PKZIP!"
    path.write_bytes(bytes(data))
    with pytest.raises(AttachmentCorruptError):
        _drain(store.attachments.read(attachment.id))


def test_missing_file(store: Store, direct: Conversation) -> None:
    """Test that an attachment whose file was deleted raises AttachmentMissingError."""
    attachment = store.attachments.add(_message(store, direct), io.BytesIO(b"x"), name="f", mime_type="x/y")
    _only_file(store).unlink()
    with pytest.raises(AttachmentMissingError):
        _drain(store.attachments.read(attachment.id))


def test_too_large_leaves_nothing(store: Store, direct: Conversation) -> None:
    """Test that a file over the limit is refused and leaves neither file nor row."""
    message = _message(store, direct)
    with pytest.raises(AttachmentTooLargeError):
        store.attachments.add(message, io.BytesIO(b"x" * 5000), name="f", mime_type="x/y", limit=4096)
    assert list((store.profile_dir / ATTACHMENTS_NAME).iterdir()) == []
    assert store.attachments.of_message(message) == []


def test_rolled_back_transaction_removes_the_file(store: Store, direct: Conversation) -> None:
    """Test that an attachment added in a transaction that rolls back leaves no file behind."""
    message = _message(store, direct)
    with pytest.raises(RuntimeError), store.transaction():
        store.attachments.add(message, io.BytesIO(b"x" * 10), name="f", mime_type="x/y")
        raise RuntimeError("abort")
    assert list((store.profile_dir / ATTACHMENTS_NAME).iterdir()) == []


def test_stray_files_are_collected_on_open(
    store: Store, direct: Conversation, passphrase: object, clock: FakeClock
) -> None:
    """Test that files with no row (a crash mid-way) and stale temp files are deleted when the store opens."""
    folder = store.profile_dir / ATTACHMENTS_NAME
    kept = store.attachments.add(_message(store, direct), io.BytesIO(b"keep"), name="f", mime_type="x/y")
    (folder / ("ab" * 16)).write_bytes(b"orphan")
    (folder / ("cd" * 16 + ".tmp")).write_bytes(b"half")
    (folder / "README.txt").write_bytes(b"not ours")
    store.close()
    with Store.open(store.profile_dir, passphrase, clock=clock) as reopened:  # type: ignore[arg-type]
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [_name_of(folder, "ab", "cd"), "README.txt"]
        )
        assert _drain(reopened.attachments.read(kept.id)) == b"keep"


def _name_of(folder: Path, *not_prefixes: str) -> str:
    (name,) = [p.name for p in folder.iterdir() if p.name != "README.txt" and p.name[:2] not in not_prefixes]
    return name


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a real full disk (needs root to mount)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount_point)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    require(mounted, "mounting a small tmpfs needs root")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_full_disk_raises_store_full_and_keeps_what_was_committed(
    tiny_disk: Path, passphrase: object, clock: FakeClock
) -> None:
    """Test that a full disk (a real 2 MiB tmpfs) raises StoreFullError and keeps what was committed."""
    from storage.records import ConversationKind

    with Store.create(tiny_disk / "profile", passphrase, clock=clock) as store:  # type: ignore[arg-type]
        conversation = store.conversations.create(ConversationKind.DIRECT, peer_account_id="h@ministry")
        message = _message(store, conversation)
        with pytest.raises(StoreFullError, match=r"disk .* is full"):
            store.attachments.add(message, io.BytesIO(os.urandom(3 * 1024 * 1024)), name="f", mime_type="x/y")
        assert list((store.profile_dir / ATTACHMENTS_NAME).iterdir()) == []
        stored = 1
        with pytest.raises(StoreFullError):
            for i in range(10_000):
                store.messages.add(
                    NewMessage(
                        conversation.id,
                        f"n{i}".encode(),
                        os.urandom(2000).hex(),
                        MessageStatus.SENT,
                        sent_at=i,
                    )
                )
                stored += 1
        assert store.messages.count() == stored
