"""The everyday commands end to end: init, import, list, show, export, stats, check,
index rebuild, key management, --quiet and progress output."""

from __future__ import annotations

import datetime as dt
import email
import email.utils
import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from popvault.vault.vault import Vault
from tests.cli.helpers import (
    PASSPHRASE,
    REPO,
    contents,
    env_of,
    ids_of,
    list_json,
    make_vault,
    messages,
    run,
    run_sub,
    simple_message,
    write_eml_dir,
    write_maildir,
    write_mbox,
)
from tests.support.generate import adversarial

LIST_FIELDS = {
    "id",
    "size",
    "delivered",
    "date",
    "received",
    "archived",
    "from",
    "to",
    "cc",
    "subject",
    "message_id",
    "accounts",
    "uidls",
    "sources",
    "flags",
}


def ok(*args: str | os.PathLike[str], env: dict[str, str | None] | None = None) -> str:
    """Run a command that must succeed; returns its stderr."""
    res = run(*args, env=env)
    assert res.code == 0, str(res)
    return res.err


def mail(n: int, *, sender: str, to: str, cc: str = "", subject: str, date: str) -> bytes:
    cc_line = f"Cc: {cc}\r\n" if cc else ""
    return (
        f"From: {sender}\r\nTo: {to}\r\n{cc_line}Subject: {subject}\r\nDate: {date}\r\n"
        f"Message-ID: <f{n}@example.org>\r\n\r\nbody {n}\r\n"
    ).encode()


# ------------------------------------------------------------------ init


def test_init_creates_a_vault_and_refuses_to_overwrite_it(tmp_path: Path) -> None:
    path = tmp_path / "new-vault"
    err = ok("--vault", path, "init")
    assert "created vault" in err and str(path) in err
    assert (path / "config").is_file() and list((path / "keys").iterdir())
    assert ids_of(path) == set()
    config = (path / "config").read_bytes()
    res = run("--vault", path, "init")
    assert res.code == 2, str(res)
    assert res.err.startswith("popvault: error:") and "not empty" in res.err
    assert (path / "config").read_bytes() == config
    assert ok("--vault", path, "check").count("no problems found") == 1


def test_init_into_a_non_empty_directory_is_2(tmp_path: Path) -> None:
    path = tmp_path / "used"
    path.mkdir()
    (path / "precious.txt").write_text("keep me\n")
    res = run("--vault", path, "init")
    assert res.code == 2, str(res)
    assert sorted(os.listdir(path)) == ["precious.txt"]


# ------------------------------------------------------------------ import


def test_import_mbox_maildir_and_eml(vault: Path, tmp_path: Path) -> None:
    msgs = messages(12, seed=3)
    lf = [m.replace(b"\r\n", b"\n") for m in msgs[:4]]
    write_mbox(tmp_path / "in.mbox", lf)
    write_maildir(tmp_path / "md", msgs[4:8])
    emls = write_eml_dir(tmp_path / "emls", msgs[8:11])
    single = tmp_path / "single.eml"
    single.write_bytes(msgs[11])
    err = ok(
        "--vault", vault, "import", tmp_path / "in.mbox", tmp_path / "md", tmp_path / "emls", single
    )
    assert "imported 12 messages" in err and "12 new" in err
    assert set(contents(vault).values()) == set(lf) | set(msgs[4:])
    rows = list_json(vault)
    sources = {s for r in rows for s in r["sources"]}
    assert any(str(s).startswith("mbox:") for s in sources)
    assert any(str(s).startswith("maildir:") for s in sources)
    assert {f"eml:{f}" for f in [*emls, single]} <= sources
    # importing again adds nothing
    err = ok("--vault", vault, "import", tmp_path / "md")
    assert "0 new, 4 already in the vault" in err
    assert len(ids_of(vault)) == 12


def test_import_needs_a_source(vault: Path) -> None:
    res = run("--vault", vault, "import")
    assert res.code == 2, str(res)


# ------------------------------------------------------------------ list and filters


def _day(month: int, day: int) -> str:
    """An RFC 5322 date at 10:00 UTC in 2021."""
    return email.utils.format_datetime(dt.datetime(2021, month, day, 10, tzinfo=dt.UTC))


@pytest.fixture
def filled(vault: Path, tmp_path: Path) -> Path:
    alice, carol = "Alice <alice@example.org>", "Carol <carol@example.com>"
    work = [
        mail(1, sender=alice, to="bob@example.net", subject="Budget 2021", date=_day(1, 4)),
        mail(
            2,
            sender=carol,
            to="dave@example.net",
            cc="bob@example.net",
            subject="Lunch",
            date=_day(2, 1),
        ),
        mail(3, sender=alice, to="erin@example.net", subject="budget follow-up", date=_day(3, 1)),
    ]
    home = [
        mail(
            4,
            sender="Mallory <m@example.com>",
            to="bob@example.net",
            subject="Holiday",
            date=_day(4, 1),
        ),
        mail(
            5,
            sender="Trent <t@example.com>",
            to="frank@example.net",
            subject="Photos",
            date=_day(5, 1),
        ),
    ]
    for files, msgs in (
        (write_maildir(tmp_path / "work", work), work),
        (write_maildir(tmp_path / "home", home), home),
    ):
        for f, m in zip(files, msgs, strict=True):
            when = email.utils.parsedate_to_datetime(email.message_from_bytes(m)["Date"])
            os.utime(f, (when.timestamp(), when.timestamp()))  # Maildir: delivery time
    ok("--vault", vault, "import", "--account", "work", tmp_path / "work")
    ok("--vault", vault, "import", "--account", "home", tmp_path / "home")
    return vault


def _subjects(vault: Path, *filters: str) -> list[str]:
    return [str(r["subject"]) for r in list_json(vault, *filters)]


def test_list_json_has_the_documented_fields(filled: Path) -> None:
    rows = list_json(filled)
    assert len(rows) == 5
    for row in rows:
        assert set(row) == LIST_FIELDS
        assert len(str(row["id"])) == 64
        assert isinstance(row["size"], int) and row["size"] > 0
        assert isinstance(row["accounts"], list) and isinstance(row["sources"], list)
        assert row["uidls"] == []
        for key in ("delivered", "date", "archived"):
            assert str(row[key]).endswith("Z"), (key, row[key])
            dt.datetime.fromisoformat(str(row[key]))
    first = rows[0]
    assert first["subject"] == "Budget 2021"
    assert first["from"] == "Alice <alice@example.org>"
    assert first["to"] == "bob@example.net"
    assert first["message_id"] == "<f1@example.org>"
    assert first["accounts"] == ["work"]
    assert first["date"] == "2021-01-04T10:00:00Z"
    # oldest delivery first
    assert [r["subject"] for r in rows] == [
        "Budget 2021",
        "Lunch",
        "budget follow-up",
        "Holiday",
        "Photos",
    ]


def test_list_table(filled: Path) -> None:
    res = run("--vault", filled, "list")
    assert res.code == 0, str(res)
    lines = res.text.splitlines()
    ids = [str(r["id"]) for r in list_json(filled)]
    assert len(lines) == 5
    for line, mid in zip(lines, ids, strict=True):
        assert line.startswith(mid[:12] + "  ")
    assert "Budget 2021" in lines[0] and "alice@example.org" in lines[0]
    assert "2021-01-04" in lines[0]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--account", "work"], ["Budget 2021", "Lunch", "budget follow-up"]),
        (["--account", "home"], ["Holiday", "Photos"]),
        (["--account", "nobody"], []),
        (["--since", "2021-03-01"], ["budget follow-up", "Holiday", "Photos"]),
        (["--until", "2021-03-01"], ["Budget 2021", "Lunch"]),
        (
            ["--since", "2021-02-01", "--until", "2021-04-01T10:00:00"],
            ["Lunch", "budget follow-up"],
        ),
        (["--from", "alice"], ["Budget 2021", "budget follow-up"]),
        (["--to", "bob@example.net"], ["Budget 2021", "Lunch", "Holiday"]),  # To or Cc
        (["--subject", "BUDGET"], ["Budget 2021", "budget follow-up"]),
        (["--from", "alice", "--since", "2021-02-01"], ["budget follow-up"]),
        (["--account", "home", "--subject", "Budget"], []),
    ],
)
def test_list_filters(filled: Path, filters: list[str], expected: list[str]) -> None:
    assert _subjects(filled, *filters) == expected
    # export selects the same messages
    res = run("--vault", filled, "export", "out", "--format", "eml", *filters)
    assert res.code == 0, str(res)
    out = Path("out")
    assert (len(list(out.iterdir())) if out.exists() else 0) == len(expected)


def test_list_ids_file(filled: Path, tmp_path: Path) -> None:
    rows = list_json(filled)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"# two of them\n{rows[1]['id']}\n\n{str(rows[3]['id']).upper()}\n")
    assert _subjects(filled, "--ids", str(ids_file)) == ["Lunch", "Holiday"]
    json_file = tmp_path / "ids.jsonl"
    json_file.write_text(run("--vault", filled, "list", "--json", "--account", "home").text)
    assert _subjects(filled, "--ids", str(json_file)) == ["Holiday", "Photos"]
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{rows[0]['id']}\n{str(rows[1]['id'])[:12]}\n")
    res = run("--vault", filled, "list", "--ids", bad)
    assert res.code == 2, str(res)
    assert f"{bad}:2" in res.err
    res = run("--vault", filled, "list", "--ids", tmp_path / "missing.txt")
    assert res.code == 2, str(res)


# ------------------------------------------------------------------ show


def test_show_by_prefix_is_byte_exact(vault: Path, tmp_path: Path) -> None:
    msgs = [m for _, m in adversarial() if m] + messages(3, seed=5)
    write_maildir(tmp_path / "md", msgs)
    ok("--vault", vault, "import", tmp_path / "md")
    got = contents(vault)  # shows every message by its full id
    assert sorted(got.values()) == sorted(set(msgs))
    for mid, data in got.items():
        for prefix in (mid[:16], mid[:8].upper()):
            res = run("--vault", vault, "show", prefix)
            if res.code == 0:
                assert res.out == data
            else:  # an 8-digit prefix may (rarely) be shared
                assert res.code == 2 and "ambiguous" in res.err


def test_show_unknown_and_ambiguous_prefixes(vault: Path, tmp_path: Path) -> None:
    with Vault.open(vault, PASSPHRASE.encode(), cache_dir=tmp_path / "probe") as v:
        seen: dict[str, bytes] = {}
        n = 0
        while True:  # two messages whose ids share their first 4 hex digits
            m = simple_message(n)
            head = v.keys.keyed_id(m).hex()[:4]
            if head in seen:
                pair, prefix = [seen[head], m], head
                break
            seen[head] = m
            n += 1
    write_maildir(tmp_path / "md", pair)
    ok("--vault", vault, "import", tmp_path / "md")
    ids = ids_of(vault)
    assert len(ids) == 2 and all(i.startswith(prefix) for i in ids)
    res = run("--vault", vault, "show", prefix)
    assert res.code == 2, str(res)
    assert "ambiguous" in res.err and res.out == b""
    for mid in ids:
        assert run("--vault", vault, "show", mid[:20]).out in pair
    absent = next(f"{i:04x}" for i in range(65536) if f"{i:04x}" != prefix)
    res = run("--vault", vault, "show", absent + "0" * 8)
    assert res.code == 2 and "no message" in res.err
    for bad in ("abc", "xyz123", ""):
        res = run("--vault", vault, "show", bad)
        assert res.code == 2, str(res)


# ------------------------------------------------------------------ export round trips


def _roundtrip_messages() -> list[bytes]:
    adv = [m for name, m in adversarial() if m and name != "long-line-over-1mb"]
    return messages(8, seed=7) + adv


@pytest.mark.parametrize("fmt", ["mbox", "mbox-crlf", "maildir", "eml"])
def test_export_then_import_gives_the_same_messages(vault: Path, tmp_path: Path, fmt: str) -> None:
    msgs = _roundtrip_messages()
    if fmt.startswith("mbox"):
        msgs = [m for m in msgs if m.endswith(b"\n")]
    write_maildir(tmp_path / "md", msgs)
    ok("--vault", vault, "import", tmp_path / "md")
    original = contents(vault)
    dest = tmp_path / ("out.mbox" if fmt.startswith("mbox") else "out")
    args = ["--format", "mbox", "--crlf"] if fmt == "mbox-crlf" else ["--format", fmt]
    err = ok("--vault", vault, "export", dest, *args)
    assert f"exported {len(msgs)} messages" in err
    fresh = make_vault(tmp_path / "fresh")
    ok("--vault", fresh, "import", dest)
    again = sorted(contents(fresh).values())
    if fmt == "mbox":  # documented transform: CRLF becomes LF
        assert again == sorted(m.replace(b"\r\n", b"\n") for m in original.values())
    else:
        assert again == sorted(original.values())
        # and into the original vault: the very same ids, nothing new
        err = ok("--vault", vault, "import", dest)
        assert f"0 new, {len(msgs)} already in the vault" in err
        assert set(contents(vault)) == set(original)


def test_export_maildir_keeps_flags(vault: Path, tmp_path: Path) -> None:
    md = tmp_path / "md"
    write_maildir(md, [simple_message(1)])
    (md / "cur").mkdir(exist_ok=True)
    (md / "cur" / "x.host:2,RS").write_bytes(simple_message(2))
    ok("--vault", vault, "import", md)
    ok("--vault", vault, "export", tmp_path / "out", "--format", "maildir")
    names = sorted(p.name for p in (tmp_path / "out" / "cur").iterdir())
    assert len(names) == 1 and names[0].endswith(":2,RS")
    assert len(list((tmp_path / "out" / "new").iterdir())) == 1


# ------------------------------------------------------------------ stats, check, index


def test_stats_and_check(filled: Path) -> None:
    res = run("--vault", filled, "stats")
    assert res.code == 0, str(res)
    assert "5 distinct (5 arrivals)" in res.text
    assert "accounts:          2" in res.text
    res = run("--vault", filled, "stats", "--json")
    assert res.code == 0, str(res)
    s = json.loads(res.text)
    assert s["messages"] == 5 and s["accounts"] == 2 and s["commits"] == 2
    assert s["stored_bytes"] > 0
    err = ok("--vault", filled, "check")
    assert "no problems found: 5 messages, 2 packs" in err
    err = ok("--vault", filled, "check", "--read-data")
    assert "all data read and verified" in err


def test_index_rebuild(filled: Path, tmp_path: Path) -> None:
    before = list_json(filled)
    err = ok("--vault", filled, "index", "rebuild")
    assert "index rebuilt from 2 commits: 5 messages" in err
    assert list_json(filled) == before
    # a deleted cache is rebuilt on the next open
    for f in (tmp_path / "cache").iterdir():
        f.unlink()
    assert list_json(filled) == before


def test_index_rebuild_from_packs_after_losing_index_segments(filled: Path, tmp_path: Path) -> None:
    before = list_json(filled)
    data = contents(filled)
    for seg in (filled / "index").iterdir():
        seg.unlink()
    (filled / "index").rmdir()
    for f in (tmp_path / "cache").iterdir():
        f.unlink()
    err = ok("--vault", filled, "index", "rebuild", "--from-packs")
    assert "index rebuilt from 2 packs: 5 messages" in err
    assert list_json(filled) == before
    assert contents(filled) == data


# ------------------------------------------------------------------ keys


def test_key_passwd(filled: Path) -> None:
    err = ok("--vault", filled, "key", "passwd", env={"POPVAULT_NEW_PASSPHRASE": "new one"})
    assert "passphrase changed" in err
    assert run("--vault", filled, "list").code == 12
    assert len(list_json_env(filled, "new one")) == 5
    assert len(list((filled / "keys").iterdir())) == 1


def list_json_env(vault: Path, passphrase: str) -> list[object]:
    res = run("--vault", vault, "list", "--json", env={"POPVAULT_PASSPHRASE": passphrase})
    assert res.code == 0, str(res)
    return [json.loads(line) for line in res.text.splitlines()]


def test_key_passwd_without_new_passphrase_is_2(filled: Path) -> None:
    res = run("--vault", filled, "key", "passwd")
    assert res.code == 2, str(res)
    assert "POPVAULT_NEW_PASSPHRASE" in res.err
    assert len(list_json(filled)) == 5


def test_key_export_and_import_after_losing_every_key_slot(filled: Path, tmp_path: Path) -> None:
    data = contents(filled)
    res = run("--vault", filled, "key", "export")
    assert res.code == 0, str(res)
    assert "warning" in res.err and res.out
    exported = tmp_path / "keys.txt"
    err = ok("--vault", filled, "key", "export", "-o", exported)
    assert exported.stat().st_mode & 0o777 == 0o600
    assert exported.read_bytes() == res.out
    for slot in (filled / "keys").iterdir():
        slot.unlink()
    res = run("--vault", filled, "list")
    assert res.code == 20, str(res)
    assert "no key slots" in res.err and "popvault key import" in res.err
    err = ok(
        "--vault",
        filled,
        "key",
        "import",
        exported,
        env={"POPVAULT_NEW_PASSPHRASE": "recovered", "POPVAULT_PASSPHRASE": None},
    )
    assert "key slot added" in err
    for mid, body in data.items():
        res = run("--vault", filled, "show", mid, env={"POPVAULT_PASSPHRASE": "recovered"})
        assert res.code == 0 and res.out == body
    other = make_vault(tmp_path / "other")
    res = run("--vault", other, "key", "import", exported, env={"POPVAULT_NEW_PASSPHRASE": "x"})
    assert res.code == 2 and "belongs to vault" in res.err


# ------------------------------------------------------------------ output


def test_quiet_prints_nothing_on_success(tmp_path: Path) -> None:
    path = tmp_path / "qv"
    md = tmp_path / "md"
    write_maildir(md, messages(4, seed=9))
    commands: list[list[str | os.PathLike[str]]] = [
        ["init"],
        ["import", md],
        ["import", md],
        ["check"],
        ["check", "--read-data"],
        ["index", "rebuild"],
        ["export", tmp_path / "out", "--format", "maildir"],
    ]
    for args in commands:
        res = run("--quiet", "--vault", path, *args)
        assert (res.code, res.out, res.err) == (0, b"", ""), (args, str(res))
    res = run("-q", "--vault", path, "key", "passwd", env={"POPVAULT_NEW_PASSPHRASE": "n"})
    assert (res.code, res.out, res.err) == (0, b"", ""), str(res)
    # --quiet keeps the output a command exists for
    res = run("-q", "--vault", path, "list", env={"POPVAULT_PASSPHRASE": "n"})
    assert res.code == 0 and len(res.text.splitlines()) == 4 and res.err == ""


def _import_with_stderr_on_a_terminal(tmp_path: Path, vault: Path, source: Path) -> bytes:
    leader, follower = pty.openpty()
    # a real terminal has a size; tqdm hides bars on a 0-line one
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = dict(os.environ, **env_of(tmp_path), PYTHONPATH=str(REPO), COLUMNS="100")
    proc = subprocess.Popen(
        [sys.executable, "-m", "popvault", "--vault", str(vault), "import", str(source)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0, out
    return out


def test_progress_bars_only_on_a_terminal(tmp_path: Path) -> None:
    md = tmp_path / "md"
    write_maildir(md, messages(30, seed=13))
    a = make_vault(tmp_path / "a")
    res = run_sub("--vault", a, "import", md, env=env_of(tmp_path))
    assert res.code == 0, str(res)
    assert "\r" not in res.err and "msg/s" not in res.err and "msg]" not in res.err, res.err
    assert "\x1b[" not in res.err
    lines = res.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("imported 30 messages"), res.err
    # the control: the same run on a terminal does draw a bar
    b = make_vault(tmp_path / "b")
    tty_err = _import_with_stderr_on_a_terminal(tmp_path, b, md)
    assert b"maildir:" in tty_err and b"msg" in tty_err, tty_err


def test_end_to_end_in_a_subprocess(tmp_path: Path) -> None:
    env = env_of(tmp_path)
    path = tmp_path / "e2e"
    md = tmp_path / "md"
    msgs = messages(3, seed=21)
    write_maildir(md, msgs)
    assert run_sub("--vault", path, "init", env=env).code == 0
    res = run_sub("--vault", path, "import", md, env=env)
    assert res.code == 0, str(res)
    res = run_sub("--vault", path, "list", "--json", env=env)
    assert res.code == 0, str(res)
    ids = [json.loads(line)["id"] for line in res.out.decode().splitlines()]
    shown = {run_sub("--vault", path, "show", i[:10], env=env).out for i in ids}
    assert shown == set(msgs)
    res = run_sub("--vault", path, "check", "--read-data", env=env)
    assert res.code == 0, str(res)
