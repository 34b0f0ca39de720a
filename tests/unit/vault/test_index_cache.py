"""The local index cache (format §9.3), listing filters, id resolution and the lock (§10)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from popvault.errors import IntegrityError, UsageError, VaultLocked
from popvault.vault.backend import LocalBackend, MemoryBackend
from popvault.vault.cache import Filter, IndexCache
from popvault.vault.vault import MessageMeta, SourceInfo, Vault
from tests.support.vaults import (
    PASSPHRASE,
    build,
    cache_file,
    create,
    listing,
    memory_vault,
    message_ids,
    open_ro,
    open_rw,
    standard_batches,
    text_message,
)


@pytest.fixture
def vault_dir(tmp_path: Path) -> tuple[Path, dict[bytes, bytes]]:
    root = tmp_path / "v"
    batches = build(root, standard_batches())
    return root, {k: v for b in batches for k, v in b.items()}


def _cache_file(cache_dir: Path, root: Path) -> Path:
    with open_ro(root) as v:
        return cache_file(v)


def test_cache_file_private(vault_dir: tuple[Path, dict[bytes, bytes]], cache_dir: Path) -> None:
    root, _ = vault_dir
    path = _cache_file(cache_dir, root)
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    assert not (Path.home() / ".cache" / "popvault" / path.name).exists()


def test_deleted_cache_rebuilt_on_open(
    vault_dir: tuple[Path, dict[bytes, bytes]], cache_dir: Path
) -> None:
    root, ids = vault_dir
    with open_ro(root) as v:
        before = listing(v)
        path = cache_file(v)
    assert len(before) == len(ids)
    for p in cache_dir.iterdir():
        p.unlink()
    with open_ro(root) as v:
        assert listing(v) == before
        for mid, data in ids.items():
            assert v.read_message(mid) == data
    assert path.exists()


def test_cache_of_another_vault_refused(tmp_path: Path, cache_dir: Path) -> None:
    build(tmp_path / "a", [[text_message(1)]])
    build(tmp_path / "b", [[text_message(2)]])
    a = _cache_file(cache_dir, tmp_path / "a")
    b = _cache_file(cache_dir, tmp_path / "b")
    b.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(b) + suffix).unlink(missing_ok=True)
    shutil.copy(a, b)
    with pytest.raises(UsageError) as ei:
        open_ro(tmp_path / "b")
    assert ei.value.exit_code == 2
    assert "another vault" in ei.value.message


def test_rebuild_from_packs_after_losing_segments(
    vault_dir: tuple[Path, dict[bytes, bytes]], cache_dir: Path
) -> None:
    root, ids = vault_dir
    warnings: list[str] = []
    with open_ro(root, warn=warnings.append) as v:
        before = listing(v)
        for seg in LocalBackend(root).list("index"):
            LocalBackend(root).delete(seg)
        v.rebuild_cache()  # from segments first: they are gone, so from packs
        assert any("rebuilding from packs" in w for w in warnings)
        assert listing(v) == before
        got = v.rebuild_cache(from_packs=True)
        assert got["commits"] == 3
        assert listing(v) == before
        for mid, data in ids.items():
            assert v.read_message(mid) == data
        assert not v.check().ok  # the segments are still missing, and check says so
    # with the cache gone too: opening cannot sync (exit 20), opening without sync can
    # recover from the packs
    for p in cache_dir.iterdir():
        p.unlink()
    with pytest.raises(IntegrityError):
        open_ro(root)
    with Vault.open(root, PASSPHRASE, sync=False) as v:
        v.rebuild_cache(from_packs=True)
        assert listing(v) == before


def test_rebuild_from_segments_same_listing(vault_dir: tuple[Path, dict[bytes, bytes]]) -> None:
    root, _ = vault_dir
    with open_ro(root) as v:
        before = listing(v)
        assert v.rebuild_cache() == {"commits": 3, "packs": 0}
        assert listing(v) == before


def _filter_vault() -> tuple[Vault, dict[str, bytes]]:
    _backend, v = memory_vault()
    ids: dict[str, bytes] = {}
    day = 86400.0
    specs = [
        ("old", "alice", 1 * day, "Alice <alice@example.org>", "bob@example.net", "", "Hello"),
        ("mid", "alice", 10 * day, "Carol <carol@example.org>", "dave@example.net", "", "Invoice"),
        (
            "new",
            "bob",
            20 * day,
            "alice@example.org",
            "x@example.net",
            "Bob@Example.net",
            "Re: hello",
        ),
    ]
    for key, account, received, from_, to, cc, subject in specs:
        res = v.add_message(
            text_message(len(ids), subject=subject),
            SourceInfo(account, "pop3", uidl=key),
            MessageMeta(received=received, from_=from_, to=to, cc=cc, subject=subject),
        )
        ids[key] = res.msg_id
    v.commit()
    return v, ids


def _names(v: Vault, ids: dict[str, bytes], flt: Filter) -> list[str]:
    back = {m: k for k, m in ids.items()}
    return [back[r.id] for r in v.messages(flt)]


def test_filters() -> None:
    v, ids = _filter_vault()
    day = 86400.0
    with v:
        assert _names(v, ids, Filter()) == ["old", "mid", "new"]  # oldest delivery first
        assert _names(v, ids, Filter(account="alice")) == ["old", "mid"]
        assert _names(v, ids, Filter(account="bob")) == ["new"]
        assert _names(v, ids, Filter(account="nobody")) == []
        assert _names(v, ids, Filter(since=5 * day)) == ["mid", "new"]
        assert _names(v, ids, Filter(until=10 * day)) == ["old"]  # until is exclusive
        assert _names(v, ids, Filter(since=10 * day, until=20 * day)) == ["mid"]
        assert _names(v, ids, Filter(from_="ALICE")) == ["old", "new"]
        assert _names(v, ids, Filter(to="bob@")) == ["old", "new"]  # to or cc
        assert _names(v, ids, Filter(to="dave")) == ["mid"]
        assert _names(v, ids, Filter(subject="hello")) == ["old", "new"]
        assert _names(v, ids, Filter(subject="hello", account="bob")) == ["new"]
        assert _names(v, ids, Filter(ids=frozenset({ids["mid"]}))) == ["mid"]
        assert _names(v, ids, Filter(subject="%")) == []


def test_resolve() -> None:
    _backend, v = memory_vault()
    with v:
        # find two messages whose ids share a 4-hex-digit prefix
        seen: dict[str, bytes] = {}
        pair: tuple[bytes, bytes] | None = None
        n = 0
        while pair is None:
            data = text_message(n)
            p = v.keys.keyed_id(data).hex()[:4]
            if p in seen:
                pair = (seen[p], data)
            seen[p] = data
            n += 1
        a = v.add_message(pair[0], SourceInfo("a", "pop3")).msg_id
        b = v.add_message(pair[1], SourceInfo("a", "pop3")).msg_id
        v.commit()
        assert v.resolve(a.hex()) == a
        assert v.resolve(a.hex().upper()) == a
        assert v.resolve(" " + b.hex()[:12] + "\n") == b
        short = a.hex()[:4]
        with pytest.raises(UsageError, match="ambiguous") as ei:
            v.resolve(short)
        assert ei.value.exit_code == 2
        unused = next(
            f"{i:04x}" for i in range(1 << 16) if not f"{i:04x}".startswith((short, b.hex()[:4]))
        )
        with pytest.raises(UsageError, match="no message"):
            v.resolve(unused)
        for bad in ("abc", "xyz12", "a" * 65, "12 34", "%%%%", "____"):
            with pytest.raises(UsageError):
                v.resolve(bad)


def test_second_writer_locked(tmp_path: Path) -> None:
    create(tmp_path / "v")
    with open_rw(tmp_path / "v") as v:
        with pytest.raises(VaultLocked) as ei:
            open_rw(tmp_path / "v")
        assert ei.value.exit_code == 11
        assert str(os.getpid()) in ei.value.message
        with open_ro(tmp_path / "v") as r:  # readers are never locked out
            assert not r.writable
        assert v.writable
    with open_rw(tmp_path / "v") as v2:  # released on close
        assert v2.writable
    assert not (tmp_path / "v" / "lock").exists()


def test_second_writer_locked_memory() -> None:
    backend = MemoryBackend()
    create(backend)
    with open_rw(backend):
        with pytest.raises(VaultLocked):
            open_rw(backend)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(root: Path, host: str, pid: int) -> None:
    info = {
        "host": host,
        "pid": pid,
        "start": None,
        "time": time.time() - 3600,
        "command": "popvault backup",
        "token": "feedfacefeedface",
    }
    (root / "lock").write_text(json.dumps(info))


def test_stale_lock_of_dead_process_broken(tmp_path: Path) -> None:
    root = tmp_path / "v"
    (ids,) = build(root, [[text_message(1)]])
    pid = _dead_pid()
    _write_lock(root, socket.gethostname(), pid)
    warnings: list[str] = []
    with open_rw(root, warn=warnings.append) as v:
        assert v.writable
        assert message_ids(v) == set(ids)
    assert any("stale lock" in w and str(pid) in w for w in warnings)
    assert not (root / "lock").exists()


def test_lock_of_other_host_never_broken(tmp_path: Path) -> None:
    root = tmp_path / "v"
    create(root)
    _write_lock(root, "some-other-host.invalid", _dead_pid())
    with pytest.raises(VaultLocked) as ei:
        open_rw(root)
    assert "some-other-host.invalid" in ei.value.message
    assert (root / "lock").exists()


def test_lock_of_live_process_kept(tmp_path: Path) -> None:
    root = tmp_path / "v"
    create(root)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _write_lock(root, socket.gethostname(), proc.pid)
        with pytest.raises(VaultLocked):
            open_rw(root)
    finally:
        proc.kill()
        proc.wait()
    assert (root / "lock").exists()


def test_unreadable_lock(tmp_path: Path) -> None:
    root = tmp_path / "v"
    create(root)
    (root / "lock").write_bytes(b"\x00garbage")
    with pytest.raises(VaultLocked, match="unreadable"):
        open_rw(root)


def test_a_damaged_cache_file_is_replaced(tmp_path: Path) -> None:
    """The cache is only a cache: garbage in its place is discarded, not an error."""
    path = tmp_path / "c" / "cache.sqlite"
    path.parent.mkdir()
    path.write_bytes(b"this is not a database" * 100)
    cache = IndexCache(path)
    try:
        cache.reset("ab" * 16)
        assert cache.get_meta("vault_id") == "ab" * 16
    finally:
        cache.close()
    assert path.read_bytes().startswith(b"SQLite format 3")


def test_stored_blobs_answers_for_many_ids_at_once() -> None:
    """The frame-flush look-up: which of a batch of ids (more than one query's worth)
    the index holds."""
    _backend, v = memory_vault()
    with v:
        for i in range(700):
            v.add_message(text_message(i, body=b"x" * i), SourceInfo("a", "pop3", uidl=str(i)))
        v.commit()
        held = [bytes(r[0]) for r in v.cache.db.execute("SELECT id FROM blobs")]
        assert len(held) > 1000
        absent = [os.urandom(32) for _ in range(300)]
        ask = absent[:150] + held + absent[150:]
        assert v.cache.stored_blobs(ask) == set(held)
        assert v.cache.stored_blobs(absent) == set()
        assert v.cache.stored_blobs([]) == set()


def test_an_existing_cache_folder_is_made_private(tmp_path: Path) -> None:
    """The cache holds plaintext headers: its folder is 0700 even if it existed (0755)."""
    folder = tmp_path / "cachedir"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    IndexCache(folder / "x.sqlite").close()
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "x.sqlite").stat().st_mode & 0o777 == 0o600


def test_a_shared_folder_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    IndexCache(shared / "x.sqlite").close()
    assert shared.stat().st_mode & 0o7777 == 0o1777
    assert (shared / "x.sqlite").stat().st_mode & 0o777 == 0o600


def test_a_reused_uidl_maps_to_its_latest_arrival() -> None:
    """A server that reused a UIDL: the vault holds two arrivals under it, and the one
    that counts (for the deletion identity check) is the latest, whatever the ids."""
    _backend, v = memory_vault()
    with v:
        a, b = text_message(1, subject="first"), text_message(2, subject="second")
        ids = {v.keyed_id(m): m for m in (a, b)}
        older, newer = (ids[k] for k in sorted(ids, reverse=True))  # older has the larger id
        for data in (older, newer):
            v.add_message(data, SourceInfo("acct", "pop3://u@h", uidl="same"), MessageMeta())
            v.commit()
            time.sleep(0.01)
        assert v.known_uidls("acct") == {"same": v.keyed_id(newer)}
