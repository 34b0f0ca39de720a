"""A listing reads a window's messages and their arrivals in one joined query
(popvault/vault/listing.py): the same rows as a query of the window and a second of its
arrivals (the way it replaced) for any messages, arrivals, filters and window
(Hypothesis), one query a window, and a message without arrivals listed with none."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.vault import listing
from popvault.vault.cache import IndexCache
from popvault.vault.meta import MessageMeta
from popvault.vault.records import MsgRecord, Record, SourceInfo, SrcRecord
from popvault.vault.rows import LISTED_COLUMNS, Filter, MessageRow, message_row


def _id(i: int) -> bytes:
    return bytes([i]) * 32


def _two_queries(cache: IndexCache, flt: Filter, window: int) -> Iterator[MessageRow]:
    """The listing as it was made before the join: a window, then its arrivals by id."""
    where, args = listing._where(flt)
    for page in listing._pages(cache, LISTED_COLUMNS, where, args, window, since=flt.since):
        if flt.ids is not None:
            page = [r for r in page if r[1] in flt.ids]
        srcs = cache.arrivals([r[1] for r in page])
        for r in page:
            yield message_row(r[1:], srcs.get(r[1], ()))


_Arrival = tuple[str, str | None, str | None, float, float | None]
_Message = tuple[float | None, list[_Arrival]]
_TIME = st.one_of(st.none(), st.sampled_from([10.0, 20.0, 30.0]))
_ARRIVAL = st.tuples(
    st.sampled_from(["a", "b"]),
    st.one_of(st.none(), st.sampled_from(["u1", "u2"])),
    st.one_of(st.none(), st.sampled_from(["S", "RS"])),
    st.sampled_from([1.0, 2.0, 3.0]),  # archived: ties are ordered by insertion
    _TIME,
)
_MESSAGE = st.tuples(_TIME, st.lists(_ARRIVAL, max_size=3))
_FILTER = st.sampled_from(
    [
        Filter(),
        Filter(since=20.0),
        Filter(until=30.0),
        Filter(account="b"),
        Filter(subject="s1"),
        Filter(ids=frozenset({_id(1), _id(2), _id(5)})),
    ]
)


def _cache(
    msgs: list[_Message],
) -> IndexCache:
    cache = IndexCache(None)
    records: list[Record] = []
    for i, (received, arrivals) in enumerate(msgs, start=1):
        meta = MessageMeta(received=received, subject=f"s{i}")
        records.append(MsgRecord(_id(i), i, [], meta))
        for n, (account, uidl, flags, archived, ft) in enumerate(arrivals):
            src = SourceInfo(account, f"src{i}-{n}", uidl=uidl, flags=flags, file_time=ft)
            records.append(SrcRecord(_id(i), src, archived))
    cache.apply("c1", [], records)
    return cache


@settings(max_examples=200, deadline=None)
@given(st.lists(_MESSAGE, max_size=9), _FILTER, st.integers(1, 4))
def test_joined_rows_are_the_two_queries_rows(
    msgs: list[_Message],
    flt: Filter,
    window: int,
) -> None:
    cache = _cache(msgs)
    try:
        want = list(_two_queries(cache, flt, window))
        assert list(cache.messages(flt, window=window)) == want
        assert list(cache.messages(flt, window=100)) == want
    finally:
        cache.close()


@pytest.fixture
def cache() -> Iterator[IndexCache]:
    arrivals: list[_Arrival] = [("a", "u1", None, 2.0, None), ("b", None, "S", 1.0, None)]
    c = _cache([(10.0, arrivals), (20.0, []), (30.0, arrivals[:1]), (40.0, arrivals)])
    yield c
    c.close()


def test_a_message_without_arrivals_is_listed_with_none(cache: IndexCache) -> None:
    row = next(r for r in cache.messages() if r.id == _id(2))
    assert (row.accounts, row.uidls, row.sources, row.flags) == ([], [], [], None)
    assert row.first_archived == 0.0  # nothing archived it: as before the join


def test_arrivals_are_oldest_first_and_every_one_is_kept(cache: IndexCache) -> None:
    rows = {r.id: r for r in cache.messages(window=1)}
    assert rows[_id(1)].sources == ["src1-1", "src1-0"]  # archived 1.0 before 2.0
    assert rows[_id(1)].accounts == ["a", "b"]
    assert rows[_id(1)].uidls == ["u1"]
    assert rows[_id(1)].flags == "S"
    assert rows[_id(3)].sources == ["src3-0"]


def test_one_query_a_window_reads_messages_and_arrivals(cache: IndexCache) -> None:
    queries: list[str] = []
    cache.db.set_trace_callback(queries.append)
    rows = list(cache.messages(window=2))
    assert [r.id for r in rows] == [_id(1), _id(2), _id(3), _id(4)]
    assert len(queries) == 3  # windows of 2, 2 and an empty last one
    assert all("LEFT JOIN sources" in q and "LIMIT 2" in q for q in queries)
