"""Import use case: mbox, Maildir and .eml sources into the vault (``popvault import``).

Sources are checked before anything is added, so bad input leaves the vault as it was:
what is not a mailbox or a message (a config file, a document) is refused unless the
caller forces it. Messages are committed in batches; an unreadable file inside a Maildir
is reported and the rest continue (the run then ends as partial, exit 3).

Re-importing an mbox that popvault exported finds the messages it came from: an mbox
message the vault does not hold as read is looked up again in the forms the export may
have changed (CRLF line endings turned into LF, a final line ending added), and when the
vault holds exactly one of those byte sequences, that is the message imported
(docs/formats.md, "Import").
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from popvault.app.fetch import PREPARE_MAX, PREPARE_MIN
from popvault.app.helper import Document, Preparer, slices
from popvault.app.helper import Result as PrepareResult
from popvault.app.indexing import Indexer
from popvault.app.metadata import parse_metadata
from popvault.app.progress import NullProgress, Progress
from popvault.errors import MailboxFormatError, UsageError
from popvault.mailboxes.eml import looks_like_message, read_eml, read_head
from popvault.mailboxes.maildir import read_maildir
from popvault.mailboxes.mbox import read_mbox
from popvault.mailboxes.message import SourceMessage
from popvault.vault import AddResult, SourceInfo, Vault, header_end

SourceKind = Literal["mbox", "maildir", "eml"]
BATCH_MESSAGES = 2000
BATCH_BYTES = 128 << 20
#: Bytes of small messages out at the helper process at a time (a backup allows 2 MiB):
#: enough for the helper to work ahead while this process commits (16 MiB cost 11 MB
#: more peak RSS for no measurable speed).
PENDING = 4 << 20


@dataclass
class ImportReport:
    messages: int = 0
    new: int = 0
    duplicates: int = 0
    bytes: int = 0
    commits: int = 0
    errors: list[str] = field(default_factory=list)


#: What ``import`` takes, for the error that refuses anything else.
EXPECTED = (
    "an mbox (a file starting with 'From '), a Maildir (a folder with cur/ and new/),"
    " a folder of .eml files, or one message (a file starting with header lines such as"
    " 'From: ...' and 'Subject: ...', then an empty line)"
)


def detect(path: str, *, force: bool = False) -> SourceKind:
    """What kind of mailbox ``path`` is; UsageError/MailboxFormatError if none.

    A file that is neither an mbox nor looks like a message (see
    :func:`popvault.mailboxes.eml.looks_like_message`), and a folder that is neither a
    Maildir nor holds any ``.eml`` file, raise MailboxFormatError (exit 1); with
    ``force`` such a file is taken as one message and such a folder as an empty one.
    """
    p = Path(path)
    if p.is_dir():
        if (p / "cur").is_dir() or (p / "new").is_dir():
            return "maildir"
        if not force and not any(
            f.suffix.lower() == ".eml" and not f.is_dir() for f in p.rglob("*")
        ):
            raise MailboxFormatError(
                f"{path} is neither a Maildir (no cur/ or new/) nor a folder of .eml files;"
                f" import takes {EXPECTED}"
            )
        return "eml"
    if not p.exists():
        raise UsageError(f"{path}: no such file or directory")
    if not p.is_file():
        # reading a FIFO or device would block or never end
        raise MailboxFormatError(f"{path} is not a regular file, a Maildir or a folder")
    try:
        head = read_head(p)
    except OSError as exc:
        raise MailboxFormatError(f"{path}: cannot read: {exc.strerror}") from None
    if head.startswith(b"From "):
        return "mbox"
    if p.suffix.lower() in (".mbox", ".mbx") or p.name.lower() in ("mbox", "inbox"):
        raise MailboxFormatError(
            f"{path} does not start with a 'From ' line: not an mbox",
            hint="import a single message as a .eml file instead",
        )
    if not force and not looks_like_message(head):
        raise MailboxFormatError(
            f"{path} is neither a mailbox nor an email message; import takes {EXPECTED}",
            hint="if it is a message all the same, add --force to import it as one",
        )
    return "eml"


def _read(
    vault: Vault, path: str, kind: SourceKind, mbox_format: str, errors: list[str]
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


#: Bytes of a message looked at for its Message-ID (header sections are smaller).
_HEAD = 256 << 10

#: A form an mbox message may have had before popvault's export: (CRLF line endings
#: put back, how many bytes of a final line ending the export added).
_Form = tuple[bool, int]


def _reformed(chunks: Iterable[bytes], crlf: bool, strip: int) -> Iterator[bytes]:
    """The bytes of ``chunks`` in a form: every LF as CRLF when ``crlf`` (each LF on its
    own, so chunk borders do not matter), minus the last ``strip`` bytes."""
    held = b""
    for chunk in chunks:
        buf = held + chunk
        cut = max(len(buf) - 2, 0)
        out, held = buf[:cut], buf[cut:]
        if out:
            yield out.replace(b"\n", b"\r\n") if crlf else out
    rest = held[: len(held) - strip]
    if rest:
        yield rest.replace(b"\n", b"\r\n") if crlf else rest


def _form_ids(vault: Vault, chunks: Iterable[bytes]) -> list[tuple[bytes, _Form]]:
    """The keyed ids of the forms of one mbox message, in order of preference, in one
    pass over its bytes (bounded memory for any size): as read; with CRLF put back; and
    without a final line ending the export may have added (``\r\n`` of ``--crlf``,
    ``\n`` of an LF export, itself from an LF or a CRLF message)."""
    plain, crlf = vault.hasher(), vault.hasher()
    held = b""
    for chunk in chunks:
        buf = held + chunk
        cut = max(len(buf) - 2, 0)
        out, held = buf[:cut], buf[cut:]
        plain.update(out)
        crlf.update(out.replace(b"\n", b"\r\n"))
    forms: list[_Form] = [(False, 0), (True, 0)]
    if held.endswith(b"\r\n"):
        forms.append((False, 2))
    if held.endswith(b"\n"):
        forms += [(False, 1), (True, 1)]
    ids: list[tuple[bytes, _Form]] = []
    for use_crlf, strip in forms:
        h = (crlf if use_crlf else plain).copy()
        rest = held[: len(held) - strip]
        h.update(rest.replace(b"\n", b"\r\n") if use_crlf else rest)
        ids.append((h.digest(), (use_crlf, strip)))
    return ids


def _as_before_export(
    vault: Vault, sm: SourceMessage, header: str | None = None, msg_id: bytes | None = None
) -> SourceMessage:
    """An mbox message as read, or, when the vault does not hold it so but holds one of
    its other forms (see :func:`_form_ids`), in that form: re-importing an mbox that
    popvault exported adds nothing new. Bytes the vault does not know in any form are
    imported exactly as read. Asked when the message is filed (everything read before it
    is then filed too); ``header`` (its Message-ID) and ``msg_id`` (its keyed id as read)
    when already known."""
    # a message popvault exported carries the Message-ID of the one it came from:
    # one with a Message-ID the vault does not know (new mail) is not worth hashing
    # in other forms (two more passes over its bytes)
    if header is None:
        head = sm.data if sm.stream is None else next(iter(sm.chunks()), b"")
        header = parse_metadata(head[:_HEAD]).message_id
    if header and not vault.has_message_id(header):
        return sm
    if sm.stream is None and vault.has_message(msg_id or vault.keyed_id(sm.data)):
        return sm
    ids = _form_ids(vault, sm.chunks())
    if vault.has_message(ids[0][0]):
        return sm
    form = next((f for mid, f in ids[1:] if vault.has_message(mid)), None)
    if form is None:
        return sm
    if sm.stream is None:
        return dataclasses.replace(sm, data=b"".join(_reformed([sm.data], *form)))
    return dataclasses.replace(sm, stream=functools.partial(_reformed_message, sm, form))


def _reformed_message(sm: SourceMessage, form: _Form) -> Iterator[bytes]:
    return _reformed(sm.chunks(), *form)


#: A message as filed, its outcome, and its index document when its preparing made one.
Filed = tuple[SourceMessage, AddResult, Document | None]


class _Filer:
    """Files messages into the vault in the order read, preparing them (splitting,
    keyed ids, metadata) off the main thread when that pays, as a backup does
    (:class:`~popvault.app.helper.Preparer`): small messages in a helper process once
    :data:`PREPARE_MIN` have been read, larger ones held whole in a thread of this
    process. Messages read in pieces (large files) are written directly, after what was
    handed off. Same ids, pieces and metadata either way."""

    def __init__(self, vault: Vault, account: str, errors: list[str], indexer: Indexer) -> None:
        self.vault = vault
        self.indexer = indexer  # its work: documents are made with the rest
        self.account = account
        self.errors = errors
        self.read = 0
        self.spare_cpu = (os.cpu_count() or 1) >= 2
        self.preparer: Preparer[SourceMessage] | None = None
        self.reform = False

    def start(self, kind: SourceKind) -> None:
        """Before a source's messages: those of an mbox are filed as they were before an
        export when the vault holds that form (:func:`_as_before_export`), unless the
        vault is empty (it then holds no message exported from it)."""
        self.reform = kind == "mbox" and bool(self.vault.commit_names())

    def add(self, sm: SourceMessage) -> Iterator[Filed]:
        """File ``sm`` (now or later); yields the messages filed meanwhile, in order,
        each as filed (another form of an mbox message, see :meth:`start`), with the
        index document its preparing made (or None)."""
        self.read += 1
        if sm.path is None and sm.stream is None and self.spare_cpu:
            small = len(sm.data) <= PREPARE_MAX
            if not small or self.read > PREPARE_MIN:
                if self.preparer is None:
                    self.preparer = Preparer(
                        self.vault.helper_key(),
                        max_pending=PENDING,
                        work=self.indexer.work,
                        processes=self.indexer.processes,
                    )
                if small:
                    self.preparer.submit(sm.data, sm)
                else:
                    self.preparer.submit_local(sm.data, sm)
                yield from self._file_all(self.preparer.ready())
                return
        yield from self.drain()
        yield from self._write(_as_before_export(self.vault, sm) if self.reform else sm)

    def drain(self) -> Iterator[Filed]:
        """File everything handed off so far."""
        if self.preparer is not None:
            yield from self._file_all(self.preparer.ready(wait=True))

    def _file_all(
        self, ready: Iterator[tuple[bytes, SourceMessage, PrepareResult | None]]
    ) -> Iterator[Filed]:
        """File what the preparer gave back, the ids of each slice looked up in one query."""
        for done in slices(ready):
            self.vault.prefetch([r[0].msg_id for _, _, r in done if r is not None])
            for data, tag, result in done:
                yield from self._file(data, tag, result)

    def _source(self, sm: SourceMessage) -> SourceInfo:
        return SourceInfo(
            account=self.account,
            source=sm.source,
            flags=sm.flags,
            file_time=sm.file_time,
            from_line_time=sm.from_line_time,
        )

    def _file(
        self, data: bytes, sm: SourceMessage, result: PrepareResult | None
    ) -> Iterator[Filed]:
        if self.reform:  # the Message-ID and id as read, from the helper when it has them
            header = result[1].message_id if result and header_end(data, _HEAD) >= 0 else None
            was = _as_before_export(self.vault, sm, header, result[0].msg_id if result else None)
            if was is not sm:
                yield from self._write(was)
                return
        if result is None:  # the helper failed: the ordinary way, same outcome
            yield sm, self.vault.add_message(data, self._source(sm), parse_metadata(data)), None
        else:
            res = self.vault.add_prepared(data, result[0], self._source(sm), result[1])
            yield sm, res, result[2]

    def _write(self, sm: SourceMessage) -> Iterator[Filed]:
        w = self.vault.new_message()
        try:
            for piece in sm.chunks():
                w.write(piece)
        except OSError as exc:
            self.errors.append(f"{sm.source}: cannot read: {exc.strerror or exc}")
            return
        yield sm, w.finish(self._source(sm), parse_metadata(w.head)), None

    def __enter__(self) -> _Filer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.preparer is not None:
            self.preparer.close()


def import_sources(
    vault: Vault,
    sources: Sequence[str],
    *,
    account: str = "import",
    mbox_format: str = "auto",
    force: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Add every message of ``sources`` to the vault under ``account``; commits in batches.

    Every source is checked first (:func:`detect`; ``force`` takes files that do not
    look like messages too). Durable on return: everything counted in the report is
    committed.
    """
    progress = progress or NullProgress()
    kinds = [(s, detect(s, force=force)) for s in sources]
    rep = ImportReport()
    with Indexer(vault) as indexer, _Filer(vault, account, rep.errors, indexer) as filer:
        batch = [0, 0]  # messages and bytes since the last commit

        def filed(sm: SourceMessage, res: AddResult, doc: Document | None) -> None:
            rep.messages += 1
            rep.bytes += res.size
            batch[0] += 1
            batch[1] += res.size
            if res.new:
                rep.new += 1
                if sm.stream is None:
                    indexer.add(res.msg_id, sm.data, doc)
            else:
                rep.duplicates += 1
            progress.advance(1, res.size)
            if batch[0] >= BATCH_MESSAGES or batch[1] >= BATCH_BYTES:
                if vault.commit():
                    rep.commits += 1
                indexer.committed()
                batch[:] = [0, 0]

        for path, kind in kinds:
            total = os.path.getsize(path) if kind == "mbox" else None
            progress.start(f"{kind}:{path}", None, total)
            filer.start(kind)
            for sm in _read(vault, path, kind, mbox_format, rep.errors):
                for done in filer.add(sm):
                    filed(*done)
            for done in filer.drain():
                filed(*done)
            progress.done()
        if vault.commit():
            rep.commits += 1
        indexer.committed(last=True)
    return rep
