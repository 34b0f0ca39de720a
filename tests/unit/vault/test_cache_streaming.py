"""Listings stream from the cache (issue 12): a window of messages a query, in delivery
order, filtered and sorted by SQLite; no statement held open between rows; no pieces
decoded for a listing. Asserted by structure (queries run, rows fetched), never by time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields

import pytest

from popvault.vault.cache import Filter, IndexCache, MessageRow, StoredMessage
from popvault.vault.meta import MessageMeta
from popvault.vault.records import BlobPiece, MsgRecord, Record, SourceInfo, SrcRecord


def _id(i: int) -> bytes:
    return bytes([i]) * 32


def _records(i: int, received: float | None, archived: float, accounts: int = 1) -> list[Record]:
    meta = MessageMeta(received=received, from_=f"sender{i % 3}@example.org", subject=f"s{i}")
    out: list[Record] = [MsgRecord(_id(i), 100 + i, [BlobPiece("r", f"{i:064x}")], meta)]
    for a in range(accounts):
        src = SourceInfo(f"acct{a}", f"src{i}", uidl=f"u{i}-{a}", flags="S" if a else None)
        out.append(SrcRecord(_id(i), src, archived + a))
    return out


@pytest.fixture
def cache() -> Iterator[IndexCache]:
    c = IndexCache(None)
    records: list[Record] = []
    # ties in delivery time (told apart by id), a message known only by its archival
    # time, several arrivals of one message
    times = [50.0, 10.0, None, 10.0, 30.0, None, 70.0, 20.0, 10.0, 60.0, 40.0]
    for i, t in enumerate(times, start=1):
        records += _records(i, t, archived=1000.0 + i, accounts=1 + i % 3)
    c.apply("c1", [], records)
    yield c
    c.close()


def _expected(c: IndexCache) -> list[bytes]:
    """Message ids in delivery order, worked out in Python from each message alone."""
    rows = [c.message(_id(i)) for i in range(1, 12)]
    return [r.id for r in sorted((r for r in rows if r), key=lambda r: (r.delivered, r.id))]


def test_listing_is_in_delivery_order_whatever_the_window(cache: IndexCache) -> None:
    whole = list(cache.messages())
    assert [r.id for r in whole] == _expected(cache)
    for window in (1, 2, 3, 10, 11, 12):
        assert list(cache.messages(window=window)) == whole
        assert [m for m, _, _ in cache.message_pieces(window=window)] == [r.id for r in whole]


@pytest.mark.parametrize(
    "flt",
    [
        Filter(since=20.0),
        Filter(until=40.0),
        Filter(since=10.0, until=50.0),
        Filter(account="acct2"),
        Filter(from_="SENDER1"),
        Filter(ids=frozenset({_id(2), _id(4), _id(9)})),
    ],
)
def test_filters_give_the_same_rows_in_every_window(cache: IndexCache, flt: Filter) -> None:
    whole = list(cache.messages(flt, window=1000))
    assert whole
    assert len(whole) < 11
    for window in (1, 2, 5):
        assert list(cache.messages(flt, window=window)) == whole


def test_listing_fetches_one_window_at_a_time(cache: IndexCache) -> None:
    """The first row comes after one query of at most ``window`` messages; the rest are
    not read until asked for (nothing like a ``fetchall`` of the table)."""
    expected = _expected(cache)
    queries: list[str] = []
    cache.db.set_trace_callback(queries.append)

    def pages() -> list[str]:
        return [q for q in queries if "FROM messages m" in q]

    rows = cache.messages(window=2)
    first = next(rows)
    assert len(pages()) == 1
    assert "LIMIT 2" in pages()[0]
    assert first.id == expected[0]
    assert len([next(rows), next(rows)]) == 2  # the next window
    assert len(pages()) == 2
    rest = list(rows)
    assert len(rest) == 11 - 3
    assert len(pages()) == 6  # 11 messages in windows of 2 (the last one short)


def test_a_listing_reads_no_pieces(cache: IndexCache) -> None:
    queries: list[str] = []
    cache.db.set_trace_callback(queries.append)
    rows = list(cache.messages())
    assert rows
    assert all(type(r) is MessageRow for r in rows)
    assert not any("pieces" in q for q in queries)
    one = cache.message(_id(1))
    assert isinstance(one, StoredMessage)
    assert one.pieces == [BlobPiece("r", f"{1:064x}")]


def test_the_cache_may_change_between_rows(cache: IndexCache) -> None:
    """No statement stays open while the caller works: it may commit to the cache (a
    restore records what it restored) between two rows."""
    before = _expected(cache)
    seen = []
    for n, row in enumerate(cache.messages(window=2)):
        seen.append(row.id)
        if n < 5:  # later in delivery than all: listed at the end
            cache.apply(f"r{n}", [], _records(100 + n, 1e9 + n, archived=2e9))
    assert seen == [*before, *(_id(100 + n) for n in range(5))]


def test_arrivals_of_a_listed_message(cache: IndexCache) -> None:
    row = next(r for r in cache.messages() if r.id == _id(5))  # three arrivals
    assert row.accounts == ["acct0", "acct1", "acct2"]
    assert row.uidls == ["u5-0", "u5-1", "u5-2"]
    assert row.flags == "S"
    stored = cache.message(_id(5))
    assert stored is not None
    assert row == MessageRow(**{f.name: getattr(stored, f.name) for f in fields(MessageRow)})
