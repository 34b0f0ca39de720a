"""Many rows inserted in a few SQL statements (the cache's commits, the search index).

``executemany`` runs one statement a row, and Python's sqlite3 module lets go of the
interpreter lock around each row's step and takes it back after: while another thread
of the process runs Python (a writer reading mail while the index thread inserts, or
the reverse), every row then waits for that thread to give the lock up (up to the
switch interval, 5 ms). 60,000 blob rows took 0.4 s alone and over four minutes beside
a thread that only counted. :func:`insert_rows` inserts thousands of rows a
statement (multi-row ``VALUES``, each value bound as ``executemany`` binds it, so floats
and blobs arrive exactly): one wait for the lock per statement, and a little less work
per row than ``executemany`` even alone (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Values a statement may bind when the connection cannot say (SQLite's default limit
#: from 3.32 on; SQLCipher's connections do not expose ``getlimit``).
VALUES = 32766
#: Rows a statement takes at most.
ROWS = 5000
_LIMIT_VARIABLE_NUMBER = 9  # sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER


def insert_rows(db: Any, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
    """``head`` (``INSERT ... INTO table(columns)``), then ``VALUES`` of ``rows`` (all of
    one width) and ``tail`` (an upsert clause), as many rows a statement as SQLite binds
    (at most :data:`ROWS`), in order: the same rows, conflicts and outcome as
    ``executemany`` of one row a statement. A commit's rows of a table are then one
    statement: each statement on an FTS5 table writes what it has pending as a segment
    of its own (ten rows a statement cost twice as much as one statement of all)."""
    if not rows:
        return
    width = len(rows[0])
    getlimit = getattr(db, "getlimit", None)
    limit = VALUES if getlimit is None else getlimit(_LIMIT_VARIABLE_NUMBER)
    per = max(1, min(ROWS, limit // width))
    one = "(" + ",".join("?" * width) + ")"
    for start in range(0, len(rows), per):
        part = rows[start : start + per]
        sql = f"{head} VALUES {','.join([one] * len(part))}{tail}"
        db.execute(sql, [value for row in part for value in row])
