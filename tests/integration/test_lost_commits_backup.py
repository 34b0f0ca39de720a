"""Storage that loses the newest commits, against a real Dovecot (issue: "Storage we do
not trust"; format §8.4, §8.6, §8.7).

Back up with ``delete = true`` (the server keeps nothing), then remove the two newest
commit records, as a sync tool or a rolled-back bucket would. Before, the next backup
warned (hidden by ``-q``), went on, and the run after deleted the orphaned packs: that
mail was gone from the server and from the vault. Now: the next ``backup`` exits 20
naming what is missing, DELEs nothing and deletes nothing; ``check`` exits 20;
``repair`` brings every message back; the same on a machine that never saw the vault.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from popvault.vault.vault import Vault
from tests.support.backup_helpers import (
    PASSPHRASE,
    cli_env,
    create_vault,
    run_cli,
    small_messages,
    write_config,
)
from tests.support.dovecot import Dovecot, UserInfo, served_bytes


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.name != "lock"
    }


class Machine:
    """One machine: its own cache and state folders, the vault and a config."""

    def __init__(self, tmp: Path, name: str, vault: Path, config: Path, password: str) -> None:
        self.vault = vault
        self.config = config
        self.env = cli_env(
            tmp / name / "cache", password, POPVAULT_STATE_DIR=str(tmp / name / "state")
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.vault, ["--config", str(self.config), *args], self.env)

    def listed(self) -> dict[str, str]:
        """Message id -> subject, as ``list --json`` shows the vault."""
        res = self.run("list", "--json")
        assert res.returncode == 0, res.stderr
        rows = [json.loads(line) for line in res.stdout.splitlines()]
        return {r["id"]: r["subject"] for r in rows}


@pytest.fixture
def setup(tmp_path: Path, dovecot: Dovecot, dovecot_user: UserInfo) -> tuple[Machine, list[bytes]]:
    """Three backup runs with delete = true: six messages, all gone from the server."""
    vault = tmp_path / "vault"
    create_vault(vault, tmp_path / "m1" / "cache")
    config = write_config(
        tmp_path / "config.toml",
        {
            "dc": {
                "host": dovecot.host,
                "port": dovecot.pop3s_port,
                "user": dovecot_user.name,
                "tls": "implicit",
                "tls_ca_file": str(dovecot.ca_file),
                "delete": True,
                "password_env": "POPVAULT_POP3_PASSWORD",
            }
        },
    )
    m1 = Machine(tmp_path, "m1", vault, config, dovecot_user.password)
    sent = [data for _, data in small_messages(6, seed=410)]
    for i in range(3):
        dovecot.deliver(dovecot_user, sent[2 * i : 2 * i + 2])
        res = m1.run("-q", "backup")
        assert res.returncode == 0, res.stderr
        assert dovecot.message_count(dovecot_user) == 0
    assert len(m1.listed()) == 6
    return m1, sent


def _lose_two_newest_commits(vault: Path) -> None:
    for c in sorted((vault / "commits").iterdir())[-2:]:
        c.unlink()


def _assert_everything_back(m: Machine, sent: list[bytes]) -> None:
    """``check --read-data`` passes and every message sent reads back byte for byte."""
    res = m.run("check", "--read-data")
    assert res.returncode == 0, res.stderr
    assert len(m.listed()) == len(sent)
    with Vault.open(m.vault, PASSPHRASE.encode(), cache_file=m.vault.parent / "x.sqlite") as v:
        got = {v.read_message(row.id, use_cache=False) for row in v.messages()}
    (m.vault.parent / "x.sqlite").unlink()
    assert got == {served_bytes(d) for d in sent}


def test_lost_newest_commits_stop_the_backup_and_repair_recovers(
    setup: tuple[Machine, list[bytes]], dovecot: Dovecot, dovecot_user: UserInfo
) -> None:
    m1, sent = setup
    _lose_two_newest_commits(m1.vault)
    before = _files(m1.vault)
    later = [data for _, data in small_messages(2, seed=411)]
    dovecot.deliver(dovecot_user, later)
    for args in (["-q", "backup"], ["backup", "--json"]):
        res = m1.run(*args)
        assert res.returncode == 20, res.stderr
        # each run made two commits (messages, then deletion records): 5 and 6 are gone
        assert re.search(r"commit [56] .*is missing", res.stderr), res.stderr
        assert "popvault repair" in res.stderr
        assert dovecot.message_count(dovecot_user) == 2  # no DELE
        assert before <= _files(m1.vault)  # nothing deleted
    assert json.loads(res.stdout)["exit_code"] == 20
    assert "is missing" in json.loads(res.stdout)["error"]
    res = m1.run("check")
    assert res.returncode == 20 and "commit 6" in res.stderr, res.stderr
    res = m1.run("-q", "list")  # readers go on, and say it even under -q
    assert res.returncode == 0 and "popvault repair" in res.stderr
    res = m1.run("repair", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["messages_recovered"] == 2 and report["messages"] == 6
    assert report["deletions_recovered"] == 2
    assert before <= _files(m1.vault)
    _assert_everything_back(m1, sent)
    # and backups go on: the two new messages are fetched and deleted
    res = m1.run("-q", "backup")
    assert res.returncode == 0, res.stderr
    assert dovecot.message_count(dovecot_user) == 0
    _assert_everything_back(m1, sent + later)


def test_lost_newest_commits_on_a_machine_that_never_saw_the_vault(
    setup: tuple[Machine, list[bytes]], dovecot: Dovecot, dovecot_user: UserInfo, tmp_path: Path
) -> None:
    m1, sent = setup
    _lose_two_newest_commits(m1.vault)
    m2 = Machine(tmp_path, "m2", m1.vault, m1.config, dovecot_user.password)
    before = _files(m1.vault)
    dovecot.deliver(dovecot_user, [data for _, data in small_messages(1, seed=412)])
    res = m2.run("-q", "backup")
    assert res.returncode == 20, res.stderr
    assert dovecot.message_count(dovecot_user) == 1
    assert before <= _files(m1.vault)
    res = m2.run("repair")
    assert res.returncode == 0, res.stderr
    _assert_everything_back(m2, sent)


def test_only_the_newest_commit_lost_on_a_fresh_machine_is_adopted(
    setup: tuple[Machine, list[bytes]], dovecot: Dovecot, dovecot_user: UserInfo, tmp_path: Path
) -> None:
    """One lost newest commit looks like an interrupted commit to a machine without an
    anchor: the next backup commits its packs again, and nothing is lost."""
    m1, sent = setup
    sorted((m1.vault / "commits").iterdir())[-1].unlink()
    m2 = Machine(tmp_path, "m2", m1.vault, m1.config, dovecot_user.password)
    before = _files(m1.vault)
    res = m2.run("backup")
    assert res.returncode == 0, res.stderr
    assert "no commit names" in res.stderr
    assert before <= _files(m1.vault)
    _assert_everything_back(m2, sent)
    # the machine that saw the lost commit is told, and repair settles it
    res = m1.run("-q", "backup")
    assert res.returncode == 20 and "popvault repair" in res.stderr
    assert m1.run("repair").returncode == 0
    assert m1.run("-q", "backup").returncode == 0
