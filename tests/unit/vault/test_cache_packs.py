"""The cache's ``packs`` table: the packs a writer's open takes as named without reading
every blob row (IndexCache.pack_names), the same set as the blobs name, in a new cache,
an older cache without the table, and after a rebuild."""

from __future__ import annotations

from pathlib import Path

from popvault.vault.vault import SourceInfo, Vault
from tests.support.vaults import build, open_ro, open_rw, standard_batches, text_message


def _from_blobs(v: Vault) -> set[str]:
    return {str(r[0]) for r in v.cache.db.execute("SELECT DISTINCT pack FROM blobs")}


def _from_commits(v: Vault) -> set[str]:
    return {p for name in v.commit_names() for p in v.read_commit(name).packs}


def test_pack_names_are_the_packs_the_commits_name(tmp_path: Path) -> None:
    root = tmp_path / "v"
    build(root, standard_batches())
    with open_rw(root) as v:
        v.add_message(text_message(9), SourceInfo("a", "pop3://u@h", uidl="9"))
        v.commit()
        names = v.cache.pack_names()
        assert names == _from_blobs(v) == _from_commits(v)
        assert len(names) >= 2


def test_an_older_cache_gets_the_table_filled_when_it_opens(tmp_path: Path) -> None:
    root = tmp_path / "v"
    build(root, standard_batches())
    with open_ro(root) as v:
        want = _from_blobs(v)
        v.cache.db.execute("DROP TABLE packs")  # as a cache an earlier popvault made
    with open_ro(root) as v:
        assert want and v.cache.pack_names() == want


def test_a_rebuilt_cache_names_the_same_packs(tmp_path: Path) -> None:
    root = tmp_path / "v"
    build(root, standard_batches())
    with open_rw(root) as v:
        want = v.cache.pack_names()
        v.rebuild_cache()
        assert v.cache.pack_names() == want == _from_commits(v)
        v.rebuild_cache(from_packs=True)
        assert v.cache.pack_names() == want


def test_commits_an_older_popvault_applied_are_found_when_the_cache_opens(
    tmp_path: Path,
) -> None:
    """An older popvault (no ``packs`` table of its own) wrote a commit to this cache:
    its blobs and commit are there, its pack not in ``packs``. Opening the cache again
    sees the count of applied commits ahead of the table's and fills it anew."""
    root = tmp_path / "v"
    build(root, standard_batches())
    with open_rw(root) as v:
        before = v.cache.pack_names()
        v.add_message(text_message(9), SourceInfo("a", "pop3://u@h", uidl="9"))
        v.commit()
        new = v.cache.pack_names() - before
        assert new
        db = v.cache.db
        with db:  # as the older popvault left it: the pack unlisted, the mark behind
            db.executemany("DELETE FROM packs WHERE name=?", [(p,) for p in new])
            db.execute("UPDATE meta SET value = value - 1 WHERE key='packs_commits'")
        assert v.cache.pack_names() == before
    with open_ro(root) as v:
        assert v.cache.pack_names() == before | new == _from_commits(v)
