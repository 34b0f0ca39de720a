"""Reading and writing Maildir folders, the way qmail defined them and Dovecot uses them.

A Maildir is a directory with ``tmp/``, ``new/`` and ``cur/``; each message is one file
holding its exact bytes. Info flags live in the file name after ``:2,`` (``D`` draft,
``F`` flagged, ``P`` passed, ``R`` replied, ``S`` seen, ``T`` trashed; Dovecot adds
lower-case letters for keywords), and a file's mtime is its delivery time by convention.
No transform is applied to message bytes in either direction: what the reader yields is
the file, and what the writer writes is the data given, byte for byte.

The writer delivers like ``mailbox.Maildir.add`` and qmail: write to ``tmp/``, fsync,
set the mtime, rename into ``new/`` (no flags) or ``cur/NAME:2,FLAGS``, fsync that
directory. A message is durable when :meth:`MaildirWriter.add` returns.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from popvault.errors import MailboxFormatError
from popvault.fsync import fsync_dir
from popvault.mailboxes.message import (
    MessageBytes,
    SourceMessage,
    read_or_defer,
    write_all,
)

ErrorHandler = Callable[[str, Exception], None]
"""Called with (file path, error) for a message file that cannot be read."""

_INFO_SEP = ":2,"


def split_info(name: str) -> tuple[str, str | None]:
    """Split a Maildir file name into (unique part, flags); flags ``None`` without ``:2,``."""
    base, sep, flags = name.rpartition(_INFO_SEP)
    if not sep:
        return name, None
    return base, flags


def read_maildir(
    path: str | os.PathLike[str], on_error: ErrorHandler | None = None
) -> Iterator[SourceMessage]:
    """Yield every message of the Maildir at ``path`` (``cur/`` and ``new/``).

    Order is by file mtime, then by file name, so two reads of the same folder agree.
    Files whose names start with ``.`` are skipped, as Maildir readers do. ``flags`` is
    the part after ``:2,`` (``None`` for ``new/`` or a name without it), ``file_time``
    the mtime. ``source`` is ``"maildir:PATH/cur/NAME"``.

    Raises :class:`MailboxFormatError` when ``path`` has neither ``cur/`` nor ``new/``.
    A message file that cannot be read (permissions, vanished, a directory, a FIFO or
    anything else that is not a regular file) raises
    :class:`MailboxFormatError` too, unless ``on_error`` is given: then it is called with
    the file's path and that error, and reading continues with the next file.
    """
    root = Path(path)
    subdirs = [root / "cur", root / "new"]
    if not any(d.is_dir() for d in subdirs):
        raise MailboxFormatError(
            f"{root} is not a Maildir: it has no cur/ or new/ directory",
            hint="pass the right format (mbox, maildir, eml) for this path",
        )
    entries: list[tuple[float, str, Path]] = []
    for d in subdirs:
        if not d.is_dir():
            continue
        try:
            with os.scandir(d) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    file = d / entry.name
                    try:
                        st = entry.stat()
                        if not stat.S_ISREG(st.st_mode):
                            # a FIFO or device would block or never end; a directory fails
                            raise OSError(errno.EINVAL, "not a regular file")
                    except OSError as exc:
                        _report(on_error, str(file), exc)
                        continue
                    entries.append((st.st_mtime, entry.name, file))
        except OSError as exc:
            raise MailboxFormatError(f"cannot list {d}: {exc.strerror or exc}") from exc
    entries.sort(key=lambda e: (e[0], e[1]))
    for mtime, name, file in entries:
        try:
            data, large = read_or_defer(file)
        except OSError as exc:
            _report(on_error, str(file), exc)
            continue
        flags = split_info(name)[1] if file.parent.name == "cur" else None
        yield SourceMessage(
            data=data, source=f"maildir:{file}", flags=flags, file_time=mtime, path=large
        )


def _report(on_error: ErrorHandler | None, file: str, exc: OSError) -> None:
    error = MailboxFormatError(f"cannot read message file {file}: {exc.strerror or exc}")
    if on_error is None:
        raise error from exc
    on_error(file, error)


_counter = itertools.count(1)


def _hostname() -> str:
    # Maildir convention: '/' and ':' in the host name are written as octal escapes.
    host = socket.gethostname() or "localhost"
    return host.replace("/", r"\057").replace(":", r"\072")


def normalize_flags(flags: str) -> str:
    """Return Maildir flags deduplicated and in ASCII order, as the spec requires."""
    return "".join(sorted(set(flags)))


class MaildirWriter:
    """Deliver messages into the Maildir at ``path``, creating it (mode 0700) if needed."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        created = False
        for sub in ("", "cur", "new", "tmp"):
            d = self.path / sub if sub else self.path
            if not d.is_dir():
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
                created = True
        if created:
            fsync_dir(self.path)
            fsync_dir(self.path.parent)
        self._host = _hostname()

    def add(self, data: MessageBytes, flags: str | None = None, when: float | None = None) -> str:
        """Deliver one message; return the path of its file. Durable on return.

        ``flags`` ``None`` delivers to ``new/``; a string (possibly empty) delivers to
        ``cur/NAME:2,FLAGS`` with the flags sorted and deduplicated. ``when`` sets the
        file's mtime (and atime); ``None`` leaves the delivery time. The file gets mode
        0600 and exactly ``data``. On error the temporary file is removed.
        """
        if flags is not None and ("/" in flags or "\0" in flags):
            raise ValueError(f"invalid Maildir flags {flags!r}")
        now = time.time()
        sec = int(now)
        usec = int((now - sec) * 1_000_000)
        unique = f"{sec}.M{usec:06d}P{os.getpid()}Q{next(_counter):06d}.{self._host}"
        tmp = self.path / "tmp" / unique
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if when is not None:
                os.utime(tmp, (when, when))
            if flags is None:
                final = self.path / "new" / unique
            else:
                final = self.path / "cur" / f"{unique}{_INFO_SEP}{normalize_flags(flags)}"
            os.rename(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(final.parent)
        return str(final)
