"""kill -9 of a real ``popvault import`` at random moments loses and duplicates nothing.

Guarantee 2 of DESIGN.md for the import path: after each kill the vault opens, passes
``check --read-data``, and holds exactly the committed messages: a prefix of the sources
in import order, each message once, with its one source. A final uninterrupted run
completes the set and cleans up what the killed runs left. Thousands of small messages
make a commit in the middle of a fresh run (one every BATCH_MESSAGES records) and one at
its end. A kill lands either at a random moment of a run or the moment the run's first
commit record appears, so some kills always fall between two commits however fast or
slow the machine is. When a vault gets complete before the kills are done, the next
kills start over on a fresh vault.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from popvault.vault.vault import Vault
from tests.cli.helpers import (
    PASSPHRASE,
    REPO,
    env_of,
    list_json,
    make_vault,
    run,
    simple_message,
    write_maildir,
)

DIRS = 3
PER_DIR = 800  # 2400 small messages: a fresh run commits several times
KILLS = 15
MAX_RUNS = 25  # runs that end before their kill moment are verified too
SEED = 20241127


def _maildirs(root: Path) -> tuple[list[Path], list[tuple[bytes, str]]]:
    """The sources and every message with its source string, in import order."""
    dirs: list[Path] = []
    ordered: list[tuple[bytes, str]] = []
    for d in range(DIRS):
        msgs = [simple_message(d * 100_000 + i) for i in range(PER_DIR)]
        files = write_maildir(root / f"md{d}", msgs)
        for i, (f, m) in enumerate(zip(files, msgs, strict=True)):
            os.utime(f, (1e9 + i, 1e9 + i))  # import order is mtime order
            ordered.append((m, f"maildir:{f}"))
        dirs.append(root / f"md{d}")
    return dirs, ordered


def _import_cmd(vault: Path, sources: list[Path]) -> list[str]:
    return [sys.executable, "-m", "popvault", "--vault", str(vault), "import", *map(str, sources)]


def _commit_count(vault: Path) -> int:
    """Commit records in place (not temporary files); the directory comes with the first."""
    try:
        return sum(not p.name.startswith(".") for p in (vault / "commits").iterdir())
    except FileNotFoundError:
        return 0


def _verify(vault: Path, ordered_ids: list[str], source_of: dict[str, str]) -> int:
    """Check the vault after a kill; returns how many messages it holds."""
    res = run("--vault", vault, "check", "--read-data")
    assert res.code == 0, str(res)
    rows = list_json(vault)
    ids = [str(r["id"]) for r in rows]
    assert len(ids) == len(set(ids)), "a message is listed twice"
    n = len(ids)
    # Messages are read and committed in order, so what is committed is a prefix.
    assert set(ids) == set(ordered_ids[:n]), f"{n} messages, but not the first {n} sources"
    for r in rows:
        assert r["sources"] == [source_of[str(r["id"])]], r
        assert r["accounts"] == ["import"], r
    return n


def test_kill_9_during_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = env_of(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("POPVAULT_VAULT", raising=False)
    monkeypatch.delenv("POPVAULT_CONFIG", raising=False)
    monkeypatch.delenv("POPVAULT_CACHE", raising=False)
    child_env = dict(os.environ, PYTHONPATH=str(REPO))

    sources, ordered = _maildirs(tmp_path / "mail")
    generation = 0

    def fresh_vault() -> Path:
        nonlocal generation
        generation += 1
        return make_vault(tmp_path / f"vault{generation}")

    vault = fresh_vault()
    with Vault.open(vault, PASSPHRASE.encode(), cache_dir=tmp_path / "probe") as v:
        keyed = [v.keys.keyed_id(m).hex() for m, _ in ordered]
    ordered_ids, source_of = keyed, {k: s for k, (_, s) in zip(keyed, ordered, strict=True)}

    # How long one whole run takes here, so that kills land inside a run.
    scratch = make_vault(tmp_path / "scratch")
    t0 = time.monotonic()
    calib = subprocess.run(
        _import_cmd(scratch, sources), env=child_env, capture_output=True, check=False
    )
    full = time.monotonic() - t0
    assert calib.returncode == 0, calib.stderr

    rng = random.Random(SEED)
    killed = 0
    held: list[int] = []
    seen: list[int] = []
    attempts = 0
    while killed < KILLS and attempts < MAX_RUNS:
        attempts += 1
        if held and held[-1] == len(ordered):
            # complete already: later kills would only interrupt no-op runs; start over
            vault, held = fresh_vault(), []
            with Vault.open(vault, PASSPHRASE.encode(), cache_dir=tmp_path / "probe") as v:
                keyed = [v.keys.keyed_id(m).hex() for m, _ in ordered]
            ordered_ids = keyed
            source_of = {k: s for k, (_, s) in zip(keyed, ordered, strict=True)}
        delay = rng.uniform(0.05, 0.95) * full
        # every third run on an empty vault is killed right after its first commit
        after_commit = attempts % 3 == 0 and (not held or held[-1] == 0)
        commits_before = _commit_count(vault)
        proc = subprocess.Popen(
            _import_cmd(vault, sources),
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if after_commit:
            deadline = time.monotonic() + 10 * full + 30
            while _commit_count(vault) == commits_before and proc.poll() is None:
                assert time.monotonic() < deadline, "the run made no commit"
                time.sleep(0.002)
            delay = 0.001
        try:
            _, err = proc.communicate(timeout=delay)
            assert proc.returncode == 0, err  # finished before the kill: must be a success
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate()
            # the run may have finished just before the signal: then it must be a success
            assert proc.returncode in (-signal.SIGKILL, 0), err
            killed += proc.returncode == -signal.SIGKILL
        held.append(_verify(vault, ordered_ids, source_of))
        seen.append(held[-1])
        assert held == sorted(held), "committed messages disappeared after a kill"
    assert killed >= 10, f"only {killed} of {attempts} runs were killed"
    print(f"messages held after each run: {seen}; {killed} killed")
    assert any(0 < n < len(ordered) for n in seen), f"no kill fell between commits: {seen}"

    res = run("--vault", vault, "import", *sources)
    assert res.code == 0, str(res)
    assert _verify(vault, ordered_ids, source_of) == len(ordered)
    res = run("--vault", vault, "check", "--read-data")
    assert res.code == 0 and "belongs to no commit" not in res.err, str(res)
    # leftovers of killed puts are gone; a lock attempt killed between writing its temp
    # file and linking it may leave one at the top level, which writers remove only once
    # it is ten minutes old (another process's attempt may be under way: cleanup_temporary)
    assert not [p for p in vault.rglob("*") if p.name.startswith(".tmp-") and p.parent != vault]
    assert not (vault / "lock").exists()
