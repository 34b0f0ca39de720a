"""The fast paths of message splitting agree with their plain definitions.

``header_end`` searches a short prefix before the whole message, and the length of a
run of full base64 lines is found with strided slices and a byte-class translation
instead of a regex. Both must give exactly the answers of the simple definitions, for
any input: a wrong header end or run end would still round-trip (rebuilding is checked),
but would change which blobs a message is stored as, and so deduplication.
"""

from __future__ import annotations

import base64
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.vault import split
from popvault.vault.split import _full_lines, _full_lines_end, header_end


def reference_header_end(data: bytes) -> int:
    """The definition: just past the first empty line (LF LF or LF CR LF), or -1."""
    if data.startswith(b"\r\n"):
        return 2
    if data.startswith(b"\n"):
        return 1
    ends = [i + n for i, n in ((data.find(b"\n\n"), 2), (data.find(b"\n\r\n"), 3)) if i >= 0]
    return min(ends) if ends else -1


_pieces = st.lists(
    st.sampled_from([b"a", b"b: c", b"\n", b"\r\n", b"\r", b" ", b"\n\n", b"\n\r\n", b"\t"]),
    max_size=40,
)


@given(_pieces, st.integers(0, 3), st.integers(0, 40))
@settings(max_examples=400)
def test_header_end_matches_definition(parts: list[bytes], pad: int, probe: int) -> None:
    data = b"x" * pad + b"".join(parts)
    old = split._HEAD_PROBE
    split._HEAD_PROBE = probe  # small probes put the prefix boundary everywhere
    try:
        assert header_end(data) == reference_header_end(data)
    finally:
        split._HEAD_PROBE = old


def test_header_end_found_past_the_probe() -> None:
    data = b"Subject: x\r\n" + b"X-Long: " + b"y" * (2 * split._HEAD_PROBE) + b"\r\n\r\nbody"
    assert header_end(data) == reference_header_end(data) == len(data) - 4


def test_header_end_limit_bounds_the_search() -> None:
    data = b"a: b\r\n" * 10 + b"\r\nbody"
    assert header_end(data, 20) == -1
    assert header_end(data, len(data)) == 62
    assert header_end(bytearray(data)) == 62


_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@st.composite
def _runs(draw: st.DrawFn) -> tuple[bytes, int, int, bytes]:
    """A base64-looking run with its line length, sometimes spoiled somewhere."""
    length = draw(st.integers(1, 12))
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    lines = draw(st.integers(1, 30))
    body = bytearray()
    for _ in range(lines):
        body += bytes(draw(st.sampled_from(list(_ALPHABET))) for _ in range(length)) + eol
    for _ in range(draw(st.integers(0, 3))):  # spoil bytes: stray CR/LF, '=', other
        if body:
            at = draw(st.integers(0, len(body) - 1))
            body[at] = draw(st.sampled_from(list(b"\r\n=-. A")))
    tail = draw(st.sampled_from([b"", b"QUJD\n", b"==\r\n", b"--b--\r\n", b"\n"]))
    prefix = draw(st.sampled_from([b"", b"x\n"]))
    data = prefix + bytes(body) + tail
    return data, len(prefix), length, eol


@given(_runs(), st.integers(1, 64))
@settings(max_examples=600)
def test_full_lines_end_matches_regex(run: tuple[bytes, int, int, bytes], block: int) -> None:
    data, start, length, eol = run
    line = re.compile(rb"[A-Za-z0-9+/]{%d}%s" % (length, re.escape(eol)))
    if not line.match(data, start):
        return  # the caller only asks when the first line is a full line
    old = split._CHECK_BLOCK
    split._CHECK_BLOCK = block  # small blocks put block boundaries everywhere
    try:
        got = _full_lines_end(data, start, len(data), length, eol)
    finally:
        split._CHECK_BLOCK = old
    m = _full_lines(length, eol).match(data, start, len(data))
    assert m is not None
    assert got == m.end()


def test_full_lines_end_of_a_real_attachment() -> None:
    enc = base64.encodebytes(bytes(range(256)) * 300).replace(b"\n", b"\r\n")
    data = enc + b"\r\n--boundary--\r\n"
    last_full = len(enc) - len(enc.rsplit(b"\r\n", 2)[-2]) - 2  # before the short last line
    assert _full_lines_end(data, 0, len(data), 76, b"\r\n") == last_full


_B64_TEXT = st.one_of(
    st.binary(max_size=40).map(lambda b: base64.b64encode(b)),
    st.lists(st.sampled_from(list(_ALPHABET + b"=")), max_size=16).map(bytes),
)


@given(_B64_TEXT, st.integers(0, 15), st.sampled_from(list(_ALPHABET + b"=")))
@settings(max_examples=1000)
def test_canonical_matches_full_reencoding(flat: bytes, at: int, byte: int) -> None:
    """The last-group check says yes exactly when re-encoding everything gives ``flat``."""
    import binascii

    if flat and at < len(flat) and at % 2:  # spoil one character half of the time
        flat = flat[:at] + bytes([byte]) + flat[at + 1 :]
    try:
        decoded = binascii.a2b_base64(flat, strict_mode=True)
    except binascii.Error:
        return
    assert split._canonical(decoded, flat) == (binascii.b2a_base64(decoded, newline=False) == flat)
