"""Multi-row inserts (vault/bulk.py): the same rows as ``executemany``, in few statements."""

from __future__ import annotations

import math
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlcipher3
from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.vault import bulk
from popvault.vault.bulk import insert_rows

TABLE = "CREATE TABLE t(id BLOB PRIMARY KEY, n INTEGER, x REAL, s TEXT, first REAL)"
UPSERT = " ON CONFLICT(id) DO UPDATE SET first = MIN(first, excluded.first), n = n + excluded.n"

values = st.tuples(
    st.sampled_from([b"a", b"b", b"c", b"\x00\xff" * 16]),  # few ids: conflicts
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    st.one_of(st.none(), st.floats(allow_nan=False)),  # any double, subnormals too
    st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_categories=["Cs"]))),
    st.floats(allow_nan=False, allow_infinity=False),
)


def _both(rows: list[tuple[Any, ...]], tail: str, head: str) -> tuple[list[Any], list[Any]]:
    one, many = sqlite3.connect(":memory:"), sqlite3.connect(":memory:")
    for db in (one, many):
        db.execute(TABLE)
    marks = ",".join("?" * 5)
    many.executemany(f"{head} VALUES({marks}){tail}", rows)
    insert_rows(one, head, rows, tail)
    order = "SELECT rowid, * FROM t ORDER BY rowid"
    return one.execute(order).fetchall(), many.execute(order).fetchall()


@settings(max_examples=200, deadline=None)
@given(st.lists(values, max_size=40), st.sampled_from([1, 2, 4, 8]))
def test_the_same_rows_as_executemany(rows: list[tuple[Any, ...]], per: int) -> None:
    """Plain inserts, OR IGNORE and an upsert, in statements of any size: the same rows,
    the same rowids, values exactly as bound (floats to the last bit)."""
    bulk_rows = bulk.ROWS
    bulk.ROWS = per  # several statements for a few rows
    try:
        for head, tail in (("INSERT OR IGNORE INTO t", ""), ("INSERT INTO t", UPSERT)):
            got, want = _both(rows, tail, head)
            assert got == want
            for a, b in zip(got, want, strict=True):
                for x, y in zip(a, b, strict=True):
                    if isinstance(x, float):
                        assert math.copysign(1, x) == math.copysign(1, y)
    finally:
        bulk.ROWS = bulk_rows


def test_a_conflict_stops_at_its_statement_like_executemany() -> None:
    """Without OR IGNORE a duplicate raises, as executemany's does."""
    db = sqlite3.connect(":memory:")
    db.execute(TABLE)
    with pytest.raises(sqlite3.IntegrityError):
        insert_rows(db, "INSERT INTO t", [(b"a", 1, 1.0, "", 0.0), (b"a", 2, 2.0, "", 0.0)])


class _Recorder:
    """A connection that notes the rows of each statement run on it."""

    def __init__(self, db: sqlite3.Connection, width: int) -> None:
        self.db, self.width = db, width
        self.statements: list[tuple[str, int]] = []

    def execute(self, sql: str, params: list[Any]) -> sqlite3.Cursor:
        self.statements.append((sql, len(params) // self.width))
        return self.db.execute(sql, params)

    def getlimit(self, category: int) -> int:
        return self.db.getlimit(category)


def test_thousands_of_rows_are_a_few_statements_of_a_few_shapes() -> None:
    """What makes it worth it: a few statements (each one step without the interpreter
    lock) for a commit's rows, not one a row; and few distinct statements, each a power
    of two of rows (Python keeps each prepared statement with its last values)."""
    db = sqlite3.connect(":memory:")
    db.execute(TABLE)
    rec = _Recorder(db, 5)
    rows = [(secrets.token_bytes(32), i, i / 7, f"row {i}", 1.5) for i in range(4000)]
    insert_rows(rec, "INSERT INTO t", rows)
    counts = [n for _, n in rec.statements]
    assert counts == [256] * 15 + [128, 32]
    assert len({sql for sql, _ in rec.statements}) == 3
    assert db.execute("SELECT count(*), sum(n) FROM t").fetchone() == (4000, sum(range(4000)))


def test_statements_stay_within_the_connections_limit() -> None:
    """A connection that binds fewer values a statement gets smaller statements."""
    db = sqlite3.connect(":memory:")
    db.execute(TABLE)
    db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 12)  # two rows of five
    rec = _Recorder(db, 5)
    insert_rows(rec, "INSERT INTO t", [(bytes([i]), i, 0.0, "", 0.0) for i in range(5)])
    assert [n for _, n in rec.statements] == [2, 2, 1]
    assert db.execute("SELECT count(*) FROM t").fetchone() == (5,)


def test_an_encrypted_connection_and_an_fts5_table(tmp_path: Path) -> None:
    """SQLCipher's connections (no ``getlimit``: its default limit), an FTS5 table."""
    db = sqlcipher3.connect(str(tmp_path / "c.sqlite"))
    db.execute(f"PRAGMA key = \"x'{secrets.token_hex(32)}'\"")
    db.execute("CREATE VIRTUAL TABLE f USING fts5(a, b)")
    rows = [(i + 1, f"word{i} common", "x\x00y") for i in range(3000)]
    with db:
        insert_rows(db, "INSERT INTO f(rowid, a, b)", rows)
    assert db.execute("SELECT count(*) FROM f WHERE f MATCH 'common'").fetchone() == (3000,)
    assert db.execute("SELECT rowid FROM f WHERE f MATCH 'word2999'").fetchall() == [(3000,)]
    assert db.execute("SELECT b FROM f WHERE rowid = 7").fetchone() == ("x\x00y",)


def test_no_rows_no_statement() -> None:
    db = sqlite3.connect(":memory:")
    seen: list[str] = []
    db.set_trace_callback(seen.append)
    insert_rows(db, "INSERT INTO missing", [])
    assert seen == []
