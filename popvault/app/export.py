"""Export use case: vault messages to mbox, Maildir or .eml (``popvault export``).

Every message is read back, authenticated and verified against its keyed id before it
is written; a damaged message is reported and skipped, never written. Transforms are
the writers' (docs/formats.md): mboxrd quoting and LF endings for mbox unless ``crlf``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Literal

from popvault.app.progress import NullProgress, Progress
from popvault.errors import IntegrityError
from popvault.mailboxes.eml import EmlWriter
from popvault.mailboxes.maildir import MaildirWriter
from popvault.mailboxes.mbox import MboxWriter
from popvault.mailboxes.message import MessageBytes
from popvault.vault import Filter, MessageRow, Vault

ExportFormat = Literal["mbox", "maildir", "eml"]
#: Messages larger than this are streamed from the vault to the writer.
STREAM_ABOVE = 16 << 20


@dataclass
class ExportReport:
    messages: int = 0
    bytes: int = 0
    failed: list[str] = field(default_factory=list)


def measure(rows: Iterable[MessageRow]) -> tuple[int, int]:
    """How many ``rows`` there are and their bytes, counted as they stream by (a listing
    is read twice rather than held: the count for the progress bar, then the work)."""
    count = size = 0
    for row in rows:
        count += 1
        size += row.size
    return count, size


def export_messages(
    vault: Vault,
    dest: str,
    fmt: ExportFormat,
    flt: Filter | None = None,
    *,
    crlf: bool = False,
    progress: Progress | None = None,
) -> ExportReport:
    """Write the matching messages to ``dest``. Damaged messages are listed in
    ``failed`` and not written. Files are complete and fsync'd on return."""
    progress = progress or NullProgress()
    count, size = measure(vault.messages(flt))
    progress.start(f"export to {fmt}:{dest}", count, size)
    rep = ExportReport()
    mbox = MboxWriter(dest, crlf=crlf) if fmt == "mbox" else None
    maildir = MaildirWriter(dest) if fmt == "maildir" else None
    eml = EmlWriter(dest) if fmt == "eml" else None
    try:
        for row in vault.messages(flt):  # streamed: a second pass over the cache
            # small messages are verified whole before writing; large ones stream
            # (every piece authenticated; a failing whole is removed again by the writer)
            data: MessageBytes = vault.iter_message(row.id) if row.size > STREAM_ABOVE else b""
            try:
                if row.size <= STREAM_ABOVE:
                    data = vault.read_message(row.id)
                when = row.delivered
                if mbox is not None:
                    sender = parseaddr(row.from_)[1] or "MAILER-DAEMON"
                    mbox.add(data, sender="".join(sender.split()) or "MAILER-DAEMON", when=when)
                elif maildir is not None:
                    maildir.add(data, flags=row.flags, when=when)
                elif eml is not None:
                    stamp = dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y%m%dT%H%M%S")
                    eml.add(data, f"{stamp}-{row.id.hex()[:16]}.eml")
            except IntegrityError as exc:
                rep.failed.append(f"{row.id.hex()[:16]}: {exc.message}")
                progress.warn(f"skipped damaged message {row.id.hex()[:16]}: {exc.message}")
                continue
            rep.messages += 1
            rep.bytes += row.size
            progress.advance(1, row.size)
    except BaseException:
        if mbox is not None:
            mbox.abort()
        raise
    if mbox is not None:
        mbox.close()
    progress.done()
    return rep
