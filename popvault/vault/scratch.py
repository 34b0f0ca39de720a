"""A whole vault's blob locations on disk, for ``check``: memory that does not grow with
the vault.

``check`` compares what the index segments name (every blob and where it lives) with
the messages and the packs. A million messages name a few million blobs: as Python
objects that is hundreds of megabytes. :class:`BlobTable` keeps them in a throwaway
SQLite file next to the cache instead, encrypted (SQLCipher) with a random key that
never leaves the process: the file is unreadable once the process is gone, and it is
deleted when the table is closed (a leftover of a killed check is deleted by the next
one). It holds blob ids (keyed hashes) and pack positions, no message content.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from popvault.vault.cache import open_scratch
from popvault.vault.pack import BlobLocation

PREFIX = ".popvault-check-"
#: Ids per ``IN (...)`` query (below SQLite's host-parameter limit).
BATCH = 500
_COLUMNS = "id, kind, pack, frame, frame_offset, frame_length, offset, length"


class BlobTable:
    """Blob id -> location, on disk; later rows for an id replace earlier ones."""

    def __init__(self, directory: Path | None) -> None:
        where = directory if directory is not None else Path(tempfile.gettempdir())
        for old in where.glob(f"{PREFIX}*"):
            _remove_if_dead(old)
        fd, name = tempfile.mkstemp(prefix=f"{PREFIX}{os.getpid()}-", dir=where)
        os.close(fd)
        self.path = Path(name)
        try:
            self.db = open_scratch(self.path)
            self.db.execute(
                "CREATE TABLE blobs(id BLOB PRIMARY KEY, kind TEXT, pack TEXT, frame INTEGER,"
                " frame_offset INTEGER, frame_length INTEGER, offset INTEGER, length INTEGER)"
            )
            # made empty, kept as rows come: made afterwards it sorted every row in
            # memory (temporary files are not encrypted: the scratch keeps them there),
            # 211 MB more at two million blobs, for no saving in time
            self.db.execute("CREATE INDEX blobs_pack ON blobs(pack)")
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> BlobTable:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def add(self, locs: Iterable[BlobLocation]) -> None:
        self.db.executemany(
            f"INSERT OR REPLACE INTO blobs({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",  # noqa: S608
            ((loc.blob_id, loc.kind, *loc.fields()) for loc in locs),
        )

    def __len__(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM blobs").fetchone()[0])

    def packs(self) -> set[str]:
        """Every pack a blob lives in (few: one per pack, not per blob)."""
        return {row[0] for row in self.db.execute("SELECT DISTINCT pack FROM blobs")}

    def in_pack(self, pack: str) -> list[BlobLocation]:
        sql = f"SELECT {_COLUMNS} FROM blobs WHERE pack = ?"  # noqa: S608 (fixed text)
        rows = self.db.execute(sql, (pack,))
        return [_location(row) for row in rows]

    def ids_in(self, packs: Iterable[str]) -> Iterator[bytes]:
        for pack in packs:
            for row in self.db.execute("SELECT id FROM blobs WHERE pack = ?", (pack,)):
                yield cast(bytes, row[0])

    def missing(self, ids: Sequence[bytes]) -> set[bytes]:
        """The ones of ``ids`` no row names."""
        out = set(ids)
        for i in range(0, len(ids), BATCH):
            part = ids[i : i + BATCH]
            marks = ",".join("?" * len(part))
            sql = f"SELECT id FROM blobs WHERE id IN ({marks})"  # noqa: S608 (marks only)
            for row in self.db.execute(sql, part):
                out.discard(row[0])
        return out


def _location(row: Sequence[Any]) -> BlobLocation:
    return BlobLocation(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7])


def _remove_if_dead(path: Path) -> None:
    """A leftover of a check that was killed: its pid (in the name) is gone."""
    try:
        pid = int(path.name[len(PREFIX) :].split("-", 1)[0])
    except ValueError:
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
    except PermissionError:
        pass
