"""Attachments: an encrypted file per attachment, its fresh key in the (encrypted) database.

The file is written before its row; a transaction that rolls back removes the file
again, and a crash between the two leaves a file with no row, which the start-up
garbage collection deletes (without its key it is random bytes anyway). Deleting a row
removes its file after the transaction commits; the key goes with the row, zeroed on
disk by ``secure_delete``. File names are random and say nothing about the message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from app.base.limits import KEY_BYTES, MAX_ATTACHMENT_BYTES, MAX_FILENAME_BYTES, MAX_MIME_TYPE_BYTES
from storage import attachfile
from storage.database import Database
from storage.errors import NotFoundError
from storage.fileio import fsync_dir, replacing
from storage.records import Attachment

log = logging.getLogger(__name__)

Clock = Callable[[], float]
RandomSource = Callable[[int], bytes]

_FILE_NAME_BYTES = 16
_OUR_FILE = re.compile(r"[0-9a-f]{32}(\.tmp)?")


def _attachment(row: Sequence[Any]) -> Attachment:
    return Attachment(
        id=row[0], message_id=row[1], name=row[2], mime_type=row[3], size=row[4], created_at=row[5]
    )


class AttachmentRepository:
    def __init__(self, db: Database, folder: Path, *, clock: Clock, random: RandomSource) -> None:
        self._db = db
        self._folder = folder
        self._clock = clock
        self._random = random

    def add(
        self,
        message_id: int,
        source: BinaryIO,
        *,
        name: str,
        mime_type: str,
        limit: int = MAX_ATTACHMENT_BYTES,
    ) -> Attachment:
        """Encrypt ``source`` (streamed) into a new file and record it for ``message_id``."""
        if (
            len(name.encode("utf-8")) > MAX_FILENAME_BYTES
            or len(mime_type.encode("utf-8")) > MAX_MIME_TYPE_BYTES
        ):
            raise ValueError("attachment name or MIME type too long")
        key = self._random(KEY_BYTES)
        path = self._folder / self._random(_FILE_NAME_BYTES).hex()
        size = attachfile.encrypt_file(source, path, key=key, limit=limit)
        try:
            with self._db.transaction():
                self._db.after_rollback(lambda: _unlink(path))
                row = self._db.one(
                    """INSERT INTO attachments (message_id, file_name, file_key, name, mime_type, size,
                            created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                        RETURNING id, message_id, name, mime_type, size, created_at""",
                    (message_id, path.name, key, name, mime_type, size, self._clock()),
                )
        except BaseException:
            _unlink(path)
            raise
        if row is None:
            raise NotFoundError("the attachment was not recorded")
        return _attachment(row)

    def get(self, id: int) -> Attachment:
        row = self._db.one(
            "SELECT id, message_id, name, mime_type, size, created_at FROM attachments WHERE id = ?", (id,)
        )
        if row is None:
            raise NotFoundError(f"attachment {id} does not exist (its message may have expired)")
        return _attachment(row)

    def of_message(self, message_id: int) -> list[Attachment]:
        rows = self._db.all(
            """SELECT id, message_id, name, mime_type, size, created_at
                FROM attachments WHERE message_id = ? ORDER BY id""",
            (message_id,),
        )
        return [_attachment(row) for row in rows]

    def read(self, id: int) -> Iterator[bytes]:
        """The attachment's plaintext, chunk by chunk (see ``attachfile.decrypt_file``)."""
        row = self._db.one("SELECT file_name, file_key FROM attachments WHERE id = ?", (id,))
        if row is None:
            raise NotFoundError(f"attachment {id} does not exist (its message may have expired)")
        return attachfile.decrypt_file(self._folder / row[0], key=row[1])

    def export(self, id: int, dest: Path) -> int:
        """Decrypt into ``dest`` (mode 0600) through a temporary file renamed only once fully verified."""
        size = 0
        with replacing(dest) as out:
            for chunk in self.read(id):
                out.write(chunk)
                size += len(chunk)
        return size

    def delete(self, id: int) -> None:
        with self._db.transaction():
            self.remove_files_on_commit("id = ?", (id,))
            if self._db.execute("DELETE FROM attachments WHERE id = ?", (id,)).rowcount != 1:
                raise NotFoundError(f"attachment {id} does not exist")

    def remove_files_on_commit(self, where: str, params: Sequence[Any]) -> None:
        """Unlink the files of the attachment rows matching ``where`` once the transaction commits.

        Called by the message and conversation repositories before they delete rows
        (the rows themselves go by ``ON DELETE CASCADE``).
        """
        names = [row[0] for row in self._db.all(f"SELECT file_name FROM attachments WHERE {where}", params)]  # noqa: S608
        if names:
            paths = [self._folder / name for name in names]
            self._db.after_commit(lambda: self._unlink_all(paths))

    def _unlink_all(self, paths: list[Path]) -> None:
        for path in paths:
            _unlink(path)
        fsync_dir(self._folder)

    def collect_garbage(self) -> int:
        """Delete files with no row (a crash between writing and recording) and stale temp files."""
        known = {row[0] for row in self._db.all("SELECT file_name FROM attachments")}
        stray = [p for p in self._folder.iterdir() if _OUR_FILE.fullmatch(p.name) and p.name not in known]
        if stray:
            self._unlink_all(stray)
            log.info("removed %d attachment files that had no record", len(stray))
        return len(stray)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
