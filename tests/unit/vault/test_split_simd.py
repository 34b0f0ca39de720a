"""The SIMD base64 decode of a run agrees with the strict definition it replaced.

:func:`popvault.vault.split._decode_exact` decodes a run whose line structure the
splitter has checked with one lenient pass of ``pybase64`` (skipping the line ends) and
decides canonicity from the length and the last group. It must accept exactly the runs
whose text, without line ends, is the canonical base64 of what it decodes to, and return
those bytes: the definition below (strip the line ends, decode strictly, re-encode all).
"""

from __future__ import annotations

import base64
import binascii

from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.vault.split import _decode_exact, wrap_lines
from tests.support.vaults import handed_over_run

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def reference(encoded: bytes) -> bytes | None:
    flat = encoded.translate(None, b"\r\n")
    try:
        decoded = binascii.a2b_base64(flat, strict_mode=True)
    except binascii.Error:
        return None
    return decoded if binascii.b2a_base64(decoded, newline=False) == flat else None


@given(
    st.binary(min_size=1, max_size=300),
    st.integers(1, 80),
    st.sampled_from([b"\r\n", b"\n"]),
    st.integers(0, 7),
    st.sampled_from(list(_ALPHABET + b"=")),
    st.integers(0, 3),
)
@settings(max_examples=1500)
def test_decode_exact_matches_strict_definition(
    data: bytes, length: int, eol: bytes, back: int, byte: int, cut: int
) -> None:
    """Runs as the splitter hands them over (full lines, a last line that may carry
    padding), canonical or spoilt in their last characters or padding."""
    run = handed_over_run(data, length, eol, back, byte, cut)
    if run is None:
        return
    assert _decode_exact(run, eol) == reference(run)


def test_decode_exact_of_a_large_attachment() -> None:
    data = bytes(range(256)) * 5000
    run = base64.encodebytes(data).replace(b"\n", b"\r\n")
    assert _decode_exact(run, b"\r\n") == data
    assert _decode_exact(run[:-6] + b"Q=\r\n", b"\r\n") is None


def test_split_in_place_matches_split_of_a_copy() -> None:
    """The body is split where it lies in the message (``offset``), never copied out:
    the same segments as splitting a copy of the body."""
    from popvault.vault.split import header_end, split_body
    from tests.support.attachment_mail import attachment_heavy
    from tests.support.generate import adversarial, redundant

    messages = [*attachment_heavy(40, 5), *redundant(40, 3), *(m for _, m in adversarial())]
    for data in messages:
        end = max(header_end(data), 0)
        for b64 in (False, True):
            got = list(split_body(data, base64_body=b64, offset=end))
            assert got == list(split_body(data[end:], base64_body=b64))
            assert b"".join(_raw(s) for s in got) == data[end:]


def _raw(seg: object) -> bytes:
    from popvault.vault.split import Segment

    assert isinstance(seg, Segment)
    if seg.kind != "b64":
        return seg.data
    return wrap_lines(base64.b64encode(seg.data), seg.line_length, seg.eol)
