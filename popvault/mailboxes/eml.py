"""Reading and writing ``.eml`` files: one message per file, exact bytes, no transform.

An ``.eml`` file is a message's octets and nothing else, so the reader yields the file's
bytes and the writer writes the given bytes unchanged (CRLF, bare LF, NUL, 8-bit, no
final newline: all kept). The writer creates each file atomically (temporary file,
fsync, hard link to the final name so an existing file is never replaced, directory
fsync) with mode 0600.

:func:`looks_like_message` is how ``import`` tells a message from any other file given
on its own (a config file, a document): a header section of ``Name: value`` lines with
at least one of the usual fields, ending in an empty line.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
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

_UNSAFE = re.compile(r"[\x00-\x1f/\\\x7f]")

#: How much of a file :func:`looks_like_message` reads: real header sections (many
#: Received and DKIM fields) stay far below this.
HEAD_LIMIT = 256 * 1024
#: A header field: a name of printable ASCII but ':' (RFC 5322 §2.2; obsolete syntax
#: allows blanks before the colon), then the colon.
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:")
#: Fields of which a message has at least one; a file of ``Name: value`` lines
#: without any of them is some other text (a YAML or TOML file, a note).
USUAL_FIELDS = frozenset(
    {
        b"from",
        b"sender",
        b"to",
        b"cc",
        b"bcc",
        b"date",
        b"subject",
        b"received",
        b"message-id",
        b"return-path",
        b"delivered-to",
        b"reply-to",
        b"in-reply-to",
        b"references",
        b"mime-version",
        b"content-type",
        b"x-original-to",
        b"envelope-to",
        b"dkim-signature",
        b"authentication-results",
    }
)


def read_eml(
    path: str | os.PathLike[str], on_error: ErrorHandler | None = None
) -> Iterator[SourceMessage]:
    """Yield the message in the file ``path``, or every ``*.eml`` below the directory ``path``.

    Directories are searched recursively; files are yielded in order of their path
    relative to ``path`` (so the order is stable). ``source`` is ``"eml:PATH"``.
    Raises :class:`MailboxFormatError` when ``path`` does not exist or a file cannot be
    read; with ``on_error``, an unreadable file inside a directory is reported through it
    (path, error) and skipped instead.
    """
    root = Path(path)
    if root.is_dir():
        files = sorted(
            (p for p in root.rglob("*") if p.suffix.lower() == ".eml" and not p.is_dir()),
            key=lambda p: p.relative_to(root).parts,
        )
    elif root.exists():
        files = [root]
        on_error = None
    else:
        raise MailboxFormatError(f"{root} does not exist")
    for file in files:
        try:
            if not stat.S_ISREG(file.stat().st_mode):
                # a FIFO or device would block or never end
                raise OSError(errno.EINVAL, "not a regular file")
            data, large = read_or_defer(file)
        except OSError as exc:
            error = MailboxFormatError(f"cannot read {file}: {exc.strerror or exc}")
            if on_error is None:
                raise error from exc
            on_error(str(file), error)
            continue
        yield SourceMessage(data=data, source=f"eml:{file}", path=large)


def looks_like_message(data: bytes) -> bool:
    """Whether ``data`` (the first :data:`HEAD_LIMIT` bytes of a file, or all of it)
    starts like an RFC 5322 message.

    True when it begins with a header section: one or more ``Name: value`` fields (a
    line starting with a space or tab continues the field before it), at least one of
    them one of :data:`USUAL_FIELDS`, up to an empty line (LF or CRLF) or, for a message
    without a body, the end of ``data`` when ``data`` is shorter than the limit.
    """
    usual = False
    fields = 0
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            if len(data) >= HEAD_LIMIT:
                return False  # a header section longer than we look at: not a message
            end = len(data)
        line = data[pos:end].removesuffix(b"\r")
        pos = end + 1
        if not line:
            return usual  # the empty line that ends the header section
        if line[:1] in (b" ", b"\t"):
            if not fields:
                return False  # a continuation of nothing
            continue  # a folded field
        m = _FIELD.match(line)
        if m is None:
            return False
        fields += 1
        usual = usual or m.group(1).lower() in USUAL_FIELDS
    return usual and len(data) < HEAD_LIMIT


def read_head(path: str | os.PathLike[str]) -> bytes:
    """The first :data:`HEAD_LIMIT` bytes of the file at ``path`` (OSError if unreadable)."""
    with open(path, "rb") as f:
        return f.read(HEAD_LIMIT)


def safe_name(name: str) -> str:
    """Turn ``name`` into a single safe file name ending in ``.eml``."""
    cleaned = _UNSAFE.sub("_", name).strip().lstrip(".")[:200] or "message"
    if not cleaned.lower().endswith(".eml"):
        cleaned += ".eml"
    return cleaned


class EmlWriter:
    """Write messages as ``.eml`` files into ``directory`` (created with mode 0700)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def add(self, data: MessageBytes, name: str) -> str:
        """Write ``data`` to a new file named after ``name``; return its path.

        ``name`` is made safe (no path separators or control characters, ``.eml``
        appended if missing). An existing file is never replaced: ``-2``, ``-3``, ...
        is added before the suffix instead. Durable on return.
        """
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=self.directory)
        tmp = Path(tmp_name)
        try:
            try:
                os.fchmod(fd, 0o600)
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            base = safe_name(name)
            stem, suffix = base[: -len(".eml")], base[-len(".eml") :]
            n = 1
            while True:
                final = self.directory / (base if n == 1 else f"{stem}-{n}{suffix}")
                try:
                    os.link(tmp, final)
                    break
                except FileExistsError:
                    n += 1
                except OSError:
                    # no hard links (FAT/exFAT): exclusive create, then copy the bytes
                    if _create_exclusive_copy(tmp, final):
                        break
                    n += 1
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self.directory)
        return str(final)


def _create_exclusive_copy(src: Path, dst: Path) -> bool:
    """Copy ``src`` to a new file ``dst`` (never overwriting); False if ``dst`` exists."""
    try:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as out:
        out.write(src.read_bytes())
        out.flush()
        os.fsync(out.fileno())
    return True
