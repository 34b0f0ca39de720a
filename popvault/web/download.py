"""Downloads of ``popvault serve``: a list of messages as one mbox, streamed.

The mbox is made by :class:`popvault.mailboxes.mbox.MboxWriter`'s own transforms (its
``From_`` line, mboxrd quoting, LF line ends; docs/formats.md) written to memory one
message at a time instead of to a file, so the bytes a browser receives equal what
``popvault export --format mbox`` writes for the same messages, and no plaintext touches
the disk. Every message is read back and verified first; a damaged one is left out.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from email.utils import parseaddr

from popvault.errors import IntegrityError
from popvault.mailboxes.mbox import MboxWriter
from popvault.vault import MessageRow, Vault


class _MemoryMbox(MboxWriter):
    """An :class:`MboxWriter` whose messages go to a buffer that :meth:`take` empties."""

    def __init__(self) -> None:  # no file: the base class's add() writes to the buffer
        self.crlf = False
        self._eol = b"\n"
        self._buffer = io.BytesIO()
        self._file = self._buffer
        self.count = 0

    def take(self) -> bytes:
        data = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return data


def mbox_sender(row: MessageRow) -> str:
    """The ``From_`` line's sender, as ``export`` writes it."""
    sender = parseaddr(row.from_)[1] or "MAILER-DAEMON"
    return "".join(sender.split()) or "MAILER-DAEMON"


def mbox_stream(
    vault: Vault, rows: Iterable[MessageRow], lock: AbstractContextManager[object]
) -> Iterator[bytes]:
    """The mbox of ``rows``, one message's bytes at a time (each read under ``lock``)."""
    out = _MemoryMbox()
    for row in rows:
        try:
            with lock:
                data = vault.read_message(row.id)
        except IntegrityError:
            continue  # never send a damaged message as if it were good
        out.add(data, sender=mbox_sender(row), when=row.delivered)
        yield out.take()


def size_text(n: int) -> str:
    """``n`` bytes for people: 512 B, 3.4 KB, 12 MB."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"
