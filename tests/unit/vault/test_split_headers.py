"""The splitter looks for ``Content-Transfer-Encoding: base64`` lazily, from the end of
the last run on, in growing lower-cased windows (popvault.vault.split): the same
segments as finding every such header in the whole body first (what it did before),
for headers in any case, across window borders, between and after runs."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import popvault.vault.split as split
from popvault.vault.split import Base64Run, Segment

_HEADER = re.compile(rb"content-transfer-encoding:[ \t]*base64", re.IGNORECASE)


def _reference(body: bytes, base64_body: bool, offset: int) -> Iterator[Segment | Base64Run]:
    """Every header found first, then the runs after them (the code before)."""
    done = offset
    ends = [m.end() for m in _HEADER.finditer(body, offset)]
    starts = ([offset] if base64_body else []) + [split._part_body_start(body, e) for e in ends]
    for start in starts:
        if start < done:
            continue
        run_end, run = split._take_run(body, start, len(body))
        if run is None:
            continue
        yield from split._txt(body, done, start)
        yield run
        done = run_end
    yield from split._txt(body, done, len(body))


def _flat(parts: Iterator[Segment | Base64Run]) -> list[tuple[str, bytes]]:
    out = []
    for p in parts:
        seg = split._decoded(p)
        out.append((seg.kind, bytes(seg.data)))
    return out


_NAMES = [b"Content-Transfer-Encoding", b"content-transfer-encoding", b"CONTENT-TRANSFER-ENCODING"]


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        name = draw(st.sampled_from(_NAMES))
        value = draw(st.sampled_from([b"base64", b" base64", b"\tBase64", b" 7bit", b" BASE64"]))
        pad = b"x" * draw(st.integers(0, 300))  # moves the header across window borders
        data = draw(st.binary(min_size=0, max_size=400))
        eol = draw(st.sampled_from([b"\r\n", b"\n"]))
        text = base64.encodebytes(data).replace(b"\n", eol)
        if draw(st.booleans()):
            text = text.replace(b"A", b"!", 1)  # not base64 after all
        parts.append(b"--b" + eol + pad + eol + name + b":" + value + eol + eol + text + eol)
    return b"".join(parts) + b"--b--\r\n"


@given(_bodies(), st.integers(1, 97), st.integers(64, 700), st.booleans())
@settings(max_examples=400, deadline=None)
def test_lazy_header_search_gives_the_segments_of_the_full_search(
    body: bytes, first: int, chunk: int, base64_body: bool
) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(split, "FIRST_WINDOW", first)
        mp.setattr(split, "CHUNK", chunk)
        mp.setattr(split, "B64_MIN", 8)  # the generated runs are small: accept them
        got = _flat(split._body_parts(body, base64_body, 0))
        want = _flat(_reference(body, base64_body, 0))
    assert got == want


def test_a_header_across_the_first_window_border_is_found() -> None:
    data = bytes(range(256)) * 100
    text = base64.encodebytes(data).replace(b"\n", b"\r\n")
    head = b"Content-Transfer-Encoding: base64\r\n\r\n"
    for cut in range(1, len(head) - 8):
        lead = b"y" * (split.FIRST_WINDOW - cut) + b"\r\n"
        body = lead + head + text
        kinds = [seg.kind for seg in split.split_body(body)]
        assert kinds.count("b64") == 1, cut


def test_every_base64_part_after_another_is_found() -> None:
    """Three attachments, the headers in three cases: each is a run, decoded whole, and
    nothing between them is lost."""
    datas = [bytes([i]) * 30_000 + bytes(range(256)) * 50 for i in range(3)]
    body = b"preamble\r\n"
    for name, data in zip(_NAMES, datas, strict=True):
        text = base64.encodebytes(data).replace(b"\n", b"\r\n")
        body += b"--b\r\n" + name + b": base64\r\n\r\n" + text + b"\r\n"
    body += b"--b--\r\n"
    segs = list(split.split_body(body))
    assert [bytes(s.data) for s in segs if s.kind == "b64"] == datas
    assert _flat(split._body_parts(body, False, 0)) == _flat(_reference(body, False, 0))
