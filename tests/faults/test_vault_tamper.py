"""Every modified, truncated, swapped or missing byte is detected (DESIGN guarantee 4).

The vault under attack has three commits (text, an attachment, several packs). For every
object we flip bits at the first and last byte and 20 spread offsets, and truncate it.

What must happen, by object (format §4, §11):

* ``config`` and ``keys/*`` carry checksums: opening raises IntegrityError (exit 20).
  The one change that is not damage: dropping the final newline of their JSON (the
  checksummed content is intact), which opens and checks clean.
  (A damaged slot gives IntegrityError, not WrongPassphrase, because this vault has one
  slot; with several slots the others are tried first.)
* ``commits/*`` and ``index/*``: with a cold cache, opening raises IntegrityError (the
  cache sync reads them); with a warm cache, opening works and ``check --read-data``
  reports the problem.
* ``claims/*`` (read by readers only when two records share a number): opening works;
  ``check --read-data`` reports a claim that is malformed or names no record.
* ``packs/*``: opening works; ``check --read-data`` reports a problem; every message
  either raises IntegrityError or comes back exactly (never wrong bytes), and a message
  whose frame ciphertext (or the pack header) was hit always raises.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from popvault.errors import IntegrityError
from popvault.vault.anchor import location_key
from popvault.vault.pack import HEADER_SIZE
from popvault.vault.vault import Vault
from tests.support.vaults import (
    PASSPHRASE,
    add_batch,
    build,
    create,
    isolate_cache,
    message_ids,
    open_ro,
    open_rw,
    standard_batches,
    text_message,
)


@pytest.fixture(autouse=True)
def _cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return isolate_cache(monkeypatch, tmp_path)


class Built:
    def __init__(self, root: Path, warm: Path, batches: list[dict[bytes, bytes]]) -> None:
        self.root = root
        self.warm = warm
        self.batches = batches
        self.messages = {k: v for b in batches for k, v in b.items()}
        self.files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("tamper")
    root = base / "v"
    warm = base / "warm-cache"
    batches = build(root, standard_batches(), cache_dir=warm)
    return Built(root, warm, batches)


@pytest.fixture
def vault_copy(built: Built, tmp_path: Path) -> Path:
    dst = tmp_path / "v"
    shutil.copytree(built.root, dst)
    return dst


def _warm_cache(built: Built, root: Path, dest: Path) -> None:
    """The cache made while building the vault, as the copy at ``root`` finds it: caches
    are kept per location, so the file takes the name of the copy's location."""
    shutil.copytree(built.warm, dest)
    old, new = (location_key(str(r.resolve())) for r in (built.root, root))
    for p in dest.iterdir():
        p.rename(p.with_name(p.name.replace(old, new)))


def _offsets(size: int) -> list[int]:
    spread = {size * i // 21 for i in range(1, 21)}
    return sorted(spread | {0, size - 1})


def _flip(path: Path, offset: int, mask: int = 0x01) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :])
    return data


def _frames(data: bytes) -> list[tuple[int, int]]:
    """(start, length) of every frame ciphertext, from the layout alone (format §6)."""
    (tlen,) = struct.unpack(">I", data[-4:])
    end = len(data) - 4 - tlen
    pos, out = HEADER_SIZE, []
    while pos < end:
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((pos + 4, n))
        pos += 4 + n
    assert pos == end
    return out


def _open(root: Path, cache: Path) -> Vault:
    return Vault.open(root, PASSPHRASE, cache_dir=cache)


def _assert_never_wrong(v: Vault, built: Built, must_fail: set[bytes]) -> None:
    for mid, data in built.messages.items():
        if mid in must_fail:
            with pytest.raises(IntegrityError) as ei:
                v.read_message(mid)
            assert ei.value.exit_code == 20
            with pytest.raises(IntegrityError):
                v.verify_messages([mid])
            continue
        try:
            got = v.read_message(mid)
        except IntegrityError:
            continue
        assert got == data


def _users_of(v: Vault, pack: str, frame_starts: set[int] | None) -> set[bytes]:
    """Messages with a blob in ``pack`` (in a frame starting at one of ``frame_starts``)."""
    out: set[bytes] = set()
    for row in v.messages():
        for p in v.message(row.id).pieces:
            ids = [p[1]] if p[0] == "r" else p[1]
            for bid in ids:
                loc = v.cache.blob(bytes.fromhex(bid))
                assert loc is not None
                if loc.pack == pack and (frame_starts is None or loc.frame_offset in frame_starts):
                    out.add(row.id)
    return out


def _kind(name: str) -> str:
    return name.split("/")[0]


def test_vault_has_every_kind_of_object(built: Built) -> None:
    kinds = {_kind(f) for f in built.files}
    assert kinds == {"config", "keys", "packs", "index", "commits", "claims"}
    assert len([f for f in built.files if f.startswith("commits/")]) == 3
    assert len([f for f in built.files if f.startswith("claims/")]) == 3
    assert len([f for f in built.files if f.startswith("packs/")]) == 3


def _expect_damage(root: Path, name: str, built: Built, tmp: Path, original: bytes) -> None:
    """The checks that hold for any damage to object ``name`` of the copy at ``root``."""
    kind = _kind(name)
    cold = tmp / "cold"
    shutil.rmtree(cold, ignore_errors=True)
    if kind in ("config", "keys", "commits", "index"):
        with pytest.raises(IntegrityError) as ei:
            _open(root, cold).close()
        assert ei.value.exit_code == 20
    if kind in ("config", "keys"):
        return
    warm = tmp / "warm"
    shutil.rmtree(warm, ignore_errors=True)
    _warm_cache(built, root, warm)
    caches = [warm] if kind in ("commits", "index") else [warm, cold]
    for cache in caches:
        with _open(root, cache) as v:
            rep = v.check(read_data=True)
            assert not rep.ok, name
            must_fail: set[bytes] = set()
            if kind == "packs":
                pack = name.rsplit("/", 1)[1]
                damaged = _damaged_frames(original, (root / name).read_bytes())
                must_fail = _users_of(v, pack, damaged)
                assert must_fail <= rep.affected
            _assert_never_wrong(v, built, must_fail)


def _damaged_frames(before: bytes, after: bytes) -> set[int] | None:
    """Frame starts whose ciphertext differs (None: every frame, the header was hit)."""
    if len(after) < HEADER_SIZE or after[:HEADER_SIZE] != before[:HEADER_SIZE]:
        return None
    out: set[int] = set()
    for start, n in _frames(before):
        if after[start : start + n] != before[start : start + n]:
            out.add(start)
    return out


def _cases(built: Built) -> Iterator[tuple[str, int]]:
    for name in built.files:
        size = (built.root / name).stat().st_size
        for off in _offsets(size):
            yield name, off


def test_bit_flips_are_detected(built: Built, vault_copy: Path, tmp_path: Path) -> None:
    tried = 0
    for name, off in _cases(built):
        path = vault_copy / name
        for mask in (0x01, 0x80) if off in (0, path.stat().st_size - 1) else (0x04,):
            original = _flip(path, off, mask)
            try:
                _expect_damage(vault_copy, name, built, tmp_path, original)
            except AssertionError as exc:
                raise AssertionError(f"flip {mask:#x} at {name}@{off}: {exc}") from exc
            except pytest.fail.Exception as exc:
                raise AssertionError(f"flip {mask:#x} at {name}@{off}: {exc}") from exc
            finally:
                path.write_bytes(original)
            tried += 1
    assert tried >= 8 * 22


def test_truncation_is_detected(built: Built, vault_copy: Path, tmp_path: Path) -> None:
    for name in built.files:
        path = vault_copy / name
        original = path.read_bytes()
        for cut in sorted({0, 1, len(original) // 2, len(original) - 1}):
            path.write_bytes(original[:cut])
            if _kind(name) in ("config", "keys") and not original[cut:].strip():
                # only the final newline of checksummed JSON is gone: nothing is damaged
                with _open(vault_copy, tmp_path / "nl") as v:
                    assert v.check(read_data=True).ok
                path.write_bytes(original)
                continue
            try:
                _expect_damage(vault_copy, name, built, tmp_path, original)
            except (AssertionError, pytest.fail.Exception) as exc:
                raise AssertionError(f"truncation of {name} to {cut}: {exc}") from exc
            finally:
                path.write_bytes(original)


def test_appended_bytes_are_detected(built: Built, vault_copy: Path, tmp_path: Path) -> None:
    for name in built.files:
        path = vault_copy / name
        original = path.read_bytes()
        path.write_bytes(original + b"\x00")
        try:
            _expect_damage(vault_copy, name, built, tmp_path, original)
        finally:
            path.write_bytes(original)


def _packs(root: Path) -> list[Path]:
    return sorted((root / "packs").rglob("*"), key=str)


def _pack_files(root: Path) -> list[Path]:
    return [p for p in _packs(root) if p.is_file()]


def test_swapped_packs(built: Built, vault_copy: Path, tmp_path: Path) -> None:
    a, b = _pack_files(vault_copy)[:2]
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    with _open(vault_copy, tmp_path / "c") as v:
        rep = v.check(read_data=True)
        assert not rep.ok
        hit = _users_of(v, a.name, None) | _users_of(v, b.name, None)
        assert hit
        assert hit <= rep.affected
        _assert_never_wrong(v, built, hit)


def test_swapped_frames_within_a_pack(built: Built, vault_copy: Path, tmp_path: Path) -> None:
    swapped = 0
    for path in _pack_files(vault_copy):
        data = path.read_bytes()
        frames = _frames(data)
        if len(frames) < 2:
            continue
        (s0, n0), (s1, n1) = frames[0], frames[1]
        # swap whole frames (length prefix and ciphertext): a well-formed pack layout
        f0, f1 = data[s0 - 4 : s0 + n0], data[s1 - 4 : s1 + n1]
        new = data[: s0 - 4] + f1 + f0 + data[s1 + n1 :]
        assert len(new) == len(data) and new != data
        path.write_bytes(new)
        with _open(vault_copy, tmp_path / f"c{swapped}") as v:
            rep = v.check(read_data=True)
            assert not rep.ok
            hit = _users_of(v, path.name, {s0, s1})
            assert hit
            _assert_never_wrong(v, built, hit)
        path.write_bytes(data)
        swapped += 1
    assert swapped >= 1


def test_deleted_pack(built: Built, vault_copy: Path, tmp_path: Path) -> None:
    for path in _pack_files(vault_copy):
        data = path.read_bytes()
        path.unlink()
        with _open(vault_copy, tmp_path / "c") as v:
            rep = v.check(read_data=False)
            assert not rep.ok
            assert any("missing" in p for p in rep.problems)
            hit = _users_of(v, path.name, None)
            assert hit <= rep.affected
            assert not v.check(read_data=True).ok
            _assert_never_wrong(v, built, hit)
        path.write_bytes(data)


def test_deleted_middle_commit(built: Built, vault_copy: Path, tmp_path: Path) -> None:
    commits = sorted((vault_copy / "commits").iterdir())
    commits[1].unlink()
    middle = set(built.batches[1]) - set(built.batches[0]) - set(built.batches[2])
    # cold cache: the vault opens, the gap is reported, commit 2's messages are absent
    with _open(vault_copy, tmp_path / "cold") as v:
        rep = v.check()
        assert not rep.ok
        assert any("sequence" in p or "predecessor" in p for p in rep.problems)
        assert not message_ids(v) & middle
        assert not v.check(read_data=True).ok
    # warm cache: the cache knew commit 2; the rollback is noticed and said
    warm = tmp_path / "warm"
    _warm_cache(built, vault_copy, warm)
    warnings: list[str] = []
    with Vault.open(vault_copy, PASSPHRASE, cache_dir=warm, warn=warnings.append) as v:
        assert any("lacks 1 commit" in w for w in warnings)
        assert not message_ids(v) & middle
        assert not v.check(read_data=True).ok
    # a writer refuses the vault (exit 20, naming repair) and deletes nothing
    packs_before = _pack_files(vault_copy)
    warm2 = tmp_path / "warm2"
    _warm_cache(built, vault_copy, warm2)
    with pytest.raises(IntegrityError) as err:
        Vault.open(vault_copy, PASSPHRASE, write=True, cache_dir=warm2, warn=warnings.append)
    assert "commit" in err.value.message and "popvault repair" in (err.value.hint or "")
    assert _pack_files(vault_copy) == packs_before
    # repair brings commit 2's messages back from its packs, and check is clean after
    with Vault.open(
        vault_copy, PASSPHRASE, write=True, repairing=True, cache_dir=warm2, warn=warnings.append
    ) as v:
        repaired = v.repair()
        assert repaired.messages_recovered >= len(middle) and repaired.commit is not None
        assert middle <= message_ids(v)
    with _open(vault_copy, tmp_path / "after") as v:
        assert v.check(read_data=True).ok, v.check().problems
        assert middle <= message_ids(v)
        _assert_never_wrong(v, built, set())  # every message reads back exactly


def test_deleted_segment(built: Built, vault_copy: Path, tmp_path: Path) -> None:
    seg = sorted((vault_copy / "index").iterdir())[0]
    seg.unlink()
    with pytest.raises(IntegrityError):  # cold cache cannot sync: exit 20, not 1
        _open(vault_copy, tmp_path / "cold").close()
    warm = tmp_path / "warm"
    _warm_cache(built, vault_copy, warm)
    with _open(vault_copy, warm) as v:
        rep = v.check()
        assert not rep.ok
        assert any("missing" in p for p in rep.problems)


def test_warm_cache_does_not_mask_damage(built: Built, vault_copy: Path, tmp_path: Path) -> None:
    warm = tmp_path / "warm"
    _warm_cache(built, vault_copy, warm)
    with _open(vault_copy, warm) as v:
        # read everything once: frames now sit in the in-memory frame cache
        for mid, data in built.messages.items():
            assert v.read_message(mid) == data
        pack = _pack_files(vault_copy)[0]
        original = pack.read_bytes()
        start, n = _frames(original)[0]
        _flip(pack, start + n // 2)
        hit = _users_of(v, pack.name, {start})
        assert hit
        # the read-back before DELE never trusts a cache
        for mid in hit:
            with pytest.raises(IntegrityError):
                v.verify_messages([mid])
        # never wrong bytes, even from memory
        for mid in hit:
            try:
                assert v.read_message(mid) == built.messages[mid]
            except IntegrityError:
                pass
        assert not v.check(read_data=True).ok
    # a new process with the warm SQLite cache reads the damaged pack and fails
    with _open(vault_copy, warm) as v:
        for mid in hit:
            with pytest.raises(IntegrityError):
                v.read_message(mid)


@pytest.mark.parametrize("kind", ["symlink to /dev/zero", "huge sparse file", "fifo"])
def test_a_pack_that_is_no_pack_is_reported_not_read(tmp_path: Path, kind: str) -> None:
    """Write access to the vault must not make check --read-data read without end or
    block: a pack replaced by a link to /dev/zero, a 6 GB sparse file or a FIFO is
    reported as damage (and its messages as affected), in bounded time and memory."""
    import os
    import resource

    from popvault.vault.backend import LocalBackend

    root = tmp_path / "v"
    create(root)
    with open_rw(root) as v:
        add_batch(v, [text_message(i) for i in range(5)])
        v.commit()
    pack = next(p for p in LocalBackend(root).list("packs"))
    path = root / pack
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind.startswith("symlink"):
        path.symlink_to("/dev/zero")
    else:
        with open(path, "wb") as f:
            f.truncate(6 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open_ro(root) as v:
        rep = v.check(read_data=True)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert not rep.ok
    assert any("regular file" in p or "larger than any object" in p for p in rep.problems)
    assert len(rep.affected) == 5
    assert grown_mb < 100
