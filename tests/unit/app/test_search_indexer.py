"""What makes indexing cheap (docs/search.md, Speed) changes nothing that is found: an
index made with an earlier definition is made anew when the cache opens, snippets made
on a page's own table are FTS5's on the whole index, and the import's Indexer (helper
process, inserting thread on its own connection, commits that never wait) indexes every
message once, reading back those it was not given."""

from __future__ import annotations

from pathlib import Path

import pytest

from popvault.app.search import Indexer, document, index_new, search
from popvault.vault import SearchIndex, fts
from popvault.vault.fts import plain_text
from popvault.vault.vault import SourceInfo, Vault
from tests.support.vaults import create, isolate_cache, open_rw

OLD_DEFINITION = (
    "CREATE VIRTUAL TABLE fts USING fts5(sender, recipients, subject, body, filename, facts,"
    " tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3')"
)


@pytest.fixture(autouse=True)
def cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return isolate_cache(monkeypatch, tmp_path)


def _message(n: int) -> bytes:
    words = ["listing", "lisbon", "list", "other"][n % 4]
    cjk = "東京都庁の会議" if n % 3 == 0 else "普通"
    return (
        f"From: sender{n} <s{n}@example.org>\r\nTo: t@example.org\r\nSubject: note {n}\r\n"
        f"\r\nsome filler text before the {words} word and {cjk} after it, number {n}\r\n"
    ).encode()


def _filled(root: Path, count: int) -> list[bytes]:
    """A new vault at ``root`` with ``count`` messages committed (not indexed)."""
    create(root)
    with open_rw(root) as v:
        ids = [v.add_message(_message(n), SourceInfo("a", f"x{n}")).msg_id for n in range(count)]
        v.commit()
    return ids


def _fts_count(v: Vault) -> int:
    return int(v.cache.db.execute("SELECT count(*) FROM fts").fetchone()[0])


def test_an_index_of_an_earlier_definition_is_made_anew(tmp_path: Path) -> None:
    root = tmp_path / "v"
    _filled(root, 6)
    with open_rw(root) as v:
        # the cache as an earlier popvault left it: prefix indexes, everything indexed
        with v.cache.db:
            v.cache.db.execute("DROP TABLE fts")
            v.cache.db.execute(OLD_DEFINITION)
        assert index_new(v).indexed == 6
        assert len(list(search(v, "listing"))) == 2
    with open_rw(root) as v:
        sql = v.cache.db.execute("SELECT sql FROM sqlite_master WHERE name='fts'").fetchone()[0]
        assert "prefix" not in sql and sql.endswith(fts.DEFINITION)
        config = dict(v.cache.db.execute("SELECT k, v FROM fts_config").fetchall())
        assert (config["automerge"], config["hashsize"]) == (fts.AUTOMERGE, fts.HASHSIZE)
        assert _fts_count(v) == 0 and SearchIndex.of(v).unindexed_count() == 6
        assert index_new(v).indexed == 6  # read back from the vault
        assert len(list(search(v, "listing"))) == 2
    with open_rw(root) as v:  # the current definition is kept as it is
        assert _fts_count(v) == 6 and SearchIndex.of(v).unindexed_count() == 0


def test_a_table_of_the_current_definition_gets_newer_settings(tmp_path: Path) -> None:
    root = tmp_path / "v"
    _filled(root, 4)
    with open_rw(root) as v:
        index_new(v)
        with v.cache.db:  # as an earlier popvault made it: no hashsize set
            v.cache.db.execute("DELETE FROM fts_config WHERE k='hashsize'")
    with open_rw(root) as v:
        row = v.cache.db.execute("SELECT v FROM fts_config WHERE k='hashsize'").fetchone()
        assert row == (fts.HASHSIZE,)
        assert _fts_count(v) == 4 and SearchIndex.of(v).unindexed_count() == 0  # kept


def test_the_inserting_thread_s_connection_has_a_small_page_cache(tmp_path: Path) -> None:
    """The thread that inserts reads few pages: its connection does not take the 32 MiB
    of page cache the vault's has for listings (memory of an import), and it indexes."""
    root = tmp_path / "v"
    _filled(root, 5)
    with open_rw(root) as v:
        own = SearchIndex.own(v)
        assert own is not None
        try:
            size = own._db.execute("PRAGMA cache_size").fetchone()[0]
            assert size == -fts.OWN_CACHE_KIB
            assert v.cache.db.execute("PRAGMA cache_size").fetchone()[0] < size
            assert index_new(v, index=own).indexed == 5
        finally:
            own.close()
        assert _fts_count(v) == 5


def test_a_ready_document_is_the_document_as_indexed() -> None:
    """``document(ready=True)`` (made in helpers) equals ``for_index()`` of the plain one."""
    from tests.support.generate import realistic

    messages = [_message(n) for n in range(12)] + list(realistic(40, 7, avg_size=4000))
    messages.append("Subject: =?utf-8?b?5p2x5Lqs6YO9?=\r\n\r\n\u4f1a\u8b70\u200bok\r\n".encode())
    for data in messages:
        plain, part = document(data)
        ready, ready_part = document(data, ready=True)
        assert ready.ready and not plain.ready and part == ready_part
        assert ready == plain.for_index()
        assert ready.values() == plain.values()


@pytest.mark.parametrize(
    "query",
    ["lis*", "li*", "list", '"filler text"', "東京", "都*", "lis* -listing", "from:sender1*"],
)
def test_page_snippets_are_fts5_snippets_on_the_index(tmp_path: Path, query: str) -> None:
    from popvault.app.search import parse_query, to_sql

    root = tmp_path / "v"
    _filled(root, 40)
    with open_rw(root) as v:
        index_new(v)
        hits = list(search(v, query, marks=("<", ">")))
        assert hits, query
        match = to_sql(parse_query(query)).match
        direct = (
            "SELECT snippet(fts, -1, char(2), char(3), '…', 12) FROM fts"
            " WHERE fts MATCH ? AND rowid = (SELECT rowid FROM messages WHERE id = ?)"
        )
        for h in hits:
            raw = v.cache.db.execute(direct, (match, h.row.id)).fetchone()[0]
            assert h.snippet == plain_text(raw, ("<", ">")), (query, h.row.id)
            assert "<" in h.snippet


@pytest.mark.parametrize("helpers", [0, 1])
def test_the_indexer_indexes_every_message_once(tmp_path: Path, helpers: int) -> None:
    root = tmp_path / "v"
    create(root)
    with open_rw(root) as v, Indexer(v, helpers=helpers) as indexer:
        for n in range(300):
            data = _message(n)
            res = v.add_message(data, SourceInfo("a", f"x{n}"))
            if n % 50 != 7:  # these are read back (as import does with streamed ones)
                indexer.add(res.msg_id, data)
            if n % 70 == 69:
                v.commit()
                indexer.committed()
        v.commit()
        indexer.committed(last=True)
        assert indexer.report.indexed == 300
        assert _fts_count(v) == 300 and SearchIndex.of(v).unindexed_count() == 0
        assert len(list(search(v, "listing"))) == 75
        assert len(list(search(v, '"number 57"'))) == 1  # one read back
    with open_rw(root) as v:  # what the thread wrote on its own connection is committed
        assert _fts_count(v) == 300


def test_index_new_stops_before_a_document_still_coming(tmp_path: Path) -> None:
    root = tmp_path / "v"
    ids = _filled(root, 5)
    with open_rw(root) as v:
        docs = {i: document(_message(n)) for n, i in enumerate(ids) if n != 2}
        rep = index_new(v, docs, coming={ids[2]})
        assert (rep.indexed, rep.unread) == (2, False)
        assert set(docs) == {ids[3], ids[4]}  # the ones used are taken out
        rep = index_new(v, docs, read_back=False)  # not coming, not given: not read
        assert (rep.indexed, rep.unread) == (0, True)
        rep = index_new(v, docs)  # read back
        assert (rep.indexed, docs) == (3, {})
        assert _fts_count(v) == 5


def test_a_backup_indexer_warns_and_stops_when_indexing_fails(tmp_path: Path) -> None:
    """A backup's index is a by-product: a cache whose index cannot be written (here
    its table is gone) is a warning, never the run's failure."""
    from popvault.app.progress import NullProgress

    root = tmp_path / "v"
    create(root)
    for progress in (NullProgress(), None):
        with open_rw(root) as v, Indexer(v, helpers=0, progress=progress) as indexer:
            for n in range(2):
                data = _message(n)
                indexer.add(v.add_message(data, SourceInfo("a", f"x{n}")).msg_id, data)
                v.commit()
                if n:  # after the first commit (the thread's connection is open)
                    with v.cache.db:
                        v.cache.db.execute("DROP TABLE fts")
                    if progress is None:  # no progress: raised, as an import's
                        with pytest.raises(Exception, match="no such table"):
                            indexer.committed(last=True)
                        continue
                indexer.committed(last=bool(n))
            if progress is not None:
                assert not indexer.enabled and indexer.report.indexed == 1
                assert len(progress.warnings) == 1
                assert progress.warnings[0].startswith("search index not brought up to date")
                indexer.committed(last=True)  # nothing more is tried
                assert len(progress.warnings) == 1
    with open_rw(root) as v:  # the table made again: everything counts as not indexed
        assert SearchIndex.of(v).unindexed_count() == 2
