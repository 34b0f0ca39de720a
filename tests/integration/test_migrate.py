"""``popvault migrate``: a POP3 account into an IMAP folder through the vault, exactly once.

The source is a realistic mailbox of 2,000 messages plus every adversarial case on the
private Dovecot's POP3S; the target is another user's INBOX over IMAPS. What the target
holds afterwards must be, as a multiset, exactly what the source served (RETR bytes,
`served_bytes`) seen through `dovecot_imap_view`, the documented normalisation of
Dovecot's APPEND; a second run must fetch and append nothing and still report complete.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

import popvault.vault.crypto
from popvault.vault.vault import Vault
from tests.support.backup_helpers import cli_command, run_cli
from tests.support.dovecot import Dovecot, UserInfo, served_bytes
from tests.support.generate import adversarial, realistic
from tests.support.restore_helpers import (
    PASSPHRASE,
    cli_env,
    dovecot_imap_view,
    fetch_folder,
    imaps_url,
    json_report,
    multiset,
)

REALISTIC = 2000


def source_messages() -> list[bytes]:
    return [
        *realistic(REALISTIC, seed=2024, avg_size=4 * 1024),
        *(data for _name, data in adversarial()),
    ]


def migrate_args(dc: Dovecot, source: UserInfo, target: UserInfo) -> list[str]:
    return [
        "migrate",
        "--from",
        f"pop3s://{source.name}@{dc.host}:{dc.pop3s_port}",
        "--to",
        imaps_url(dc, target, "INBOX"),
        "--pop3-tls-ca-file",
        str(dc.ca_file),
        "--imap-tls-ca-file",
        str(dc.ca_file),
        "--json",
    ]


def test_migrate_pop3_to_imap_complete_exact_and_idempotent(
    dovecot: Dovecot, dovecot_user: UserInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = dovecot_user
    target = dovecot.add_user(f"mt{secrets.token_hex(4)}", secrets.token_urlsafe(12))
    messages = source_messages()
    served = [served_bytes(m) for m in messages]
    assert len(set(served)) == len(served), "test data: the multiset check needs distinct mail"
    uidls = dovecot.deliver(source, messages)

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("POPVAULT_CACHE_DIR", str(cache))
    vault = tmp_path / "vault"
    Vault.init(vault, PASSPHRASE.encode(), kdf=popvault.vault.crypto.TEST_KDF).close()
    env = cli_env(cache, pop3_password=source.password, imap_password=target.password)
    args = migrate_args(dovecot, source, target)

    proc = run_cli(vault, args, env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json_report(proc)
    total = len(messages)
    assert rep["complete"] is True
    assert (rep["on_source"], rep["in_vault"], rep["on_target"]) == (total, total, total)
    assert (rep["missing_in_vault"], rep["missing_on_target"]) == ([], [])
    backup, restored = rep["backup"], rep["restore"]
    assert isinstance(backup, dict) and isinstance(restored, dict)
    assert (backup["listed"], backup["fetched"], backup["deleted"]) == (total, total, 0)
    assert (restored["restored"], restored["failed"]) == (total, [])
    assert "migration complete" in proc.stderr

    fetched = fetch_folder(dovecot, target, "INBOX")
    got = multiset(f.data for f in fetched)
    want = multiset(dovecot_imap_view(s) for s in served)
    assert (len(got - want), len(want - got)) == (0, 0), (
        [m[:80] for m in got - want][:3],
        [m[:80] for m in want - got][:3],
    )
    # Never deletes from the source: the same UIDLs, the same bytes.
    assert dovecot.message_count(source) == total
    with Vault.open(vault, PASSPHRASE.encode()) as v:
        assert sorted(v.known_uidls(f"{source.name}@{dovecot.host}")) == sorted(uidls)

    # A second run: nothing new fetched or appended, still complete.
    again = run_cli(vault, args, env, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    rep = json_report(again)
    assert rep["complete"] is True
    assert rep["on_target"] == total
    backup, restored = rep["backup"], rep["restore"]
    assert isinstance(backup, dict) and isinstance(restored, dict)
    assert (backup["fetched"], backup["new"]) == (0, 0)
    assert (restored["restored"], restored["already"], restored["failed"]) == (0, total, [])
    assert dovecot.message_count(target) == total


@pytest.mark.parametrize("phase", ["backup", "restore"])
def test_migrate_interrupted_then_resumed_appends_each_message_once(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    phase: str,
) -> None:
    """Ctrl-C during either half of a migration: exit 130, no lock left, and the same
    command again completes it with every message on the target exactly once."""
    source = dovecot_user
    target = dovecot.add_user(f"mi{secrets.token_hex(4)}", secrets.token_urlsafe(12))
    messages = list(realistic(600, seed=77, avg_size=4 * 1024))
    served = [served_bytes(m) for m in messages]
    dovecot.deliver(source, messages)
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("POPVAULT_CACHE_DIR", str(cache))
    vault = tmp_path / "vault"
    Vault.init(vault, PASSPHRASE.encode(), kdf=popvault.vault.crypto.TEST_KDF).close()
    env = cli_env(cache, pop3_password=source.password, imap_password=target.password)
    args = migrate_args(dovecot, source, target)
    proc = subprocess.Popen(
        cli_command(vault, *args),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        if phase == "restore":  # some messages are on the target already
            while dovecot.message_count(target) < 20 and proc.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        else:  # some messages are in the vault's cache, none on the target yet
            time.sleep(0.4)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted (SIGINT)" in err
    assert not (vault / "lock").exists()
    again = run_cli(vault, args, env, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json_report(again)["complete"] is True
    got = multiset(f.data for f in fetch_folder(dovecot, target, "INBOX"))
    assert got == multiset(dovecot_imap_view(s) for s in served)
    assert dovecot.message_count(source) == len(messages)  # never deletes from the source
