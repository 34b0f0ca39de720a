"""``check``'s blob table lives on disk, encrypted, and is gone when the check is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from popvault.vault.pack import BlobLocation
from popvault.vault.scratch import PREFIX, BlobTable


def _loc(i: int, pack: str) -> BlobLocation:
    return BlobLocation(
        bytes([i % 256]) * 31 + bytes([i // 256]), "raw", pack, i, 100 * i, 90, 3, 7
    )


def test_lookups_by_id_and_by_pack(tmp_path: Path) -> None:
    with BlobTable(tmp_path) as table:
        table.add(_loc(i, "a" * 64) for i in range(600))
        table.add(_loc(i, "b" * 64) for i in range(600, 700))
        # a later row for the same id replaces the earlier one (as a dict would)
        table.add([_loc(650, "c" * 64)])
        assert len(table) == 700
        assert table.packs() == {"a" * 64, "b" * 64, "c" * 64}
        assert table.in_pack("c" * 64) == [_loc(650, "c" * 64)]
        assert len(table.in_pack("b" * 64)) == 99
        unknown = [b"\xee" * 32, b"\xef" * 32]
        ids = [_loc(i, "").blob_id for i in range(0, 700, 3)] + unknown
        assert table.missing(ids) == set(unknown)  # more ids than one query takes
        assert set(table.ids_in(["c" * 64])) == {_loc(650, "").blob_id}


def test_no_lookup_sorts_the_table(tmp_path: Path) -> None:
    """Every query reads an index: none sorts the whole table (SQLite sorts in memory
    here, as temporary files would not be encrypted: at a million messages a sort of
    every blob cost 211 MB)."""
    with BlobTable(tmp_path) as table:
        # the index is there before the first row, never made (by a sort) afterwards
        made = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'blobs'"
        assert "blobs_pack" in {r[0] for r in table.db.execute(made)}
        table.add(_loc(i, "ab"[i % 2] * 64) for i in range(300))
        queries = [
            ("SELECT DISTINCT pack FROM blobs", ()),
            ("SELECT * FROM blobs WHERE pack = ?", ("a" * 64,)),
            ("SELECT id FROM blobs WHERE id IN (?, ?)", (b"1", b"2")),
        ]
        for sql, args in queries:
            plan = " ".join(str(r[-1]) for r in table.db.execute(f"EXPLAIN QUERY PLAN {sql}", args))
            assert "INDEX" in plan, plan
            assert "TEMP B-TREE" not in plan, plan


def test_the_file_is_encrypted_and_deleted(tmp_path: Path) -> None:
    table = BlobTable(tmp_path)
    marker = b"MARKER-BLOB-ID-0123456789abcdefX"
    table.add([BlobLocation(marker, "raw", "d" * 64, 0, 0, 1, 0, 1)])
    table.db.commit()
    files = list(tmp_path.glob(f"{PREFIX}*"))
    assert files and files[0].stat().st_size > 0
    data = files[0].read_bytes()
    assert marker not in data and b"d" * 64 not in data and b"SQLite format" not in data
    table.close()
    assert list(tmp_path.iterdir()) == []


def test_a_killed_checks_leftover_goes_a_living_ones_stays(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    gone = tmp_path / f"{PREFIX}{int(dead.stdout)}-x"
    gone.write_bytes(b"left by kill -9")
    alive = tmp_path / f"{PREFIX}{os.getppid()}-y"
    alive.write_bytes(b"another check running")
    other = tmp_path / "unrelated"
    other.write_bytes(b"not ours")
    with BlobTable(tmp_path):
        pass
    assert not gone.exists()
    assert alive.exists() and other.exists()


def test_no_cache_folder_uses_the_temporary_folder() -> None:
    with BlobTable(None) as table:
        assert table.path.exists()
        path = table.path
    assert not path.exists()
