"""A large message the fast path cannot read is parsed without its attachments' bodies.

The email package's parser holds four to five times a message while it parses it. For
a message over ``SKELETON_MIN`` that needs the parser, :func:`searchtext._skeleton`
leaves out the bodies the parser would not read anyway (base64 bodies of parts that are
not text/plain or text/html), found by the fast path's reading of the structure: the
results must be exactly those of parsing the whole message.
"""

from __future__ import annotations

import re
import tracemalloc

import pytest

from popvault.app import searchtext
from popvault.app.searchtext import SearchText, search_text
from tests.support.attachment_mail import attachment_heavy
from tests.support.corpus import find_corpus
from tests.support.generate import adversarial, realistic
from tests.support.vaults import scan_message

CORPUS = find_corpus()
_BOUNDARY = re.compile(rb'boundary="?([^";\r\n]+)"?', re.IGNORECASE)


def _full(data: bytes, monkeypatch: pytest.MonkeyPatch) -> SearchText:
    """What the parser makes of the whole message (no fast path, no skeleton)."""
    with monkeypatch.context() as m:
        m.setattr(searchtext, "_single_part", lambda *_args: None)
        return search_text(data)


def _with_inline_named_text(data: bytes) -> bytes | None:
    """``data`` with one more part that only the parser reads (a named text part that
    is not an attachment), before the end of its outermost multipart."""
    found = _BOUNDARY.search(data)
    if found is None:
        return None
    end = b"\n--" + found.group(1) + b"--"
    i = data.rfind(end)
    if i < 0:
        return None
    extra = (
        b"\n--" + found.group(1) + b'\r\nContent-Type: text/plain; name="notes.txt"\r\n'
        b"\r\nthe inline notes\r\n"
    )
    return data[:i] + extra + data[i:]


def _samples() -> list[bytes]:
    out = list(realistic(40, seed=4, avg_size=4000)) + [d for _, d in adversarial()]
    heavy = list(attachment_heavy(60, seed=6))
    out += heavy
    out += [m for m in map(_with_inline_named_text, heavy) if m is not None]
    if CORPUS is not None:
        out += [p.read_bytes() for p in sorted(CORPUS.rglob("*.eml"))]
    return out


def test_the_skeleton_gives_what_the_whole_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(searchtext, "SKELETON_MIN", 0)
    parsed = shrunk = 0
    for data in _samples():
        if searchtext._single_part(data) is not None:
            continue
        parsed += 1
        shrunk += len(searchtext._skeleton(data)) < len(data)
        assert search_text(data) == _full(data, monkeypatch)
    assert parsed >= 30 and shrunk >= 20  # not vacuous: attachments were left out


def test_a_large_message_for_the_parser_is_not_parsed_whole() -> None:
    """A 27 MB message with a part only the parser reads: its 20 MB attachment is not
    handed to the parser (which held about 110 MB for it), and it is still named."""
    data = scan_message(b'Content-Type: text/plain; name="notes.txt"\r\n\r\nthe notes\r\n')
    assert len(data) > 25_000_000 and searchtext._single_part(data) is None
    tracemalloc.start()
    try:
        got = search_text(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got.filenames == ["notes.txt", "scan.pdf"]
    assert "See the scan." in got.body and "the notes" in got.body
    assert got.subject == "the contract" and got.problems == 0
    assert peak < 2_000_000, peak
