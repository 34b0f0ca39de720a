"""Search over mail fetched from a real Dovecot (issue 13): ``popvault backup`` indexes
what it archived, and every planted word is found in its message only; a second run
indexes only what is new; ``repair`` rebuilds the index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from popvault.app.search import search
from popvault.vault.vault import Vault
from tests.cli.test_search import FOUND, NOT_FOUND, planted
from tests.support.backup_helpers import cli_env, open_vault, run_cli
from tests.support.dovecot import Dovecot, UserInfo
from tests.support.generate import realistic


def _backup(dc: Dovecot, user: UserInfo, vault: Path, cache_dir: Path) -> None:
    url = f"pop3s://{user.name}@{dc.host}:{dc.pop3s_port}"
    env = cli_env(cache_dir, user.password)
    res = run_cli(vault, ["backup", "--url", url, "--tls-ca-file", str(dc.ca_file)], env)
    assert res.returncode == 0, res.stderr


def _found(vault: Path, cache_dir: Path, query: str) -> set[bytes]:
    with open_vault(vault, cache_dir) as v:
        return {h.row.id for h in search(v, query, snippets=False)}


def test_backup_indexes_what_it_fetched(
    dovecot: Dovecot, dovecot_user: UserInfo, vault_path: Path, cache_dir: Path
) -> None:
    plants = planted()
    first = ["qp", "html", "subject", "cjk"]
    dovecot.deliver(dovecot_user, [*realistic(10, seed=5), *(plants[n] for n in first)])
    _backup(dovecot, dovecot_user, vault_path, cache_dir)
    with open_vault(vault_path, cache_dir) as v:
        # Dovecot serves CRLF: ids of the bytes as served (these messages are CRLF already)
        ids = {name: v.keyed_id(data) for name, data in plants.items()}
        indexed = v.cache.db.execute("SELECT count(*) FROM fts").fetchone()[0]
    assert indexed == 14  # by the backup itself: nothing left for search to catch up
    for query, name in FOUND.items():
        want = {ids[name]} if name in first else set()
        assert _found(vault_path, cache_dir, query) == want, query
    # a second run with the rest: only the new messages are indexed
    dovecot.deliver(dovecot_user, [plants[n] for n in plants if n not in first])
    _backup(dovecot, dovecot_user, vault_path, cache_dir)
    with open_vault(vault_path, cache_dir) as v:
        assert v.cache.db.execute("SELECT count(*) FROM fts").fetchone()[0] == 14 + 3
    for query, name in FOUND.items():
        assert _found(vault_path, cache_dir, query) == {ids[name]}, query
    for query in NOT_FOUND:
        assert _found(vault_path, cache_dir, query) == set(), query
    # repair rebuilds the cache, and the index with it
    res = run_cli(vault_path, ["repair", "--json"], cli_env(cache_dir))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["messages"] == 17
    with open_vault(vault_path, cache_dir) as v:
        assert v.cache.db.execute("SELECT count(*) FROM fts").fetchone()[0] == 17
    assert _found(vault_path, cache_dir, "plantbecasse") == {ids["qp"]}


def test_backup_indexes_from_the_bytes_it_has(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    vault: Vault,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backup makes the index documents of what it fetched while it holds the bytes:
    nothing is read back from the vault for the index but the messages too large to
    hold (streamed into the vault in pieces), and every message is indexed by the run.
    A message too large to prepare aside but split in memory is indexed from its bytes."""
    from popvault.app import fetch as fetch_mod
    from popvault.app import indexing as search_mod
    from popvault.app.backup import backup_account
    from tests.integration.test_backup_dovecot import account

    read_back: list[bytes] = []
    real = search_mod._read_document

    def counting(v: Vault, msg_id: bytes, size: int) -> tuple[Any, bool]:
        read_back.append(msg_id)
        return real(v, msg_id, size)

    monkeypatch.setattr(search_mod, "_read_document", counting)
    from popvault.vault import writer as writer_mod

    monkeypatch.setattr(fetch_mod, "THREAD_MAX", 64 << 10)  # larger ones: streamed
    monkeypatch.setattr(writer_mod, "INLINE_LIMIT", 1 << 20)  # larger ones: in pieces
    mail = [*realistic(12, seed=8), *(planted()[n] for n in ("qp", "html", "subject"))]
    big = b"Subject: a big one\r\n\r\n" + b"plantbigword line of text\r\n" * 20_000
    huge = b"Subject: a huge one\r\n\r\n" + b"planthugeword line of text\r\n" * 50_000
    dovecot.deliver(dovecot_user, [*mail, big, huge])
    rep = backup_account(vault, account(dovecot, dovecot_user), dovecot_user.password)
    assert rep.new == len(mail) + 2
    assert read_back == [vault.keyed_id(huge)]  # only the one streamed in pieces
    assert vault.cache.db.execute("SELECT count(*) FROM fts").fetchone()[0] == len(mail) + 2
    for word, data in (("plantbigword", big), ("planthugeword", huge)):
        assert {h.row.id for h in search(vault, word, snippets=False)} == {vault.keyed_id(data)}
