"""Reading and writing mbox files (mboxrd by default), streaming, one message at a time.

An mbox file is a sequence of messages, each introduced by a ``From_`` line
(``From SENDER DATE``) and followed by one blank line. The reader and writer here apply
exactly these transforms, and no others:

* **Splitting.** A message starts at a line beginning with ``From `` that is the first
  line of the file or follows a blank line (``\\n`` or ``\\r\\n``). That blank line is the
  separator and is not part of either message; every other byte between two ``From_``
  lines is.
* **Quoting (mboxrd).** The writer prefixes one ``>`` to every line of a message that
  matches ``^>*From `` so that no line of a message can be taken for a ``From_`` line.
  The mboxrd reader removes one ``>`` from every line matching ``^>+From ``. Together
  these are exactly reversible for any bytes. The mboxo reader does no unquoting (mboxo
  writers quote ``From `` but not ``>From ``, so their quoting cannot be undone
  reliably). ``fmt="auto"`` reads as mboxrd: an mboxo file only differs when a message
  contains a line that starts with ``>From `` *in the original*, which is rare, while
  reading an mboxrd file as mboxo would leave a ``>`` on every quoted ``From `` line,
  which is common. Files from mutt, Thunderbird and Dovecot's mbox are mboxrd or
  mboxcl2-with-quoting; both read correctly as mboxrd.
* **Line endings.** The reader keeps line endings exactly as in the file (``\\n``,
  ``\\r\\n``, lone ``\\r``, mixed). The writer writes LF files by default and turns every
  CRLF of a message into LF (mbox is a Unix format; mail tools expect LF). A lone CR or
  a bare LF is written unchanged. With ``crlf=True`` the writer keeps a message's bytes
  as they are and ends its own ``From_`` and separator lines with CRLF, so CRLF
  messages come back byte-exact.
* **Final newline.** Every message in an mbox ends with a line ending; the writer adds
  one (``\\n``, or ``\\r\\n`` with ``crlf=True``) to a non-empty message that lacks it.
  This is the one irreversible transform: such a message reads back one newline longer.
* **Truncation.** A final message cut off mid-way (no separator, no final newline) is
  still returned, with the bytes that are there: losing a partial message would be
  worse than returning it, and a truncated mbox cannot be told apart from one whose last
  message simply has no final newline.

The reader holds at most one message in memory (it scans lines in bounded chunks, then
reads the message's byte range once); a message over 16 MiB is not held at all: its
:meth:`SourceMessage.chunks` reads and unquotes its byte range in pieces of about 1 MiB.
The writer writes to a temporary file in the target directory and renames it into place
at :meth:`MboxWriter.close`, after fsync, so a crash never leaves a half-written mbox
under the final name.
"""

from __future__ import annotations

import calendar
import errno
import functools
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal

from popvault.errors import MailboxFormatError, PopvaultError, UsageError
from popvault.fsync import fsync_dir
from popvault.mailboxes.message import (
    CHUNK,
    LARGE_FILE,
    MessageBytes,
    SourceMessage,
    pieces_of,
)

MboxFormat = Literal["auto", "mboxrd", "mboxo"]

_CHUNK = 64 * 1024
_FROM_LINE_MAX = 4096
_UNQUOTE_RE = re.compile(rb"^>(>*From )", re.MULTILINE)
_QUOTE_RE = re.compile(rb"^(>*From )", re.MULTILINE)
_NEEDS_UNQUOTE_RE = re.compile(rb">+From ")
#: A separator: the line feed ending a line, a blank line (LF or CRLF), ``From ``.
_SEPARATOR_RE = re.compile(rb"\n\r?\nFrom ")
#: How much of an mbox the reader reads at a time.
_BLOCK = 1 << 20
_FROM_DATE_RE = re.compile(
    rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s+"
    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+(\d{1,2})\s+"
    rb"(\d{1,2}):(\d{2})(?::(\d{2}))?\s+"
    rb"(?:[A-Za-z]{1,5}\s+|[+-]\d{4}\s+)?(\d{4})"
)
_MONTHS = b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def parse_from_line_time(line: bytes) -> float | None:
    """Return the ``asctime`` date of an mbox ``From_`` line as UTC epoch seconds.

    Tolerates a time zone name or offset before the year (which is ignored: most
    writers use local time without saying so). Returns ``None`` when no date is found.
    """
    m = _FROM_DATE_RE.search(line)
    if m is None:
        return None
    month = _MONTHS.index(m.group(1)) + 1
    day, hour, minute = int(m.group(2)), int(m.group(3)), int(m.group(4))
    second = int(m.group(5) or b"0")
    year = int(m.group(6))
    if not (1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 61):
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


def read_mbox(path: str | os.PathLike[str], fmt: MboxFormat = "auto") -> Iterator[SourceMessage]:
    """Yield the messages of the mbox file at ``path`` in file order, one at a time.

    ``fmt`` chooses the unquoting (see the module docstring); ``"auto"`` means mboxrd.
    An empty file is an empty mailbox. Raises :class:`MailboxFormatError` naming the file
    when it cannot be opened or read, or does not start with a ``From `` line. The file
    must not change while it is read. ``source`` is ``"mbox:PATH#N"``, N counting from 1.
    """
    if fmt not in ("auto", "mboxrd", "mboxo"):
        raise ValueError(f"unknown mbox format {fmt!r}")
    unquote = fmt != "mboxo"
    name = os.fspath(path)
    try:
        f = open(name, "rb")
    except OSError as exc:
        raise MailboxFormatError(f"cannot open mbox {name}: {exc.strerror or exc}") from exc
    try:
        yield from _read(f, name, unquote)
    except OSError as exc:
        raise MailboxFormatError(f"cannot read mbox {name}: {exc.strerror or exc}") from exc
    finally:
        f.close()


class _Window:
    """A sliding window over a file read in blocks: ``buf`` holds the bytes from file
    offset ``base`` on; :meth:`more` drops what comes before ``keep`` and reads a block."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.buf = b""
        self.base = 0
        self.eof = False

    @property
    def end(self) -> int:
        """The file offset just past the bytes read so far."""
        return self.base + len(self.buf)

    def line_end(self, at: int) -> int:
        """The offset after the next line feed from ``at`` on (the end of the file if
        there is none); drops what it passes."""
        while (nl := self.buf.find(b"\n", at - self.base)) < 0:
            at = self.end
            if not self.more(at - 8):
                return at
        return self.base + nl + 1

    def more(self, keep: int) -> bool:
        if self.eof:
            return False
        block = self.f.read(_BLOCK)
        if not block:
            self.eof = True
            return False
        keep = min(keep, self.end)
        self.buf = self.buf[keep - self.base :] + block
        self.base = keep
        return True


def _read(f: BinaryIO, name: str, unquote: bool) -> Iterator[SourceMessage]:
    """Scan in blocks for separators (a blank line, then ``From ``): a few searches in C
    per block instead of Python work per line."""
    w = _Window(f)
    while len(w.buf) < _CHUNK and w.more(0):
        pass
    if not w.buf:
        return
    if not w.buf.startswith(b"From "):
        raise MailboxFormatError(
            f"{name} is not an mbox file: it does not start with a 'From ' line",
            hint="pass the right format (mbox, maildir, eml) for this file",
        )
    number = 0
    line = 0  # file offset of the current From_ line
    while True:
        number += 1
        while w.end - line < _CHUNK and w.more(line):
            pass
        rel = line - w.base
        nl = w.buf.find(b"\n", rel, rel + _CHUNK)
        if nl >= 0:
            from_line = w.buf[rel : nl + 1]
            start = line + len(from_line)
        else:  # a From_ line longer than a chunk: the rest of it is skipped
            from_line = w.buf[rel : rel + _CHUNK]
            start = w.line_end(line + len(from_line))
        # the separator: the line feed ending the line before a blank line, the blank
        # line, ``From `` (the From_ line's own line feed counts: an empty message)
        search = start - 1
        nxt: int | None = None
        while True:
            m = _SEPARATOR_RE.search(w.buf, max(search - w.base, 0))
            if m is not None:
                end = w.base + m.start() + 1
                nxt = w.base + m.end() - 5
                break
            search = max(w.end - 8, start - 1)
            # a message is dropped from the window only once it is sure to be streamed:
            # its separator, still ahead, puts its end past start + LARGE_FILE
            keep = start - 1 if w.end - start <= LARGE_FILE + 8 else search
            if not w.more(keep):
                end = w.end
                tail = w.buf[-3:]
                if tail.endswith(b"\n\n") and end - 1 >= start:
                    end -= 1
                elif tail == b"\n\r\n" and end - 2 >= start:
                    end -= 2
                break
        source = f"mbox:{name}#{number}"
        when = parse_from_line_time(from_line)
        if end - start > LARGE_FILE:
            stream = functools.partial(_stream_range, name, start, end, unquote)
            yield SourceMessage(data=b"", source=source, from_line_time=when, stream=stream)
        else:
            data = w.buf[start - w.base : end - w.base]
            if unquote and b">From " in data:
                data = _UNQUOTE_RE.sub(rb"\1", data)
            yield SourceMessage(data=data, source=source, from_line_time=when)
        if nxt is None:
            return
        line = nxt


def _stream_range(name: str, start: int, end: int, unquote: bool) -> Iterator[bytes]:
    """The bytes ``start:end`` of the mbox at ``name``, mboxrd-unquoted when ``unquote``,
    in pieces of about :data:`CHUNK` bytes (bounded memory for any message size).

    Raises OSError when the file cannot be read or got shorter since it was scanned."""
    with open(name, "rb") as f:
        f.seek(start)
        left = end - start
        out = bytearray()
        at_line_start = True
        while left > 0:
            piece = f.readline(min(CHUNK, left)) if unquote else f.read(min(CHUNK, left))
            if not piece:
                raise OSError(errno.EIO, f"mbox {name} changed while it was being read")
            left -= len(piece)
            if unquote and at_line_start and piece.startswith(b">"):
                # a line start: read on until its '>' run and what follows are in hand
                while left > 0 and not piece.endswith(b"\n") and len(piece.lstrip(b">")) < 5:
                    more = f.readline(min(CHUNK, left))
                    if not more:
                        raise OSError(errno.EIO, f"mbox {name} changed while it was being read")
                    left -= len(more)
                    piece += more
                if _NEEDS_UNQUOTE_RE.match(piece):
                    piece = piece[1:]
            at_line_start = piece.endswith(b"\n")
            out += piece
            if len(out) >= CHUNK:
                yield bytes(out)
                out.clear()
        if out:
            yield bytes(out)


def _asctime(when: float) -> str:
    t = time.gmtime(when)
    month = _MONTHS[t.tm_mon - 1].decode()
    clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    return f"{_DAYS[t.tm_wday]} {month} {t.tm_mday:2d} {clock} {t.tm_year}"


class MboxWriter:
    """Write messages to a new mboxrd file at ``path``, replacing it atomically at close.

    Messages go to a temporary file (mode 0600) next to ``path``; :meth:`close` fsyncs
    it, renames it to ``path`` (replacing any existing file) and fsyncs the directory,
    so on return the whole mbox is durable and a crash before that leaves the old file
    (or none) untouched. :meth:`abort`, or leaving a ``with`` block by an exception,
    removes the temporary file. See the module docstring for the transforms applied.
    A missing folder raises UsageError (exit 2), any other failure to create or rename
    the file PopvaultError (exit 1), both naming ``path``, not the temporary file.
    """

    def __init__(self, path: str | os.PathLike[str], crlf: bool = False) -> None:
        self.path = Path(path)
        self.crlf = crlf
        self._eol = b"\r\n" if crlf else b"\n"
        directory = self.path.parent
        if not directory.is_dir():
            raise UsageError(
                f"cannot write the mbox {path}: the folder {directory} does not exist",
                hint="create the folder first, or give another path",
            )
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise PopvaultError(f"cannot write the mbox {path}: {exc.strerror or exc}") from None
        self._tmp = Path(tmp)
        os.fchmod(fd, 0o600)
        self._file: BinaryIO | None = os.fdopen(fd, "wb", buffering=1024 * 1024)
        self.count = 0

    def add(
        self, data: MessageBytes, sender: str = "MAILER-DAEMON", when: float | None = None
    ) -> None:
        """Append one message with a ``From SENDER DATE`` line (``when`` defaults to now).

        ``data`` is the message or its bytes in pieces (then it is transformed line by
        line as the pieces come, in bounded memory). If reading the pieces raises, the
        partly written message is cut off again and the error propagates. ``sender`` is
        reduced to one token (whitespace becomes ``_``). Nothing is durable until
        :meth:`close` returns.
        """
        if self._file is None:
            raise ValueError("MboxWriter is closed")
        token = "".join("_" if c.isspace() else c for c in sender) or "MAILER-DAEMON"
        stamp = _asctime(time.time() if when is None else when)
        f = self._file
        start = f.tell()
        try:
            f.write(f"From {token} {stamp}".encode("utf-8", "replace") + self._eol)
            carry = b""
            for piece in pieces_of(data):
                buf = carry + piece
                cut = buf.rfind(b"\n") + 1  # transform whole lines only
                f.write(self._lines(buf[:cut]))
                carry = buf[cut:]
            if carry:
                f.write(self._lines(carry + self._eol))
            f.write(self._eol)
        except BaseException:
            f.seek(start)
            f.truncate()
            raise
        self.count += 1

    def _lines(self, data: bytes) -> bytes:
        if not self.crlf:
            data = data.replace(b"\r\n", b"\n")
        return _QUOTE_RE.sub(rb">\1", data)

    def close(self) -> None:
        """Flush, fsync and rename the file into place; the mbox is durable on return."""
        if self._file is None:
            return
        f = self._file
        self._file = None
        try:
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
        try:
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self._tmp.unlink(missing_ok=True)
            raise PopvaultError(
                f"cannot write the mbox {self.path}: {exc.strerror or exc}"
            ) from None
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Discard everything written so far; ``path`` is left as it was."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> MboxWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
