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

from popvault.vault.vault import MessageMeta

HEADER_LIMIT = 1024 * 1024
"""Bytes of a message searched for the end of its header section."""

_HEADER_END = re.compile(rb"\r?\n\r?\n")
#: RFC 5322 field names: printable US-ASCII except the colon.
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
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
    """Return the header section of ``data``: up to the first empty line, capped."""
    if data.startswith((b"\n", b"\r\n")):
        return b""
    head = data[:HEADER_LIMIT]
    m = _HEADER_END.search(head)
    return head[: m.start() + 1] if m else head


def parse_headers(data: bytes) -> list[tuple[bytes, bytes]]:
    """Return the unfolded (lower-case name, raw value) pairs of the header section."""
    fields: list[tuple[bytes, bytes]] = []
    name: bytes | None = None
    value: list[bytes] = []
    for line in header_section(data).split(b"\n"):
        line = line.rstrip(b"\r")
        if line[:1] in (b" ", b"\t"):
            if name is not None:
                value.append(line)
            continue
        if name is not None:
            fields.append((name, b"".join(value)))
            name = None
        key, colon, rest = line.partition(b":")
        key = key.rstrip(b" \t")
        if colon and _FIELD_NAME.fullmatch(key):
            name, value = key.lower(), [rest]
    if name is not None:
        fields.append((name, b"".join(value)))
    return fields


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
    found: dict[bytes, list[bytes]] = {}
    for name, raw in parse_headers(data):
        if name in _WANTED:
            found.setdefault(name, []).append(raw)

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
