"""A commit's arrivals set their message's first archived time and file time in the
message's insert (one upsert, an update only for messages recorded in earlier commits):
the same table as the statement-per-arrival way it replaced, for any sequence of commits
(Hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.vault.cache import IndexCache
from popvault.vault.meta import MessageMeta
from popvault.vault.records import MsgRecord, Record, SourceInfo, SrcRecord
from popvault.vault.rows import CommitRows

_IDS = [bytes([i]) * 32 for i in range(4)]
_TIME = st.one_of(st.none(), st.sampled_from([5.0, 10.0, 20.0, 30.0]))


def _record(kind: str, n: int, archived: float, ft: float | None, flt: float | None) -> Record:
    if kind == "msg":
        return MsgRecord(_IDS[n], 10 + n, [], MessageMeta(subject=f"s{n}"))
    src = SourceInfo("a", f"src{archived}", file_time=ft, from_line_time=flt)
    return SrcRecord(_IDS[n], src, archived)


_RECORD = st.builds(
    _record,
    st.sampled_from(["msg", "src"]),
    st.integers(0, 3),
    st.sampled_from([1.0, 2.0, 3.0, 4.0]),
    _TIME,
    _TIME,
)


def _apply_before(db: Any, records: list[Record]) -> None:
    """The times as applied before: the row inserted without them, then one update per
    arrival, in order."""
    rows = CommitRows()
    for r in records:
        rows.add(r)
    firsts = []
    for r in records:
        if isinstance(r, SrcRecord):
            s = r.source
            ft = s.file_time if s.file_time is not None else s.from_line_time
            firsts.append((r.archived, r.archived, ft, ft, ft, r.msg))
    db.executemany(
        "INSERT OR IGNORE INTO messages VALUES(?,?,?,?,?,?,?,?,?,?,NULL,NULL)", rows.msgs
    )
    db.executemany("INSERT OR IGNORE INTO sources VALUES(?,?,?,?,?,?,?,?)", rows.srcs)
    db.executemany(
        "UPDATE messages SET first_archived = MIN(COALESCE(first_archived, ?), ?),"
        " file_time = CASE WHEN ? IS NULL THEN file_time"
        " ELSE MIN(COALESCE(file_time, ?), ?) END WHERE id=?",
        firsts,
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_RECORD, max_size=8), max_size=4))
def test_times_as_before(commits: list[list[Record]]) -> None:
    new, old = IndexCache(None), IndexCache(None)
    for i, records in enumerate(commits):
        new.apply(f"c{i}", [], records)
        _apply_before(old.db, records)
    q = "SELECT * FROM messages ORDER BY id"
    assert new.db.execute(q).fetchall() == old.db.execute(q).fetchall()
    q = "SELECT * FROM sources ORDER BY rowid"
    assert new.db.execute(q).fetchall() == old.db.execute(q).fetchall()


def test_an_earlier_arrival_in_a_later_commit_lowers_the_times() -> None:
    cache = IndexCache(None)
    cache.apply("c1", [], [_record("msg", 0, 0, None, None), _record("src", 0, 3.0, 20.0, None)])
    cache.apply("c2", [], [_record("src", 0, 2.0, None, 10.0), _record("src", 0, 4.0, 5.0, None)])
    row = cache.db.execute("SELECT first_archived, file_time FROM messages").fetchone()
    assert row == (2.0, 5.0)
