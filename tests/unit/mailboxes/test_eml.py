""".eml reading and writing, and the import -> export -> import round trip of each format."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from popvault.errors import MailboxFormatError
from popvault.mailboxes import (
    EmlWriter,
    MaildirWriter,
    MboxWriter,
    read_eml,
    read_maildir,
    read_mbox,
)

SAMPLES = [
    b"Subject: a\r\n\r\nFrom x\r\n>From y\r\n",
    b"Subject: b\n\nbare LF, NUL \x00, 8-bit \xe9, lone\rCR\n",
    b"no final newline",
    b"",
]


def test_write_exact_bytes_and_names(tmp_path: Path) -> None:
    w = EmlWriter(tmp_path / "out")
    p1 = w.add(SAMPLES[0], "msg")
    p2 = w.add(SAMPLES[1], "msg.eml")
    p3 = w.add(SAMPLES[2], "../evil/name")
    assert Path(p1).name == "msg.eml" and Path(p2).name == "msg-2.eml"
    assert Path(p3).parent == tmp_path / "out"
    assert Path(p1).read_bytes() == SAMPLES[0]
    assert stat.S_IMODE(os.stat(p1).st_mode) == 0o600
    assert sorted(os.listdir(tmp_path / "out")) == sorted(Path(p).name for p in (p1, p2, p3))


def test_read_file_and_directory_recursive(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.eml").write_bytes(b"B")
    (tmp_path / "d" / "a.EML").write_bytes(b"A")
    (tmp_path / "d" / "sub" / "c.eml").write_bytes(b"C")
    (tmp_path / "d" / "notes.txt").write_bytes(b"N")
    assert [m.data for m in read_eml(tmp_path / "d")] == [b"A", b"B", b"C"]
    one = list(read_eml(tmp_path / "d" / "b.eml"))
    assert one[0].data == b"B" and one[0].source == f"eml:{tmp_path / 'd' / 'b.eml'}"


def test_unreadable_eml_reported(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.eml").write_bytes(b"A")
    (tmp_path / "d" / "b.eml").symlink_to(tmp_path / "nowhere")
    errors: list[str] = []
    got = [m.data for m in read_eml(tmp_path / "d", on_error=lambda f, e: errors.append(f))]
    assert got == [b"A"] and errors == [str(tmp_path / "d" / "b.eml")]
    with pytest.raises(MailboxFormatError):
        list(read_eml(tmp_path / "d"))
    with pytest.raises(MailboxFormatError):
        list(read_eml(tmp_path / "missing"))


def test_round_trip_every_format(tmp_path: Path) -> None:
    # eml: exact bytes
    w = EmlWriter(tmp_path / "e1")
    for i, data in enumerate(SAMPLES):
        w.add(data, f"{i:03d}")
    e1 = [m.data for m in read_eml(tmp_path / "e1")]
    w2 = EmlWriter(tmp_path / "e2")
    for i, data in enumerate(e1):
        w2.add(data, f"{i:03d}")
    assert e1 == SAMPLES == [m.data for m in read_eml(tmp_path / "e2")]
    # maildir: exact bytes
    md = MaildirWriter(tmp_path / "m1")
    for i, data in enumerate(SAMPLES):
        md.add(data, "S", 100.0 + i)
    m1 = [m.data for m in read_maildir(tmp_path / "m1")]
    md2 = MaildirWriter(tmp_path / "m2")
    for i, data in enumerate(m1):
        md2.add(data, "S", 100.0 + i)
    assert m1 == SAMPLES == [m.data for m in read_maildir(tmp_path / "m2")]
    # mbox: after the first import the documented transforms are a fixed point
    for crlf in (False, True):
        with MboxWriter(tmp_path / "b1", crlf=crlf) as b:
            for data in SAMPLES:
                b.add(data)
        b1 = [m.data for m in read_mbox(tmp_path / "b1")]
        with MboxWriter(tmp_path / "b2", crlf=crlf) as b:
            for data in b1:
                b.add(data)
        assert [m.data for m in read_mbox(tmp_path / "b2")] == b1
        assert b1[1] == SAMPLES[1]
