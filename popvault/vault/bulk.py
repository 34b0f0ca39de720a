"""Many rows inserted in a few SQL statements (a commit's rows in the cache).

``executemany`` runs one statement a row, and Python's sqlite3 module lets go of the
interpreter lock around each row's step and takes it back after: while another thread
of the process runs Python (the search index's thread while a writer commits, or the
reverse), every row then waits for that thread to give the lock up (up to the switch
interval, 5 ms). 60,000 blob rows took 0.4 s alone and over four minutes beside a
thread that only counted. :func:`insert_rows` inserts up to :data:`ROWS` rows a
statement (multi-row ``VALUES``, each value bound as ``executemany`` binds it, so floats
and blobs arrive exactly): one wait for the lock per statement, and less work per row
than ``executemany`` even alone (docs/performance.md).

Memory stays bounded: Python's sqlite3 keeps up to 128 prepared statements a
connection, each with the values last bound to it, so a statement's row count is always
a power of two up to :data:`ROWS`: at most nine distinct statements a table, each
holding at most its last rows. (Statements of up to 1,024 rows, and the search index's
documents inserted so too, had an attachment-heavy backup peak up to 20 MB higher; the
documents still go in one a row: on an FTS5 table multi-row statements cost more CPU
than they save, docs/performance.md.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Values a statement may bind when the connection cannot say (SQLite's default limit
#: from 3.32 on; SQLCipher's connections do not expose ``getlimit``).
VALUES = 32766
#: Rows a statement takes at most (a power of two): a commit of 2,000 messages is eight
#: statements a table.
ROWS = 256
_LIMIT_VARIABLE_NUMBER = 9  # sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER


def _floor_pow2(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


def insert_rows(db: Any, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
    """``head`` (``INSERT ... INTO table``), then ``VALUES`` of ``rows`` (all of one
    width) and ``tail`` (an upsert clause), in order: the same rows, conflicts and
    outcome as ``executemany`` of one row a statement. A statement takes a power of two
    of rows, at most :data:`ROWS` and what SQLite binds."""
    if not rows:
        return
    width = len(rows[0])
    getlimit = getattr(db, "getlimit", None)
    limit = VALUES if getlimit is None else getlimit(_LIMIT_VARIABLE_NUMBER)
    most = _floor_pow2(min(ROWS, limit // width))
    one = "(" + ",".join("?" * width) + ")"
    start = 0
    while start < len(rows):
        n = _floor_pow2(min(most, len(rows) - start))
        part = rows[start : start + n]
        sql = f"{head} VALUES {','.join([one] * n)}{tail}"
        db.execute(sql, [value for row in part for value in row])
        start += n
