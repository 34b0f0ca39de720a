"""The searchable text of a message (issue "Find any message", first building block).

What full-text search indexes, decoded as a reader would see it: the header fields
From, To, Cc and Subject (RFC 2047 encoded words, any charset), the text of every
``text/plain`` part and of every ``text/html`` part (tags, scripts and styles dropped),
after content-transfer decoding (base64, quoted-printable, 7bit/8bit) and charset
decoding (the declared charset; else UTF-8 when the bytes are valid UTF-8; else
Windows-1252, which decodes any byte), and the file names of attachments (RFC 2231 and
RFC 2047 names too; raw 8-bit header bytes as UTF-8, else Windows-1252). Messages
are parsed with the email package's ``compat32`` policy and headers decoded here: the
default policy's header objects cost five times as much (1.6 against 0.3 ms for a 3 KB
message), and search indexes every message. Most mail is read without the parser at
all (:func:`_single_part`, a fifth of the time again): text parts in multiparts up to
four levels deep, forwarded messages, and attachments, which are named from their own
header section without their bodies being read (attachment-heavy mail: 37 -> 176 MB/s);
anything it does not recognise goes to the parser (a message over ``SKELETON_MIN``
without the attachment bodies the parser would not read: :func:`_skeleton`, a 27 MB
message 110 MB -> under 2 MB at the peak). Broken MIME never stops it: a part
that cannot be read is counted in ``problems`` and the rest is still taken. Work is
bounded: at most ``MAX_PARTS`` parts and ``MAX_TEXT`` characters of body text per
message.
"""

from __future__ import annotations

import binascii
import codecs
import contextlib
import email
import email.policy
import functools
import itertools
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message

from popvault.app.htmltext import html_text

#: Parts looked at per message (a message of thousands of parts is a bomb, not mail).
MAX_PARTS = 500
#: Characters of body text kept per message.
MAX_TEXT = 1 << 20
#: Levels of nested multiparts and forwarded messages the fast path reads.
MAX_DEPTH = 4
#: Raw 8-bit header bytes as the parser hands them over (surrogate escapes).
_RAW_BYTES = re.compile("[\udc80-\udcff]")


@dataclass
class SearchText:
    """A message's searchable fields, as plain text."""

    from_: str = ""
    to: str = ""
    cc: str = ""
    subject: str = ""
    body: str = ""
    filenames: list[str] = field(default_factory=list)
    #: Parts that could not be decoded (the rest was indexed).
    problems: int = 0

    @property
    def has_attachment(self) -> bool:
        return bool(self.filenames)


def decode_text(data: bytes, declared: str | None) -> str:
    """Bytes of a text part as text: the declared charset when Python knows it, else
    UTF-8 when the bytes are valid UTF-8, else Windows-1252 (decodes any byte)."""
    if declared:
        try:
            codecs.lookup(declared)
            return data.decode(declared, errors="replace")
        except (LookupError, ValueError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _header(msg: Message, name: str) -> str:
    key = name.lower()
    values = [_decode_raw(v) for k, v in msg.raw_items() if k.lower() == key]
    return " ".join(" ".join(v.split()) for v in values)


@functools.lru_cache(maxsize=4096)
def _decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded (undecodable ones stay as they are). Remembered:
    the same senders, lists and subjects come back message after message (the text of
    10,000 of the benchmark's messages, where such a value comes five times: 0.78 ->
    0.68 s)."""
    with contextlib.suppress(Exception):
        return str(make_header(decode_header(value)))
    return value


def _decode_raw(value: str) -> str:
    """RFC 2047 encoded words of a raw header value, decoded as far as they go; raw 8-bit
    bytes (carried as surrogates by the parser) decoded as UTF-8, else Windows-1252."""
    if "=?" in value:
        value = _decode_words(value)
    if _RAW_BYTES.search(value):
        raw = value.encode("utf-8", "surrogateescape")
        value = raw.decode("utf-8", "replace")
        if value.count("\ufffd") * 8 > len(value):  # not UTF-8 cut short: a legacy charset
            value = raw.decode("cp1252", "replace")
    return value


_NAMED = ("content-disposition", "content-type")


def _filename(part: Message) -> str | None:
    try:
        raw = [(k, v) for k, v in part.raw_items() if k.lower() in _NAMED]
        if any(_RAW_BYTES.search(v) for _, v in raw):  # 8-bit names: decoded first
            part = Message()
            for k, v in raw:
                part[k] = _decode_raw(v)
        name = part.get_filename()  # RFC 2231 parameters collapsed
    except Exception:
        return None
    return " ".join(_decode_raw(name).split()) if name else None


def _part_text(part: Message, out: SearchText) -> str:
    """A leaf part's text (empty for other parts); notes its file name in ``out``."""
    name = _filename(part)
    if name:
        out.filenames.append(name)
    ctype = part.get_content_type()
    if ctype not in ("text/plain", "text/html"):
        return ""
    if name and part.get_content_disposition() == "attachment":
        return ""  # an attached text file: its name is indexed, not its bytes
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        raise ValueError("no payload")
    text = decode_text(raw, part.get_content_charset())
    return html_text(text) if ctype == "text/html" else text


#: A header section's lines, unfolded: a line break not followed by a space or tab.
_FIELD_BREAK = re.compile(r"\r?\n(?![ \t])")
_CHARSET = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.IGNORECASE)
_NAMED_FIELDS = ("from", "to", "cc", "subject")
_BOUNDARY = re.compile(r"""boundary\s*=\s*("[^"]+"|[^";\s]+)""", re.IGNORECASE)


def _single_part(
    data: bytes,
    depth: int = 0,
    lo: int = 0,
    hi: int | None = None,
    skip: list[tuple[int, int]] | None = None,
) -> SearchText | None:
    """The searchable text of a message made only of text/plain and text/html parts
    with no file name (most mail: one text part, or multipart/alternative), without the
    email package's parser: a fifth of the time. None for anything else (attachments,
    unknown transfer encodings, bodies that do not decode cleanly, missing boundaries,
    more than two levels of multipart): :func:`search_text` parses those. A part is
    the range ``lo:hi`` of the message's bytes, never a copy of it: only header
    sections and text bodies are copied (a message of big attachments used to be
    copied four times over, 110 MB at the peak for a 27 MB message). ``skip``: see
    :func:`_skeleton`."""
    hi = len(data) if hi is None else hi
    crlf = data.find(b"\r\n\r\n", lo, hi)
    # a blank LF line counts only before the first CRLF one (the bytes are not scanned
    # to their end for one: a third of the time on attachment-heavy mail)
    lf = data.find(b"\n\n", lo, crlf if crlf >= 0 else hi)
    ends = [i for i in (crlf, lf) if i >= 0]
    if not ends:
        return None
    end = min(ends)
    start = end
    while start < hi and data[start] in (10, 13):  # as lstrip(b"\r\n")
        start += 1
    head = data[lo:end]
    fields: dict[str, list[str]] = {}
    for line in _FIELD_BREAK.split(head.decode("ascii", "surrogateescape")):
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None  # not a header line as the fast path knows them
        fields.setdefault(name.lower(), []).append(value.lstrip(" \t"))  # as the parser
    ctype = (fields.get("content-type") or ["text/plain"])[-1]
    main = ctype.split(";", 1)[0].strip().lower() or "text/plain"
    named = "content-disposition" in fields or "name" in ctype.lower()
    text_or_multi = main in ("text/plain", "text/html") or main.startswith("multipart/")
    if skip is not None and _unread_body(fields, main, data, start, hi):
        skip.append((start, hi))
    if depth and (named or not text_or_multi):
        # a part inside a multipart: an attachment, a forwarded message
        return _attached(head, data, start, hi, main, depth, skip)
    if named:
        return None
    if main.startswith("multipart/"):
        subs = _parts(data, start, hi, ctype, depth, skip)
        if subs is None:
            return None
        out = SearchText(body="\n".join(t.body for t in subs if t.body)[:MAX_TEXT])
        out.filenames = [f for t in subs for f in t.filenames]
        _named_fields(out, fields)
        return out
    if main not in ("text/plain", "text/html"):
        return None
    cte = (fields.get("content-transfer-encoding") or ["7bit"])[-1].strip().lower()
    try:
        if cte == "base64":
            raw = binascii.a2b_base64(memoryview(data)[start:hi], strict_mode=False)
        elif cte == "quoted-printable":
            raw = binascii.a2b_qp(memoryview(data)[start:hi])
        elif cte in ("7bit", "8bit", "binary", ""):
            raw = data[start:hi]
        else:
            return None
    except (binascii.Error, ValueError):
        return None
    charset = _CHARSET.search(ctype)
    text = decode_text(raw, charset.group(1) if charset else None)
    text = html_text(text) if main == "text/html" else text
    out = SearchText(body=text[:MAX_TEXT])
    _named_fields(out, fields)
    return out


def _attached(
    head: bytes,
    data: bytes,
    start: int,
    hi: int,
    main: str,
    depth: int,
    skip: list[tuple[int, int]] | None = None,
) -> SearchText | None:
    """A part with a name or of another type than text, inside a multipart (its body is
    ``data[start:hi]``): its file name as the parser gives it (its header section parsed
    alone: the body, mostly an encoded attachment, is never read), or a forwarded
    message's texts and names; a named text part that is not an attachment goes to the
    parser (its text counts)."""
    if main in ("message/rfc822", "message/news"):
        inner = _single_part(data, depth + 1, start, hi, skip)
        return None if inner is None else SearchText(body=inner.body, filenames=inner.filenames)
    if main.startswith(("multipart/", "message/")):
        return None  # a named multipart, a delivery report...: the parser decides
    part = email.message_from_bytes(head + b"\n\n", policy=email.policy.compat32)
    if main in ("text/plain", "text/html") and part.get_content_disposition() != "attachment":
        return None
    name = _filename(part)
    return SearchText(filenames=[name] if name else [])


def _named_fields(out: SearchText, fields: dict[str, list[str]]) -> None:
    out.from_, out.to, out.cc, out.subject = (
        " ".join(" ".join(_decode_raw(v).split()) for v in fields.get(k, [])) for k in _NAMED_FIELDS
    )


def _parts(
    data: bytes,
    lo: int,
    hi: int,
    ctype: str,
    depth: int,
    skip: list[tuple[int, int]] | None = None,
) -> list[SearchText] | None:
    """The texts and file names of the parts of the multipart body ``data[lo:hi]`` (see
    :func:`_single_part`), None when one of them needs the full parser. The parts are
    what ``(b"\n" + body).split(b"\n--" + boundary)`` gives between the first and the
    last, found as ranges. With ``skip``, every part is looked at even after one that
    needs the parser (its unread bodies are noted)."""
    found = _BOUNDARY.search(ctype)
    if found is None or depth >= MAX_DEPTH:
        return None
    delim = b"\n--" + found.group(1).strip('"').encode()
    # (start, end) of each delimiter; one at the very start lacks its line feed
    cuts: list[tuple[int, int]] = []
    pos = lo
    if data.startswith(delim[1:], lo, hi):
        pos = lo + len(delim) - 1
        cuts.append((lo, pos))
    while len(cuts) < MAX_PARTS:
        i = data.find(delim, pos, hi)
        if i < 0:
            break
        pos = i + len(delim)
        cuts.append((i, pos))
    if len(cuts) < 2 or len(cuts) >= MAX_PARTS or not data.startswith(b"--", cuts[-1][1], hi):
        return None
    texts: list[SearchText] = []
    parsed = False
    noted = len(skip) if skip is not None else 0
    for (_, a), (b, _) in itertools.pairwise(cuts):
        line_end = data.find(b"\n", a, b)
        p_lo, p_hi = line_end + 1, b
        if p_hi > p_lo and data[p_hi - 1] == 13:
            p_hi -= 1
        if (
            line_end < 0
            or data[a:line_end].strip()
            or data.startswith((b"\r\n", b"\n"), p_lo, p_hi)
        ):
            # text after the boundary on its line (not a delimiter), a part without
            # headers: not a structure read here, nor what was noted inside it
            if skip is not None:
                del skip[noted:]
            return None
        sub = _single_part(data, depth + 1, p_lo, p_hi, skip)
        if sub is None:
            if skip is None:
                return None
            parsed = True
        else:
            texts.append(sub)
    return None if parsed else texts


#: A content type as both the parser and the fast path read it.
_TYPE = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+/[a-z0-9!#$%&'*+.^_`|~-]+")
#: A body of base64 characters only: none of its lines is a boundary or a header.
_BASE64_BODY = re.compile(rb"[A-Za-z0-9+/=\r\n]*")
#: Messages larger than this are parsed without the bodies the parser would not read.
SKELETON_MIN = 1 << 20


def _unread_body(fields: dict[str, list[str]], main: str, data: bytes, lo: int, hi: int) -> bool:
    """Whether the parser never reads the body ``data[lo:hi]`` of a part with these
    header ``fields``: one Content-Type (the parser reads the first, the fast path the
    last), a single-part type other than text/plain and text/html (only those bodies
    are decoded, see :func:`_part_text`), and nothing but base64 characters in it."""
    if len(fields.get("content-type", ())) != 1 or not _TYPE.fullmatch(main):
        return False
    if main in ("text/plain", "text/html") or main.startswith(("multipart/", "message/")):
        return False
    return _BASE64_BODY.fullmatch(data, lo, hi) is not None


def _skeleton(data: bytes) -> bytes:
    """``data`` without the bodies the parser would not read (attachments), for the
    parser: the same texts and names, without holding four to five times a large
    message while it parses. The bodies are found by the fast path's reading of the
    structure, going on past the parts it cannot read; ``data`` itself when none is."""
    skip: list[tuple[int, int]] = []
    try:
        _single_part(data, 0, 0, None, skip)
    except Exception:  # the structure was not read: the parser gets everything
        return data
    if not skip:
        return data
    kept, pos = [], 0
    for lo, hi in sorted(skip):
        kept.append(memoryview(data)[pos:lo])
        pos = hi
    kept.append(memoryview(data)[pos:])
    return b"".join(kept)


def search_text(data: bytes) -> SearchText:
    """The searchable text of one message (never raises on broken mail)."""
    try:
        fast = _single_part(data)
    except Exception:  # the full parser decides
        fast = None
    if fast is not None:
        return fast
    out = SearchText()
    try:
        parse = _skeleton(data) if len(data) > SKELETON_MIN else data
        msg = email.message_from_bytes(parse, policy=email.policy.compat32)
    except Exception:
        out.problems += 1
        return out
    out.from_ = _header(msg, "From")
    out.to = _header(msg, "To")
    out.cc = _header(msg, "Cc")
    out.subject = _header(msg, "Subject")
    texts: list[str] = []
    size = 0
    for n, part in enumerate(msg.walk()):
        if n >= MAX_PARTS:
            out.problems += 1
            break
        if part.is_multipart():
            continue
        try:
            text = _part_text(part, out)
        except Exception:  # any part the email package cannot read: counted, skipped
            out.problems += 1
            continue
        if text and size < MAX_TEXT:
            texts.append(text[: MAX_TEXT - size])
            size += len(texts[-1])
    out.body = "\n".join(texts)
    return out
