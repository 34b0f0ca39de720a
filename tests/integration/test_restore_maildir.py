"""``restore --to maildir:PATH``: exact bytes, flags and delivery times in a Maildir any
reader understands (Python's ``mailbox``), no duplicates on a second run, and a Maildir
that Dovecot serves over POP3 as it served the originals.

A Maildir restore applies no transform at all (popvault.mailboxes.maildir): every file is
the vault's bytes, byte for byte.
"""

from __future__ import annotations

import datetime as dt
import mailbox
import secrets
from pathlib import Path

import pytest

from popvault.pop3.client import Pop3Client, Pop3Settings
from popvault.vault.vault import Vault
from tests.support.backup_helpers import run_cli
from tests.support.dovecot import Dovecot, served_bytes
from tests.support.generate import adversarial, realistic
from tests.support.restore_helpers import (
    PASSPHRASE,
    Seed,
    Stored,
    cli_env,
    dated_message,
    json_report,
    make_vault,
    multiset,
)

UTC = dt.UTC
FILE_TIME = dt.datetime(2022, 6, 1, 12, 30, 15, tzinfo=UTC).timestamp()


def seeds() -> list[Seed]:
    """Every adversarial case (the empty message too), realistic mail, and messages with
    each kind of flags: none known (``None``: new/), none set (``""``), and some set."""
    flag_cycle: list[str | None] = [None, "", "S", "RS", "F", "DFPRST"]
    out = [
        Seed(data, flags=flag_cycle[i % len(flag_cycle)])
        for i, (_name, data) in enumerate(adversarial())
    ]
    out += [
        Seed(
            data,
            flags=flag_cycle[(i + 2) % len(flag_cycle)],
            file_time=FILE_TIME + i if i % 2 else None,
        )
        for i, data in enumerate(realistic(10, seed=99, avg_size=6 * 1024))
    ]
    out.append(
        Seed(
            dated_message("md-file", date=dt.datetime(2020, 1, 1, tzinfo=UTC)),
            flags="S",
            file_time=FILE_TIME,
        )
    )
    return out


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    d.mkdir()
    monkeypatch.setenv("POPVAULT_CACHE_DIR", str(d))
    return d


def delivered_times(vault_path: Path) -> dict[bytes, float]:
    with Vault.open(vault_path, PASSPHRASE.encode()) as vault:
        return {row.id: row.delivered for row in vault.messages()}


def read_back(box: Path) -> list[tuple[bytes, str, str, float]]:
    """(bytes, subdir, flags, mtime) of every message, read with Python's ``mailbox``."""
    md = mailbox.Maildir(box, factory=None, create=False)
    out: list[tuple[bytes, str, str, float]] = []
    for key in md.keys():
        msg = md.get_message(key)
        out.append((md.get_bytes(key), msg.get_subdir(), msg.get_flags(), msg.get_date()))
    return out


def test_restore_to_maildir_exact_flags_twice_and_served_by_dovecot(
    dovecot: Dovecot, tmp_path: Path, cache_dir: Path
) -> None:
    vault = tmp_path / "vault"
    stored = make_vault(vault, seeds())
    by_bytes: dict[bytes, Stored] = {s.data: s for s in stored}
    assert len(by_bytes) == len(stored), "test data: messages must be distinct"
    box = tmp_path / "restored" / "Maildir"
    env = cli_env(cache_dir)

    proc = run_cli(vault, ["restore", "--to", f"maildir:{box}", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    rep = json_report(proc)
    assert rep["target"] == f"maildir:{box}"
    assert (rep["selected"], rep["restored"], rep["already"]) == (len(stored), len(stored), 0)
    assert rep["bytes"] == sum(len(s.data) for s in stored)

    delivered = delivered_times(vault)
    got = read_back(box)
    assert multiset(data for data, *_ in got) == multiset(s.data for s in stored)
    for data, subdir, flags, mtime in got:
        s = by_bytes[data]
        if s.flags is None:
            assert (subdir, flags) == ("new", ""), data[:60]
        else:
            assert (subdir, flags) == ("cur", "".join(sorted(s.flags))), data[:60]
        assert mtime == pytest.approx(delivered[s.msg_id], abs=1e-3)
    files = sorted(p.name for sub in ("cur", "new") for p in (box / sub).iterdir())
    assert all(":2," in f for f in files if (box / "cur" / f).exists())
    assert list((box / "tmp").iterdir()) == []

    # Twice: every message is recognised in the Maildir, nothing is written.
    proc = run_cli(vault, ["restore", "--to", f"maildir:{box}", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    rep = json_report(proc)
    assert (rep["restored"], rep["already"]) == (0, len(stored))
    assert sorted(p.name for sub in ("cur", "new") for p in (box / sub).iterdir()) == files

    # Served by Dovecot over POP3 exactly as the original Maildir files would be.
    user = dovecot.add_user(f"md{secrets.token_hex(4)}", secrets.token_urlsafe(12), maildir=box)
    settings = Pop3Settings(
        host=dovecot.host,
        user=user.name,
        password=user.password,
        port=dovecot.pop3s_port,
        tls="implicit",
        tls_ca_file=str(dovecot.ca_file),
        timeout=30,
    )
    fetched: list[bytes] = []
    client = Pop3Client.connect(settings)
    try:
        uidls = client.uidl()
        assert len(uidls) == len(stored)
        for num, _uidl in uidls:
            parts: list[bytes] = []
            client.retr(num, parts.append)
            fetched.append(b"".join(parts))
    finally:
        client.quit()
    assert multiset(fetched) == multiset(served_bytes(s.data) for s in stored)


def test_maildir_restore_recognises_messages_by_content(tmp_path: Path, cache_dir: Path) -> None:
    """Without any restore record (a second vault with the same mail), the keyed ids of
    the files already in the Maildir keep it from writing duplicates; a dry run says
    what it would write and writes nothing."""
    first = make_vault(tmp_path / "a", seeds(), source="a")
    box = tmp_path / "box"
    env = cli_env(cache_dir)
    proc = run_cli(tmp_path / "a", ["restore", "--to", f"maildir:{box}", "--json"], env)
    assert proc.returncode == 0, proc.stderr

    extra = Seed(dated_message("only-in-b", date=dt.datetime(2021, 1, 1, tzinfo=UTC)), flags="")
    second = make_vault(tmp_path / "b", [*seeds(), extra], source="b")
    dry = run_cli(tmp_path / "b", ["restore", "--to", f"maildir:{box}", "--dry-run", "--json"], env)
    assert dry.returncode == 0, dry.stderr
    rep = json_report(dry)
    assert (rep["would_restore"], rep["already"], rep["restored"]) == (1, len(first), 0)
    assert len(read_back(box)) == len(first)

    proc = run_cli(tmp_path / "b", ["restore", "--to", f"maildir:{box}", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    rep = json_report(proc)
    assert (rep["restored"], rep["already"]) == (1, len(first))
    assert multiset(data for data, *_ in read_back(box)) == multiset(s.data for s in second)
