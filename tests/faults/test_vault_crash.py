"""Crashes during a commit lose nothing and invent nothing (DESIGN guarantee 2, format §8).

(a) Fault injection: a commit on a LocalBackend is interrupted at *every* durable step
    (write, fsync, rename, fsync-dir of every object), once with EIO and once with
    ENOSPC (which must surface as DiskFull). The next writer cleans up, the vault checks
    clean, holds exactly the earlier commits, and the batch then commits on retry.
(b) kill -9: a child process commits batch after batch and is SIGKILLed at random
    moments; every reopen checks clean and holds a prefix of the batches that includes
    every batch the child reported as committed.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from popvault.errors import PopvaultError
from popvault.vault.backend import TMP_PREFIX, DiskFull, LocalBackend
from popvault.vault.vault import Vault
from tests.support.vaults import (
    PASSPHRASE,
    add_batch,
    attachment_message,
    create,
    isolate_cache,
    message_ids,
    random_bytes,
    text_message,
)


@pytest.fixture(autouse=True)
def _cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return isolate_cache(monkeypatch, tmp_path)


class Injector:
    """A fault hook that counts steps while armed and raises at step ``fail_at``."""

    def __init__(self, fail_at: int | None = None, err: int = errno.EIO) -> None:
        self.fail_at = fail_at
        self.err = err
        self.armed = False
        self.steps: list[tuple[str, str]] = []
        self.fired: tuple[str, str] | None = None

    def __call__(self, step: str, name: str) -> None:
        if not self.armed:
            return
        if len(self.steps) == self.fail_at:
            self.armed = False
            self.fired = (step, name)
            raise OSError(self.err, os.strerror(self.err))
        self.steps.append((step, name))


def _batch_a() -> list[bytes]:
    return [text_message(1), text_message(2)]


def _batch_b() -> list[bytes]:
    return [text_message(3), attachment_message(random_bytes(20_000, 5), n=3), text_message(4)]


def _objects(root: Path) -> list[str]:
    b = LocalBackend(root)
    return b.list("packs") + b.list("index") + b.list("commits")


def _referenced(v: Vault) -> set[str]:
    out: set[str] = set()
    for name in v.commit_names():
        body = v.read_commit(name)
        out |= {f"packs/{p[:2]}/{p}" for p in body.packs}
        out |= {f"index/{s}" for s in body.segments}
        out.add(name)
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[bytes]]:
    """A vault holding batch A in one commit (built once, copied per fault)."""
    root = tmp_path_factory.mktemp("template") / "v"
    cache = root.parent / "cache"
    create(root)
    with Vault.open(root, PASSPHRASE, write=True, cache_dir=cache) as v:
        ids = add_batch(v, _batch_a(), uidl_prefix="a")
        v.commit()
    return root, set(ids)


def _run_fault(
    template: tuple[Path, set[bytes]], work: Path, fail_at: int, err: int
) -> tuple[Injector, bool]:
    """Copy the template, fail the commit of batch B at step ``fail_at``, then verify."""
    src, a_ids = template
    # every trial starts from a copy of one template vault: to this machine's anchor,
    # a copy without the last trial's commits would be a rollback (format §8.6)
    os.environ["POPVAULT_STATE_DIR"] = str(work / "state")
    root = work / "v"
    shutil.copytree(src, root)
    cache = work / "cache"
    hook = Injector(fail_at, err)
    v = Vault.open(LocalBackend(root, fault_hook=hook), PASSPHRASE, write=True, cache_dir=cache)
    b_ids = set(add_batch(v, _batch_b(), uidl_prefix="b"))
    hook.armed = True
    try:
        try:
            v.commit()
        finally:
            hook.armed = False
    except DiskFull as exc:
        assert err in (errno.ENOSPC, errno.EDQUOT), exc
        assert exc.exit_code == 1
        assert v.broken
    except OSError as exc:
        assert err == errno.EIO, f"ENOSPC at {hook.fired} surfaced as {exc!r}, not DiskFull"
        assert exc.errno == errno.EIO
        assert v.broken
    else:
        assert hook.fired is None
        v.close()
        return hook, False
    assert hook.fired is not None
    with pytest.raises(PopvaultError, match="reopen"):
        v.commit()
    v.close()

    warnings: list[str] = []
    with Vault.open(root, PASSPHRASE, write=True, cache_dir=cache, warn=warnings.append) as v:
        rep = v.check(read_data=True)
        assert rep.ok, (hook.fired, rep.problems)
        got = message_ids(v)
        step, name = hook.fired
        if (step == "fsync-dir" and name.startswith("commits/")) or name.startswith("claims/"):
            # the record was renamed into place before its directory fsync failed, or
            # before its number's claim failed (format §8.1.1): the run reported a
            # failure (nothing was deleted for it), the commit is visible, and whole
            assert got == a_ids | b_ids
            assert len(v.commit_names()) == 2
        else:
            assert got == a_ids, hook.fired
            assert len(v.commit_names()) == 1
        # temporary files of the failed commit are gone; its packs are kept
        assert [p for p in root.rglob(f"{TMP_PREFIX}*")] == []
        before = set(_objects(root))
        # the retry commits fine (adopting what the failed commit wrote: nothing is
        # deleted, nothing left unnamed) and everything reads back
        retry = add_batch(v, _batch_b(), uidl_prefix="b")
        assert set(retry) == b_ids
        v.commit()
        assert before <= set(_objects(root))
        assert {o for o in _objects(root) if not o.startswith("index/")} <= _referenced(v)
    with Vault.open(root, PASSPHRASE, cache_dir=work / "cold-cache") as v:
        assert message_ids(v) == a_ids | b_ids
        assert v.check(read_data=True).ok
        v.verify_messages(a_ids | b_ids)
    return hook, True


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC], ids=["eio", "enospc"])
def test_fault_at_every_commit_step(
    template: tuple[Path, set[bytes]], tmp_path: Path, err: int
) -> None:
    # count the steps of one undisturbed commit of batch B
    counting, failed = _run_fault(template, tmp_path / "count", -1, err)
    assert not failed
    n = len(counting.steps)
    kinds = {s for s, _ in counting.steps}
    assert {"write", "fsync", "rename", "fsync-dir"} <= kinds
    assert any(name.startswith("commits/") for _, name in counting.steps)
    # the number of steps varies a little (a new packs/xx/ folder or not), so fail at
    # every k until a commit gets through untouched
    fired: list[tuple[str, str]] = []
    for k in range(n + 20):
        hook, failed = _run_fault(template, tmp_path / f"k{k}", k, err)
        if not failed:
            break
        assert hook.fired is not None
        fired.append(hook.fired)
    else:
        pytest.fail("commit never completed")
    assert len(fired) >= n - 2
    assert {s for s, _ in fired} == {"write", "fsync", "rename", "fsync-dir"}
    assert {name.split("/")[0] for _, name in fired} == {"packs", "index", "commits", "claims"}


# --- kill -9 ------------------------------------------------------------------------

CHILD = textwrap.dedent(
    f"""
    import os, sys
    from popvault.vault.vault import MessageMeta, SourceInfo, Vault
    root, start, report = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    out = os.open(report, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    v = Vault.open(root, b"{PASSPHRASE.decode()}", write=True)
    i = start
    while True:
        for j in range(3):
            body = (b"batch %d message %d\\r\\n" % (i, j)) * (1 + (i * 7 + j) % 50)
            if j == 2 and i % 3 == 0:
                body += os.urandom(30000).hex().encode()
            data = b"Subject: b%d m%d\\r\\n\\r\\n" % (i, j) + body
            v.add_message(data, SourceInfo("acct", "pop3", uidl="%d-%d" % (i, j)),
                          MessageMeta(subject="%d %d" % (i, j)))
        v.commit()
        os.write(out, b"%d\\n" % i)
        i += 1
    """
)


def _batches_in(v: Vault) -> dict[int, set[int]]:
    got: dict[int, set[int]] = {}
    for row in v.messages():
        i, j = (int(x) for x in row.subject.split())
        data = v.read_message(row.id)
        assert data.startswith(b"Subject: b%d m%d\r\n\r\nbatch %d message %d" % (i, j, i, j))
        got.setdefault(i, set()).add(j)
    return got


def test_kill_9_at_random_moments(tmp_path: Path) -> None:
    root = tmp_path / "v"
    report = tmp_path / "committed.txt"
    create(root)
    rnd = random.Random(20260415)
    env = dict(os.environ)
    repo = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = str(repo) + os.pathsep + env.get("PYTHONPATH", "")
    next_batch = 0
    kills = 0
    written: set[str] = set()
    deadline = time.monotonic() + 30
    while kills < 15 and time.monotonic() < deadline:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root), str(next_batch), str(report)], env=env
        )
        # longer and longer delays while nothing is committed yet (a slow machine starts
        # slowly)
        time.sleep(
            rnd.uniform(0.2, 0.8) + (0.5 * (kills - 2) if next_batch == 0 < kills - 2 else 0)
        )
        child.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
        kills += 1
        reported = {int(x) for x in report.read_text().split()} if report.exists() else set()
        warnings: list[str] = []
        with Vault.open(root, PASSPHRASE, write=True, warn=warnings.append) as v:
            rep = v.check(read_data=True)
            assert rep.ok, rep.problems
            got = _batches_in(v)
            n = len(got)
            # a prefix of whole batches, holding everything reported as committed
            assert sorted(got) == list(range(n))
            assert all(js == {0, 1, 2} for js in got.values())
            assert reported <= set(got)
            assert len(v.commit_names()) == n
            # nothing is ever deleted: what a killed run wrote is kept for adoption
            now = set(_objects(root))
            assert written <= now
            written = now
        if (root / "lock").exists():
            pytest.fail("lock left behind by a closed writer")
        next_batch = n
    assert kills >= 10
    assert next_batch > 0, "the child never committed: delays too short?"
    # the next commit adopts every pack the killed runs left (format §8.4)
    with Vault.open(root, PASSPHRASE, write=True) as v:
        v.commit()
        packs = {o for o in _objects(root) if o.startswith("packs/")}
        assert packs <= _referenced(v)
        assert v.check(read_data=True).ok
