"""mbox reading and writing: splitting, mboxrd quoting, line endings, truncation."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.errors import MailboxFormatError
from popvault.mailboxes import MboxWriter, read_mbox
from popvault.mailboxes.mbox import parse_from_line_time

ADVERSARIAL = [
    b"Subject: a\n\nFrom the start\n",
    b"Subject: b\n\n>From quoted once\n>>From quoted twice\n>>>From thrice\n",
    b"Subject: c\n\n.\n..\n.From dot\n",
    b"Subject: d\n\nlone\rCR and NUL \x00 and 8-bit \xe9\xff\n",
    b"From start-of-message line\nSubject: e\n\nbody\n",
    b"Subject: f\n\n\n\n\nFrom after blank lines\n\n",
    b"Subject: g\n\n" + b"x" * (1024 * 1024 + 17) + b"\nFrom " + b"y" * 70000 + b"\n",
    b"",
    b"\n",
    b"Subject: h\n\nFromage is not From_\n From indented\n",
]


def write(path: Path, messages: list[bytes], crlf: bool = False) -> None:
    with MboxWriter(path, crlf=crlf) as w:
        for i, m in enumerate(messages):
            w.add(m, sender=f"user{i}@example.org", when=1_700_000_000 + i)


def read_all(path: Path, fmt: str = "auto") -> list[bytes]:
    return [m.data for m in read_mbox(path, fmt)]  # type: ignore[arg-type]


def test_round_trip_adversarial(tmp_path: Path) -> None:
    p = tmp_path / "box"
    write(p, ADVERSARIAL)
    assert read_all(p) == ADVERSARIAL


def test_writer_quotes_and_separates(tmp_path: Path) -> None:
    p = tmp_path / "box"
    write(p, [b"A: 1\n\nFrom x\n>From y\n", b"B: 2\n"])
    assert p.read_bytes() == (
        b"From user0@example.org Tue Nov 14 22:13:20 2023\n"
        b"A: 1\n\n>From x\n>>From y\n\n"
        b"From user1@example.org Tue Nov 14 22:13:21 2023\n"
        b"B: 2\n\n"
    )


def test_writer_file_mode_and_no_temp_left(tmp_path: Path) -> None:
    p = tmp_path / "box"
    write(p, [b"A: 1\n"])
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["box"]


def test_writer_abort_leaves_old_file(tmp_path: Path) -> None:
    p = tmp_path / "box"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError), MboxWriter(p) as w:
        w.add(b"A: 1\n")
        raise RuntimeError("boom")
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["box"]


def test_lf_mode_converts_crlf_and_adds_final_newline(tmp_path: Path) -> None:
    p = tmp_path / "box"
    write(p, [b"A: 1\r\n\r\nbody\r\nlone\rcr", b"B: 2\n\nno newline"])
    assert read_all(p) == [b"A: 1\n\nbody\nlone\rcr\n", b"B: 2\n\nno newline\n"]


def test_crlf_mode_keeps_bytes(tmp_path: Path) -> None:
    msgs = [b"A: 1\r\n\r\nFrom x\r\n\r\n", b"B: 2\r\n\r\nmixed\nlines\r\n"]
    p = tmp_path / "box"
    write(p, msgs, crlf=True)
    assert b"\r\n>From x\r\n" in p.read_bytes()
    assert read_all(p) == msgs


def test_reader_keeps_crlf_of_foreign_file(tmp_path: Path) -> None:
    p = tmp_path / "box"
    p.write_bytes(b"From a Mon Jan  1 00:00:00 2024\r\nA: 1\r\n\r\nx\r\n\r\nFrom b\r\nB: 2\r\n")
    assert read_all(p) == [b"A: 1\r\n\r\nx\r\n", b"B: 2\r\n"]


def test_mboxo_does_not_unquote(tmp_path: Path) -> None:
    p = tmp_path / "box"
    p.write_bytes(b"From a\nA: 1\n\n>From x\n>>From y\n\n")
    assert read_all(p, "mboxo") == [b"A: 1\n\n>From x\n>>From y\n"]
    assert read_all(p, "mboxrd") == [b"A: 1\n\nFrom x\n>From y\n"]
    assert read_all(p, "auto") == read_all(p, "mboxrd")


def test_from_line_not_after_blank_is_body(tmp_path: Path) -> None:
    p = tmp_path / "box"
    p.write_bytes(b"From a\nA: 1\nFrom not-a-separator\n\nbody\n\nFrom b\nB: 2\n\n")
    assert read_all(p, "mboxo") == [b"A: 1\nFrom not-a-separator\n\nbody\n", b"B: 2\n"]


def test_truncated_final_message_is_returned(tmp_path: Path) -> None:
    p = tmp_path / "box"
    write(p, [b"A: 1\n\nfirst\n", b"B: 2\n\nsecond message body\n"])
    full = p.read_bytes()
    p.write_bytes(full[:-10])
    msgs = read_all(p)
    assert msgs[0] == b"A: 1\n\nfirst\n"
    assert msgs[1] == b"B: 2\n\nsecond mess"


def test_not_an_mbox_names_file(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_bytes(b"Subject: hello\n\nbody\n")
    with pytest.raises(MailboxFormatError, match=r"notes\.txt"):
        list(read_mbox(p))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MailboxFormatError, match="missing"):
        list(read_mbox(tmp_path / "missing"))


def test_empty_file_is_empty_mailbox(tmp_path: Path) -> None:
    p = tmp_path / "box"
    p.write_bytes(b"")
    assert read_all(p) == []


def test_sources_and_from_line_times(tmp_path: Path) -> None:
    p = tmp_path / "box"
    write(p, [b"A: 1\n", b"B: 2\n"])
    msgs = list(read_mbox(p))
    assert [m.source for m in msgs] == [f"mbox:{p}#1", f"mbox:{p}#2"]
    assert [m.from_line_time for m in msgs] == [1_700_000_000.0, 1_700_000_001.0]
    assert msgs[0].flags is None and msgs[0].file_time is None


def test_parse_from_line_time_variants() -> None:
    assert parse_from_line_time(b"From a Tue Nov 14 22:13:20 2023\n") == 1_700_000_000.0
    assert parse_from_line_time(b"From a Tue Nov 14 22:13:20 UTC 2023") == 1_700_000_000.0
    assert parse_from_line_time(b"From a Tue Nov 14 22:13 +0000 2023") == 1_699_999_980.0
    assert parse_from_line_time(b"From a") is None
    assert parse_from_line_time(b"From a Tue Nov 14 29:13:20 2023") is None


def test_long_from_line(tmp_path: Path) -> None:
    p = tmp_path / "box"
    p.write_bytes(b"From " + b"s" * 200_000 + b" Tue Nov 14 22:13:20 2023\nA: 1\n\n")
    assert read_all(p) == [b"A: 1\n"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.binary(max_size=30),
                st.sampled_from([b"From ", b">From ", b">>From ", b"\n", b"\r\n", b"\r", b"."]),
            ),
            max_size=12,
        ).map(lambda parts: b"".join(parts) + b"\n"),
        max_size=6,
    )
)
def test_hypothesis_round_trip_crlf_mode(messages: list[bytes]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "box"
        write(p, messages, crlf=True)
        assert read_all(p) == messages
