"""``popvault copy DEST`` between local folders (format §8.8): a full copy is the same
vault (check --read-data clean, byte-identical export), a second copy transfers only
what is new, a copy killed at any put (kill -9) leaves a valid, older vault that a
rerun completes, and a destination that is another vault, not a vault, or ahead of the
source is refused with one line, its exit code, and nothing written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from popvault.vault import SourceInfo
from popvault.vault.crypto import TEST_KDF
from popvault.vault.vault import Vault
from tests.cli.helpers import (
    PASSPHRASE,
    REPO,
    Result,
    make_vault,
    messages,
    one_line_error,
    run,
    simple_message,
    tree,
)


def add_commits(vault: Path, batches: list[list[bytes]], machine: Path | None = None) -> None:
    """One commit a batch of messages (library: fast); ``machine``: as another machine
    (its own cache and anchors) would."""
    cache = None if machine is None else machine / "cache"
    with Vault.open(
        vault, PASSPHRASE.encode(), write=True, cache_dir=cache, state_dir=machine
    ) as v:
        for n, batch in enumerate(batches):
            for i, m in enumerate(batch):
                v.add_message(m, _source(f"t{n}", i))
            v.commit()


def _source(account: str, i: int) -> SourceInfo:
    return SourceInfo(account=account, uidl=f"u{i}", source=f"test:{account}/{i}")


def copy(src: Path | str, dest: Path | str, *extra: str) -> Result:
    return run("--vault", src, "copy", dest, *extra)


def summary(res: Result) -> dict[str, object]:
    assert res.code == 0, res
    out: dict[str, object] = json.loads(res.text)
    return out


def export(vault: Path | str, dest: Path) -> dict[str, bytes]:
    res = run("--vault", vault, "export", dest, "--format", "eml")
    assert res.code == 0, res
    return {p.name: p.read_bytes() for p in sorted(dest.iterdir())}


def test_full_copy_is_the_same_vault(vault: Path, tmp_path: Path) -> None:
    msgs = messages(12, seed=3)
    add_commits(vault, [msgs[:5], msgs[5:9], msgs[9:]])
    dest = tmp_path / "offsite"
    res = copy(vault, dest)
    assert res.code == 0, res
    assert "created a copy of vault" in res.err
    assert "3 commit records" in res.err
    # the same objects under the same names, the lock released
    src_tree, dest_tree = tree(vault), tree(dest)
    assert dest_tree == src_tree
    assert "lock" not in dest_tree
    check = run("--vault", dest, "check", "--read-data")
    assert check.code == 0, check
    assert "no problems found: 12 messages" in check.err
    assert export(dest, tmp_path / "e2") == export(vault, tmp_path / "e1")
    assert len(export(dest, tmp_path / "e3")) == 12


def test_second_copy_transfers_only_new_objects(vault: Path, tmp_path: Path) -> None:
    msgs = messages(9, seed=4)
    add_commits(vault, [msgs[:4], msgs[4:6]])
    dest = tmp_path / "offsite"
    first = summary(copy(vault, dest, "--json"))
    assert first["created"] is True and first["commits_copied"] == 2
    inodes = {p: os.stat(dest / p).st_ino for p in tree(dest)}

    quiet = copy(vault, dest, "-q")
    assert quiet.code == 0 and quiet.err == "" and quiet.out == b"", quiet
    noop = summary(copy(vault, dest, "--json"))
    assert noop["objects_copied"] == 0 and noop["bytes_copied"] == 0
    assert noop["commits_present"] == 2

    add_commits(vault, [msgs[6:]])
    before = set(tree(dest))
    third = summary(copy(vault, dest, "--json"))
    new = set(tree(dest)) - before
    # one pack, one segment, one record and its number's claim
    assert third["objects_copied"] == len(new) == 4
    assert third["copied"] == {"commits": 1, "index": 1, "packs": 1, "claims": 1}
    assert third["commits_copied"] == 1 and third["commits_present"] == 2
    # nothing already there was written again
    assert {p: os.stat(dest / p).st_ino for p in inodes} == inodes
    assert tree(dest) == tree(vault)


def test_copy_of_an_upgraded_vault_upgrades_the_copy(tmp_path: Path) -> None:
    """A copy of a version 1 vault, then the source upgraded and given version 2 packs:
    the copy's config is raised before any new pack arrives (else they are damage)."""
    src = tmp_path / "v1"
    Vault.init(src, PASSPHRASE.encode(), kdf=TEST_KDF).close()
    from popvault.vault.config import config_body
    from popvault.vault.crypto import checksum_json

    body = json.loads((src / "config").read_bytes())["body"]
    (src / "config").write_bytes(checksum_json(config_body(body["id"], 1)))
    add_commits(src, [[simple_message(1)]])
    dest = tmp_path / "copy"
    assert copy(src, dest).code == 0
    assert run("--vault", src, "upgrade").code == 0
    add_commits(src, [[simple_message(2)]])
    res = copy(src, dest)
    assert res.code == 0, res
    assert "raised" in res.err
    check = run("--vault", dest, "check", "--read-data")
    assert check.code == 0, check


def test_another_vault_is_refused(vault: Path, tmp_path: Path) -> None:
    add_commits(vault, [[simple_message(1)]])
    other = make_vault(tmp_path / "other")
    before = tree(other)
    line = one_line_error(copy(vault, other), 2)
    assert "holds another vault" in line
    assert tree(other) == before


def test_a_folder_that_is_not_a_vault_is_refused(vault: Path, tmp_path: Path) -> None:
    add_commits(vault, [[simple_message(1)]])
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"meow")
    line = one_line_error(copy(vault, photos), 2)
    assert "holds objects that are not a vault (cat.jpg)" in line
    assert tree(photos) == {"cat.jpg": b"meow"}
    # a file, and a folder whose parent is missing
    line = one_line_error(copy(vault, photos / "cat.jpg"), 2)
    assert "is not a folder" in line
    line = one_line_error(copy(vault, tmp_path / "no" / "such"), 2)
    assert "parent folder" in line
    assert not (tmp_path / "no").exists()
    line = one_line_error(copy(vault, vault), 2)
    assert "is the vault itself" in line


def test_a_destination_ahead_is_refused_and_named(vault: Path, tmp_path: Path) -> None:
    add_commits(vault, [[simple_message(1)]])
    dest = tmp_path / "offsite"
    assert copy(vault, dest).code == 0
    # another machine backed up into the copy (on this one, the copy shares the vault's
    # cache and anchor: opening the original would then report the rollback itself)
    add_commits(dest, [[simple_message(2)]], machine=tmp_path / "elsewhere")
    newer = sorted(p.name for p in (dest / "commits").iterdir())[-1]
    before = tree(dest)
    res = copy(vault, dest)
    line = one_line_error(res, 20)
    assert "1 commit(s) this vault lacks" in line
    assert newer[:23] in line
    assert tree(dest) == before
    # both written to: diverged
    add_commits(vault, [[simple_message(3)]])
    line = one_line_error(copy(vault, dest), 20)
    assert "one side was rolled back, or both were written to" in line
    assert tree(dest) == before


def test_the_copy_s_location_is_remembered(vault: Path, tmp_path: Path) -> None:
    """The anchor knows the copy: putting another vault there later is seen."""
    add_commits(vault, [[simple_message(1)]])
    dest = tmp_path / "offsite"
    assert copy(vault, dest).code == 0
    for p in sorted(dest.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    Vault.init(dest, PASSPHRASE.encode(), kdf=TEST_KDF).close()  # init says so itself
    for p in sorted(dest.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    assert copy(vault, dest).code == 0
    res = run("--vault", dest, "check")
    assert res.code == 0, res


KILLER = r"""
import os, signal, sys
from pathlib import Path
from popvault.vault.backend import LocalBackend
from popvault.vault.vault import Vault

src, dest, after = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
done = []

def hook(step, name):
    if name == "lock":
        return
    if step == "fsync-dir" and name not in done:
        done.append(name)
    if len(done) > after:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9: no finally, no lock release

with Vault.open(src, os.environb[b"POPVAULT_PASSPHRASE"]) as v:
    v.copy_to(LocalBackend(dest, fault_hook=hook))
"""


def test_kill_9_at_any_put_leaves_a_valid_vault_and_a_rerun_completes(
    vault: Path, tmp_path: Path
) -> None:
    """Each run is killed (SIGKILL) in the middle of its third put: between its steps
    (written, renamed, directory synced). After every kill the destination is a valid
    vault whose commits are a prefix of the source's, or no vault yet; the next run
    goes on (breaking the dead run's lock); the last one completes."""
    add_commits(vault, [messages(3, seed=n) for n in range(4)])
    dest = tmp_path / "offsite"
    src_commits = sorted(p.name for p in (vault / "commits").iterdir())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = 0
    while True:
        runs += 1
        assert runs < 30
        proc = subprocess.run(
            [sys.executable, "-c", KILLER, str(vault), str(dest), "2"],
            env=env, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
        assert (dest / "lock").exists()  # the dead run's lock stays, for the next to break
        if not (dest / "config").exists():
            assert {Path(p).parts[0] for p in tree(dest)} <= {"keys", "lock"}
            continue
        commits = sorted(p.name for p in (dest / "commits").glob("0*"))
        assert commits == src_commits[: len(commits)]
        # valid: another machine (no anchor) opens and checks it clean
        other = tmp_path / f"machine{runs}"
        with Vault.open(
            dest, PASSPHRASE.encode(), cache_dir=other / "cache", state_dir=other / "state"
        ) as v:
            assert v.damage == []
            assert v.check().ok
    assert runs > 5  # every object had its own kill
    res = copy(vault, dest)
    assert res.code == 0, res
    assert "copied 0 objects" in res.err
    check = run("--vault", dest, "check", "--read-data")
    assert check.code == 0, check
    assert export(dest, tmp_path / "e2") == export(vault, tmp_path / "e1")
    assert {p for p in tree(dest) if ".tmp-" not in p} == set(tree(vault))


def test_kill_9_of_the_command_then_rerun(vault: Path, tmp_path: Path) -> None:
    """The CLI as a subprocess, killed once the copy has put some commits; the rerun
    completes and check --read-data is clean."""
    big = [simple_message(n, subject=os.urandom(200_000).hex()) for n in range(60)]
    add_commits(vault, [[m] for m in big])
    dest = tmp_path / "offsite"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "popvault", "--vault", str(vault), "copy", str(dest)],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while proc.poll() is None and len(list((dest / "commits").glob("0*"))) < 3:
            pass
        proc.kill()
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the copy ended before it was killed"
    assert 3 <= len(list((dest / "commits").glob("0*"))) < 60
    res = copy(vault, dest)
    assert res.code == 0, res
    assert "removed a stale lock" in res.err
    check = run("--vault", dest, "check", "--read-data")
    assert check.code == 0, check
    assert "no problems found: 60 messages" in check.err


def test_a_later_rollback_of_the_copy_is_detected(vault: Path, tmp_path: Path) -> None:
    """This machine knows the copy's newest commit: a copy put back to an older state
    (its newest commit record gone) is reported when it is opened, and copy heals it."""
    add_commits(vault, [[simple_message(1)], [simple_message(2)]])
    dest = tmp_path / "offsite"
    assert copy(vault, dest).code == 0
    newest = sorted((dest / "commits").iterdir())[-1]
    newest.unlink()
    res = run("--vault", dest, "check")
    assert res.code == 20, res
    assert "which this machine has seen, is missing" in res.err
    again = summary(copy(vault, dest, "--json"))
    assert again["copied"] == {"commits": 1}
    assert run("--vault", dest, "check").code == 0


def test_a_copy_behind_its_source_is_no_alarm(vault: Path, tmp_path: Path) -> None:
    """The 3-2-1 routine on one machine: backups go on after the nightly copy. The copy
    is behind, not rolled back: it checks clean and lists what it has, with an index
    cache of its own (the source's is not rebuilt back and forth), and the source
    still checks clean after it."""
    msgs = messages(4, seed=9)
    add_commits(vault, [msgs[:2]])
    dest = tmp_path / "offsite"
    assert copy(vault, dest).code == 0
    add_commits(vault, [msgs[2:]])  # the next hourly backup
    for where, count in ((dest, 2), (vault, 4), (dest, 2)):
        res = run("--vault", where, "check")
        assert res.code == 0, res
        assert "missing" not in res.err and "rebuilt" not in res.err, res
        listed = run("--vault", where, "list", "--json")
        assert listed.code == 0 and len(listed.text.splitlines()) == count, listed
    caches = sorted(p.name for p in (tmp_path / "cache").glob("*.sqlite"))
    assert len(caches) == 2, caches  # one per location
