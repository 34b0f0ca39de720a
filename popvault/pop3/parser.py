"""Incremental POP3 response parser, separate from the socket so it can be fuzzed.

Implements the reply grammar of RFC 1939 section 3 and the SASL continuation of RFC 5034
section 4. The caller tells the parser which kind of reply it expects next (``expect``),
pushes whatever bytes arrive (``feed``) and pulls events (``next_event``): one
:class:`Status` per reply, :class:`Continuation` for SASL ``+`` challenges, and for an
``+OK`` multi-line reply a run of :class:`BodyChunk` followed by :class:`BodyEnd`.
Decisions, all for guarantee 1 (byte-exact): a status line may end in CRLF or a bare LF.
In a body every byte is kept as sent (CRLF, bare LF, bare CR, NUL, 8-bit) except the
stuffing dot: a line starts after any LF, and a line that starts with ``.`` loses that
first ``.`` (RFC 1939 section 3). Counting a bare LF as a line end matches servers that
store LF-terminated mail and stuff after every LF (our own scripted server does; Dovecot
turns every LF into CRLF, so there the choice makes no difference). The body ends only at
``.CRLF`` at the start of a line. ``LF.LF`` is *not* a terminator: the RFC's terminator is
``CRLF.CRLF``, and guessing one would risk silently truncating mail; a server that ends
bodies that way is reported (timeout) rather than guessed at. Bodies are delivered in
chunks as they arrive, holding back at most two bytes (a possible terminator), so memory
stays bounded for any message size and line length. Any input gives events or
:class:`ProtocolError`, in time linear in its length. :func:`dot_stuff` is the inverse,
for a server's side of the same rules: parsing its output gives the message back.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from popvault.errors import NetworkError, PopvaultError, ProtocolError
from popvault.pop3.errors import MissingTerminator

#: Longest status line accepted (RFC 2449 allows 512 octets; real servers send more).
MAX_STATUS_LINE = 64 * 1024

_CR = 0x0D
_LF = 0x0A
_DOT = 0x2E


class Expect(enum.Enum):
    """The kind of reply the client awaits for one command."""

    SINGLE = "single"  # status line only
    MULTI = "multi"  # status line, and a dot-terminated body after +OK
    SASL = "sasl"  # "+ challenge" lines until a status line (AUTH)


@dataclass(frozen=True)
class Status:
    """A ``+OK`` or ``-ERR`` status line; ``text`` is everything after the indicator."""

    ok: bool
    text: str


@dataclass(frozen=True)
class Continuation:
    """A SASL server challenge line (``+ base64``); ``text`` is the base64 part."""

    text: str


@dataclass(frozen=True)
class BodyChunk:
    """Dot-unstuffed bytes of a multi-line body, in order, CRLF kept as received."""

    data: bytes


@dataclass(frozen=True)
class BodyEnd:
    """The terminating ``.CRLF`` of a multi-line body was seen."""


Event = Status | Continuation | BodyChunk | BodyEnd


class ReplyTooLarge(ProtocolError):
    """A multi-line reply collected in memory went over one of its :class:`LineLimits`."""


@dataclass(frozen=True)
class LineLimits:
    """Caps on a multi-line reply that is collected in memory (CAPA, UIDL, LIST).

    ``max_line``: bytes in one line (a CR counts, the LF does not); ``max_lines``: lines in the
    reply; ``max_bytes``: bytes in the whole (dot-unstuffed) body. Message bodies (RETR)
    are streamed and never collected, so they have no such limits.
    """

    max_line: int
    max_lines: int
    max_bytes: int


class LineCollector:
    """A body sink that splits a multi-line reply into text lines within ``limits``.

    Lines are decoded (UTF-8, errors replaced) and split as ``str.splitlines`` does, a
    received piece at a time, so the raw body is never held besides the lines. Feeding
    past a limit raises :class:`ReplyTooLarge` having stored at most one piece more than
    the limit allows; after that the collector must not be used again.
    """

    def __init__(self, limits: LineLimits) -> None:
        self._limits = limits
        self._partial = bytearray()  # the unfinished last line
        self._bytes = 0
        self.lines: list[str] = []

    def __call__(self, data: bytes) -> None:
        limits = self._limits
        self._bytes += len(data)
        if self._bytes > limits.max_bytes:
            raise ReplyTooLarge(f"reply longer than {limits.max_bytes} bytes")
        last = data.rfind(b"\n")
        if last < 0:
            self._partial += data
            self._check_line(len(self._partial))
            return
        head = data[: last + 1]
        if self._partial:
            self._partial += head
            head = bytes(self._partial)
            self._partial = bytearray()
        self._check_line(max(map(len, head.split(b"\n"))))
        if len(self.lines) + head.count(b"\n") > limits.max_lines:
            raise ReplyTooLarge(f"reply has more than {limits.max_lines} lines")
        self.lines.extend(head.decode("utf-8", "replace").splitlines())
        self._partial += data[last + 1 :]
        self._check_line(len(self._partial))

    def finish(self) -> list[str]:
        """The lines, with an unterminated last line if any (the body ended after it)."""
        if self._partial:
            self.lines.extend(self._partial.decode("utf-8", "replace").splitlines())
            self._partial = bytearray()
        return self.lines

    def _check_line(self, length: int) -> None:
        if length > self._limits.max_line:
            raise ReplyTooLarge(f"reply line longer than {self._limits.max_line} bytes")


class ResponseParser:
    """Push parser for a stream of POP3 replies (possibly pipelined).

    Not thread-safe. After it raises :class:`ProtocolError` the stream is unusable and
    every later call raises again.
    """

    def __init__(self, max_status_line: int = MAX_STATUS_LINE) -> None:
        self._max_status_line = max_status_line
        self._buf = b""
        self._pos = 0
        self._queue: deque[Expect] = deque()
        self._in_body = False
        self._at_line_start = False
        self._body_bytes = 0
        self._failed: ProtocolError | None = None

    @property
    def pending(self) -> int:
        """Number of replies expected and not yet complete."""
        return len(self._queue)

    @property
    def in_body(self) -> bool:
        """True while inside a multi-line body."""
        return self._in_body

    @property
    def buffered(self) -> int:
        """Bytes received and not yet parsed."""
        return len(self._buf) - self._pos

    def expect(self, kind: Expect) -> None:
        """Queue the kind of the next reply, in the order commands were sent."""
        self._queue.append(kind)

    def feed(self, data: bytes) -> None:
        """Append received bytes; parsing happens in :meth:`next_event`."""
        if self._pos >= len(self._buf):
            # all parsed: the new bytes are the buffer as they are (no copy), and a body
            # chunk of all of them is these very bytes
            self._buf = bytes(data)
        else:
            self._buf = b"".join((memoryview(self._buf)[self._pos :], data))
        self._pos = 0

    def discard_buffer(self) -> int:
        """Drop unparsed bytes (after STLS, plaintext must not survive); return how many."""
        n = len(self._buf) - self._pos
        self._buf = b""
        self._pos = 0
        return n

    def next_event(self) -> Event | None:
        """Return the next complete event, or None when more bytes are needed.

        Returns None too when no reply is expected. Raises :class:`ProtocolError` on a
        malformed status line or one longer than ``max_status_line``.
        """
        if self._failed is not None:
            raise self._failed
        if not self._queue:
            return None
        try:
            if self._in_body:
                return self._body_event()
            return self._status_event()
        except ProtocolError as exc:
            self._failed = exc
            raise

    def eof_error(self) -> PopvaultError:
        """Describe the connection closing now: what the caller should raise.

        Inside a body, right after a complete line, the server closed instead of sending
        the terminator: :class:`MissingTerminator` (a ProtocolError). Anywhere else
        (mid-line, mid-status, before any reply) it is a dropped connection:
        :class:`NetworkError`, worth retrying.
        """
        if self._in_body and self._at_line_start and self._body_bytes and not self.buffered:
            return MissingTerminator(
                "server closed the connection without the terminating '.' line"
            )
        return NetworkError("connection closed by the server in the middle of a reply")

    # -- internals ---------------------------------------------------------------

    def _status_event(self) -> Event | None:
        buf = self._buf
        idx = buf.find(b"\n", self._pos)
        if idx < 0:
            if len(buf) - self._pos > self._max_status_line:
                raise ProtocolError(f"status line longer than {self._max_status_line} bytes")
            return None
        if idx - self._pos > self._max_status_line:
            raise ProtocolError(f"status line longer than {self._max_status_line} bytes")
        line = bytes(buf[self._pos : idx])
        self._pos = idx + 1
        if line.endswith(b"\r"):
            line = line[:-1]
        kind = self._queue[0]
        ok_rest = _after_indicator(line, b"+OK")
        if ok_rest is not None:
            self._queue.popleft()
            if kind is Expect.MULTI:
                self._in_body = True
                self._at_line_start = True
                self._body_bytes = 0
                self._queue.appendleft(kind)  # the body still belongs to this reply
            return Status(True, _text(ok_rest))
        err_rest = _after_indicator(line, b"-ERR")
        if err_rest is not None:
            self._queue.popleft()
            return Status(False, _text(err_rest))
        if kind is Expect.SASL:
            cont = _after_indicator(line, b"+")
            if cont is not None:
                return Continuation(_text(cont).strip())
        shown = line[:80].decode("ascii", "backslashreplace")
        raise ProtocolError(f"malformed status line {shown!r}")

    def _body_event(self) -> Event | None:
        buf = self._buf
        n = len(buf)
        pos = start = self._pos
        while pos < n:
            if self._at_line_start:
                if buf[pos] == _DOT:
                    if n - pos < 2 or (buf[pos + 1] == _CR and n - pos < 3):
                        break  # cannot tell stuffed dot from terminator yet
                    if buf[pos + 1] == _CR and buf[pos + 2] == _LF:
                        if pos > start:
                            break  # deliver the data before the terminator first
                        self._pos = pos + 3
                        self._in_body = False
                        self._at_line_start = False
                        self._queue.popleft()
                        return BodyEnd()
                    if pos > start:
                        break  # deliver what precedes the stuffed dot first
                    pos += 1  # drop the stuffing dot
                    start = pos
                self._at_line_start = False
                continue
            # Only lines starting with "." need work: jump to the next one (C speed).
            # Its dot is found first, with memchr: base64 (most of the bytes of mail
            # with attachments) has none, and a search for the two bytes "\n." takes
            # ten times longer. The first dot found inside a line hands over to it.
            dot = buf.find(b".", pos + 1)
            if dot < 0:
                idx = -1
            elif buf[dot - 1] == _LF:
                idx = dot - 1
            else:
                idx = buf.find(b"\n.", dot)
            if idx < 0:
                self._at_line_start = buf[n - 1] == _LF
                pos = n
                break
            pos = idx + 1
            self._at_line_start = True
        self._pos = pos
        if pos > start:
            self._body_bytes += pos - start
            return BodyChunk(bytes(buf[start:pos]))
        return None


def _after_indicator(line: bytes, indicator: bytes) -> bytes | None:
    """Text after ``indicator`` when the line is ``indicator [SP text]``, else None."""
    if not line.startswith(indicator):
        return None
    rest = line[len(indicator) :]
    if not rest:
        return b""
    if rest[0] in (0x20, 0x09):
        return rest[1:]
    return None


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


@dataclass(frozen=True)
class Response:
    """One complete reply, as :func:`parse_response` returns it."""

    ok: bool
    text: str
    body: bytes | None  # dot-unstuffed body of an +OK multi-line reply, else None


def parse_response(data: bytes, *, multiline: bool = False) -> Response:
    """Parse ``data`` as exactly one complete reply.

    Raises :class:`ProtocolError` when ``data`` is malformed, incomplete, or has bytes
    after the reply. Never raises anything else; time is linear in ``len(data)``.
    """
    parser = ResponseParser()
    parser.expect(Expect.MULTI if multiline else Expect.SINGLE)
    parser.feed(data)
    status: Status | None = None
    body = bytearray()
    while True:
        event = parser.next_event()
        if event is None:
            break
        if isinstance(event, Status):
            status = event
        elif isinstance(event, BodyChunk):
            body += event.data
    if status is None or parser.pending:
        raise ProtocolError("incomplete reply")
    if parser.buffered:
        raise ProtocolError("unexpected bytes after the reply")
    has_body = multiline and status.ok
    return Response(status.ok, status.text, bytes(body) if has_body else None)


def dot_stuff(data: bytes) -> bytes:
    """A message as a multi-line body (RFC 1939 section 3), without the terminator.

    Every line that starts with ``.`` gets another ``.``; a line starts at the beginning
    and after any LF, as the parser counts them. CRLF is appended only when the message
    does not already end in LF, so the terminating ``.CRLF`` can follow directly. The
    parser turns ``dot_stuff(m)`` and ``.CRLF`` back into ``m`` (plus that CRLF, if added).
    """
    out = data.replace(b"\n.", b"\n..")
    if out.startswith(b"."):
        out = b"." + out
    if not out.endswith(b"\n"):
        out += b"\r\n"
    return out


__all__ = [
    "MAX_STATUS_LINE",
    "BodyChunk",
    "BodyEnd",
    "Continuation",
    "Event",
    "Expect",
    "LineCollector",
    "LineLimits",
    "ReplyTooLarge",
    "Response",
    "ResponseParser",
    "Status",
    "dot_stuff",
    "parse_response",
]
