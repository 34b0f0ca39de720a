"""What an IMAP server sends (RFC 3501 sections 7 and 9), as :class:`Response` records.

A response is read as it came: its first line and, for every ``{n}`` at a line end, the
``n`` bytes of the literal and the line that follows (:attr:`Response.segments`). From
there :func:`parse_status` reads a status response (tag, ``OK``/``NO``/``BAD``/``BYE``/
``PREAUTH``, ``[response code]``, text), :class:`ResponseParser` turns response data into
:data:`Value` items (atoms, quoted strings and literals anywhere, lists, NIL) and
:func:`fetch_attrs` the attributes of a ``* N FETCH (...)``. Malformed input is a
:class:`ProtocolError`; nothing is parsed with regular expressions over whole responses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from popvault.errors import ProtocolError

Value: TypeAlias = "str | bytes | list[Value] | None"
"""A parsed IMAP datum: atom (str), string (bytes, quoted or literal), NIL, list."""

#: ``{n}`` or ``{n+}`` at the end of a line: a literal of n bytes follows.
LITERAL_TAIL = re.compile(rb"\{(\d+)\+?\}$")
_STATUS_RE = re.compile(rb"^(\S+) (OK|NO|BAD|BYE|PREAUTH)(?: \[([^\]]*)\])? ?(.*)$", re.I | re.S)


@dataclass(frozen=True)
class Response:
    """One server response. ``tag`` is ``"*"`` (untagged), ``"+"`` or a command tag.

    ``segments`` alternate line text and literal bytes: the raw response as read.
    """

    tag: str
    segments: tuple[bytes, ...]

    @property
    def line(self) -> bytes:
        """The first line, without its trailing literal marker and CRLF."""
        return self.segments[0]


@dataclass(frozen=True)
class Status:
    """A status response: ``OK``/``NO``/``BAD``/``BYE``/``PREAUTH`` with code and text."""

    status: str
    code: str | None
    text: str

    @property
    def code_name(self) -> str | None:
        return self.code.split(" ", 1)[0].upper() if self.code else None


def parse_status(resp: Response) -> Status | None:
    """Return the status of a tagged or untagged status response, else ``None``."""
    m = _STATUS_RE.match(resp.line)
    if m is None:
        return None
    code = m.group(3).decode("utf-8", "replace") if m.group(3) is not None else None
    return Status(m.group(2).decode().upper(), code, m.group(4).decode("utf-8", "replace"))


class ResponseParser:
    """Tokenizes the data of a response (segments of text and literals) into Values."""

    def __init__(self, segments: Sequence[bytes], skip: int = 0) -> None:
        self.segs = segments
        self.seg = 0
        self.pos = skip

    def _text(self) -> bytes:
        return self.segs[self.seg]

    def at_end(self) -> bool:
        self._skip_space()
        return self.seg >= len(self.segs) - 1 and self.pos >= len(self._text())

    def _skip_space(self) -> None:
        text = self._text()
        while self.pos < len(text) and text[self.pos] == 0x20:
            self.pos += 1

    def values(self) -> list[Value]:
        out: list[Value] = []
        while not self.at_end():
            out.append(self.value())
        return out

    def value(self) -> Value:
        self._skip_space()
        text = self._text()
        if self.pos >= len(text):
            raise ProtocolError("unexpected end of IMAP response")
        c = text[self.pos]
        if c == ord("("):
            self.pos += 1
            return self._list()
        if c == ord('"'):
            return self._quoted()
        if c == ord("{"):
            m = LITERAL_TAIL.match(text, self.pos)
            if m is None or m.end() != len(text) or self.seg + 2 >= len(self.segs):
                raise ProtocolError("malformed literal in IMAP response")
            literal = self.segs[self.seg + 1]
            self.seg += 2
            self.pos = 0
            return literal
        return self._atom()

    def _list(self) -> list[Value]:
        items: list[Value] = []
        while True:
            self._skip_space()
            text = self._text()
            if self.pos < len(text) and text[self.pos] == ord(")"):
                self.pos += 1
                return items
            if self.pos >= len(text) and self.seg >= len(self.segs) - 1:
                raise ProtocolError("unterminated list in IMAP response")
            items.append(self.value())

    def _quoted(self) -> bytes:
        text = self._text()
        out = bytearray()
        i = self.pos + 1
        while i < len(text):
            c = text[i]
            if c == ord("\\") and i + 1 < len(text):
                out.append(text[i + 1])
                i += 2
            elif c == ord('"'):
                self.pos = i + 1
                return bytes(out)
            else:
                out.append(c)
                i += 1
        raise ProtocolError("unterminated quoted string in IMAP response")

    def _atom(self) -> str | None:
        text = self._text()
        start = i = self.pos
        depth = 0
        while i < len(text):
            c = text[i]
            if c == ord("["):
                depth += 1
            elif c == ord("]") and depth:
                depth -= 1
            elif depth == 0 and c in b" ()":
                break
            i += 1
        if i == start:
            raise ProtocolError(f"unexpected {chr(text[start])!r} in IMAP response")
        self.pos = i
        atom = text[start:i].decode("utf-8", "replace")
        return None if atom.upper() == "NIL" else atom


def fetch_attrs(resp: Response) -> dict[str, Value] | None:
    """The attributes of ``* N FETCH (...)`` (names upper-cased); ``None`` for other data."""
    words = resp.line.split(b" ", 3)
    if len(words) < 4 or words[2].upper() != b"FETCH":
        return None
    skip = len(words[0]) + len(words[1]) + len(words[2]) + 3
    values = ResponseParser(resp.segments, skip).values()
    if len(values) != 1 or not isinstance(values[0], list):
        raise ProtocolError("malformed FETCH response")
    items = values[0]
    attrs: dict[str, Value] = {}
    for i in range(0, len(items) - 1, 2):
        key = items[i]
        if isinstance(key, str):
            attrs[key.upper()] = items[i + 1]
    return attrs


__all__ = [
    "LITERAL_TAIL",
    "Response",
    "ResponseParser",
    "Status",
    "Value",
    "fetch_attrs",
    "parse_status",
]
