"""Splitting a message into blobs and rebuilding it byte for byte (docs/format.md §7).

A message becomes an ordered list of *pieces*: its header section (up to and including
the first empty line) as one ``hdr`` blob; body text as ``txt`` blobs of at most 1 MiB;
and every long run of uniform base64 lines (an attachment) as its *decoded* bytes in
``att`` blobs, plus the line length and line ending needed to re-encode it. A run is
only taken when re-encoding reproduces the original bytes exactly, so the same file
attached to many messages (even wrapped differently) is stored once and nothing changes.
The message is read in place, and the writer gets each run decoded one blob at a time
(:func:`split_message_lazily`): splitting holds no copy of a message or of an attachment.
"""

from __future__ import annotations

import binascii
import functools
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
    base64 (see :func:`_accept_run`; the whole run decoded at once)."""
    end = len(encoded) if end is None else end
    nl = encoded.find(b"\n", start, end)
    length = nl + 1 - len(eol) - start if nl >= 0 else end - start
    run = _accept_run(encoded, start, end, length, eol)
    return None if run is None else run.decode()


def _char_offset(start: int, line_length: int, eol: bytes, char: int) -> int:
    """Where the ``char``-th base64 character (line ends not counted) of a run at
    ``start`` wrapped at ``line_length`` lies."""
    lines, col = divmod(char, line_length)
    return start + lines * (line_length + len(eol)) + col


@dataclass(frozen=True, eq=False)
class Base64Run:
    """An accepted run, ``body[start:end]``: base64 wrapped at ``line_length`` with
    ``eol`` after every line, whose decoded bytes (``size`` of them) are cut into
    ``ATT_CHUNK`` pieces only as they are asked for (format §7.1, step 4). ``last`` is
    the last piece, decoded already when the run was checked."""

    body: bytes
    start: int
    end: int
    line_length: int
    eol: bytes
    size: int
    last: bytes

    def chunks(self) -> Iterator[bytes]:
        """The decoded bytes in ``ATT_CHUNK`` pieces, each decoded when it is asked for:
        at most one piece of the run is held decoded here, however large the run."""
        per = ATT_CHUNK // 3 * 4  # characters of a piece: whole groups, no padding
        full = (self.size - len(self.last)) // ATT_CHUNK
        view = memoryview(self.body)
        for k in range(full):
            lo = _char_offset(self.start, self.line_length, self.eol, k * per)
            hi = _char_offset(self.start, self.line_length, self.eol, (k + 1) * per)
            piece = pybase64.b64decode(view[lo:hi], validate=False)
            if len(piece) != ATT_CHUNK:  # full lines of the alphabet: cannot happen
                raise AssertionError(f"a base64 piece decoded to {len(piece)} bytes")
            yield piece
        yield self.last

    def decode(self) -> bytes:
        """The decoded bytes at once."""
        if self.size == len(self.last):
            return self.last
        return pybase64.b64decode(memoryview(self.body)[self.start : self.end], validate=False)


def _accept_run(body: bytes, start: int, end: int, length: int, eol: bytes) -> Base64Run | None:
    """The run ``body[start:end]`` if it is exactly the canonical wrapped base64 of the
    bytes it decodes to, else None.

    The caller guarantees the line structure (full lines of exactly ``length`` alphabet
    characters, then at most one shorter last line of alphabet characters and at most
    two ``=``, each followed by ``eol``), which is precisely what wrapping produces; so
    the whole re-encodes byte for byte if and only if the text without line ends is the
    canonical base64 of the decoded bytes. Canonical text has a multiple of four
    characters; then every ``ATT_CHUNK`` piece but the last is whole groups of alphabet
    characters, which always decode, to exactly ``ATT_CHUNK`` bytes: only the last
    piece is decoded here (one lenient SIMD pass that skips exactly the line ends, the
    only bytes outside the alphabet; it releases the interpreter lock), and the length
    and last group decide canonicity. Neither the run nor the text without its line
    ends is ever copied, and no more than one piece is held decoded.
    """
    step = length + len(eol)
    lines = -(-(end - start) // step)  # every line ends in eol (the structure above)
    chars = end - start - lines * len(eol)
    if chars % 4 or length <= 0:
        return None  # canonical base64 has whole groups of four
    per = ATT_CHUNK // 3 * 4
    full = (chars - 1) // per
    lo = _char_offset(start, length, eol, full * per)
    try:
        last = pybase64.b64decode(memoryview(body)[lo:end], validate=False)
    except binascii.Error:
        return None
    size = full * ATT_CHUNK + len(last)
    # the last four characters, whatever the line length (short lines span several)
    tail = body[max(start, end - 4 * (1 + len(eol))) : end].translate(None, b"\r\n")[-4:]
    if not _canonical_text(size, last, chars, tail):
        return None
    return Base64Run(body, start, end, length, eol, size, last)


def _canonical(decoded: bytes, flat: bytes) -> bool:
    """Whether ``flat``, which strict decoding turned into ``decoded``, is exactly
    ``b2a_base64(decoded)`` (see :func:`_canonical_text`)."""
    return _canonical_text(len(decoded), decoded, len(flat), flat[-4:])


def _canonical_text(size: int, end: bytes, chars: int, tail: bytes) -> bool:
    """Whether base64 text of ``chars`` characters ending in ``tail`` (its last four),
    which decoding turned into ``size`` bytes ending in ``end`` (at least its last
    three), is exactly their ``b2a_base64``.

    Decoding text of alphabet characters and final padding is one to one except for
    the unused low bits of the last group of four characters (``QR==`` and ``QQ==``
    both decode to ``A``) and except for text of the wrong length: checking the length
    and re-encoding the last group decides it, without re-encoding the whole attachment.
    """
    if chars != (size + 2) // 3 * 4:
        return False
    last = size % 3 or 3
    return not size or binascii.b2a_base64(end[-last:], newline=False) == tail


_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#: Bytes of full lines compared at a time (bounds the memory the check takes).
_CHECK_BLOCK = 1 << 20


def _full_lines_end(body: bytes, start: int, end: int, length: int, eol: bytes) -> int:
    """End of the longest stretch of lines from ``start`` that each are exactly
    ``length`` base64 alphabet characters followed by ``eol`` (at least one line is).

    The same answer as matching ``_full_lines(length, eol)``, in a few passes at C speed:
    the line ends sit at a fixed stride, so strided slices count how many lines in a row
    have theirs in place, and deleting the alphabet from those lines must then leave
    their line ends alone (a third faster than translating every byte to its class and
    comparing as many). Where that check fails (a stray byte inside a line), the regex
    decides.
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
    expected = eol * per_block
    block = per_block * step
    for pos in range(start, full_end, block):
        stop = min(pos + block, full_end)
        if body[pos:stop].translate(None, _ALPHABET) != expected[: (stop - pos) // step * len(eol)]:
            m = _full_lines(length, eol).match(body, start, end)
            return m.end() if m else start + step
    return full_end


def _take_run(body: bytes, start: int, end: int) -> tuple[int, Base64Run | None]:
    """Try a base64 run at line ``start``: (where to continue, the run or None).

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
        run = _accept_run(body, start, run_end, length, eol)
        if run is not None:
            return run_end, run
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
#: The first window :func:`_next_base64_header` lower-cases.
FIRST_WINDOW = 64 << 10
_BASE64_VALUE = re.compile(rb"[ \t]*base64", re.IGNORECASE)


def _next_base64_header(body: bytes, start: int) -> int:
    """The offset just after the first ``Content-Transfer-Encoding: base64`` (any case)
    from ``start`` on, or -1.

    A literal search on lower-cased copies of windows (each overlapping the next by the
    length of the name, so that a name across their border is found in one), of 64 KiB
    first and then twice as large up to 1 MiB: the next header is mostly near (the
    caller looks from the end of the last run on), and a case-insensitive regex over the
    whole body would cost several times more, and a lower-cased copy of the whole body
    would hold a large message twice.
    """
    lo, size = start, FIRST_WINDOW
    while lo < len(body):
        low = body[lo : lo + size + len(_CTE) - 1].lower()
        pos = low.find(_CTE)
        while 0 <= pos < size:
            m = _BASE64_VALUE.match(body, lo + pos + len(_CTE))
            if m is not None:
                return m.end()
            pos = low.find(_CTE, pos + len(_CTE))
        lo += size
        size = min(2 * size, CHUNK)
    return -1


def _body_parts(body: bytes, base64_body: bool, offset: int) -> Iterator[Segment | Base64Run]:
    """:func:`split_body` with each run as it was found (not decoded yet)."""
    done = found = offset
    first = base64_body
    while True:
        if first:
            start, first = offset, False
        else:
            # from the end of the last run on: a run is base64 alphabet and line ends
            # only, so no header is inside one (its bytes are never lower-cased)
            found = _next_base64_header(body, max(found, done))
            if found < 0:
                break
            start = _part_body_start(body, found)
        if start < done:
            continue
        run_end, run = _take_run(body, start, len(body))
        if run is None:
            continue
        yield from _txt(body, done, start)
        yield run
        done = run_end
    yield from _txt(body, done, len(body))


def _decoded(part: Segment | Base64Run) -> Segment:
    if isinstance(part, Base64Run):
        return Segment("b64", part.decode(), part.line_length, part.eol)
    return part


def split_body(body: bytes, *, base64_body: bool = False, offset: int = 0) -> Iterator[Segment]:
    """Segments whose concatenation is exactly ``body[offset:]`` (read in place).

    A run is looked for where a MIME part declares ``Content-Transfer-Encoding: base64``:
    at the first line after that part's header section, and at the very start when the
    message's own header declares it (``base64_body``) (format §7.1).
    """
    return map(_decoded, _body_parts(body, base64_body, offset))


def _txt(body: bytes, start: int, end: int) -> Iterator[Segment]:
    """``body[start:end]`` as ``txt`` segments of CHUNK bytes (each its own copy)."""
    for i in range(start, end, CHUNK):
        yield Segment("txt", body[i : min(i + CHUNK, end)])


def split_message_lazily(data: bytes) -> Iterator[Segment | Base64Run]:
    """The segments of a whole message held in memory (format §7.1), each base64 run as
    a :class:`Base64Run` that decodes its pieces only as they are asked for (a large
    attachment is never held decoded whole)."""
    end = header_end(data)
    if end < 0:
        end = len(data)
    if 0 < end <= HEADER_MAX:
        yield Segment("hdr", data[:end])
        base64_body = _CTE_BASE64.search(data, 0, end) is not None
        yield from _body_parts(data, base64_body, end)
    else:
        yield from _body_parts(data, False, 0)


def split_message(data: bytes) -> Iterator[Segment]:
    """The segments of a whole message held in memory (format §7.1)."""
    return map(_decoded, split_message_lazily(data))
