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
    import popvault.mailboxes.eml as eml_mod
    import popvault.mailboxes.maildir as maildir_mod

    monkeypatch.setattr(maildir_mod, "LARGE_FILE", 1000)
    monkeypatch.setattr(eml_mod, "LARGE_FILE", 1000)
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
