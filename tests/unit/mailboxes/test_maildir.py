"""Maildir reading and writing: flags, mtimes, cur/new, unreadable files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from popvault.errors import MailboxFormatError
from popvault.mailboxes import MaildirWriter, read_maildir
from popvault.mailboxes.maildir import split_info


def test_write_then_read(tmp_path: Path) -> None:
    w = MaildirWriter(tmp_path / "md")
    p_new = w.add(b"A: 1\r\n\r\nbody\x00\xff", None, 1_600_000_000.0)
    p_cur = w.add(b"B: 2\n", "SR", 1_600_000_100.0)
    p_empty = w.add(b"", "", 1_600_000_200.0)
    assert Path(p_new).parent.name == "new"
    assert p_cur.endswith(":2,RS") and Path(p_cur).parent.name == "cur"
    assert p_empty.endswith(":2,")
    assert Path(p_new).read_bytes() == b"A: 1\r\n\r\nbody\x00\xff"
    assert os.stat(p_cur).st_mtime == 1_600_000_100.0
    assert stat.S_IMODE(os.stat(p_cur).st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "md" / "tmp").stat().st_mode) == 0o700
    assert os.listdir(tmp_path / "md" / "tmp") == []
    msgs = list(read_maildir(tmp_path / "md"))
    assert [m.data for m in msgs] == [b"A: 1\r\n\r\nbody\x00\xff", b"B: 2\n", b""]
    assert [m.flags for m in msgs] == [None, "RS", ""]
    assert [m.file_time for m in msgs] == [1_600_000_000.0, 1_600_000_100.0, 1_600_000_200.0]
    assert msgs[0].source == f"maildir:{p_new}"


def test_sorted_by_mtime_then_name(tmp_path: Path) -> None:
    root = tmp_path / "md"
    for d in ("cur", "new", "tmp"):
        (root / d).mkdir(parents=True)
    files = {"new/b": 5.0, "cur/a:2,S": 5.0, "cur/z:2,": 1.0, "new/.hidden": 0.0}
    for name, t in files.items():
        (root / name).write_bytes(name.encode())
        os.utime(root / name, (t, t))
    assert [m.data for m in read_maildir(root)] == [b"cur/z:2,", b"cur/a:2,S", b"new/b"]


def test_unreadable_file_reported_and_skipped(tmp_path: Path) -> None:
    w = MaildirWriter(tmp_path / "md")
    w.add(b"good 1\n", "S", 1.0)
    bad = Path(w.add(b"bad\n", "S", 2.0))
    w.add(b"good 2\n", None, 3.0)
    bad.unlink()
    bad.mkdir()  # a directory where a message file should be: unreadable as a file
    errors: list[tuple[str, Exception]] = []
    msgs = list(read_maildir(tmp_path / "md", on_error=lambda f, e: errors.append((f, e))))
    assert [m.data for m in msgs] == [b"good 1\n", b"good 2\n"]
    assert [f for f, _ in errors] == [str(bad)]
    assert isinstance(errors[0][1], MailboxFormatError)
    with pytest.raises(MailboxFormatError, match=bad.name):
        list(read_maildir(tmp_path / "md"))


def test_not_a_maildir(tmp_path: Path) -> None:
    with pytest.raises(MailboxFormatError, match="not a Maildir"):
        list(read_maildir(tmp_path))


def test_flags_are_sorted_and_deduplicated(tmp_path: Path) -> None:
    w = MaildirWriter(tmp_path / "md")
    assert w.add(b"x", "SFSa", None).endswith(":2,FSa")


def test_split_info() -> None:
    assert split_info("123.M1P2.host,S=10:2,RS") == ("123.M1P2.host,S=10", "RS")
    assert split_info("123.host") == ("123.host", None)


def test_round_trip_import_export_import(tmp_path: Path) -> None:
    src = MaildirWriter(tmp_path / "a")
    for i, data in enumerate([b"1\r\n", b"2\n\x00", b"3", b"4\r"]):
        src.add(data, ["S", None, "FR", ""][i], 1_000.0 + (i % 2))
    first = list(read_maildir(tmp_path / "a"))
    dst = MaildirWriter(tmp_path / "b")
    for m in first:
        dst.add(m.data, m.flags, m.file_time)
    second = list(read_maildir(tmp_path / "b"))
    assert [(m.data, m.flags, m.file_time) for m in second] == [
        (m.data, m.flags, m.file_time) for m in first
    ]
