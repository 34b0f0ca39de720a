"""Writers take a message in pieces (large exports stream) with the same bytes as whole,
and a large file is read in pieces by the readers instead of held in memory."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.mailboxes import message as message_mod
from popvault.mailboxes.eml import EmlWriter, read_eml
from popvault.mailboxes.maildir import MaildirWriter, read_maildir
from popvault.mailboxes.mbox import MboxWriter, read_mbox

TRICKY = (
    b"From: a@example.org\r\nSubject: t\r\n\r\nFrom the start\r\n>From quoted\r\n"
    b"a\rb\nbare LF\n.\r\n\x00\xff end without newline\r"
)


def _split(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    pos = 0
    for n in sizes:
        yield data[pos : pos + n]
        pos += n
    yield data[pos:]


@settings(max_examples=60, deadline=None)
@given(
    data=st.one_of(st.just(TRICKY), st.binary(max_size=300)),
    sizes=st.lists(st.integers(0, 40), max_size=12),
    crlf=st.booleans(),
)
def test_mbox_pieces_equal_whole(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, sizes: list[int], crlf: bool
) -> None:
    d = tmp_path_factory.mktemp("mbox")
    whole, pieces = d / "whole", d / "pieces"
    with MboxWriter(whole, crlf=crlf) as w:
        w.add(data, when=0)
    with MboxWriter(pieces, crlf=crlf) as w:
        w.add(_split(data, sizes), when=0)
    assert whole.read_bytes() == pieces.read_bytes()


def test_mbox_failed_pieces_leave_no_partial_message(tmp_path: Path) -> None:
    def failing() -> Iterator[bytes]:
        yield b"Subject: half\n\nfirst line\n"
        raise ValueError("vault said no")

    path = tmp_path / "out.mbox"
    with MboxWriter(path) as w:
        w.add(b"Subject: one\n\nbody\n", when=0)
        with pytest.raises(ValueError):
            w.add(failing(), when=0)
        w.add(b"Subject: two\n\nbody\n", when=0)
    got = [m.data for m in read_mbox(path)]
    assert got == [b"Subject: one\n\nbody\n", b"Subject: two\n\nbody\n"]


def test_maildir_and_eml_take_pieces(tmp_path: Path) -> None:
    md = MaildirWriter(tmp_path / "md")
    name = md.add(iter([TRICKY[:10], TRICKY[10:]]), flags="S", when=1_000_000)
    assert Path(name).read_bytes() == TRICKY
    assert (
        mailbox.Maildir(tmp_path / "md", factory=None).get_bytes(Path(name).name.split(":")[0])
        == TRICKY
    )
    eml = EmlWriter(tmp_path / "eml")
    assert Path(eml.add(iter([b"", TRICKY, b""]), "x")).read_bytes() == TRICKY


def test_large_files_are_streamed_not_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(message_mod, "LARGE_FILE", 1000)
    monkeypatch.setattr(message_mod, "CHUNK", 256)
    big = bytes(range(256)) * 20
    md = MaildirWriter(tmp_path / "md")
    md.add(big)
    md.add(b"small\n")
    got = sorted(read_maildir(tmp_path / "md"), key=lambda m: len(m.read()))
    assert got[0].path is None and got[0].data == b"small\n"
    assert got[1].path is not None and got[1].data == b""
    pieces = list(got[1].chunks())
    assert all(len(p) <= 256 for p in pieces) and b"".join(pieces) == big
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "a.eml").write_bytes(big)
    [m] = list(read_eml(tmp_path / "e"))
    assert m.path is not None and m.read() == big


_MBOX_PART = st.one_of(
    st.binary(max_size=30),
    st.sampled_from(
        [b"From ", b">From ", b">>From ", b">" * 40 + b"From ", b">" * 9, b"\n", b"\r\n", b"\r"]
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    messages=st.lists(
        st.lists(_MBOX_PART, max_size=14).map(lambda parts: b"".join(parts) + b"\n"),
        min_size=1,
        max_size=5,
    ),
    chunk=st.integers(1, 64),
)
def test_large_mbox_messages_stream_with_exact_unquoting(messages: list[bytes], chunk: int) -> None:
    """A message over LARGE_FILE inside an mbox is not held: chunks() reads and unquotes
    its byte range in pieces, giving the bytes the whole-message path gives, whatever
    the piece size (quoted From_ lines and long '>' runs cut across pieces)."""
    import tempfile

    import popvault.mailboxes.mbox as mbox_mod

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "box"
        with MboxWriter(p, crlf=True) as w:
            for m in messages:
                w.add(m, when=0)
        whole = list(read_mbox(p))
        assert all(m.stream is None for m in whole)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(mbox_mod, "LARGE_FILE", -1)  # every message is "large"
            mp.setattr(mbox_mod, "CHUNK", chunk)
            streamed = list(read_mbox(p))
            assert all(m.stream is not None and m.data == b"" for m in streamed)
            got = [b"".join(m.chunks()) for m in streamed]
        assert got == [m.data for m in whole] == messages
        assert [m.source for m in streamed] == [m.source for m in whole]


def test_quoted_from_after_a_long_run_of_quotes_is_unquoted(tmp_path: Path) -> None:
    """A line of more '>' than the reader's scan chunk, then 'From ': still unquoted,
    on the whole-message path and the streamed one (a message is never altered)."""
    import popvault.mailboxes.mbox as mbox_mod

    body = b"Subject: q\n\n" + b">" * 70_000 + b"From here\nend\n"
    p = tmp_path / "box"
    with MboxWriter(p) as w:
        w.add(body, when=0)
    assert b"\n" + b">" * 70_001 + b"From here" in p.read_bytes()
    [m] = read_mbox(p)
    assert m.data == body
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mbox_mod, "LARGE_FILE", 1000)
        mp.setattr(mbox_mod, "CHUNK", 4096)
        [s] = read_mbox(p)
        assert s.stream is not None and s.read() == body


def test_streamed_mbox_message_of_a_file_cut_short_is_a_read_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import popvault.mailboxes.mbox as mbox_mod

    monkeypatch.setattr(mbox_mod, "LARGE_FILE", 100)
    p = tmp_path / "box"
    with MboxWriter(p) as w:
        w.add(b"Subject: big\n\n" + b"x" * 500 + b"\n", when=0)
    [m] = read_mbox(p)
    with open(p, "r+b") as f:
        f.truncate(300)
    with pytest.raises(OSError, match="changed while it was being read"):
        m.read()
