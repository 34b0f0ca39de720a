"""The search index on a real (in-memory) vault: paging is a slice of the whole result
whichever plan answers (the ranked window of the most recent matches, the rest newest
first; date order by looking matches up or by walking the delivery index), filters,
indexing once, and a rebuilt cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from popvault.app.search import index_new, search
from popvault.vault import fts
from popvault.vault.backend import MemoryBackend
from popvault.vault.crypto import TEST_KDF
from popvault.vault.meta import MessageMeta
from popvault.vault.vault import SourceInfo, Vault

PASS = b"pw"


def _message(n: int) -> bytes:
    words = " ".join(["word"] * (1 + n % 4))
    return (
        f"From: s{n}@example.org\r\nSubject: message {n}\r\n\r\n{words} filler {n}\r\n"
    ).encode()


@pytest.fixture
def vault() -> Iterator[Vault]:
    backend = MemoryBackend()
    Vault.init(backend, PASS, kdf=TEST_KDF).close()
    with Vault.open(backend, PASS, write=True) as v:
        for n in range(12):
            when = 1_600_000_000.0 + (n * 7919 % 12) * 3600
            meta = MessageMeta(received=when, subject=f"message {n}")
            account = "odd" if n % 2 else "even"
            v.add_message(_message(n), SourceInfo(account, f"x{n}"), meta)
            if n % 5 == 4:
                v.commit()
        v.commit()
        assert index_new(v).indexed == 12
        yield v


def _ids(hits: Iterator[object]) -> list[bytes]:
    return [h.row.id for h in hits]  # type: ignore[attr-defined]


@pytest.mark.parametrize("ranked", [3, 10_000])
@pytest.mark.parametrize("many", [2, 2_000])
@pytest.mark.parametrize("sort", ["rank", "date"])
@pytest.mark.parametrize("query", ["word", "word account:odd", "word -filler", "account:even"])
def test_pages_are_slices_of_the_whole(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, ranked: int, many: int, sort: str, query: str
) -> None:
    monkeypatch.setattr(fts, "RANKED", ranked)
    monkeypatch.setattr(fts, "MANY", many)
    whole = _ids(search(vault, query, sort=sort))  # type: ignore[arg-type]
    expected = {
        "word": 12,
        "word account:odd": 6,
        "word -filler": 0,
        "account:even": 6,
    }[query]
    assert len(whole) == len(set(whole)) == expected
    for limit in (1, 2, 5):
        for offset in range(0, 13, 3):
            page = _ids(search(vault, query, sort=sort, limit=limit, offset=offset))  # type: ignore[arg-type]
            assert page == whole[offset : offset + limit], (limit, offset)


def test_date_order_is_newest_delivery_first(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    for many in (2, 2_000):
        monkeypatch.setattr(fts, "MANY", many)
        got = [h.row.delivered for h in search(vault, "word", sort="date")]
        assert got == sorted(got, reverse=True)
        assert len(got) == 12


def test_rank_order_within_the_window(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    # whole window: more occurrences rank higher
    hits = list(search(vault, "word"))
    assert [h.rank for h in hits] == sorted((h.rank for h in hits), reverse=True)
    assert hits[0].rank > hits[-1].rank > 0
    # a window of 3: the three most recently indexed first, ranked; then the rest at 0,
    # most recently indexed first
    monkeypatch.setattr(fts, "RANKED", 3)
    windowed = list(search(vault, "word"))
    assert all(h.rank > 0 for h in windowed[:3])
    assert all(h.rank == 0 for h in windowed[3:])
    newest = {h.row.subject for h in windowed[:3]}
    assert newest == {"message 9", "message 10", "message 11"}
    assert [h.row.subject for h in windowed[3:5]] == ["message 8", "message 7"]


def test_a_message_is_indexed_once(vault: Vault) -> None:
    assert index_new(vault).indexed == 0  # nothing new
    count = vault.cache.db.execute("SELECT count(*) FROM fts").fetchone()[0]
    assert count == 12
    # a rebuilt cache empties the index; indexing again reads the messages back
    vault.rebuild_cache()
    assert vault.cache.db.execute("SELECT count(*) FROM fts").fetchone()[0] == 0
    assert list(search(vault, "word")) == []
    assert index_new(vault).indexed == 12
    assert len(list(search(vault, "word"))) == 12


def test_snippets_only_when_asked(vault: Vault) -> None:
    with_snippets = list(search(vault, "filler"))
    assert all("[filler]" in h.snippet for h in with_snippets)
    assert all(h.snippet == "" for h in search(vault, "filler", snippets=False))
    marked = next(iter(search(vault, "filler", marks=("<b>", "</b>"))))
    assert "<b>filler</b>" in marked.snippet
