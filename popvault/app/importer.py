"""Import use case: mbox, Maildir and .eml sources into the vault (``popvault import``).

Sources are checked before anything is added, so bad input leaves the vault as it was.
Messages are committed in batches; an unreadable file inside a Maildir is reported and
the rest continue (the run then ends as partial, exit 3).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from popvault.app.metadata import parse_metadata
from popvault.app.progress import NullProgress, Progress
from popvault.errors import MailboxFormatError, UsageError
from popvault.mailboxes.eml import read_eml
from popvault.mailboxes.maildir import read_maildir
from popvault.mailboxes.mbox import read_mbox
from popvault.mailboxes.message import SourceMessage
from popvault.vault.vault import SourceInfo, Vault

SourceKind = Literal["mbox", "maildir", "eml"]
BATCH_MESSAGES = 2000
BATCH_BYTES = 128 << 20


@dataclass
class ImportReport:
    messages: int = 0
    new: int = 0
    duplicates: int = 0
    bytes: int = 0
    commits: int = 0
    errors: list[str] = field(default_factory=list)


def detect(path: str) -> SourceKind:
    """What kind of mailbox ``path`` is; UsageError/MailboxFormatError if none."""
    p = Path(path)
    if p.is_dir():
        if (p / "cur").is_dir() or (p / "new").is_dir():
            return "maildir"
        return "eml"
    if not p.exists():
        raise UsageError(f"{path}: no such file or directory")
    if not p.is_file():
        # reading a FIFO or device would block or never end
        raise MailboxFormatError(f"{path} is not a regular file, a Maildir or a folder")
    try:
        with open(p, "rb") as f:
            head = f.read(5)
    except OSError as exc:
        raise MailboxFormatError(f"{path}: cannot read: {exc.strerror}") from None
    if head == b"From ":
        return "mbox"
    if p.suffix.lower() in (".mbox", ".mbx") or p.name.lower() in ("mbox", "inbox"):
        raise MailboxFormatError(
            f"{path} does not start with a 'From ' line: not an mbox",
            hint="import a single message as a .eml file instead",
        )
    return "eml"


def _read(
    path: str, kind: SourceKind, mbox_format: str, errors: list[str]
) -> Iterator[SourceMessage]:
    def on_error(file: str, exc: Exception) -> None:
        text = str(exc)
        errors.append(text if file in text else f"{file}: {text}")

    if kind == "mbox":
        fmt: Literal["auto", "mboxrd", "mboxo"] = (
            "mboxo" if mbox_format == "mboxo" else "mboxrd" if mbox_format == "mboxrd" else "auto"
        )
        return read_mbox(path, fmt)
    if kind == "maildir":
        return read_maildir(path, on_error=on_error)
    return read_eml(path, on_error=on_error)


def import_sources(
    vault: Vault,
    sources: Sequence[str],
    *,
    account: str = "import",
    mbox_format: str = "auto",
    progress: Progress | None = None,
) -> ImportReport:
    """Add every message of ``sources`` to the vault under ``account``; commits in batches.

    Durable on return: everything counted in the report is committed.
    """
    progress = progress or NullProgress()
    kinds = [(s, detect(s)) for s in sources]
    rep = ImportReport()
    batch_bytes = batch_messages = 0
    for path, kind in kinds:
        total = os.path.getsize(path) if kind == "mbox" else None
        progress.start(f"{kind}:{path}", None, total)
        for sm in _read(path, kind, mbox_format, rep.errors):
            w = vault.new_message()
            try:
                for piece in sm.chunks():
                    w.write(piece)
            except OSError as exc:
                rep.errors.append(f"{sm.source}: cannot read: {exc.strerror or exc}")
                continue
            res = w.finish(
                SourceInfo(
                    account=account,
                    source=sm.source,
                    flags=sm.flags,
                    file_time=sm.file_time,
                    from_line_time=sm.from_line_time,
                ),
                parse_metadata(w.head),
            )
            rep.messages += 1
            rep.bytes += res.size
            batch_bytes += res.size
            batch_messages += 1
            if res.new:
                rep.new += 1
            else:
                rep.duplicates += 1
            progress.advance(1, res.size)
            if batch_messages >= BATCH_MESSAGES or batch_bytes >= BATCH_BYTES:
                if vault.commit():
                    rep.commits += 1
                batch_bytes = batch_messages = 0
        progress.done()
    if vault.commit():
        rep.commits += 1
    return rep
