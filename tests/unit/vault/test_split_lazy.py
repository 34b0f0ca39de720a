"""A run is checked and decoded a blob at a time, never whole (format §7.1, issue 12).

:class:`popvault.vault.split.Base64Run` decodes only its last ``ATT_CHUNK`` piece to
decide whether the run is canonical, and the others as the writer stores them. It must
accept exactly the runs the whole-run definition accepts, and its pieces must be the
``ATT_CHUNK`` slices of the whole decoded bytes: the blobs, their ids and so the vault's
bytes stay what they were. Small ``ATT_CHUNK`` values put the piece borders everywhere
(inside lines, at line ends, inside the last line); the real one is checked on a large
attachment, with the memory that splitting it takes.
"""

from __future__ import annotations

import base64
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.vault import split
from popvault.vault.split import (
    Base64Run,
    _decode_exact,
    split_message,
    split_message_lazily,
)
from tests.support.attachment_mail import attachment_heavy
from tests.support.generate import adversarial, redundant
from tests.support.vaults import handed_over_run
from tests.unit.vault.test_split_simd import _ALPHABET, reference


@given(
    st.binary(min_size=1, max_size=300),
    st.integers(1, 80),
    st.sampled_from([b"\r\n", b"\n"]),
    st.integers(0, 7),
    st.sampled_from(list(_ALPHABET + b"=")),
    st.integers(0, 3),
    st.sampled_from([3, 6, 9, 48, 300]),
)
@settings(max_examples=1500)
def test_pieces_match_the_whole_run(
    data: bytes, length: int, eol: bytes, back: int, byte: int, cut: int, chunk: int
) -> None:
    """Accepted exactly when the whole-run definition accepts, and the pieces are the
    ``ATT_CHUNK`` slices of the decoded bytes, whatever the piece size."""
    run = handed_over_run(data, length, eol, back, byte, cut)
    if run is None:
        return
    old = split.ATT_CHUNK
    split.ATT_CHUNK = chunk
    try:
        want = reference(run)
        assert _decode_exact(run, eol) == want
        if want is None:
            return
        accepted = split._accept_run(run, 0, len(run), min(length, len(run.replace(eol, b""))), eol)
        assert accepted is not None and accepted.size == len(want)
        pieces = list(accepted.chunks())
    finally:
        split.ATT_CHUNK = old
    assert pieces == [want[i : i + chunk] for i in range(0, len(want), chunk)]


def _messages() -> list[bytes]:
    return [*attachment_heavy(30, 5), *redundant(20, 3), *(m for _, m in adversarial())]


@pytest.mark.parametrize("chunk", [3, 48, 3 << 10])
def test_lazy_split_is_the_split(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lazy split gives the segments of :func:`split_message`, each run's pieces
    being the ``ATT_CHUNK`` slices of its decoded bytes."""
    monkeypatch.setattr(split, "ATT_CHUNK", chunk)
    for data in _messages():
        lazy = list(split_message_lazily(data))
        whole = list(split_message(data))
        assert len(lazy) == len(whole)
        for part, seg in zip(lazy, whole, strict=True):
            if isinstance(part, Base64Run):
                assert seg.kind == "b64"
                assert (part.line_length, part.eol) == (seg.line_length, seg.eol)
                got = list(part.chunks())
                assert got == [seg.data[i : i + chunk] for i in range(0, len(seg.data), chunk)]
            else:
                assert part == seg


def _big_message(decoded: int) -> tuple[bytes, bytes]:
    att = bytes(range(256)) * (decoded // 256)
    blob = base64.encodebytes(att).replace(b"\n", b"\r\n")
    data = (
        b"From: Anna <anna@example.org>\r\nSubject: the scan\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XX"\r\n\r\n'
        b"--XX\r\nContent-Type: text/plain\r\n\r\nSee the scan.\r\n"
        b'--XX\r\nContent-Type: application/pdf; name="scan.pdf"\r\n'
        b"CONTENT-Transfer-Encoding: Base64\r\n\r\n" + blob + b"--XX--\r\n"
    )
    return data, att


def test_a_large_attachment_is_split_a_blob_at_a_time() -> None:
    """Splitting a 27 MB message of a 20 MB attachment holds a few MB at the most: a
    blob's worth of it and the 1 MiB blocks its lines are checked in (it held the
    decoded attachment and a lower-cased copy of the message: 47 MB)."""
    data, att = _big_message(20 << 20)
    assert len(data) > 27_000_000
    tracemalloc.start()
    try:
        size = pieces = 0
        for part in split_message_lazily(data):
            if isinstance(part, Base64Run):
                for piece in part.chunks():
                    assert piece == memoryview(att)[size : size + len(piece)]
                    size += len(piece)
                    pieces += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size == len(att) and pieces == -(-len(att) // split.ATT_CHUNK)
    assert peak < 6 << 20, peak
