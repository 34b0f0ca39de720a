"""Backup runs against each fault of our scripted POP3 server (guarantees 2, 3 and 8).

After every fault: nothing is lost (each original message is still on the server or in
the vault, byte-exact), nothing is archived twice, nothing was DELE'd that the vault does
not hold, the exit code is the one cron/systemd act on, and ``check --read-data`` passes.
Where a later run makes sense it is done too: it must resume and finish cleanly.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from popvault.app import backup as backup_mod
from popvault.app import fetch as fetch_mod
from popvault.app.backup import AccountReport, BackupReport, backup_account, run_backup
from popvault.app.config import AccountConfig
from popvault.demo.server import Faults, Mailbox, ScriptedPop3Server
from popvault.errors import NetworkError
from popvault.pop3.client import Pop3Client
from popvault.pop3.settings import Pop3Settings
from tests.support.backup_helpers import (
    PASSPHRASE,
    arrivals_per_uidl,
    assert_nothing_lost,
    assert_vault_sound,
    create_vault,
    message_count,
    open_vault,
    run_main,
    scripted_account,
    small_messages,
)
from tests.support.vaults import deleted_uidls

PASSWORD = "scripted-secret-pw"
USER = "alice"


def _messages() -> list[tuple[str, bytes]]:
    msgs = small_messages(10, seed=11)
    # message 3 is large enough that a drop in its middle is really in its middle
    big = b"Subject: big\r\nMessage-ID: <big@example.org>\r\n\r\n" + b"".join(
        b"%06d a line of text that repeats with a number\r\n" % i for i in range(4000)
    )
    msgs[2] = (msgs[2][0], big)
    return msgs


MESSAGES = _messages()


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("POPVAULT_CACHE_DIR", str(path))
    monkeypatch.delenv("POPVAULT_CONFIG", raising=False)
    monkeypatch.delenv("POPVAULT_VAULT", raising=False)
    return path


@pytest.fixture
def vault_path(tmp_path: Path, cache_dir: Path) -> Path:
    path = tmp_path / "vault"
    create_vault(path, cache_dir)
    return path


@pytest.fixture
def server() -> Iterator[ScriptedPop3Server]:
    with ScriptedPop3Server(MESSAGES, user=USER, password=PASSWORD) as srv:
        yield srv


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_mod, "RETRY_DELAYS", (0.01, 0.01))


def backup(vault_path: Path, cache_dir: Path, acct: AccountConfig) -> AccountReport:
    """One run of one account, as ``popvault backup`` does it (errors in the report)."""
    with open_vault(vault_path, cache_dir, write=True) as v:
        report: BackupReport = run_backup(v, [(acct, PASSWORD)])
    assert len(report.accounts) == 1
    assert report.exit_code == report.accounts[0].exit_code
    return report.accounts[0]


def dele_numbers(commands: list[str]) -> list[int]:
    return [int(c.split()[1]) for c in commands if c.startswith("DELE ")]


def verify(
    server: ScriptedPop3Server, vault_path: Path, cache_dir: Path, account: str = "scripted"
) -> dict[str, bytes]:
    """The invariants after a run; returns UIDL -> bytes in the vault."""
    with open_vault(vault_path, cache_dir) as v:
        assert_vault_sound(v)
        stored = assert_nothing_lost(MESSAGES, server.mailbox.messages(), v, account)
    # every DELE of every session named a message the vault holds (sessions see the
    # mailbox in order; in these tests messages are only removed at the end of a session)
    for num in dele_numbers(server.commands):
        assert num <= len(MESSAGES)
    return stored


def uidls(msgs: list[tuple[str, bytes]]) -> list[str]:
    return [u for u, _ in msgs]


# ------------------------------------------------------------------ dropped connections


def test_drop_in_the_middle_of_a_retr(
    server: ScriptedPop3Server, vault_path: Path, cache_dir: Path
) -> None:
    server.faults = Faults(drop_retr=(3, 60_000))
    acct = scripted_account(server, delete=True)
    rep = backup(vault_path, cache_dir, acct)
    assert rep.exit_code == 75
    assert rep.error is not None and "RETR 3" in rep.error
    assert server.mailbox.messages() == MESSAGES  # nothing deleted
    assert not dele_numbers(server.commands)
    stored = verify(server, vault_path, cache_dir)
    # what arrived whole before the drop is committed; the half message is not
    assert sorted(stored) == uidls(MESSAGES[:2])

    server.faults = Faults()
    rep = backup(vault_path, cache_dir, acct)
    assert (rep.exit_code, rep.fetched, rep.deleted) == (0, len(MESSAGES) - 2, len(MESSAGES))
    assert server.mailbox.messages() == []
    stored = verify(server, vault_path, cache_dir)
    assert sorted(stored) == uidls(MESSAGES)


@pytest.mark.parametrize("drop", ["no_commit", "commit_no_reply", "after_reply"])
def test_quit_dropped_with_delete(
    server: ScriptedPop3Server,
    vault_path: Path,
    cache_dir: Path,
    drop: Literal["no_commit", "commit_no_reply", "after_reply"],
) -> None:
    server.faults = Faults(quit_drop=drop)
    acct = scripted_account(server, delete=True)
    rep = backup(vault_path, cache_dir, acct)
    stored = verify(server, vault_path, cache_dir)
    assert sorted(stored) == uidls(MESSAGES)  # all archived before any DELE
    with open_vault(vault_path, cache_dir) as v:
        recorded = deleted_uidls(v, "scripted")
    if drop == "after_reply":
        # +OK arrived before the reset: the deletions happened and are recorded
        assert (rep.exit_code, rep.deleted) == (0, len(MESSAGES))
        assert server.mailbox.messages() == []
        assert recorded == set(uidls(MESSAGES))
    else:
        # no reply to QUIT: the deletions may or may not have happened; they were
        # recorded before QUIT ("DELE sent")
        assert rep.exit_code == 75
        assert rep.error is not None and "QUIT" in rep.error
        assert recorded == set(uidls(MESSAGES))
        expected_left = MESSAGES if drop == "no_commit" else []
        assert server.mailbox.messages() == expected_left

    server.faults = Faults()
    rep = backup(vault_path, cache_dir, acct)
    # what is still there is listed again after its deletion record: fetched again, it
    # proves to be the archived message (nothing new, no duplicate), and is deleted
    left = len(MESSAGES) if drop == "no_commit" else 0
    assert (rep.exit_code, rep.fetched, rep.new, rep.duplicates) == (0, left, 0, 0)
    assert (rep.deleted, rep.warnings) == (left, [])
    assert server.mailbox.messages() == []
    verify(server, vault_path, cache_dir)


# ------------------------------------------------------------------ login refusals


@pytest.mark.parametrize(
    ("code", "exit_code", "sessions"),
    [
        ("IN-USE", 75, 3),  # retried twice within the run (RETRY_DELAYS), then 75
        ("SYS/TEMP", 75, 3),
        ("LOGIN-DELAY", 75, 1),  # RFC 2449: do not retry soon
        ("AUTH", 77, 1),
        ("SYS/PERM", 1, 1),
    ],
)
def test_login_refused_exit_codes(
    server: ScriptedPop3Server,
    vault_path: Path,
    cache_dir: Path,
    fast_retries: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: str,
    exit_code: int,
    sessions: int,
) -> None:
    server.faults = Faults(login_error=code)
    monkeypatch.setenv("POPVAULT_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("POPVAULT_POP3_PASSWORD", PASSWORD)
    url = f"pop3://{USER}@127.0.0.1:{server.port}?tls=none"
    t0 = time.monotonic()
    rc = run_main(["--vault", str(vault_path), "backup", "--url", url, "--delete"])
    assert rc == exit_code
    assert time.monotonic() - t0 < 10
    assert server.sessions == sessions
    err = capsys.readouterr().err
    assert f"[{code}]" in err
    assert PASSWORD not in err
    assert server.mailbox.messages() == MESSAGES
    with open_vault(vault_path, cache_dir) as v:
        assert message_count(v) == 0
        assert_vault_sound(v)


def test_in_use_retried_until_the_other_session_ends(
    server: ScriptedPop3Server,
    vault_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real [IN-USE]: another client holds the maildrop and lets go during the retry."""
    monkeypatch.setattr(backup_mod, "RETRY_DELAYS", (0.3, 0.3))
    other = Pop3Client.connect(
        Pop3Settings(host="127.0.0.1", port=server.port, tls="none", user=USER, password=PASSWORD)
    )
    timer = threading.Timer(0.1, other.quit)
    timer.start()
    try:
        rep = backup(vault_path, cache_dir, scripted_account(server))
    finally:
        timer.join()
        other.close()
    assert (rep.exit_code, rep.fetched) == (0, len(MESSAGES))
    assert server.sessions == 3  # the other one, the refused one, the good one
    verify(server, vault_path, cache_dir)


# ------------------------------------------------------------------ broken protocol


@pytest.mark.parametrize("verb", ["GREETING", "UIDL", "RETR", "DELE", "QUIT"])
def test_malformed_status_line(
    server: ScriptedPop3Server, vault_path: Path, cache_dir: Path, verb: str
) -> None:
    server.faults = Faults(malformed_status=verb)
    acct = scripted_account(server, delete=True)
    rep = backup(vault_path, cache_dir, acct)
    assert rep.exit_code == 1, rep
    assert rep.error is not None and "127.0.0.1" in rep.error
    stored = verify(server, vault_path, cache_dir)
    if verb in ("GREETING", "UIDL", "RETR"):
        assert stored == {}
    else:
        assert sorted(stored) == uidls(MESSAGES)
    if verb != "QUIT":  # the server applies deletions before its (garbled) QUIT reply
        assert server.mailbox.messages() == MESSAGES
    with open_vault(vault_path, cache_dir) as v:
        # deletions are recorded after the DELEs, before QUIT
        recorded = set(uidls(MESSAGES)) if verb == "QUIT" else set()
        assert deleted_uidls(v, "scripted") == recorded


def test_missing_terminating_dot(
    server: ScriptedPop3Server, vault_path: Path, cache_dir: Path
) -> None:
    server.faults = Faults(omit_terminator=3)
    rep = backup(vault_path, cache_dir, scripted_account(server, delete=True))
    assert rep.exit_code == 1
    assert rep.error is not None and "RETR 3" in rep.error
    assert server.mailbox.messages() == MESSAGES
    stored = verify(server, vault_path, cache_dir)
    # message 3 arrived whole up to a line boundary, but without its dot it is not trusted
    assert sorted(stored) == uidls(MESSAGES[:2])


# ------------------------------------------------------------------ lying servers


def test_list_size_that_lies_is_kept_and_never_deleted(
    server: ScriptedPop3Server, vault_path: Path, cache_dir: Path
) -> None:
    server.faults = Faults(list_size_lies={4: 17})
    acct = scripted_account(server, delete=True)
    rep = backup(vault_path, cache_dir, acct)
    assert (rep.exit_code, rep.fetched, rep.deleted) == (0, len(MESSAGES), len(MESSAGES) - 1)
    assert any("LIST said 17" in w for w in rep.warnings)
    assert server.mailbox.uidls() == [MESSAGES[3][0]]
    assert 4 not in dele_numbers(server.commands)
    stored = verify(server, vault_path, cache_dir)
    assert stored[MESSAGES[3][0]] == MESSAGES[3][1]

    # the next run still sees the lie (the message is number 1 now): it stays on the
    # server, although it was archived in an earlier run (a size that disagrees may be
    # another message under the UIDL: it is fetched again, and is the archived one)
    server.faults = Faults(list_size_lies={1: 17})
    rep = backup(vault_path, cache_dir, acct)
    assert (rep.exit_code, rep.fetched, rep.new, rep.duplicates, rep.deleted) == (0, 1, 0, 0, 0)
    assert any("LIST said 17" in w for w in rep.warnings)
    assert not any("reused" in w for w in rep.warnings)
    assert server.mailbox.uidls() == [MESSAGES[3][0]], "DELE'd a message whose size lied"
    verify(server, vault_path, cache_dir)


@pytest.mark.parametrize("helper", [False, True])
def test_list_sizes_counting_lf_line_ends_are_not_lies(
    server: ScriptedPop3Server,
    vault_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    helper: bool,
) -> None:
    """A server whose LIST counts each line end as one byte (notes/dovecot.md): every
    size is short of what arrives by exactly the message's line feeds. None is a
    mismatch, held whole for the preparer (helper) or not, and every one is deleted."""
    if helper:
        monkeypatch.setattr(fetch_mod, "PREPARE_MIN", 1)
    lf = {n: len(data) - data.count(b"\n") for n, (_, data) in enumerate(MESSAGES, 1)}
    assert all(len(MESSAGES[n - 1][1]) - size > 2 for n, size in lf.items())
    server.faults = Faults(list_size_lies=lf)
    rep = backup(vault_path, cache_dir, scripted_account(server, delete=True))
    assert (rep.exit_code, rep.fetched, rep.deleted) == (0, len(MESSAGES), len(MESSAGES))
    assert not any("LIST said" in w for w in rep.warnings)
    assert server.mailbox.messages() == []


def test_duplicate_uidls_all_archived_none_deleted(
    server: ScriptedPop3Server, vault_path: Path, cache_dir: Path
) -> None:
    server.faults = Faults(duplicate_uidls=True)
    acct = scripted_account(server, delete=True)
    rep = backup(vault_path, cache_dir, acct)
    assert (rep.exit_code, rep.fetched, rep.new, rep.deleted) == (0, 10, 10, 0)
    assert any("more than once" in w for w in rep.warnings)
    assert server.mailbox.messages() == MESSAGES
    assert not dele_numbers(server.commands)
    with open_vault(vault_path, cache_dir) as v:
        assert_vault_sound(v)
        assert message_count(v) == len(MESSAGES)
        held = {v.read_message(m) for m in v.known_uidls("scripted").values()}
        assert held == {d for _, d in MESSAGES}
        assert all(c == 1 for c in arrivals_per_uidl(v, "scripted").values())

    rep = backup(vault_path, cache_dir, acct)
    assert (rep.exit_code, rep.fetched, rep.deleted) == (0, 0, 0)
    assert server.mailbox.messages() == MESSAGES


@pytest.mark.parametrize("allow", [False, True])
def test_no_uidl_identified_by_top(
    server: ScriptedPop3Server, vault_path: Path, cache_dir: Path, allow: bool
) -> None:
    server.faults = Faults(no_uidl=True)
    acct = scripted_account(server, delete=True, allow_delete_without_uidl=allow)
    rep = backup(vault_path, cache_dir, acct)
    assert (rep.exit_code, rep.fetched, rep.new) == (0, 10, 10)
    assert sum(c.startswith("TOP ") for c in server.commands) == len(MESSAGES)
    with open_vault(vault_path, cache_dir) as v:
        assert_vault_sound(v)
        stored = {v.read_message(m) for m in v.known_uidls("scripted").values()}
        assert stored == {d for _, d in MESSAGES}
        assert all(c == 1 for c in arrivals_per_uidl(v, "scripted").values())
    if allow:
        assert rep.deleted == len(MESSAGES)
        assert server.mailbox.messages() == []
    else:
        assert rep.deleted == 0
        assert server.mailbox.messages() == MESSAGES
        assert not dele_numbers(server.commands)
        before = len(server.commands)
        rep = backup(vault_path, cache_dir, acct)
        assert (rep.exit_code, rep.fetched, rep.deleted) == (0, 0, 0)
        assert not any(c.startswith("RETR") for c in server.commands[before:])
        assert server.mailbox.messages() == MESSAGES


@pytest.mark.parametrize("verb", ["GREETING", "UIDL", "RETR", "QUIT"])
def test_server_that_never_answers_times_out(
    server: ScriptedPop3Server, vault_path: Path, cache_dir: Path, verb: str
) -> None:
    server.faults = Faults(hang_on=verb)
    acct = scripted_account(server, delete=True, timeout=0.3, connect_timeout=0.3)
    t0 = time.monotonic()
    rep = backup(vault_path, cache_dir, acct)
    assert time.monotonic() - t0 < 5
    assert rep.exit_code == 75
    assert rep.error is not None and re.search(r"within 0\.3 ?s", rep.error), rep.error
    stored = verify(server, vault_path, cache_dir)
    assert server.mailbox.messages() == MESSAGES  # a hung QUIT deletes nothing
    assert sorted(stored) == (uidls(MESSAGES) if verb == "QUIT" else [])


# ------------------------------------------------------------------ UIDL reuse


def test_reused_uidl_after_deletion_is_fetched_before_it_is_deleted(
    vault_path: Path, cache_dir: Path
) -> None:
    """RFC 1939 lets a server reuse a unique-id once its message is gone: a new message
    under an old, already archived and deleted UIDL must be archived before any DELE."""
    first = small_messages(3, seed=21)
    box = Mailbox(first)
    with ScriptedPop3Server(box, user=USER, password=PASSWORD) as srv:
        acct = scripted_account(srv, delete=True)
        rep = backup(vault_path, cache_dir, acct)
        assert (rep.exit_code, rep.deleted) == (0, 3)
        assert box.messages() == []
        newcomer = b"Subject: new mail under an old UIDL\r\n\r\nnot archived yet\r\n"
        box.add(first[0][0], newcomer)
        rep = backup(vault_path, cache_dir, acct)
        assert rep.exit_code == 0
        with open_vault(vault_path, cache_dir) as v:
            assert_vault_sound(v)
            held = {v.read_message(row.id) for row in v.messages()}
        assert newcomer in held or box.messages() == [(first[0][0], newcomer)], (
            "a message never archived was deleted from the server"
        )
        assert newcomer in held, "a new message under a reused UIDL was never archived"


def test_backup_account_raises_on_dropped_session(
    server: ScriptedPop3Server, vault_path: Path, cache_dir: Path
) -> None:
    """The library call raises the error (the report path is run_backup's)."""
    server.faults = Faults(drop_retr=(1, 10))
    with open_vault(vault_path, cache_dir, write=True) as v, pytest.raises(NetworkError):
        backup_account(v, scripted_account(server, delete=True), PASSWORD)
    assert server.mailbox.messages() == MESSAGES
    verify(server, vault_path, cache_dir)


# ------------------------------------------------------------------ the helper process


def test_helper_prepared_run_keeps_what_arrived_before_a_drop(
    server: ScriptedPop3Server,
    vault_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Messages go to a helper process; message 3's LIST size understates it, so it
    outgrows the helper limit on the way and is streamed instead; the session drops in
    the middle of RETR 7. Everything that arrived whole is filed from the helper and
    committed, nothing is deleted, and the next run completes the set and deletes."""
    monkeypatch.setattr(fetch_mod, "PREPARE_MIN", 1)
    monkeypatch.setattr(fetch_mod, "PREPARE_MAX", 64 << 10)
    assert len(MESSAGES[2][1]) > 64 << 10
    server.faults = Faults(drop_retr=(7, 100), list_size_lies={3: 1000})
    acct = scripted_account(server, delete=True)
    rep = backup(vault_path, cache_dir, acct)
    assert rep.exit_code == 75
    assert rep.error is not None and "RETR 7" in rep.error
    assert not dele_numbers(server.commands)
    stored = verify(server, vault_path, cache_dir)
    assert sorted(stored) == uidls(MESSAGES[:6])
    assert stored[MESSAGES[2][0]] == MESSAGES[2][1]

    server.faults = Faults()
    rep = backup(vault_path, cache_dir, acct)
    assert (rep.exit_code, rep.fetched, rep.deleted) == (0, len(MESSAGES) - 6, len(MESSAGES))
    stored = verify(server, vault_path, cache_dir)
    assert sorted(stored) == uidls(MESSAGES)
    assert server.mailbox.messages() == []
