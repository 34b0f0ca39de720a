"""Backups from a real Dovecot: TLS modes, auth mechanisms, deletion policies, the CLI.

Each message in the vault must equal, byte for byte, what Dovecot serves for the file
delivered (`served_bytes`), adversarial cases included (lines over 1 MB, lines starting
with '.', bare LF, NUL, no final newline). Dovecot's own per-session log counts
(`retr_counts`) independently confirm what a run fetched and deleted.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from popvault.app import fetch as fetch_mod
from popvault.app.backup import DAY, AccountReport, backup_account
from popvault.app.config import AccountConfig
from popvault.app.helper import Preparer
from popvault.errors import AuthenticationFailed, TLSError
from popvault.pop3.client import Pop3Client
from popvault.vault.vault import Vault
from tests.support.backup_helpers import (
    PASSPHRASE,
    REPORT_FIELDS,
    arrivals_per_uidl,
    assert_vault_sound,
    cli_command,
    cli_env,
    message_count,
    open_vault,
    run_cli,
    write_config,
)
from tests.support.dovecot import Dovecot, UserInfo, served_bytes
from tests.support.generate import adversarial, realistic
from tests.support.vaults import deleted_uidls

ADVERSARIAL = [data for _, data in adversarial()]
REALISTIC = list(realistic(5, seed=42, avg_size=8 * 1024))
SMALL = [
    b"From: a@example.org\r\nSubject: one\r\n\r\n.dot first\r\nbody\r\n",
    b"From: b@example.org\nSubject: two\n\nLF only\n.\n..\nend\n",
    b"From: c@example.org\r\nSubject: three\r\n\r\n" + b"y" * 12_000 + b"\r\n",
]


def account(dc: Dovecot, user: UserInfo, name: str = "dc", **options: object) -> AccountConfig:
    """POP3S with the fixture's CA unless options say otherwise."""
    values: dict[str, object] = {
        "name": name,
        "host": dc.host,
        "port": dc.pop3s_port,
        "user": user.name,
        "tls": "implicit",
        "tls_ca_file": str(dc.ca_file),
        "timeout": 20.0,
        "connect_timeout": 10.0,
    }
    values.update(options)
    return AccountConfig(**values)  # type: ignore[arg-type]


def assert_byte_exact(v: Vault, acct: str, uidls: list[str], delivered: list[bytes]) -> None:
    known = v.known_uidls(acct)
    for uidl, msg in zip(uidls, delivered, strict=True):
        assert uidl in known, f"{uidl} was not archived"
        assert v.read_message(known[uidl], use_cache=False) == served_bytes(msg), uidl
    assert all(c == 1 for c in arrivals_per_uidl(v, acct).values())


def sessions(dc: Dovecot, user: UserInfo, n: int) -> list[tuple[int, int]]:
    """(retr, deleted) of the user's first ``n`` POP3 sessions, waiting for the log."""
    stats = dc.retr_counts(user, min_sessions=n)
    assert len(stats) >= n, stats
    return [(s.retr, s.deleted) for s in stats]


# ------------------------------------------------------------------ the library


@pytest.mark.parametrize("prepare", ["direct", "helper", "failing helper"])
def test_pop3s_full_then_incremental_byte_exact(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    vault: Vault,
    monkeypatch: pytest.MonkeyPatch,
    prepare: str,
) -> None:
    """Byte-exact whichever way messages are filed: directly, prepared in a helper
    process, or with a helper that fails on every batch (each is then added directly)."""
    filed = _count_prepared(monkeypatch)
    helpers: list[Preparer[Any]] = []
    if prepare != "direct":
        monkeypatch.setattr(fetch_mod, "PREPARE_MIN", 1)
        monkeypatch.setattr(fetch_mod, "PREPARE_MAX", 64 << 10)  # larger ones: streamed
    if prepare == "failing helper":
        # a helper whose key is not bytes raises on every message it is given
        def failing(_vault: Vault, _count: int, _work: Any) -> Preparer[Any]:
            helpers.append(Preparer(None))  # type: ignore[arg-type]
            return helpers[-1]

        monkeypatch.setattr(fetch_mod, "preparer_for", failing)
    delivered = ADVERSARIAL + REALISTIC
    uidls = dovecot.deliver(dovecot_user, delivered)
    acct = account(dovecot, dovecot_user)
    rep = backup_account(vault, acct, dovecot_user.password)
    n = len(delivered)
    warnings = rep.warnings
    if prepare == "failing helper":
        assert len(warnings) == 1 and "helper process failed (TypeError" in warnings[0]
        warnings = []
    assert (rep.listed, rep.fetched, rep.new, rep.deleted, warnings) == (n, n, n, 0, [])
    if prepare == "helper":
        assert 0 < len(filed) < n  # the largest messages are streamed, never handed over
    else:
        assert filed == []
    if prepare == "failing helper":
        assert isinstance(helpers[0].failed, TypeError)
    assert rep.bytes == sum(len(served_bytes(m)) for m in delivered)
    assert_byte_exact(vault, "dc", uidls, delivered)

    rep = backup_account(vault, acct, dovecot_user.password)
    assert (rep.listed, rep.fetched, rep.new) == (n, 0, 0)

    later = [b"Subject: later\r\n\r\nnew mail\r\n", REALISTIC[0] + b"a change\r\n"]
    new_uidls = dovecot.deliver(dovecot_user, later)
    rep = backup_account(vault, acct, dovecot_user.password)
    assert (rep.listed, rep.fetched, rep.new) == (n + 2, 2, 2)
    assert_byte_exact(vault, "dc", uidls + new_uidls, delivered + later)
    assert sessions(dovecot, dovecot_user, 3) == [(n, 0), (0, 0), (2, 0)]
    assert dovecot.message_count(dovecot_user) == n + 2  # keep: nothing deleted
    assert_vault_sound(vault)


def _count_prepared(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record the ids of messages filed from a helper's preparation."""
    filed: list[bytes] = []
    real = Vault.add_prepared

    def counting(self: Vault, data: bytes, prepared: Any, *args: Any) -> Any:
        filed.append(prepared.msg_id)
        return real(self, data, prepared, *args)

    monkeypatch.setattr(Vault, "add_prepared", counting)
    return filed


@pytest.mark.parametrize("tls", ["starttls", "none"])
def test_stls_and_plain(dovecot: Dovecot, dovecot_user: UserInfo, vault: Vault, tls: str) -> None:
    uidls = dovecot.deliver(dovecot_user, SMALL)
    acct = account(dovecot, dovecot_user, port=dovecot.pop3_port, tls=tls)
    rep = backup_account(vault, acct, dovecot_user.password)
    assert rep.fetched == len(SMALL)
    assert_byte_exact(vault, "dc", uidls, SMALL)
    assert sessions(dovecot, dovecot_user, 1) == [(len(SMALL), 0)]


@pytest.mark.parametrize("auth", ["user", "apop", "plain", "login"])
def test_auth_mechanisms(dovecot: Dovecot, dovecot_user: UserInfo, vault: Vault, auth: str) -> None:
    uidls = dovecot.deliver(dovecot_user, SMALL[:1])
    rep = backup_account(vault, account(dovecot, dovecot_user, auth=auth), dovecot_user.password)
    assert rep.fetched == 1
    assert_byte_exact(vault, "dc", uidls, SMALL[:1])


def test_wrong_password_is_authentication_failure(
    dovecot: Dovecot, dovecot_user: UserInfo, vault: Vault
) -> None:
    dovecot.deliver(dovecot_user, SMALL[:1])
    with pytest.raises(AuthenticationFailed) as info:
        backup_account(vault, account(dovecot, dovecot_user), "not-the-password")
    assert info.value.exit_code == 77
    assert "not-the-password" not in str(info.value)
    assert message_count(vault) == 0


def test_wrong_ca_refused_and_pin_accepted(
    dovecot: Dovecot, dovecot_user: UserInfo, vault: Vault
) -> None:
    uidls = dovecot.deliver(dovecot_user, SMALL[:1])
    wrong = account(dovecot, dovecot_user, tls_ca_file=str(dovecot.wrong_ca_file))
    with pytest.raises(TLSError) as info:
        backup_account(vault, wrong, dovecot_user.password)
    assert info.value.exit_code == 1
    bad_pin = account(dovecot, dovecot_user, tls_ca_file=None, tls_fingerprint="ab" * 32)
    with pytest.raises(TLSError):
        backup_account(vault, bad_pin, dovecot_user.password)
    assert message_count(vault) == 0
    # no CA at all, only the pinned certificate: accepted
    pinned = account(
        dovecot,
        dovecot_user,
        tls_ca_file=None,
        tls_fingerprint=dovecot.cert_fingerprint_sha256,
    )
    rep = backup_account(vault, pinned, dovecot_user.password)
    assert rep.fetched == 1
    assert_byte_exact(vault, "dc", uidls, SMALL[:1])


# ------------------------------------------------------------------ deletion policies


def test_delete_only_after_durable_and_verified(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    vault: Vault,
    vault_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    delivered = SMALL + REALISTIC[:2]
    uidls = dovecot.deliver(dovecot_user, delivered)
    checked: list[int] = []
    independent: list[Vault] = []
    real_dele = Pop3Client.dele

    def dele(client: Pop3Client, num: int) -> None:
        # at the moment of each DELE, a separate reader with an empty cache finds the
        # message committed on disk, and it reads back byte-exact
        if not independent:
            independent.append(
                Vault.open(vault_path, PASSPHRASE.encode(), cache_dir=tmp_path / "indep")
            )
        known = independent[0].known_uidls("dc")
        uidl = uidls[num - 1]
        assert uidl in known, f"DELE {num} before {uidl} was committed"
        data = independent[0].read_message(known[uidl], use_cache=False)
        assert data == served_bytes(delivered[num - 1])
        assert dovecot.message_count(dovecot_user) == len(delivered)
        checked.append(num)
        real_dele(client, num)

    monkeypatch.setattr(Pop3Client, "dele", dele)
    try:
        acct = account(dovecot, dovecot_user, delete=True)
        rep = backup_account(vault, acct, dovecot_user.password)
    finally:
        for v in independent:
            v.close()
    assert (rep.fetched, rep.deleted) == (len(delivered), len(delivered))
    assert sorted(checked) == list(range(1, len(delivered) + 1))
    assert dovecot.message_count(dovecot_user) == 0
    assert_byte_exact(vault, "dc", uidls, delivered)
    assert deleted_uidls(vault, "dc") == set(uidls)
    assert sessions(dovecot, dovecot_user, 1) == [(len(delivered), len(delivered))]
    assert_vault_sound(vault)


def test_delete_after_days(dovecot: Dovecot, dovecot_user: UserInfo, vault: Vault) -> None:
    uidls = dovecot.deliver(dovecot_user, SMALL)
    acct = account(dovecot, dovecot_user, keep=False, delete_after_days=3)
    pw = dovecot_user.password
    start = time.time()
    rep = backup_account(vault, acct, pw)
    assert (rep.fetched, rep.deleted) == (len(SMALL), 0)
    rep = backup_account(vault, acct, pw, now=start + 2 * DAY)
    assert (rep.fetched, rep.deleted) == (0, 0)
    rep = backup_account(vault, acct, pw, now=start + 3 * DAY - 60)
    assert rep.deleted == 0
    assert dovecot.message_count(dovecot_user) == len(SMALL)
    rep = backup_account(vault, acct, pw, now=time.time() + 3 * DAY + 1)
    assert (rep.fetched, rep.deleted) == (0, len(SMALL))
    assert dovecot.message_count(dovecot_user) == 0
    assert_byte_exact(vault, "dc", uidls, SMALL)
    assert [d for _, d in sessions(dovecot, dovecot_user, 4)] == [0, 0, 0, len(SMALL)]


# ------------------------------------------------------------------ the CLI


def url(dc: Dovecot, user: UserInfo) -> str:
    return f"pop3s://{user.name}@{dc.host}:{dc.pop3s_port}"


def parse_report(stdout: str) -> tuple[int, list[dict[str, Any]]]:
    """The ``--json`` report: (exit code, account entries), each with every field."""
    report = json.loads(stdout)
    assert isinstance(report, dict)
    assert set(report) == {"exit_code", "accounts", "storage"}
    assert report["storage"] is None  # a folder vault: no requests to count
    accounts = report["accounts"]
    assert isinstance(accounts, list)
    for a in accounts:
        assert isinstance(a, dict)
        assert set(a) == REPORT_FIELDS
        assert isinstance(a["warnings"], list)
        assert isinstance(a["seconds"], float | int)
    code = report["exit_code"]
    assert isinstance(code, int)
    return code, accounts


def test_cli_url_json_dry_run_and_no_new_mail(
    dovecot: Dovecot, dovecot_user: UserInfo, vault_path: Path, cache_dir: Path
) -> None:
    delivered = [ADVERSARIAL[0], ADVERSARIAL[4], *SMALL]
    uidls = dovecot.deliver(dovecot_user, delivered)
    env = cli_env(cache_dir, dovecot_user.password)
    base = ["backup", "--url", url(dovecot, dovecot_user), "--tls-ca-file", str(dovecot.ca_file)]

    dry = run_cli(vault_path, [*base, "--delete", "--dry-run", "--json"], env)
    assert dry.returncode == 0, dry.stderr
    _code, (entry,) = parse_report(dry.stdout)
    # with --delete, what would be fetched would also be deleted once verified
    assert (entry["would_fetch"], entry["would_delete"], entry["fetched"]) == (5, 5, 0)
    with open_vault(vault_path, cache_dir) as v:
        assert message_count(v) == 0

    first = run_cli(vault_path, [*base, "--json"], env)
    assert first.returncode == 0, first.stderr
    code, (entry,) = parse_report(first.stdout)
    assert code == 0
    assert entry["account"] == f"{dovecot_user.name}@{dovecot.host}"
    assert (entry["status"], entry["listed"], entry["fetched"], entry["new"]) == ("ok", 5, 5, 5)
    assert entry["error"] is None
    assert dovecot_user.password not in first.stdout + first.stderr

    # dry run with --delete after archiving: would delete all, deletes nothing
    dry = run_cli(vault_path, [*base, "--delete", "--dry-run", "--json"], env)
    assert dry.returncode == 0, dry.stderr
    _code, (entry,) = parse_report(dry.stdout)
    assert (entry["would_fetch"], entry["would_delete"]) == (0, 5)
    assert dovecot.message_count(dovecot_user) == 5

    again = run_cli(vault_path, base, env)
    assert again.returncode == 0, again.stderr
    assert "fetched 0" in again.stderr
    retr = [s.retr for s in dovecot.retr_counts(dovecot_user, min_sessions=4)]
    assert retr == [0, 5, 0, 0]
    assert [s.deleted for s in dovecot.retr_counts(dovecot_user)] == [0, 0, 0, 0]
    with open_vault(vault_path, cache_dir) as v:
        assert_byte_exact(v, entry["account"], uidls, delivered)
        assert_vault_sound(v)


def test_cli_wrong_password_and_wrong_ca(
    dovecot: Dovecot, dovecot_user: UserInfo, vault_path: Path, cache_dir: Path
) -> None:
    dovecot.deliver(dovecot_user, SMALL[:1])
    base = ["backup", "--url", url(dovecot, dovecot_user)]
    wrong_pw = run_cli(
        vault_path,
        [*base, "--tls-ca-file", str(dovecot.ca_file)],
        cli_env(cache_dir, "wrong-password-123"),
    )
    assert wrong_pw.returncode == 77, wrong_pw.stderr
    assert "wrong-password-123" not in wrong_pw.stderr + wrong_pw.stdout
    wrong_ca = run_cli(
        vault_path,
        [*base, "--tls-ca-file", str(dovecot.wrong_ca_file)],
        cli_env(cache_dir, dovecot_user.password),
    )
    assert wrong_ca.returncode == 1, wrong_ca.stderr
    assert "certificate" in wrong_ca.stderr
    with open_vault(vault_path, cache_dir) as v:
        assert message_count(v) == 0


def test_cli_config_two_accounts_jobs_2_and_delete(
    dovecot: Dovecot, vault_path: Path, cache_dir: Path, tmp_path: Path
) -> None:
    users = [
        dovecot.add_user(f"jobs{i}{time.monotonic_ns() % 100000}", f"pw-{i}-x") for i in (1, 2)
    ]
    mail = [SMALL + REALISTIC[:2], [ADVERSARIAL[0], ADVERSARIAL[5], *REALISTIC[2:]]]
    uidls = [dovecot.deliver(u, m) for u, m in zip(users, mail, strict=True)]
    config = write_config(
        tmp_path / "config.toml",
        {
            "first": {
                "host": dovecot.host,
                "port": dovecot.pop3s_port,
                "user": users[0].name,
                "tls_ca_file": str(dovecot.ca_file),
                "password": users[0].password,
            },
            "second": {
                "host": dovecot.host,
                "port": dovecot.pop3_port,
                "tls": "starttls",
                "tls_ca_file": str(dovecot.ca_file),
                "user": users[1].name,
                "password_env": "SECOND_PW",
                "delete": True,
            },
        },
        vault=vault_path,
    )
    env = cli_env(cache_dir, SECOND_PW=users[1].password)
    done = subprocess.run(
        [*cli_command(vault_path, "--config", str(config), "backup", "--jobs", "2", "--json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    code, accounts = parse_report(done.stdout)
    assert code == 0
    by_name = {a["account"]: a for a in accounts}
    assert set(by_name) == {"first", "second"}
    assert by_name["first"]["fetched"] == len(mail[0])
    assert by_name["first"]["deleted"] == 0
    assert by_name["second"]["fetched"] == by_name["second"]["deleted"] == len(mail[1])
    assert dovecot.message_count(users[0]) == len(mail[0])
    assert dovecot.message_count(users[1]) == 0
    with open_vault(vault_path, cache_dir) as v:
        for name, ids, msgs in zip(("first", "second"), uidls, mail, strict=True):
            assert_byte_exact(v, name, ids, msgs)
        assert message_count(v) == len(mail[0]) + len(mail[1])
        assert_vault_sound(v)


def test_cli_two_concurrent_runs(
    dovecot: Dovecot, dovecot_user: UserInfo, vault_path: Path, cache_dir: Path
) -> None:
    delivered = REALISTIC + SMALL
    uidls = dovecot.deliver(dovecot_user, delivered)
    env = cli_env(cache_dir, dovecot_user.password)
    args = cli_command(
        vault_path,
        "backup",
        "--account",
        "dc",
        "--url",
        url(dovecot, dovecot_user),
        "--tls-ca-file",
        str(dovecot.ca_file),
    )
    procs = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = []
    for p in procs:
        _out, err = p.communicate(timeout=120)
        results.append((p.pid, p.returncode, err))
    codes = sorted(rc for _, rc, _ in results)
    assert codes in ([0, 0], [0, 11]), results
    for _pid, rc, err in results:
        if rc == 11:
            (holder,) = [other for other, orc, _ in results if orc == 0]
            assert f"locked by process {holder}" in err, err
    # one after the other: the second found everything archived
    fetched = [int(m) for _, rc, e in results if rc == 0 for m in re.findall(r"fetched (\d+)", e)]
    assert sorted(fetched) == ([len(delivered)] if codes == [0, 11] else [0, len(delivered)])
    with open_vault(vault_path, cache_dir) as v:
        assert_byte_exact(v, "dc", uidls, delivered)
        assert message_count(v) == len(delivered)
        assert_vault_sound(v)


def test_report_type_is_what_json_prints() -> None:
    rep = AccountReport(account="a")
    assert set(rep.to_json()) == REPORT_FIELDS
