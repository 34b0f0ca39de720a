"""The record every mailbox reader yields: one message's exact bytes plus where it came from.

Readers (:mod:`.mbox`, :mod:`.maildir`, :mod:`.eml`) produce :class:`SourceMessage`
records; the import use case turns them into vault messages. ``data`` is the message
after the format's documented reverse transform (for mbox: mboxrd unquoting), so writing
it back with the matching writer and reading it again gives the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: Files larger than this are not read when yielded: ``data`` stays empty and
#: :meth:`SourceMessage.chunks` streams the file (bounded memory for any size).
LARGE_FILE = 16 << 20
CHUNK = 1 << 20


#: What the writers accept: the whole message, or its bytes in pieces (streamed from
#: the vault for large messages, so memory stays bounded).
MessageBytes = bytes | Iterable[bytes]


def pieces_of(data: MessageBytes) -> Iterable[bytes]:
    return (data,) if isinstance(data, bytes) else data


def read_or_defer(file: Path) -> tuple[bytes, Path | None]:
    """A message file's bytes, or for a file over :data:`LARGE_FILE` no bytes and its
    path (checked readable now; :meth:`SourceMessage.chunks` reads it in pieces).

    Raises OSError."""
    if file.stat().st_size > LARGE_FILE:
        with open(file, "rb"):
            pass
        return b"", file
    return file.read_bytes(), None


def write_all(fd: int, data: MessageBytes) -> None:
    """Write every byte of ``data`` (bytes or pieces) to the file descriptor."""
    for piece in pieces_of(data):
        view = memoryview(piece)
        while view:
            view = view[os.write(fd, view) :]


@dataclass(frozen=True)
class SourceMessage:
    """One message read from a local mailbox.

    ``source`` names the message for error reports and progress output, e.g.
    ``"mbox:/path/inbox#12"`` (1-based position in the file) or
    ``"maildir:/path/cur/NAME"``. ``flags`` holds Maildir info flags such as ``"RS"``
    (``None`` when the format has none or they are unknown, ``""`` for a Maildir file in
    ``cur/`` with an empty ``:2,`` suffix). ``file_time`` is the Maildir file's mtime
    (delivery time by convention); ``from_line_time`` is the date of the mbox ``From_``
    line, in seconds since the epoch, read as UTC.
    """

    data: bytes
    source: str
    flags: str | None = None
    file_time: float | None = None
    from_line_time: float | None = None
    #: Set for a large Maildir/.eml file whose bytes are read only by :meth:`chunks`.
    path: Path | None = None
    #: Set for a large message inside a bigger file (mbox): yields its bytes in pieces.
    stream: Callable[[], Iterator[bytes]] | None = None

    def chunks(self) -> Iterator[bytes]:
        """The message's bytes in pieces of at most about 1 MiB (from the file when large).

        Raises OSError when a large file cannot be read any more."""
        if self.stream is not None:
            yield from self.stream()
            return
        if self.path is None:
            for i in range(0, len(self.data), CHUNK):
                yield self.data[i : i + CHUNK]
            return
        with open(self.path, "rb") as f:
            while piece := f.read(CHUNK):
                yield piece

    def read(self) -> bytes:
        """The whole message (reads the file for a large one)."""
        if self.path is None and self.stream is None:
            return self.data
        return b"".join(self.chunks())

    def __repr__(self) -> str:
        # The bytes can be megabytes; a repr must stay one readable line.
        return (
            f"SourceMessage(source={self.source!r}, size={len(self.data)}, "
            f"flags={self.flags!r}, file_time={self.file_time!r}, "
            f"from_line_time={self.from_line_time!r})"
        )
