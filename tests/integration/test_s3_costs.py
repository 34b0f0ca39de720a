"""What runs cost on S3, as ``backup --json``, the backup summary and ``stats --json``
report it (requests by kind, bytes sent and received).

A no-op backup costs the same number of requests on a vault of 2 commits as on one of 20
(lock, probe, listings: never one per object), and ``show`` of one message is at most
two ranged GETs once the index is cached.
"""

from __future__ import annotations

import json
from pathlib import Path

from popvault.vault.records import SourceInfo, piece_ids
from popvault.vault.vault import Vault
from tests.support.backup_helpers import PASSPHRASE, run_cli
from tests.support.dovecot import Dovecot, UserInfo
from tests.support.s3runs import backup_env, big_messages, init_vault, run_backup

KINDS = {"get", "ranged_get", "put", "list", "delete", "head", "other"}


def fill(url: str, cache_dir: Path, commits: int) -> None:
    """``commits`` commits of one small message each (one pack per commit)."""
    v = Vault.open(url, PASSPHRASE.encode(), write=True, cache_dir=cache_dir)
    try:
        for i in range(commits):
            msg = f"From: a@example.org\r\nSubject: n{i} {url}\r\n\r\nbody {i}\r\n".encode()
            v.add_message(msg, SourceInfo("fill", "pop3", uidl=f"u{i}"))
            v.commit()
    finally:
        v.close()


def noop_backup_requests(
    dovecot: Dovecot, user: UserInfo, url: str, cache_dir: Path
) -> dict[str, int]:
    env = backup_env(cache_dir, user)
    run_backup(dovecot, user, url, env)  # brings this cache up to date
    code, report, err = run_backup(dovecot, user, url, env)
    assert code == 0, err
    assert report is not None and report["storage"] is not None
    storage = report["storage"]
    assert set(storage["by_kind"]) == KINDS
    assert storage["requests"] == sum(storage["by_kind"].values())
    assert storage["bytes_sent"] > 0 and storage["bytes_received"] > 0
    return dict(storage["by_kind"])


def test_noop_backup_costs_a_constant_number_of_requests(
    dovecot: Dovecot, dovecot_user: UserInfo, s3_vault: str, cache_dir: Path
) -> None:
    costs = []
    for n in (2, 20):
        url = f"{s3_vault}/v{n}"
        init_vault(url, cache_dir)
        fill(url, cache_dir, n)
        costs.append(noop_backup_requests(dovecot, dovecot_user, url, cache_dir))
    assert costs[0] == costs[1], costs
    # config, a key slot, the lock; probe x2, lock; keys, commits, packs; probe, lock
    assert costs[0]["put"] <= 3 and costs[0]["get"] <= 3 and sum(costs[0].values()) <= 11, costs
    assert costs[0]["ranged_get"] == 0 and costs[0]["head"] == 0, costs


def test_backup_summary_and_stats_show_requests(
    dovecot: Dovecot, dovecot_user: UserInfo, s3_vault: str, cache_dir: Path
) -> None:
    url = f"{s3_vault}/v"
    init_vault(url, cache_dir)
    dovecot.deliver(dovecot_user, big_messages(2, 100_000, seed=3))
    env = backup_env(cache_dir, dovecot_user)
    proc = run_cli(url, ["backup", "--url", "x"], env)  # type: ignore[arg-type]
    assert proc.returncode == 2  # (a bad URL: nothing sent, no summary)
    assert "storage:" not in proc.stderr
    code, report, _err = run_backup(dovecot, dovecot_user, url, env)
    assert code == 0 and report is not None
    assert report["storage"]["by_kind"]["put"] >= 3  # pack, segment, commit (and locks)
    assert report["storage"]["bytes_sent"] > 200_000
    # the human summary: one line after the account's
    args = ["backup", "--url", f"pop3s://{dovecot_user.name}@{dovecot.host}:{dovecot.pop3s_port}"]
    proc = run_cli(url, [*args, "--tls-ca-file", str(dovecot.ca_file)], env)  # type: ignore[arg-type]
    assert proc.returncode == 0, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("storage: ") and " requests (" in line and "received" in line, line

    proc = run_cli(url, ["stats", "--json"], env)  # type: ignore[arg-type]
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["messages"] == 2
    assert s["storage"]["requests"] == sum(s["storage"]["by_kind"].values()) > 0
    # object sizes come from the listings: no HEAD per object
    assert s["storage"]["by_kind"].get("head", 0) == 0, s["storage"]
    assert s["stored_bytes"] > 200_000
    local = Path(cache_dir).parent / "local"
    init_vault(str(local), cache_dir)
    proc = run_cli(local, ["stats", "--json"], env)
    assert json.loads(proc.stdout)["storage"] is None  # a folder: nothing to count


def test_show_of_one_message_is_at_most_two_ranged_gets(s3_vault: str, cache_dir: Path) -> None:
    """With the index cached, showing a message is one ranged GET per frame its blobs
    lie in (its header section and its body: two), nothing else; the pack's header is
    read once more only the first time any message of that pack is read on this machine
    (the cache keeps it then). Each vault is opened afresh, as a ``show`` process does."""
    url = f"{s3_vault}/v"
    init_vault(url, cache_dir)
    mail = [
        *big_messages(3, 20_000, seed=4),
        *big_messages(1, 1_500_000, seed=5),
        b"From: a@example.org\r\nSubject: short\r\n\r\nhello\r\n",
    ]
    v = Vault.open(url, PASSPHRASE.encode(), write=True, cache_dir=cache_dir)
    try:
        for i, m in enumerate(mail):
            v.add_message(m, SourceInfo("a", "pop3", uidl=f"u{i}"))
        v.commit()
        ids = [row.id for row in v.messages()]
    finally:
        v.close()
    headers_read: set[str] = set()
    costs = []
    for msg_id in ids:
        v = Vault.open(url, PASSPHRASE.encode(), cache_dir=cache_dir)
        try:
            traffic = v.backend.traffic  # type: ignore[attr-defined]
            before = dict(traffic.counts)
            assert v.read_message(msg_id) in mail
            spent = {k: n - before[k] for k, n in traffic.counts.items() if n != before[k]}
            locs = [v.cache.blob(b) for b in piece_ids(v.message(msg_id).pieces)]
            frames = {(loc.pack, loc.frame) for loc in locs if loc is not None}
        finally:
            v.close()
        packs = {p for p, _f in frames}
        assert spent == {"ranged_get": len(frames) + len(packs - headers_read)}, (spent, frames)
        costs.append(spent["ranged_get"])
        headers_read |= packs
    assert max(costs[len(headers_read) :]) <= 2, costs
