"""``popvault backup`` from a real Dovecot into a vault on SeaweedFS behind the
fault-injecting relay (tests/support/s3relay.py).

Under 503 SlowDown, uploads and downloads cut off mid-body and a stalled answer, a backup
with ``--delete`` archives exactly what a backup of the same mailbox into a local vault
archives (messages, bytes), ``check --read-data`` is clean, and the server is emptied.
When the retry budget runs out the run exits 75 naming the endpoint and the operation,
and nothing is DELE'd. Under the append-only policy (DELETE refused except for the lock
objects) backup and import succeed, and prune's deletion is refused with one clear line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import write_mbox
from tests.support.backup_helpers import PASSPHRASE, create_vault, run_cli
from tests.support.dovecot import Dovecot, UserInfo, served_bytes
from tests.support.s3relay import Fault, S3Relay
from tests.support.s3runs import (
    backend,
    backup_env,
    big_messages,
    check_read_data,
    commit_seqs,
    init_vault,
    run_backup,
    vault_contents,
)
from tests.support.seaweedfs import Seaweed

MAIL = big_messages(12, 1 << 20, seed=5)  # ~17 MB: three packs


@pytest.fixture
def relay(seaweed: Seaweed) -> Iterator[S3Relay]:
    with S3Relay(seaweed.port) as r:
        yield r


@pytest.fixture
def url(s3_vault: str, cache_dir: Path) -> str:
    where = f"{s3_vault}/v"
    init_vault(where, cache_dir)
    return where


def relayed(cache_dir: Path, user: UserInfo, relay: S3Relay, **extra: str) -> dict[str, str]:
    """The environment of a CLI run through the relay: quick backoff, 1 s read timeout."""
    return backup_env(
        cache_dir,
        user,
        AWS_ENDPOINT_URL=relay.endpoint,
        POPVAULT_S3_BACKOFF="0.05",
        POPVAULT_S3_READ_TIMEOUT="1",
        **extra,
    )


def summary(report: dict[str, Any] | None) -> tuple[int, ...]:
    """fetched, new, bytes, duplicates of the one account of a ``backup --json`` report."""
    assert report is not None
    (acct,) = report["accounts"]
    return acct["fetched"], acct["new"], acct["bytes"], acct["duplicates"]


def error_line(err: str) -> str:
    """The one ``popvault: error:`` line of a failed run (no traceback)."""
    errors = [ln for ln in err.splitlines() if ln.startswith("popvault: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_backup_under_faults_loses_and_duplicates_nothing(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    url: str,
    relay: S3Relay,
    cache_dir: Path,
    tmp_path: Path,
) -> None:
    dovecot.deliver(dovecot_user, MAIL)
    local = tmp_path / "local"
    create_vault(local, tmp_path / "local-cache")
    code, local_report, err = run_backup(
        dovecot, dovecot_user, local, backup_env(tmp_path / "local-cache", dovecot_user)
    )
    assert code == 0, err

    relay.add(
        Fault("slowdown", times=3, method="PUT", key="/packs/"),
        Fault("cut_request", times=2, method="PUT", key="/packs/"),
        Fault("slowdown", times=1, method="PUT", key="/index/"),
        Fault("stall", times=1, method="PUT", key="/commits/", seconds=3),
        Fault("cut_response", times=2, method="GET", key="/packs/"),
        Fault("slowdown", times=2, method="GET"),
    )
    env = relayed(cache_dir, dovecot_user, relay)
    code, report, err = run_backup(dovecot, dovecot_user, url, env, "--delete")
    assert code == 0, err
    assert relay.pending() == 0, relay.faults  # every fault was met and got through
    assert summary(report) == summary(local_report)
    assert report is not None
    (acct,) = report["accounts"]
    assert acct["deleted"] == len(MAIL)
    assert dovecot.message_count(dovecot_user) == 0

    want = sorted(served_bytes(m) for m in MAIL)
    assert vault_contents(local, tmp_path / "local-cache") == want
    assert vault_contents(url, cache_dir) == want
    check_read_data(url, tmp_path / "fresh-cache")  # a fresh cache: from the bucket alone
    seqs = commit_seqs(url)
    assert len(seqs) == len(set(seqs))


def test_retry_budget_exhausted_exits_75_and_deletes_nothing(
    dovecot: Dovecot, dovecot_user: UserInfo, url: str, relay: S3Relay, cache_dir: Path
) -> None:
    dovecot.deliver(dovecot_user, MAIL[:4])
    before = commit_seqs(url)
    relay.add(Fault("slowdown", times=10_000, method="PUT", key="/packs/"))
    env = relayed(cache_dir, dovecot_user, relay, AWS_MAX_ATTEMPTS="3")
    code, report, err = run_backup(dovecot, dovecot_user, url, env, "--delete")
    assert code == 75, err
    line = error_line(err)
    assert relay.endpoint in line and "upload of packs/" in line, line
    assert "SlowDown; 3 tries in" in line, line
    assert report is not None and report["exit_code"] == 75
    assert dovecot.message_count(dovecot_user) == 4  # nothing DELE'd
    assert commit_seqs(url) == before  # and nothing committed

    relay.faults.clear()  # the storage is back: the next run archives all, then deletes
    code, report, err = run_backup(dovecot, dovecot_user, url, env, "--delete")
    assert code == 0, err
    assert dovecot.message_count(dovecot_user) == 0
    assert vault_contents(url, cache_dir) == sorted(served_bytes(m) for m in MAIL[:4])


def test_append_only_bucket(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    url: str,
    relay: S3Relay,
    cache_dir: Path,
    tmp_path: Path,
) -> None:
    """Backup (with --delete: POP3 deletions, not storage ones) and import need no
    DeleteObject outside the lock objects; prune's deletion is refused, one line."""
    relay.deny_delete = True
    dovecot.deliver(dovecot_user, MAIL[:3])
    env = relayed(cache_dir, dovecot_user, relay)
    code, _report, err = run_backup(dovecot, dovecot_user, url, env, "--delete")
    assert code == 0, err
    mbox = tmp_path / "in.mbox"
    write_mbox(mbox, [b"From: a@example.org\nSubject: imported\n\nhello\n"])
    res = run_cli(url, ["import", str(mbox)], env)  # type: ignore[arg-type]
    assert res.returncode == 0, res.stderr
    deletes = [(p, o) for m, p, o in relay.log if m == "DELETE"]
    assert deletes and all(o == "204" for _p, o in deletes), deletes
    assert all(p.endswith("/lock") or "/locks/" in p for p, _o in deletes), deletes

    redundant = _redundant_pack(url, cache_dir)
    res = run_cli(url, ["prune", "--json"], env)  # type: ignore[arg-type]
    assert res.returncode == 77, res.stderr
    line = error_line(res.stderr)
    assert f"refused the deletion of {redundant}" in line, line
    assert "append-only" in line
    assert backend(url).exists(redundant)
    assert relay.log.count(("DELETE", relay_path(url, redundant), "denied")) == 1
    check_read_data(url, cache_dir)

    relay.deny_delete = False  # credentials that may delete: prune does its work
    res = run_cli(url, ["prune", "--json"], env)  # type: ignore[arg-type]
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["packs"] == [redundant.rsplit("/", 1)[1]]
    assert not backend(url).exists(redundant)


def relay_path(url: str, name: str) -> str:
    return "/" + url.removeprefix("s3://") + "/" + name


def _redundant_pack(url: str, cache_dir: Path) -> str:
    """Put a pack that no commit names, holding copies of committed blobs (what prune
    deletes); its object name."""
    from popvault.vault.pack import PackWriter, pack_object_name
    from popvault.vault.records import BlobPiece
    from popvault.vault.vault import Vault

    v = Vault.open(url, PASSPHRASE.encode(), cache_dir=cache_dir)
    try:
        row = next(iter(v.messages()))
        blobs = [
            bytes.fromhex(p.blob) for p in v.message(row.id).pieces if isinstance(p, BlobPiece)
        ]
        pw = PackWriter(v.keys, v.vault_id, 3, None)
        pw.add_frame([(b, "txt", v.read_blob(b)) for b in blobs[:2]])
        name, data, _locs = pw.finish()
        v.backend.put(pack_object_name(name), bytes(data))
        return pack_object_name(name)
    finally:
        v.close()
