"""Lost commits, rollback, a swapped vault; adoption, repair and prune (format §8.4,
§8.6, §8.7).

The storage is an adversary here: commit records vanish, an older copy of the vault is
put back, another vault appears at the same place. Writers must notice, refuse (exit
20) and delete nothing; ``repair`` must bring every message still in the vault back; a
machine that has never seen the vault must never delete a pack either.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from popvault.errors import IntegrityError, VaultLocked
from popvault.vault.orphans import Orphan, lost_commits
from popvault.vault.records import BlobPiece, CommitMark
from popvault.vault.vault import Vault
from tests.support.vaults import (
    PASSPHRASE,
    add_batch,
    build,
    deleted_uidls,
    message_ids,
    open_ro,
    open_rw,
    standard_batches,
    text_message,
)


def _objects(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.name != "lock"
    }


def _commits(root: Path) -> list[Path]:
    return sorted((root / "commits").iterdir())


@pytest.fixture
def vault(tmp_path: Path) -> tuple[Path, set[bytes]]:
    """Three commits of messages; returns the path and every message id."""
    root = tmp_path / "v"
    batches = build(root, standard_batches(), cache_dir=tmp_path / "cache")
    return root, {m for b in batches for m in b}


@pytest.fixture
def fresh_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Another machine: no cache, no anchor."""
    state = tmp_path / "fresh-state"
    monkeypatch.setenv("POPVAULT_STATE_DIR", str(state))
    yield tmp_path / "fresh-cache"


def _repair(root: Path, cache: Path) -> Vault:
    v = Vault.open(root, PASSPHRASE, write=True, repairing=True, cache_dir=cache)
    v.repair()
    return v


def test_commit_records_carry_their_place(vault: tuple[Path, set[bytes]], tmp_path: Path) -> None:
    root, _ = vault
    with open_ro(root, cache_dir=tmp_path / "cache") as v:
        names = v.commit_names()
        bodies = [v.read_commit(n) for n in names]
    assert [b.seq for b in bodies] == [1, 2, 3]
    assert bodies[1].parent == names[0].split("/", 1)[1]


def test_newest_commit_deleted_is_refused_on_the_machine_that_saw_it(
    vault: tuple[Path, set[bytes]], tmp_path: Path
) -> None:
    root, ids = vault
    _commits(root)[-1].unlink()
    before = _objects(root)
    # a reset cache does not make the machine forget: the anchor lives elsewhere
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(IntegrityError) as err:
        open_rw(root, cache_dir=tmp_path / "cache")
    assert err.value.exit_code == 20
    assert "commit 3" in err.value.message and "which this machine has seen" in err.value.message
    assert "popvault repair" in (err.value.hint or "")
    assert _objects(root) == before  # nothing deleted
    # a reader is told, and check reports it
    with open_ro(root, cache_dir=tmp_path / "cache") as v:
        assert any("commit 3" in d for d in v.damage)
        rep = v.check()
        assert not rep.ok and any("which this machine has seen" in p for p in rep.problems)
    # repair brings every message back and the vault is whole again
    with _repair(root, tmp_path / "cache") as v:
        assert message_ids(v) == ids
    with open_rw(root, cache_dir=tmp_path / "cache") as v:
        assert message_ids(v) == ids
        rep = v.check(read_data=True)
        assert rep.ok, rep.problems
        v.verify_messages(ids)


def test_newest_commit_deleted_on_a_fresh_machine_is_adopted(
    vault: tuple[Path, set[bytes]], fresh_machine: Path
) -> None:
    root, ids = vault
    _commits(root)[-1].unlink()
    before = _objects(root)
    warnings: list[str] = []
    with open_rw(root, cache_dir=fresh_machine, warn=warnings.append) as v:
        assert any("no commit names" in w for w in warnings)
        assert v.commit() is not None  # the adoption itself is a commit
        assert message_ids(v) == ids
    assert before <= _objects(root)
    with open_ro(root, cache_dir=fresh_machine) as v:
        assert v.check(read_data=True).ok


def test_two_newest_commits_deleted_on_a_fresh_machine(
    vault: tuple[Path, set[bytes]], fresh_machine: Path
) -> None:
    root, ids = vault
    for c in _commits(root)[-2:]:
        c.unlink()
    before = _objects(root)
    with pytest.raises(IntegrityError) as err:
        open_rw(root, cache_dir=fresh_machine)
    assert "is missing" in err.value.message
    assert _objects(root) == before
    with open_ro(root, cache_dir=fresh_machine) as v:
        rep = v.check()
        assert not rep.ok and any("belongs to commit 3" in p for p in rep.problems)
    with _repair(root, fresh_machine) as v:
        assert message_ids(v) == ids
    with open_rw(root, cache_dir=fresh_machine) as v:
        assert v.check(read_data=True).ok
        v.verify_messages(ids)


def test_middle_commit_deleted_is_repaired_once(
    vault: tuple[Path, set[bytes]], fresh_machine: Path
) -> None:
    root, ids = vault
    _commits(root)[1].unlink()
    with pytest.raises(IntegrityError, match="commit 2 is missing"):
        open_rw(root, cache_dir=fresh_machine)
    with _repair(root, fresh_machine) as v:
        assert message_ids(v) == ids
    # the gap stays in the sequence, accepted by the repair commit: not reported again
    with open_rw(root, cache_dir=fresh_machine) as v:
        rep = v.check(read_data=True)
        assert rep.ok, rep.problems
        add_batch(v, [text_message(99)])
        assert v.commit() is not None


def test_whole_vault_rollback_is_detected(tmp_path: Path) -> None:
    root = tmp_path / "v"
    cache = tmp_path / "cache"
    build(root, standard_batches()[:2], cache_dir=cache)
    old = tmp_path / "old-copy"
    shutil.copytree(root, old)
    with open_rw(root, cache_dir=cache) as v:
        add_batch(v, [text_message(42)])
        v.commit()
    shutil.rmtree(root)
    shutil.copytree(old, root)  # the storage puts back yesterday's copy
    with pytest.raises(IntegrityError, match="older copy of the vault"):
        open_rw(root, cache_dir=cache)
    # repair accepts what is there (that commit's packs are gone with the copy) and the
    # writers go on
    with _repair(root, cache) as v:
        assert len(message_ids(v)) == 5
    with open_rw(root, cache_dir=cache) as v:
        assert v.check().ok


def test_swapped_vault_is_detected(tmp_path: Path) -> None:
    root = tmp_path / "v"
    cache = tmp_path / "cache"
    build(root, standard_batches()[:1], cache_dir=cache)
    other = tmp_path / "other"
    build(other, standard_batches()[1:], cache_dir=cache)  # same passphrase
    shutil.rmtree(root)
    shutil.copytree(other, root)
    with pytest.raises(IntegrityError, match="was replaced"):
        open_rw(root, cache_dir=cache)
    with open_ro(root, cache_dir=cache) as v:
        assert not v.check().ok
    # repair is how the user says "this is the vault I want here"
    _repair(root, cache).close()
    open_rw(root, cache_dir=cache).close()


def test_a_new_vault_at_a_known_place_is_not_a_swap(tmp_path: Path) -> None:
    root = tmp_path / "v"
    build(root, standard_batches()[:1], cache_dir=tmp_path / "cache")
    shutil.rmtree(root)
    build(root, standard_batches()[1:], cache_dir=tmp_path / "cache")  # init again
    open_rw(root, cache_dir=tmp_path / "cache").close()


def test_an_interrupted_commit_is_adopted_not_deleted(
    vault: tuple[Path, set[bytes]], tmp_path: Path
) -> None:
    """A commit that failed after its last pack (the one with its records) was written:
    the next writer commits that pack, with its messages."""
    root, ids = vault
    cache = tmp_path / "cache"
    extra = [text_message(200 + i, body=os.urandom(3000).hex().encode()) for i in range(3)]
    v = open_rw(root, cache_dir=cache)
    new = add_batch(v, extra, uidl_prefix="late")
    real_put = v._log.put_commit

    def fail(*args: object, **kwargs: object) -> str:
        raise OSError("the disk went away")

    v._log.put_commit = fail  # type: ignore[method-assign]
    with pytest.raises(OSError):
        v.commit()
    v._log.put_commit = real_put  # type: ignore[method-assign]
    v.close()
    before = _objects(root)
    with open_rw(root, cache_dir=cache) as v:
        assert not set(new) & message_ids(v)  # adopted, but archived only by a commit
        assert v.commit() is not None
        assert message_ids(v) == ids | set(new)
    assert before <= _objects(root)
    with open_ro(root, cache_dir=cache) as v:
        assert v.check(read_data=True).ok
        v.verify_messages(set(new))


def test_a_foreign_pack_is_left_alone(vault: tuple[Path, set[bytes]], tmp_path: Path) -> None:
    root, _ = vault
    junk = root / "packs" / "ab" / ("ab" + "0" * 62)
    junk.parent.mkdir(exist_ok=True)
    junk.write_bytes(b"PVPACK01" + os.urandom(200))
    with open_rw(root, cache_dir=tmp_path / "cache") as v:
        assert v.commit() is None
        rep = v.check()
        assert rep.ok and any("does not authenticate" in n for n in rep.notes)
        assert v.prune().packs == []
    assert junk.exists()


def test_prune_deletes_only_what_is_held_elsewhere(
    vault: tuple[Path, set[bytes]], tmp_path: Path
) -> None:
    root, ids = vault
    cache = tmp_path / "cache"
    # a pack holding only blobs the vault already has: a copy of committed data
    redundant = _write_copy_pack(root, cache)
    with open_rw(root, cache_dir=cache) as v:
        dry = v.prune(dry_run=True)
        assert dry.packs == [redundant] and (root / "packs" / redundant[:2] / redundant).exists()
        done = v.prune()
        assert done.packs == [redundant]
        assert message_ids(v) == ids
    assert not (root / "packs" / redundant[:2] / redundant).exists()
    with open_ro(root, cache_dir=cache) as v:
        assert v.check(read_data=True).ok


def _blob_ids(v: Vault) -> list[bytes]:
    return [
        bytes.fromhex(p.blob)
        for row in v.messages()
        for p in v.message(row.id).pieces
        if isinstance(p, BlobPiece)
    ]


def _write_copy_pack(root: Path, cache: Path) -> str:
    """Put a pack (authentic, named by no commit) holding copies of committed blobs."""
    from popvault.vault.pack import PackWriter, pack_object_name

    with open_ro(root, cache_dir=cache) as v:
        blobs = [(b, "txt", v.read_blob(b)) for b in _blob_ids(v)[:3]]
        pw = PackWriter(v.keys, v.vault_id, 3, None)
        pw.add_frame(blobs)
        name, data, _locs = pw.finish()
        v.backend.put(pack_object_name(name), bytes(data))
    return name


def test_repair_recovers_deletion_records(tmp_path: Path, fresh_machine: Path) -> None:
    root = tmp_path / "v"
    build(root, standard_batches()[:1], cache_dir=fresh_machine)
    with open_rw(root, cache_dir=fresh_machine) as v:
        mid = next(iter(message_ids(v)))
        v.record_deletion("acct", "b0-0-x", mid)
        v.commit()
        add_batch(v, [text_message(77)])
        v.commit()
    for c in _commits(root)[-2:]:
        c.unlink()
    v = Vault.open(root, PASSPHRASE, write=True, repairing=True, cache_dir=fresh_machine)
    rep = v.repair()
    v.close()
    assert rep.deletions_recovered == 1 and rep.messages_recovered == 1
    assert rep.accepted


def test_repair_recovers_records_from_a_segment_whose_pack_is_gone(
    tmp_path: Path, fresh_machine: Path
) -> None:
    """A lost deletion commit whose one pack is gone too: its segment still holds the
    deletion record, and repair takes it back."""
    root = tmp_path / "v"
    build(root, standard_batches()[:1], cache_dir=fresh_machine)
    with open_rw(root, cache_dir=fresh_machine) as v:
        mid = next(iter(message_ids(v)))
        v.record_deletion("acct", "gone-1", mid)
        name = v.commit()
        assert name is not None
        body = v.read_commit(f"commits/{name}")
    (root / "commits" / name).unlink()
    for pack in body.packs:
        (root / "packs" / pack[:2] / pack).unlink()
    assert (root / "index" / body.segments[0]).exists()
    v = Vault.open(root, PASSPHRASE, write=True, repairing=True, cache_dir=fresh_machine)
    rep = v.repair()
    assert rep.deletions_recovered == 1 and rep.packs_adopted == 0
    assert "gone-1" in deleted_uidls(v, "acct")
    v.close()
    with open_rw(root, cache_dir=fresh_machine) as v:
        assert v.check(read_data=True).ok


def test_a_writer_in_step_with_its_cache_reads_no_commit_record(tmp_path: Path) -> None:
    """Opening for writing costs a listing of commits/ and packs/, not a request per
    commit (what makes a no-op backup cheap on object storage)."""
    from popvault.vault.backend import LocalBackend

    gets: list[str] = []

    class Counting(LocalBackend):
        def get(self, name: str) -> bytes:
            gets.append(name)
            return super().get(name)

    root = tmp_path / "v"
    build(root, standard_batches(), cache_dir=tmp_path / "c")
    with open_rw(Counting(root), cache_dir=tmp_path / "c"):
        pass
    assert [g for g in gets if g.startswith(("commits/", "index/", "packs/"))] == []
    # and the same open without that knowledge (a fresh cache) does read them
    with open_rw(Counting(root), cache_dir=tmp_path / "fresh"):
        pass
    assert any(g.startswith("commits/") for g in gets)


def _interrupted_commit(root: Path, cache: Path, messages: list[bytes]) -> dict[bytes, bytes]:
    """A writer that dies at its commit point: its packs (the last one with its commit
    mark) are written, its commit record is not."""
    v = open_rw(root, cache_dir=cache)
    new = add_batch(v, messages, uidl_prefix="lost-race")

    def fail(*args: object, **kwargs: object) -> str:
        raise OSError("killed")

    v._log.put_commit = fail  # type: ignore[method-assign]
    with pytest.raises(OSError):
        v.commit()
    v.close()
    return new


def test_a_pack_landing_after_its_number_was_taken_is_adopted(
    vault: tuple[Path, set[bytes]], tmp_path: Path
) -> None:
    """On object storage a killed writer's last pack can land after the next writer
    committed (its requests outlive it). Its mark names a number that commit now holds,
    from the same parent: a writer that lost the race, not a lost commit. It is adopted,
    never reported as damage."""
    root, ids = vault
    cache = tmp_path / "cache"
    before = set((root / "packs").rglob("*"))
    late = _interrupted_commit(root, cache, [text_message(300 + i) for i in range(2)])
    in_flight = tmp_path / "in-flight"
    in_flight.mkdir()
    held = [p for p in (root / "packs").rglob("*") if p.is_file() and p not in before]
    assert held
    for p in held:
        p.rename(in_flight / p.name)  # not there yet when the next writer starts
    with open_rw(root, cache_dir=cache) as v:
        mine = add_batch(v, [text_message(400)], uidl_prefix="next")
        assert v.commit() is not None  # takes number 4, as the dead writer had
    for p in held:
        (in_flight / p.name).rename(p)  # the late requests land
    with open_ro(root, cache_dir=cache) as v:
        rep = v.check()
        assert rep.ok, rep.problems
        assert any("belongs to no commit" in n for n in rep.notes)
    warnings: list[str] = []
    with open_rw(root, cache_dir=cache, warn=warnings.append) as v:
        assert any("no commit names" in w for w in warnings)
        assert v.commit() is not None
        assert message_ids(v) == ids | set(mine) | set(late)
    with open_ro(root, cache_dir=tmp_path / "fresh") as v:
        rep = v.check(read_data=True)
        assert rep.ok, rep.problems
        v.verify_messages(set(late))


def test_which_marks_are_lost_commits() -> None:
    """The rule of format §8.6 item 4, on marks alone."""
    c = {n: f"{n:010d}-{n:064x}" for n in range(1, 4)}
    names = [f"commits/{c[n]}" for n in (1, 2, 3)]

    def lost(seq: int, parent: str | None) -> list[str]:
        return lost_commits([Orphan("ab" * 32, 0, [], [], CommitMark(seq, parent, ()))], names)

    assert lost(4, c[3]) == []  # continues the newest: an interrupted commit
    assert lost(3, c[2]) == []  # lost the race for number 3 (same parent as commit 3)
    assert lost(1, None) == []  # lost the race for the first number
    assert lost(3, c[1]) != []  # number 3 from another parent: a chain that is gone
    assert lost(2, None) != []
    assert "is missing" in lost(5, "0000000004-" + "0" * 64)[0]  # its parent is gone
    gap = [names[0], names[2]]  # commit 2 gone
    assert lost_commits([Orphan("cd" * 32, 0, [], [], CommitMark(2, c[1], ()))], gap) != []


def test_a_commit_record_landing_after_its_number_was_claimed_is_void(
    vault: tuple[Path, set[bytes]], tmp_path: Path
) -> None:
    """A killed writer's commit record that reaches the storage after the next writer
    took the same number (format §8.1.1): the number's claim names the next writer's
    record, so the late one is void: not part of the vault, not damage, never a second
    commit 4; what it named is adopted."""
    root, ids = vault
    cache = tmp_path / "cache"
    in_flight = tmp_path / "in-flight"
    in_flight.mkdir()
    v = open_rw(root, cache_dir=cache)
    late = add_batch(v, [text_message(600 + i) for i in range(2)], uidl_prefix="late")
    backend = v._log.backend
    real_put = backend.put

    def held(name: str, data: bytes | bytearray) -> None:
        if name.startswith("commits/"):
            (in_flight / name.split("/")[1]).write_bytes(data)
            raise OSError("killed while the record was on its way")
        real_put(name, data)

    backend.put = held  # type: ignore[method-assign]
    with pytest.raises(OSError):
        v.commit()
    v.close()
    (record,) = in_flight.iterdir()
    assert record.name.startswith("0000000004-")
    with open_rw(root, cache_dir=cache) as v:
        mine = add_batch(v, [text_message(700)], uidl_prefix="next")
        assert v.commit() is not None
        assert v.commit_names()[-1].startswith("commits/0000000004-")
    record.rename(root / "commits" / record.name)  # the late request lands
    assert len(list((root / "commits").glob("0000000004-*"))) == 2
    for cache_dir in (cache, tmp_path / "fresh"):
        with open_ro(root, cache_dir=cache_dir) as v:
            assert [n[8:18] for n in v.commit_names()] == [f"{i:010d}" for i in range(1, 5)]
            assert v.damage == []
            rep = v.check(read_data=True)
            assert rep.ok, rep.problems
            assert any(f"{record.name[:23]} is void" in n for n in rep.notes), rep.notes
    with open_rw(root, cache_dir=tmp_path / "fresh") as v:  # a writer is not refused
        assert message_ids(v) == ids | set(mine) | set(late)
        v.verify_messages(set(late) | set(mine))


def test_a_claim_naming_another_record_fails_the_commit(
    vault: tuple[Path, set[bytes]], tmp_path: Path
) -> None:
    """The claim is the fence: a writer whose number another writer's record has
    claimed meanwhile (one the lock did not keep out) reports failure, and its record
    is void."""
    root, _ = vault
    v = open_rw(root, cache_dir=tmp_path / "cache")
    add_batch(v, [text_message(800)], uidl_prefix="loser")
    backend = v._log.backend
    real_put = backend.put
    rival = "0000000004-" + "ab" * 32

    def racing(name: str, data: bytes | bytearray) -> None:
        if name.startswith("commits/"):  # the other writer commits number 4 just before
            (root / "commits" / rival).write_bytes(b"another writer's record")
            (root / "claims" / "0000000004").write_text(rival)
        real_put(name, data)

    backend.put = racing  # type: ignore[method-assign]
    with pytest.raises(VaultLocked, match="number 4 was taken by another writer"):
        v.commit()
    v.close()
    assert (root / "claims" / "0000000004").read_text() == rival
    assert len(list((root / "commits").glob("0000000004-*"))) == 2  # the loser's is void
