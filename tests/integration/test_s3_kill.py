"""kill -9 of ``popvault backup --delete`` into a vault on S3 while it uploads packs.

The run goes through the relay (no faults: it only shows which requests were answered)
and is killed once a given number of packs has been stored, so other uploads are in
flight. After every kill the vault reads clean from a fresh cache, no message is in the
vault twice, and every delivered message is on the server or in the vault (never
neither: nothing DELE'd that was not archived). A last run finishes the job: the server
is empty, the vault holds every message once, and no commit sequence number was taken
twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from popvault.vault.vault import Vault
from tests.support.backup_helpers import PASSPHRASE, REPO, run_cli
from tests.support.dovecot import Dovecot, UserInfo, served_bytes
from tests.support.s3relay import Fault, S3Relay
from tests.support.s3runs import (
    backup_command,
    backup_env,
    big_messages,
    check_read_data,
    commit_seqs,
    init_vault,
    run_backup,
    vault_contents,
)
from tests.support.seaweedfs import Seaweed

MAIL = big_messages(24, 1 << 20, seed=9)  # ~33 MB served: four packs and more


@pytest.fixture
def relay(seaweed: Seaweed) -> Iterator[S3Relay]:
    with S3Relay(seaweed.port) as r:
        yield r


def packs_stored(relay: S3Relay) -> int:
    return sum(1 for m, p, o in relay.log if m == "PUT" and "/packs/" in p and o == "200")


def launch(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A CLI run in the background, its output dropped."""
    return subprocess.Popen(
        cmd,
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_after_packs(cmd: list[str], env: dict[str, str], relay: S3Relay, packs: int) -> bool:
    """Start the backup, SIGKILL it once ``packs`` more packs are stored; False when
    the run ended first."""
    start = packs_stored(relay)
    proc = launch(cmd, env)
    try:
        deadline = time.monotonic() + 120
        while packs_stored(relay) < start + packs:
            if proc.poll() is not None:
                return False
            assert time.monotonic() < deadline, "no pack was stored in 120 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        return True
    finally:
        proc.wait(30)


def test_kill_minus_9_during_uploads(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    s3_vault: str,
    relay: S3Relay,
    cache_dir: Path,
    tmp_path: Path,
) -> None:
    url = f"{s3_vault}/v"
    init_vault(url, cache_dir)
    dovecot.deliver(dovecot_user, MAIL)
    want = {served_bytes(m) for m in MAIL}
    env = backup_env(cache_dir, dovecot_user, AWS_ENDPOINT_URL=relay.endpoint)
    cmd = backup_command(dovecot, dovecot_user, url, "--delete")

    killed = 0
    for round_, packs in enumerate((1, 2, 1)):
        if kill_after_packs(cmd, env, relay, packs):
            killed += 1
        fresh = tmp_path / f"fresh-{round_}"
        check_read_data(url, fresh)  # what the bucket holds is sound, whatever the cache
        stored = vault_contents(url, fresh)
        on_server = {served_bytes(m) for m in dovecot.maildir_messages(dovecot_user)}
        assert len(stored) == len(set(stored))
        assert set(stored) <= want
        assert want <= set(stored) | on_server, "a message is neither on the server nor archived"
    assert killed >= 2, "the runs ended before their kills: the test proved little"

    code, report, err = run_backup(dovecot, dovecot_user, url, env, "--delete")
    assert code == 0, err
    assert report is not None and report["exit_code"] == 0
    assert dovecot.message_count(dovecot_user) == 0
    assert vault_contents(url, cache_dir) == sorted(want)
    check_read_data(url, tmp_path / "fresh-last")
    seqs = commit_seqs(url)
    assert len(seqs) == len(set(seqs)), seqs


@pytest.mark.parametrize("conditional", [True, False], ids=["claims", "leases"])
def test_commit_record_landing_after_its_writer_died(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    s3_vault: str,
    relay: S3Relay,
    cache_dir: Path,
    tmp_path: Path,
    conditional: bool,
) -> None:
    """A writer killed while its commit record is still on the way (held in a proxy or
    in kernel buffers): the record lands after the next writer took the same sequence
    number. A request outlives its writer; the lock cannot fence it. Where the storage
    honours conditional writes the number's claim does (format §8.1.1): the late record
    is void, nothing is refused, nothing repaired. Where it does not (leases), writers
    notice, refuse (exit 20) and delete nothing; ``repair`` brings the vault back."""
    relay.drop_conditional = not conditional  # a server that ignores If-None-Match
    url = f"{s3_vault}/v"
    init_vault(url, cache_dir)
    mail = big_messages(3, 10_000, seed=13)
    dovecot.deliver(dovecot_user, mail)
    env = backup_env(cache_dir, dovecot_user, AWS_ENDPOINT_URL=relay.endpoint)
    relay.add(Fault("late", method="PUT", key="/commits/", seconds=10))
    proc = launch(backup_command(dovecot, dovecot_user, url), env)
    deadline = time.monotonic() + 60
    while not relay.injected("late"):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    code, _report, err = run_backup(dovecot, dovecot_user, url, env)
    assert code == 0, err
    deadline = time.monotonic() + 30
    while sum(1 for m, p, o in relay.log if m == "PUT" and "/commits/" in p and o == "200") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert commit_seqs(url) == [1, 1]  # the late record carries the number too
    claims = [p for m, p, o in relay.log if m == "PUT" and "/claims/" in p and o == "200"]
    assert len(claims) == (1 if conditional else 0)

    later = big_messages(1, 10_000, seed=14)
    code, _report, err = run_backup(dovecot, dovecot_user, url, env)
    if conditional:
        assert code == 0, err  # the late record is void: no damage, no refusal
        with Vault.open(url, PASSPHRASE.encode(), cache_dir=tmp_path / "other") as v:
            assert [n[8:18] for n in v.commit_names()] == ["0000000001"]
            assert v.damage == []
    else:
        assert code == 20, err
        assert "2 commits carry sequence number 1" in err
        res = run_cli(url, ["repair"], env)  # type: ignore[arg-type]
        assert res.returncode == 0, res.stderr
    dovecot.deliver(dovecot_user, later)
    code, _report, err = run_backup(dovecot, dovecot_user, url, env)
    assert code == 0, err
    fresh = tmp_path / "fresh"
    check_read_data(url, fresh)
    want = sorted(served_bytes(m) for m in [*mail, *later])
    assert vault_contents(url, fresh) == want
