"""Two writers on two "hosts" at once, on storage that ignores conditional writes.

The relay drops ``If-None-Match`` (the server overwrites, as some S3-compatible servers
do), so the probe finds no exclusive creation and writers take leases (format §10.1).
Two ``popvault backup`` processes with their own HOME, cache, state folder and host name
(``POPVAULT_HOSTNAME``) start together, each backing up its own Dovecot account into the
one vault: exactly one writes, the other exits 11 naming the holder's host; the loser's
rerun then succeeds. After several rounds no commit sequence number was taken twice,
``check --read-data`` is clean and the vault holds every message of both accounts once.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backup_helpers import REPO
from tests.support.dovecot import Dovecot, UserInfo, served_bytes
from tests.support.s3relay import S3Relay
from tests.support.s3runs import (
    backend,
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

ROUNDS = 3


@pytest.fixture
def relay(seaweed: Seaweed) -> Iterator[S3Relay]:
    with S3Relay(seaweed.port) as r:
        r.drop_conditional = True
        yield r


def host_env(tmp_path: Path, host: str, user: UserInfo, relay: S3Relay) -> dict[str, str]:
    home = tmp_path / host
    home.mkdir(exist_ok=True)
    env = backup_env(home / "cache", user, AWS_ENDPOINT_URL=relay.endpoint, HOME=str(home))
    env["POPVAULT_STATE_DIR"] = str(home / "state")
    env["POPVAULT_HOSTNAME"] = host
    return env


def test_two_hosts_at_once_one_writer(
    dovecot: Dovecot,
    s3_vault: str,
    relay: S3Relay,
    cache_dir: Path,
    tmp_path: Path,
) -> None:
    url = f"{s3_vault}/v"
    init_vault(url, cache_dir)
    assert backend(url).exclusive_create is True  # the server itself honours it
    users = {
        h: dovecot.add_user(f"{h[-1]}{secrets.token_hex(4)}", secrets.token_urlsafe(12))
        for h in ("host-a", "host-b")
    }
    envs = {h: host_env(tmp_path, h, u, relay) for h, u in users.items()}
    delivered: list[bytes] = []
    for round_ in range(ROUNDS):
        for i, user in enumerate(users.values()):
            mail = big_messages(4, 1 << 20, seed=100 * round_ + i)
            dovecot.deliver(user, mail)
            delivered += mail
        procs = {
            h: subprocess.Popen(
                backup_command(dovecot, users[h], url),
                env=envs[h],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for h in users
        }
        outputs = {h: p.communicate(timeout=300) for h, p in procs.items()}
        results = {h: (procs[h].returncode, *outputs[h]) for h in procs}
        codes = sorted(code for code, _out, _err in results.values())
        assert codes == [0, 11], results
        (winner,) = [h for h, r in results.items() if r[0] == 0]
        (loser,) = [h for h, r in results.items() if r[0] == 11]
        err = results[loser][2]
        assert "vault is locked by popvault backup, process" in err, err
        assert f"on {winner} since" in err, err
        assert "Traceback" not in err
        assert json.loads(results[winner][1].splitlines()[-1])["exit_code"] == 0

        code, _report, err = run_backup(dovecot, users[loser], url, envs[loser])
        assert code == 0, err
        assert backend(url).list("locks") == []  # every lease withdrawn or released

    assert not backend(url).exists("lock")  # leases were used, never the lock object
    assert any(p.rsplit("/", 2)[-2] == "locks" for m, p, _o in relay.log if m == "PUT")
    seqs = commit_seqs(url)
    assert len(seqs) == len(set(seqs)), seqs
    assert seqs == list(range(1, len(seqs) + 1))
    assert vault_contents(url, cache_dir) == sorted(served_bytes(m) for m in delivered)
    check_read_data(url, tmp_path / "fresh")
