"""Deletion by identity, not by UIDL and size, against a real Dovecot.

RFC 1939 lets a server reuse a UIDL once its message is gone. A message archived in an
earlier run is DELE'd only when ``TOP n 0`` has the keyed id of its archived header
section and the LIST size agrees; else the message under that UIDL is fetched first, as
an arrival of this run. Deletions are recorded in the vault before QUIT: a session that
never reaches QUIT leaves a record of a deletion that did not happen, and the next run
fetches the message again, finds the same one, and deletes it without counting it twice.
Dovecot's own per-session counts (``top``, ``retr``, ``del``) confirm what each run sent.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from popvault.app.backup import DAY, AccountReport, BackupReport, backup_account, run_backup
from popvault.app.config import AccountConfig
from popvault.errors import NetworkError
from popvault.pop3.client import Pop3Client
from popvault.pop3.errors import Pop3CommandFailed
from popvault.vault.vault import Vault
from tests.support.backup_helpers import (
    PASSPHRASE,
    arrivals_per_uidl,
    assert_vault_sound,
    message_count,
    open_vault,
)
from tests.support.dovecot import Dovecot, Pop3SessionStats, UserInfo, served_bytes
from tests.support.vaults import deleted_uidls

#: A and B: the same size, another header (and body): B takes A's UID, so A's UIDL.
A = b"From: a@example.org\r\nSubject: first, A\r\nMessage-ID: <a@x>\r\n\r\nbody of A\r\n"
B = b"From: b@example.org\r\nSubject: later, B\r\nMessage-ID: <b@x>\r\n\r\nbody of B\r\n"
OTHERS = [
    b"From: c@example.org\r\nSubject: C\r\n\r\nan ordinary message\r\n",
    b"From: d@example.org\nSubject: D\n\nLF only, served as CRLF\n",
]
assert len(A) == len(B) and A != B


def account(dc: Dovecot, user: UserInfo, **options: object) -> AccountConfig:
    values: dict[str, object] = {
        "name": "dc",
        "host": dc.host,
        "port": dc.pop3_port,
        "user": user.name,
        "tls": "none",
        "timeout": 20.0,
        "connect_timeout": 10.0,
    }
    values.update(options)
    return AccountConfig(**values)  # type: ignore[arg-type]


def held(v: Vault) -> set[bytes]:
    """Every message the vault holds, read back from storage."""
    return {v.read_message(row.id, use_cache=False) for row in v.messages()}


def stats(dc: Dovecot, user: UserInfo, n: int) -> list[Pop3SessionStats]:
    got = dc.retr_counts(user, min_sessions=n)
    assert len(got) >= n, got
    return got


def one(report: BackupReport) -> AccountReport:
    assert len(report.accounts) == 1
    return report.accounts[0]


def _archive_then_reuse(
    dovecot: Dovecot, user: UserInfo, vault: Vault, acct: AccountConfig
) -> tuple[str, list[str]]:
    """Archive A and the others without deleting; then A leaves the server out of band
    and B arrives under A's UIDL. Returns (A's UIDL, every UIDL)."""
    uidls = dovecot.deliver(user, [A, *OTHERS])
    rep = backup_account(vault, acct, user.password)
    assert (rep.fetched, rep.new, rep.deleted) == (3, 3, 0)
    assert dovecot.reuse_uid(user, 1, B) == uidls[0]
    assert dovecot.maildir_messages(user) == [B, *OTHERS]
    return uidls[0], uidls


# ------------------------------------------------------------------ (a) a reused UIDL


def test_reused_uidl_is_fetched_never_deleted_unseen(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    vault: Vault,
    vault_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = dovecot_user
    reused, uidls = _archive_then_reuse(dovecot, user, vault, account(dovecot, user))
    # at each DELE, a separate reader with an empty cache finds what that number holds
    # committed on disk: B is archived before it is deleted
    on_server = dict(zip(range(1, 4), [B, *OTHERS], strict=True))
    seen: list[int] = []
    real_dele = Pop3Client.dele

    def dele(client: Pop3Client, num: int) -> None:
        with Vault.open(vault_path, PASSPHRASE.encode(), cache_dir=tmp_path / "indep") as v:
            assert served_bytes(on_server[num]) in held(v), f"DELE {num} of a message not held"
        seen.append(num)
        real_dele(client, num)

    monkeypatch.setattr(Pop3Client, "dele", dele)
    rep = backup_account(vault, account(dovecot, user, delete=True), user.password)
    warning = (
        f"UIDL {reused} was reused by the server for a new message; fetched it, not deleted unseen"
    )
    assert rep.warnings == [warning]
    # B is new; the others were archived in the first run and prove themselves by TOP
    assert (rep.fetched, rep.new, rep.duplicates, rep.deleted) == (1, 1, 0, 3)
    assert sorted(seen) == [1, 2, 3]
    assert dovecot.message_count(user) == 0
    assert held(vault) == {served_bytes(m) for m in (A, B, *OTHERS)}
    assert deleted_uidls(vault, "dc") == set(uidls)
    assert arrivals_per_uidl(vault, "dc") == {u: 1 + (u == reused) for u in uidls}
    # one TOP per candidate archived earlier (all three), one RETR: B's
    last = stats(dovecot, user, 2)[1]
    assert (last.top, last.retr, last.deleted) == (3, 1, 3)
    assert_vault_sound(vault)


def test_reused_uidl_under_delete_after_days_waits_for_its_own_age(
    dovecot: Dovecot, dovecot_user: UserInfo, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B arrives under a UIDL first archived ten days ago: it is as young as its own
    arrival, so it stays on the server until it is old enough, and is then deleted by its
    TOP, not fetched again."""
    user = dovecot_user
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 10 * DAY)
    reused, _uidls = _archive_then_reuse(dovecot, user, vault, account(dovecot, user))
    monkeypatch.setattr(time, "time", real_time)
    acct = account(dovecot, user, delete_after_days=3)
    rep = backup_account(vault, acct, user.password)
    assert any(f"UIDL {reused} was reused" in w for w in rep.warnings)
    assert (rep.fetched, rep.new, rep.deleted) == (1, 1, 2)  # the others are old enough
    assert dovecot.maildir_messages(user) == [B]
    assert served_bytes(B) in held(vault)

    # the UIDL now has two arrivals (A, then B); the vault's UIDL map may name either
    # message (the cache's UIDL map), so a run may fetch B once more to prove it: then it
    # is confirmed (nothing new, no duplicate, no warning), never deleted unseen
    rep = backup_account(vault, acct, user.password, now=time.time() + 2 * DAY)
    assert (rep.new, rep.duplicates, rep.deleted, rep.warnings) == (0, 0, 0, [])
    assert rep.fetched in (0, 1)
    assert dovecot.maildir_messages(user) == [B]
    rep = backup_account(vault, acct, user.password, now=time.time() + 3 * DAY + 60)
    assert (rep.new, rep.duplicates, rep.deleted, rep.warnings) == (0, 0, 1, [])
    assert dovecot.message_count(user) == 0
    s = stats(dovecot, user, 4)
    assert (s[1].top, s[1].retr, s[1].deleted) == (3, 1, 2)
    assert (s[3].top, s[3].retr - rep.fetched, s[3].deleted) == (1, 0, 1)


def test_server_without_top_proves_by_download(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    vault: Vault,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that answers TOP with -ERR: each candidate archived earlier is fetched
    again; the download decides (the same message: deleted; B: archived, then deleted)."""
    user = dovecot_user
    reused, uidls = _archive_then_reuse(dovecot, user, vault, account(dovecot, user))
    tops: list[list[int]] = []

    def top_many(
        client: Pop3Client, nums: list[int], lines: int, got: object, window: int = 8
    ) -> None:
        tops.append(list(nums))
        raise Pop3CommandFailed(f"{client.host}: TOP {nums[0]} {lines} failed: -ERR unknown")

    monkeypatch.setattr(Pop3Client, "top_many", top_many)
    rep = backup_account(vault, account(dovecot, user, delete=True), user.password)
    assert tops == [[1, 2, 3]]  # asked once, for the three candidates archived earlier
    assert any(f"UIDL {reused} was reused" in w for w in rep.warnings)
    assert any("refuses TOP" in w for w in rep.warnings)
    # all three downloaded again; only B is new; the other two are confirmed, not
    # duplicates
    assert (rep.fetched, rep.new, rep.duplicates, rep.deleted) == (3, 1, 0, 3)
    assert dovecot.message_count(user) == 0
    assert held(vault) == {served_bytes(m) for m in (A, B, *OTHERS)}
    assert deleted_uidls(vault, "dc") == set(uidls)
    # two arrivals under the reused UIDL (A, then B), one under each other UIDL
    assert arrivals_per_uidl(vault, "dc") == {u: 1 + (u == reused) for u in uidls}


# ------------------------------------------------------------------ (b) intent before QUIT


class Crash(BaseException):
    """The process dying between the deletion record and QUIT."""


@pytest.mark.parametrize("how", ["connection lost", "crash"])
def test_no_quit_after_the_deletion_record(
    dovecot: Dovecot,
    dovecot_user: UserInfo,
    vault_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """The session ends between the committed ``del`` records and QUIT: Dovecot applies
    no deletion. The vault says deleted, the server still has everything; the next run
    fetches each again (the same message: nothing new, no duplicate), deletes it, and
    counts each deletion once."""
    user = dovecot_user
    delivered = [A, *OTHERS]
    uidls = dovecot.deliver(user, delivered)
    acct = account(dovecot, user, delete=True)
    real_quit = Pop3Client.quit

    def quit_(client: Pop3Client) -> None:
        with open_vault(vault_path, cache_dir) as v:  # the record is durable already
            assert deleted_uidls(v, "dc") == set(uidls)
        client.close()  # no QUIT: the server discards the deletions
        if how == "crash":
            raise Crash
        raise NetworkError(f"{client.host}: connection lost before QUIT")

    monkeypatch.setattr(Pop3Client, "quit", quit_)
    with open_vault(vault_path, cache_dir, write=True) as v:
        if how == "crash":
            with pytest.raises(Crash):
                backup_account(v, acct, user.password)
        else:
            rep = one(run_backup(v, [(acct, user.password)]))
            assert (rep.status, rep.exit_code, rep.deleted) == ("failed", 75, 0)
            assert rep.error is not None and "QUIT" in rep.error
    monkeypatch.setattr(Pop3Client, "quit", real_quit)
    assert dovecot.maildir_messages(user) == delivered
    with open_vault(vault_path, cache_dir) as v:
        assert deleted_uidls(v, "dc") == set(uidls)
        assert message_count(v) == len(delivered)

    with open_vault(vault_path, cache_dir, write=True) as v:
        rep = one(run_backup(v, [(acct, user.password)]))
        assert (rep.status, rep.fetched, rep.new, rep.duplicates) == ("ok", 3, 0, 0)
        assert (rep.deleted, rep.warnings) == (3, [])
        assert dovecot.message_count(user) == 0
        assert_vault_sound(v)
        assert message_count(v) == len(delivered)
        assert held(v) == {served_bytes(m) for m in delivered}
        assert all(c == 1 for c in arrivals_per_uidl(v, "dc").values())
        # a run after that has nothing to do
        rep = one(run_backup(v, [(acct, user.password)]))
        assert (rep.listed, rep.fetched, rep.deleted) == (0, 0, 0)
    s = stats(dovecot, user, 3)
    assert [(x.retr, x.deleted) for x in s[:3]] == [(3, 0), (3, 3), (0, 0)]


# ------------------------------------------------------------------ (c) what TOP costs


def test_top_only_for_deletion_candidates_archived_earlier(
    dovecot: Dovecot, dovecot_user: UserInfo, vault: Vault
) -> None:
    """A run that fetches and deletes its own arrivals sends no TOP; a no-op run without
    deletion sends none; a dry run sends none; deleting what an earlier run archived
    costs one TOP each and no RETR."""
    user = dovecot_user
    uidls = dovecot.deliver(user, OTHERS)
    keep = account(dovecot, user)
    rep = backup_account(vault, keep, user.password)
    assert (rep.fetched, rep.deleted) == (2, 0)
    rep = backup_account(vault, keep, user.password)
    assert (rep.fetched, rep.deleted) == (0, 0)
    delete = account(dovecot, user, delete=True)
    rep = backup_account(vault, delete, user.password, dry_run=True)
    assert (rep.would_fetch, rep.would_delete, rep.deleted) == (0, 2, 0)
    new = dovecot.deliver(user, [A])
    rep = backup_account(vault, delete, user.password)
    assert (rep.fetched, rep.new, rep.deleted, rep.warnings) == (1, 1, 3, [])
    assert dovecot.message_count(user) == 0
    assert deleted_uidls(vault, "dc") == set(uidls + new)
    s = stats(dovecot, user, 4)
    assert [(x.top, x.retr, x.deleted) for x in s[:4]] == [
        (0, 2, 0),
        (0, 0, 0),
        (0, 0, 0),
        (2, 1, 3),
    ]
