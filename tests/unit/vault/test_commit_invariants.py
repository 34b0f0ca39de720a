"""A commit never names a blob that is in no pack (format §8.2), and a vault that an
earlier popvault damaged that way heals (format §8.6).

The torn state is made the way the old interrupt bug made it: a frame group of pending
blobs dropped after the records naming them were queued (a KeyboardInterrupt between
``_groups.pop`` and the frame reaching a pack).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from popvault.errors import IntegrityError, PopvaultError
from popvault.vault.backend import MemoryBackend
from popvault.vault.pack import PackWriter
from popvault.vault.vault import SourceInfo, Vault
from popvault.vault.writer import Writer
from tests.support.vaults import (
    add_batch,
    attachment_message,
    create,
    open_ro,
    open_rw,
    random_bytes,
    text_message,
)

FIRST = [text_message(i) for i in range(5)]
SECOND = [text_message(i, body=b"second batch " * 40) for i in range(100, 110)]
SECOND += [attachment_message(random_bytes(30_000, 7), n=1)]


def _committed(where: Path | MemoryBackend) -> dict[bytes, bytes]:
    """A vault with FIRST committed; returns id -> bytes."""
    create(where)
    with open_rw(where) as v:
        ids = add_batch(v, FIRST, uidl_prefix="a")
        v.commit()
    return ids


def _tear(v: Vault) -> None:
    """Drop every pending frame group, as the old interrupt bug did."""
    assert v._writer.groups, "nothing pending to tear"
    v._writer.groups.clear()


def test_a_commit_whose_records_name_lost_blobs_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "v"
    first = _committed(root)
    with open_rw(root) as v:
        add_batch(v, SECOND, uidl_prefix="b")
        _tear(v)
        with pytest.raises(IntegrityError, match="refusing to commit"):
            v.commit()
        assert v.broken
        with pytest.raises(PopvaultError, match="reopen"):
            v.commit()
    with open_rw(root, cache_dir=tmp_path / "fresh") as v:
        rep = v.check(read_data=True)
        assert rep.ok, rep.problems
        assert {r.id for r in v.messages()} == set(first)
        assert set(v.known_uidls("acct")) == {f"a{i}-{len(m)}" for i, m in enumerate(FIRST)}


def test_the_check_accepts_blobs_an_earlier_commit_stored() -> None:
    """Duplicates of stored blobs are not in this commit's packs, and that is fine."""
    backend = MemoryBackend()
    _committed(backend)
    with open_rw(backend) as v:
        add_batch(v, FIRST, account="other")  # same bytes: no new blobs
        assert v.commit() is not None
        assert v.check(read_data=True).ok


class FailingPuts(MemoryBackend):
    """Puts of packs fail while ``failing`` is set."""

    failing = False

    def put(self, name: str, data: bytes | bytearray) -> None:
        if self.failing and name.startswith("packs/"):
            raise OSError(5, "Input/output error")
        super().put(name, data)


def test_a_pack_lost_half_way_through_a_run_breaks_the_vault() -> None:
    """A pack put that fails while messages are added (not in commit) must not let
    a later commit name the blobs it held."""
    backend = FailingPuts()
    _committed(backend)
    v = open_rw(backend)
    try:
        backend.failing = True
        big = [attachment_message(random_bytes(2 << 20, s), n=s) for s in range(12)]
        with pytest.raises(OSError):
            add_batch(v, big, uidl_prefix="big")  # a pack fills before the end
        backend.failing = False
        assert v.broken
        with pytest.raises(PopvaultError, match="reopen"):
            v.commit()
    finally:
        v.close()
    with open_ro(backend) as v:
        assert v.check(read_data=True).ok


def test_a_keyboard_interrupt_inside_a_change_breaks_the_vault(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A program using the library without popvault's signal handlers gets Python's
    KeyboardInterrupt anywhere: a torn change is never committed."""
    backend = MemoryBackend()
    _committed(backend)
    real = PackWriter.add_frame
    calls = [0]

    def interrupted(self: PackWriter, *args: object, **kwargs: object) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise KeyboardInterrupt
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PackWriter, "add_frame", interrupted)
    v = open_rw(backend)
    try:
        with pytest.raises(KeyboardInterrupt):
            add_batch(v, [attachment_message(random_bytes(2 << 20, 3), n=3)])
        assert v.broken
    finally:
        v.close()
    with open_ro(backend) as v:
        assert v.check(read_data=True).ok


def _damaged(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[bytes, bytes], set[bytes]]:
    """A vault as the old bug left it: FIRST whole, SECOND recorded but some of its
    blobs in no pack. Returns (every id -> bytes, the ids whose data is missing)."""
    first = _committed(root)
    with monkeypatch.context() as m:
        m.setattr(Writer, "assert_complete", lambda *_a: None)
        with open_rw(root) as v:
            second = add_batch(v, SECOND, uidl_prefix="b")
            _tear(v)
            v.commit()
    with open_ro(root) as v:
        missing = {mid for mid in second if not _readable(v, mid)}
    assert missing, "the tear lost nothing"
    return {**first, **second}, missing


def _readable(v: Vault, mid: bytes) -> bool:
    try:
        v.read_message(mid)
    except (IntegrityError, PopvaultError):
        return False
    return True


def test_a_vault_damaged_by_the_old_bug_is_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "v"
    everything, missing = _damaged(root, monkeypatch)
    with open_ro(root, cache_dir=tmp_path / "fresh") as v:
        assert v.cache.incomplete() == missing
        rep = v.check()
        assert not rep.ok
        assert any("without all of their data" in p for p in rep.problems), rep.problems
        assert rep.affected >= missing
        # not archived: their UIDLs do not count as seen, their ids as stored
        uidls = v.known_uidls("acct")
        assert all(uidls[u] not in missing for u in uidls)
        assert len(uidls) == len(everything) - len(missing)
        assert not any(v.has_message(mid) for mid in missing)


def test_adding_the_messages_again_heals_the_vault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "v"
    everything, missing = _damaged(root, monkeypatch)
    with open_rw(root) as v:  # the cache that saw the damaged commit, as in real life
        assert v.cache.incomplete() == missing
        for i, data in enumerate(SECOND):
            mid = v.add_message(data, SourceInfo("acct", "pop3", uidl=f"b{i}-{len(data)}")).msg_id
            assert (mid in missing) == (mid in v._writer.pending_msgs)  # stored again, whole
        v.commit()
        assert v.cache.incomplete() == set()
    for cache in (None, tmp_path / "fresh"):
        with open_ro(root, cache_dir=cache) as v:
            assert v.cache.incomplete() == set()
            rep = v.check(read_data=True)
            assert rep.ok, rep.problems
            for mid, data in everything.items():
                assert v.read_message(mid, use_cache=False) == data
            assert set(v.known_uidls("acct").values()) == set(everything)
