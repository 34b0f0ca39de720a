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

from tests.support.backup_helpers import REPO
from tests.support.dovecot import Dovecot, UserInfo, served_bytes
from tests.support.s3relay import S3Relay
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


def kill_after_packs(cmd: list[str], env: dict[str, str], relay: S3Relay, packs: int) -> bool:
    """Start the backup, SIGKILL it once ``packs`` more packs are stored; False when
    the run ended first."""
    start = packs_stored(relay)
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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
