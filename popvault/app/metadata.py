"""Searchable metadata of a message (date, sender, recipients, subject, Message-ID).

Parsed from the header section only (everything before the first empty line, at most
:data:`HEADER_LIMIT` bytes), so it is cheap enough to run on every message at backup
time. Headers are unfolded, decoded from RFC 2047 encoded words, and any bytes that are
not UTF-8 are replaced with U+FFFD. Parsing never raises: a header that cannot be read
is left empty, and a message with no headers gives empty metadata. The values are for
listing and search only; a message's identity is always the keyed hash of its bytes.
"""

from __future__ import annotations

import calendar
import re
from email.header import decode_header
from email.utils import parsedate_tz

from popvault.vault import MessageMeta, header_end

HEADER_LIMIT = 1024 * 1024
"""Bytes of a message searched for the end of its header section."""

#: What may follow a field name: blanks, then the colon.
_COLON = re.compile(rb"[ \t]*:")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?")
_WANTED = frozenset({b"date", b"received", b"from", b"to", b"cc", b"subject", b"message-id"})
_JOINED = frozenset({b"to", b"cc"})


def parse_date(text: str) -> float | None:
    """Return an RFC 5322 date (tolerantly parsed) as UTC epoch seconds, or ``None``.

    Accepts the obsolete forms ``email.utils`` knows (two-digit years, zone names); a
    missing zone is read as UTC. Never raises.
    """
    try:
        t = parsedate_tz(text.strip())
    except Exception:  # parsedate_tz has raised IndexError/ValueError on odd input
        return None
    if t is None:
        return None
    year, month, day, hour, minute, second = t[:6]
    if not (1 <= month <= 12 and 1 <= day <= 31 and 0 <= hour <= 24):
        return None
    if not (0 <= minute <= 59 and 0 <= second <= 61 and 1000 <= year <= 9999):
        return None
    try:
        return float(
            calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - (t[9] or 0)
        )
    except (OverflowError, ValueError):
        return None


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words in ``value``; never raises, undecodable parts kept."""
    if not _ENCODED_WORD.search(value):
        return value
    try:
        parts = decode_header(value)
    except Exception:
        return value
    out: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
        elif charset is None:
            # decode_header hands back unencoded text as raw-unicode-escape bytes
            out.append(chunk.decode("raw-unicode-escape", "replace"))
        else:
            try:
                out.append(chunk.decode(charset, "replace"))
            except (LookupError, ValueError):
                out.append(chunk.decode("utf-8", "replace"))
    return "".join(out)


def header_section(data: bytes) -> bytes:
    """Return the header section of ``data``: up to and including the first empty
    line, or the first :data:`HEADER_LIMIT` bytes when there is none."""
    if data.startswith((b"\n", b"\r\n")):
        return b""
    end = header_end(data, HEADER_LIMIT)
    return data[:end] if end >= 0 else data[:HEADER_LIMIT]


def wanted_fields(data: bytes) -> dict[bytes, list[bytes]]:
    """The unfolded raw values of the fields metadata uses, by lower-case name, in order.

    A field line starts a line, its name (any case) may be followed by blanks before the
    colon, and lines that start with a blank continue it; line ends are removed. Only
    the wanted names are looked for (one search each over a lower-cased copy) instead of
    reading every header line: mail carries dozens of Received and DKIM lines.
    """
    head = header_section(data)
    low = b"\n" + head.lower()  # offsets in ``low`` are one past those in ``head``
    hits: list[tuple[int, bytes, int]] = []
    for name in _WANTED:
        needle = b"\n" + name
        pos = low.find(needle)
        while pos >= 0:
            m = _COLON.match(low, pos + len(needle))
            if m is not None:
                hits.append((pos, name, m.end() - 1))
                if name not in _JOINED:
                    break  # only the first is used
            pos = low.find(needle, pos + len(needle))
    hits.sort()
    found: dict[bytes, list[bytes]] = {}
    for _pos, name, value_at in hits:
        end = low.find(b"\n", value_at)
        while end >= 0 and low[end + 1 : end + 2] in (b" ", b"\t"):
            end = low.find(b"\n", end + 1)
        raw = head[value_at : end - 1 if end >= 0 else len(head)]
        if b"\n" in raw:
            raw = b"".join(line.rstrip(b"\r") for line in raw.split(b"\n"))
        else:
            raw = raw.rstrip(b"\r")
        found.setdefault(name, []).append(raw)
    return found


def _text(raw: bytes) -> str:
    value = raw.decode("utf-8", "replace")
    value = " ".join(value.split())
    return " ".join(decode_words(value).split())


def parse_metadata(data: bytes) -> MessageMeta:
    """Parse the metadata of one message's exact bytes. Never raises; see the module doc."""
    try:
        return _parse(data)
    except Exception:  # the contract is "never raises"; a bug here must not stop a backup
        return MessageMeta()


def _parse(data: bytes) -> MessageMeta:
    found = wanted_fields(data)

    def first(name: bytes) -> str:
        values = found.get(name)
        return _text(values[0]) if values else ""

    def joined(name: bytes) -> str:
        return ", ".join(t for t in (_text(v) for v in found.get(name, [])) if t)

    received: float | None = None
    if b"received" in found:
        received_text = found[b"received"][0].decode("utf-8", "replace")
        _, semi, when = received_text.rpartition(";")
        received = parse_date(when) if semi else None
    date_text = first(b"date")
    return MessageMeta(
        date=parse_date(date_text) if date_text else None,
        received=received,
        from_=first(b"from"),
        to=joined(b"to"),
        cc=joined(b"cc"),
        subject=first(b"subject"),
        message_id=first(b"message-id"),
    )
