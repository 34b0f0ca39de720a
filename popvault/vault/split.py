"""Splitting a message into blobs and rebuilding it byte for byte (docs/format.md §7).

A message becomes an ordered list of *pieces*: its header section (up to and including
the first empty line) as one ``hdr`` blob; body text as ``txt`` blobs of at most 1 MiB;
and every long run of uniform base64 lines (an attachment) as its *decoded* bytes in
``att`` blobs, plus the line length and line ending needed to re-encode it. A run is
only taken when re-encoding reproduces the original bytes exactly, so the same file
attached to many messages (even wrapped differently) is stored once and nothing changes.
"""

from __future__ import annotations

import binascii
import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pybase64

CHUNK = 1 << 20
#: Decoded attachment bytes per blob: a multiple of 3 so chunks encode independently.
ATT_CHUNK = 3 << 18
#: Base64 runs shorter than this (encoded) stay inline in the text.
B64_MIN = 16 << 10
HEADER_MAX = 1 << 20
#: Bytes searched first for the end of a header section (most end within them).
_HEAD_PROBE = 16 << 10

#: Where a base64 MIME part announces itself; its body starts after the part's headers.
_CTE_BASE64 = re.compile(rb"(?i)content-transfer-encoding:[ \t]*base64")
#: How far after that header the part's empty line may be.
PART_HEADER_MAX = 64 << 10
_B64LINE = re.compile(rb"[A-Za-z0-9+/]*")
_LASTLINE = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


@dataclass(frozen=True)
class Segment:
    """A piece of a message before it becomes blobs.

    kind "hdr"/"txt": ``data`` is the raw bytes. kind "b64": ``data`` is the decoded
    bytes, re-encoded as base64 wrapped at ``line_length`` with ``eol`` after every line.
    """

    kind: str
    data: bytes
    line_length: int = 0
    eol: bytes = b""


def header_end(data: bytes | bytearray, limit: int | None = None) -> int:
    """Offset just past the empty line ending the header section, or -1.

    Only the first ``limit`` bytes are searched when given. The search looks at a short
    prefix first: most header sections end within it, and a search over the whole of a
    large message for a pattern that ends its header would cost a pass over every byte.
    """
    n = len(data) if limit is None else min(limit, len(data))
    if data[:2] == b"\r\n":
        return 2
    if data[:1] == b"\n":
        return 1
    for stop in (min(n, _HEAD_PROBE), n):
        b = data.find(b"\n\r\n", 0, stop)
        # an LF LF before that CRLF line (or anywhere, without one) ends the header first
        a = data.find(b"\n\n", 0, b + 2 if b >= 0 else stop)
        if a >= 0:
            return a + 2
        if b >= 0:
            return b + 3
        if stop == n:
            break
    return -1


def wrap_lines(text: bytes, line_length: int, eol: bytes) -> bytes:
    """Base64 ``text`` cut into lines of ``line_length``, ``eol`` after every line
    (the last included): how a run is rebuilt from its decoded bytes (format §7.1)."""
    return b"".join(text[i : i + line_length] + eol for i in range(0, len(text), line_length))


@functools.lru_cache(maxsize=64)
def _full_lines(length: int, eol: bytes) -> re.Pattern[bytes]:
    """Consecutive base64 lines of exactly ``length`` characters, each ending in ``eol``."""
    return re.compile(rb"(?:[A-Za-z0-9+/]{%d}%s)+" % (length, re.escape(eol)))


def _decode_exact(
    encoded: bytes, eol: bytes, start: int = 0, end: int | None = None
) -> bytes | None:
    """The decoded bytes if ``encoded[start:end]`` is exactly their canonical wrapped
    base64.

    The caller guarantees the line structure (full lines of exactly ``L`` alphabet
    characters, then at most one shorter last line of alphabet characters and at most
    two ``=``, each followed by ``eol``), which is precisely what wrapping produces; so
    the whole re-encodes byte for byte if and only if the text without line ends is the
    canonical base64 of the decoded bytes. With that structure checked, one lenient
    SIMD pass decodes it (it skips exactly the line ends, the only bytes outside the
    alphabet; it releases the interpreter lock), and the length and last group decide
    canonicity. The run is read in place (a view): neither it nor the text without its
    line ends is ever copied.
    """
    end = len(encoded) if end is None else end
    try:
        decoded = pybase64.b64decode(memoryview(encoded)[start:end], validate=False)
    except binascii.Error:
        return None
    chars = end - start - encoded.count(b"\n", start, end) * len(eol)
    # the last four characters, whatever the line length (short lines span several)
    tail = encoded[max(start, end - 4 * (1 + len(eol))) : end].translate(None, b"\r\n")[-4:]
    return decoded if _canonical_text(decoded, chars, tail) else None


def _canonical(decoded: bytes, flat: bytes) -> bool:
    """Whether ``flat``, which strict decoding turned into ``decoded``, is exactly
    ``b2a_base64(decoded)`` (see :func:`_canonical_text`)."""
    return _canonical_text(decoded, len(flat), flat[-4:])


def _canonical_text(decoded: bytes, chars: int, tail: bytes) -> bool:
    """Whether base64 text of ``chars`` characters ending in ``tail`` (its last four),
    which decoding turned into ``decoded``, is exactly ``b2a_base64(decoded)``.

    Decoding text of alphabet characters and final padding is one to one except for
    the unused low bits of the last group of four characters (``QR==`` and ``QQ==``
    both decode to ``A``) and except for text of the wrong length: checking the length
    and re-encoding the last group decides it, without re-encoding the whole attachment.
    """
    if chars != (len(decoded) + 2) // 3 * 4:
        return False
    last = len(decoded) % 3 or 3
    return not decoded or binascii.b2a_base64(decoded[-last:], newline=False) == tail


_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#: Every byte to its class: base64 alphabet "a", CR and LF themselves, anything else "!".
_CLASSES = bytes(
    ord("a") if c in _ALPHABET else c if c in b"\r\n" else ord("!") for c in range(256)
)
#: Bytes of full lines compared at a time (bounds the memory the check takes).
_CHECK_BLOCK = 1 << 20


def _full_lines_end(body: bytes, start: int, end: int, length: int, eol: bytes) -> int:
    """End of the longest stretch of lines from ``start`` that each are exactly
    ``length`` base64 alphabet characters followed by ``eol`` (at least one line is).

    The same answer as matching ``_full_lines(length, eol)``, in a few passes at C speed:
    the line ends sit at a fixed stride, so strided slices count how many lines in a row
    have theirs in place, and a byte-class translation then checks those lines whole.
    Where that check fails (a stray byte inside a line), the regex decides.
    """
    step = length + len(eol)
    limit = start + (end - start) // step * step
    marks = body[start + step - 1 : limit : step]
    lines = len(marks) - len(marks.lstrip(b"\n"))
    if len(eol) == 2:
        crs = body[start + length : limit : step]
        lines = min(lines, len(crs) - len(crs.lstrip(b"\r")))
    full_end = start + lines * step
    per_block = max(1, min(lines, _CHECK_BLOCK // step))  # no more than the run needs
    expected = (b"a" * length + eol) * per_block
    block = per_block * step
    for pos in range(start, full_end, block):
        stop = min(pos + block, full_end)
        if body[pos:stop].translate(_CLASSES) != expected[: stop - pos]:
            m = _full_lines(length, eol).match(body, start, end)
            return m.end() if m else start + step
    return full_end


def _take_run(body: bytes, start: int, end: int) -> tuple[int, Segment | None]:
    """Try a base64 run at line ``start``: (where to continue, segment or None).

    The run is the longest stretch of full lines of one length and line ending, plus an
    optional shorter last line. If the whole does not re-encode exactly, trailing lines
    are dropped (at most a few) before giving up; on failure the scan continues after the
    stretch of full lines, so every byte is examined a bounded number of times.
    """
    nl = body.find(b"\n", start, end)
    if nl < 0:
        return end, None
    eol = b"\r\n" if nl > start and body[nl - 1] == 0x0D else b"\n"
    length = nl + 1 - len(eol) - start
    if length <= 0 or not _B64LINE.fullmatch(body, start, start + length):
        return nl + 1, None
    step = length + len(eol)
    full_end = _full_lines_end(body, start, end, length, eol)
    ends = [full_end]
    # an optional last, shorter line (may carry '=' padding; may lie past the candidate)
    nl2 = body.find(b"\n", full_end, full_end + step)
    if nl2 >= 0 and body[nl2 + 1 - len(eol) : nl2 + 1] == eol:
        last = body[full_end : nl2 + 1 - len(eol)]
        if 0 < len(last) <= length and _LASTLINE.fullmatch(last):
            ends.insert(0, nl2 + 1)
    ends += [full_end - k * step for k in (1, 2, 3)]
    for run_end in ends:
        if run_end - start < B64_MIN:
            break
        decoded = _decode_exact(body, eol, start, run_end)
        if decoded is not None:
            return run_end, Segment("b64", decoded, length, eol)
    return max(full_end, nl + 1), None


def _part_body_start(body: bytes, pos: int) -> int:
    """Offset after the empty line that ends the part header containing ``pos``, or -1."""
    limit = min(len(body), pos + PART_HEADER_MAX)
    ends = [
        i + n
        for i, n in ((body.find(b"\n\n", pos, limit), 2), (body.find(b"\n\r\n", pos, limit), 3))
        if i >= 0
    ]
    return min(ends) if ends else -1


_CTE = b"content-transfer-encoding:"
_BASE64_VALUE = re.compile(rb"[ \t]*base64")


def _base64_headers(body: bytes, start: int = 0) -> list[int]:
    """Offsets just after each ``Content-Transfer-Encoding: base64`` (any case) from
    ``start`` on.

    A literal search on a lower-cased copy: a case-insensitive regex over the whole body
    would cost several times more. The offsets are collected at once, so that the copy
    is gone before any attachment is decoded (a large message is held once, not twice).
    """
    low = body.lower()
    out = []
    pos = low.find(_CTE, start)
    while pos >= 0:
        m = _BASE64_VALUE.match(low, pos + len(_CTE))
        if m is not None:
            out.append(m.end())
        pos = low.find(_CTE, pos + len(_CTE))
    return out


def split_body(body: bytes, *, base64_body: bool = False, offset: int = 0) -> Iterator[Segment]:
    """Segments whose concatenation is exactly ``body[offset:]`` (read in place).

    A run is looked for where a MIME part declares ``Content-Transfer-Encoding: base64``:
    at the first line after that part's header section, and at the very start when the
    message's own header declares it (``base64_body``) (format §7.1).
    """
    done = offset
    starts = (_part_body_start(body, end) for end in _base64_headers(body, offset))
    for start in itertools.chain([offset] if base64_body else [], starts):
        if start < done:
            continue
        run_end, seg = _take_run(body, start, len(body))
        if seg is None:
            continue
        if start > done:
            yield from _txt(body[done:start])
        yield seg
        done = run_end
    if done < len(body):
        yield from _txt(body[done:])


def _txt(data: bytes) -> Iterator[Segment]:
    for i in range(0, len(data), CHUNK):
        yield Segment("txt", data[i : i + CHUNK])


def split_message(data: bytes) -> Iterator[Segment]:
    """The segments of a whole message held in memory (format §7.1)."""
    end = header_end(data)
    if end < 0:
        end = len(data)
    if 0 < end <= HEADER_MAX:
        yield Segment("hdr", data[:end])
        base64_body = _CTE_BASE64.search(data, 0, end) is not None
        yield from split_body(data, base64_body=base64_body, offset=end)
    else:
        yield from split_body(data)
