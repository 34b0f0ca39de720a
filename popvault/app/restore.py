"""Restore use case: archived mail back into an IMAP folder or a Maildir (``popvault restore``).

Targets: ``imaps://USER@HOST[:PORT]/FOLDER`` and ``imap://...`` (STARTTLS unless
``?tls=none``), ``maildir:PATH``, and the export shortcuts ``mbox:PATH`` / ``eml:DIR``.
Restores are idempotent and resumable: what was restored where is recorded in the vault
(records ``rst``), and before appending, the target itself is consulted: for IMAP the
header section and size of every message already in the folder, for a Maildir the keyed
id of every file in it. So a restore killed at any moment finishes, when run again,
with each message in the target exactly once.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from popvault.app.export import STREAM_ABOVE, export_messages, measure
from popvault.app.progress import NullProgress, Progress
from popvault.errors import IntegrityError, UsageError, shown_url
from popvault.imap import (
    AppendItem,
    ImapClient,
    ImapSettings,
    maildir_flags_to_imap,
    parse_imap_url,
)
from popvault.mailboxes.maildir import MaildirWriter, read_maildir
from popvault.mailboxes.message import MessageBytes
from popvault.vault import Filter, MessageRow, Vault, header_end

DateFrom = Literal["auto", "received", "header", "archived"]
BATCH = 2000
#: Known per-message size limits of big providers (bytes), checked before APPEND.
PROVIDER_LIMITS: dict[str, tuple[str, int]] = {
    "imap.gmail.com": ("Gmail", 25 * 1024 * 1024),
    "imap.googlemail.com": ("Gmail", 25 * 1024 * 1024),
    "outlook.office365.com": ("Microsoft 365", 35 * 1024 * 1024),
    "imap-mail.outlook.com": ("Outlook.com", 35 * 1024 * 1024),
}


@dataclass
class RestoreReport:
    target: str
    selected: int = 0
    restored: int = 0
    already: int = 0
    would_restore: int = 0
    bytes: int = 0
    failed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def internaldate(row: MessageRow, date_from: DateFrom) -> float:
    """When the message reached its original mailbox (issue: INTERNALDATE fallbacks)."""
    if date_from == "received":
        order = [row.received, row.file_time, row.date, row.first_archived]
    elif date_from == "header":
        order = [row.date, row.received, row.file_time, row.first_archived]
    elif date_from == "archived":
        order = [row.first_archived]
    else:
        order = [row.received, row.file_time, row.date, row.first_archived]
    return next(t for t in order if t is not None)


def to_crlf(data: bytes) -> bytes:
    """IMAP wants CRLF line ends: bare LF becomes CRLF; everything else is kept."""
    if b"\n" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def crlf_pieces(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """:func:`to_crlf` over a message in pieces (a CRLF may be cut between two)."""
    prev_cr = False
    for piece in pieces:
        if not piece:
            continue
        out = to_crlf(piece)
        if prev_cr and piece.startswith(b"\n"):
            out = out[1:]  # this LF ends a CRLF cut between pieces: it gets no CR
        prev_cr = piece.endswith(b"\r")
        yield out


#: How far into a streamed message its header section is looked for.
HEAD_SCAN_LIMIT = 4 << 20

_CRS_LF = re.compile(rb"\r+\n")
_CR_BEFORE_CRLF = re.compile(rb"\r(?=\r\n)")


def _head_hash(head: bytes) -> str:
    """Hash of a header section in the form both sides are compared in: trailing line
    ends cut, any run of CRs before an LF read as one CR, NUL read as 0x80. Those are
    the changes a server is seen to make to stored mail (Dovecot keeps mail with LF line
    ends, so a CR right before a CRLF is lost, and shows NUL as 0x80 in a FETCH)."""
    canon = _CRS_LF.sub(b"\r\n", head.rstrip(b"\r\n")).replace(b"\0", b"\x80")
    return hashlib.sha256(canon).hexdigest()


def server_key(size: int, head: bytes) -> tuple[int, str]:
    """The key of a message on the server, from its RFC822.SIZE and BODY[HEADER]."""
    return size, _head_hash(head)


def header_keys(crlf_data: bytes) -> set[tuple[int, str]]:
    """The keys under which ``crlf_data`` (as APPENDed) may be listed on the server (see
    :func:`server_key`): its own size, or its size without the CRs a server that stores
    LF line ends drops (one before each CRLF, and one at the very end)."""
    end = header_end(crlf_data)
    head = _head_hash(crlf_data[:end] if end > 0 else crlf_data)
    dropped = len(_CR_BEFORE_CRLF.findall(crlf_data)) + crlf_data.endswith(b"\r")
    return {(len(crlf_data), head), (len(crlf_data) - dropped, head)}


def header_keys_streamed(pieces: Iterable[bytes]) -> tuple[set[tuple[int, str]], int] | None:
    """:func:`header_keys` of a message given in IMAP form in pieces, and its size;
    bounded memory.

    ``None`` when no header section ends within :data:`HEAD_SCAN_LIMIT` bytes (the
    caller then takes the message whole)."""
    size = dropped = 0
    head: bytes | None = None
    start = bytearray()
    carry = b""  # the last two bytes so far: a CR CR LF may be cut between pieces
    for piece in pieces:
        size += len(piece)
        dropped += len(_CR_BEFORE_CRLF.findall(carry + piece))
        carry = (carry + piece)[-2:]
        if head is None:
            start += piece
            end = header_end(bytes(start))
            if end > 0:
                head = bytes(start[:end])
                start = bytearray()
            elif len(start) > HEAD_SCAN_LIMIT:
                return None
    if head is None:
        head = bytes(start)
    dropped += carry.endswith(b"\r")
    key = _head_hash(head)
    return {(size, key), (size - dropped, key)}, size


def restore(
    vault: Vault,
    target: str,
    flt: Filter | None = None,
    *,
    password: Callable[[], str] | None = None,
    tls_ca_file: str | None = None,
    tls_fingerprint: str | None = None,
    date_from: DateFrom = "auto",
    dry_run: bool = False,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> RestoreReport:
    """Restore matching messages to ``target``; returns a report (failures listed in it).

    Raises for whole-target failures (login refused, network); a message the server
    refuses is reported and the rest continue.
    """
    progress = progress or NullProgress()
    if target.startswith(("imap://", "imaps://")):
        if password is None:
            raise UsageError("an IMAP password is needed")
        return _restore_imap(
            vault,
            target,
            flt,
            password,
            tls_ca_file,
            tls_fingerprint,
            date_from,
            dry_run,
            progress,
            timeout,
        )
    kind, sep, path = target.partition(":")
    if not sep or not path:
        raise UsageError(
            f"unknown restore target {shown_url(target)!r}",
            hint="use imaps://USER@HOST/FOLDER, imap://..., maildir:PATH, mbox:PATH or eml:DIR",
        )
    if kind == "maildir":
        return _restore_maildir(vault, path, flt, dry_run, progress)
    if kind in ("mbox", "eml"):
        rep = RestoreReport(target=target)
        rep.selected, _ = measure(vault.messages(flt))
        if dry_run:
            rep.would_restore = rep.selected
            return rep
        ex = export_messages(vault, path, kind, flt, progress=progress)  # type: ignore[arg-type]
        rep.restored, rep.bytes, rep.failed = ex.messages, ex.bytes, ex.failed
        return rep
    raise UsageError(
        f"unknown restore target kind {kind!r}",
        hint="use imaps://, imap://, maildir:, mbox: or eml:",
    )


def _commit(vault: Vault, dry_run: bool) -> None:
    if not dry_run:
        vault.commit()


def _restore_maildir(
    vault: Vault, path: str, flt: Filter | None, dry_run: bool, progress: Progress
) -> RestoreReport:
    target_id = f"maildir:{os.path.abspath(path)}"
    rep = RestoreReport(target=target_id)
    present: set[bytes] = set()
    if Path(path, "cur").is_dir() or Path(path, "new").is_dir():
        for sm in read_maildir(path, on_error=lambda f, e: rep.failed.append(f"{f}: {e}")):
            h = vault.hasher()
            try:
                for piece in sm.chunks():  # a large file is streamed, not held whole
                    h.update(piece)
            except OSError as exc:
                rep.failed.append(f"{sm.source}: {exc.strerror or exc}")
                continue
            present.add(h.digest())
    # the listing is streamed twice (counted, then restored), never held
    rep.selected, _ = measure(vault.messages(flt))
    count, size = measure(r for r in vault.messages(flt) if r.id not in present)
    rep.already = rep.selected - count
    if dry_run:
        rep.would_restore = count
        return rep
    writer = MaildirWriter(path)
    progress.start(target_id, count, size)
    for row in vault.messages(flt):
        if row.id in present:
            continue
        try:
            # large messages stream (each piece authenticated; a failing whole is
            # removed again by the writer), small ones are verified whole first
            data: MessageBytes = (
                vault.iter_message(row.id)
                if row.size > STREAM_ABOVE
                else vault.read_message(row.id)
            )
            writer.add(data, flags=row.flags, when=row.delivered)
        except IntegrityError as exc:
            rep.failed.append(f"{row.id.hex()[:16]}: {exc.message}")
            continue
        vault.record_restore(target_id, row.id, None)
        rep.restored += 1
        rep.bytes += row.size
        progress.advance(1, row.size)
        if vault.pending >= BATCH:
            _commit(vault, dry_run)
    _commit(vault, dry_run)
    progress.done()
    return rep


def _restore_imap(
    vault: Vault,
    target: str,
    flt: Filter | None,
    password: Callable[[], str],
    tls_ca_file: str | None,
    tls_fingerprint: str | None,
    date_from: DateFrom,
    dry_run: bool,
    progress: Progress,
    timeout: float,
) -> RestoreReport:
    t = parse_imap_url(target)
    port = t.port or (993 if t.tls == "implicit" else 143)
    target_id = f"imap://{t.user}@{t.host.lower()}:{port}/{t.folder}"
    rep = RestoreReport(target=target_id)
    done = vault.restored(target_id)

    def pending() -> Iterator[MessageRow]:
        """The selected messages not recorded as restored there: a stream each call."""
        return (r for r in vault.messages(flt) if r.id not in done)

    rep.selected, _ = measure(vault.messages(flt))
    rep.already = rep.selected - measure(pending())[0]
    settings: ImapSettings = t.settings(
        password(), tls_ca_file=tls_ca_file, tls_fingerprint=tls_fingerprint, timeout=timeout
    )
    with ImapClient.connect(settings) as client:
        folder = _server_folder(client, t.folder)
        if not client.folder_exists(folder):
            if dry_run:
                rep.would_restore = rep.selected - rep.already
                return rep
            client.create_folder(folder)
        present = {server_key(size, head) for _uid, size, head in client.uid_fetch_headers(folder)}
        limit = _size_limit(client, t.host)
        count, nbytes = _within_limit(pending(), limit, rep)
        todo = (r for r in pending() if not _over(r, limit))
        if dry_run:
            _count_dry_run(vault, todo, present, rep)
            return rep
        progress.start(target_id, count, nbytes)
        _append_all(vault, client, folder, target_id, todo, present, date_from, rep, progress)
        progress.done()
    return rep


def _over(row: MessageRow, limit: tuple[str, int] | None) -> bool:
    return bool(row.size) and limit is not None and row.size > limit[1]


def _within_limit(
    rows: Iterable[MessageRow], limit: tuple[str, int] | None, rep: RestoreReport
) -> tuple[int, int]:
    """How many of ``rows`` the server takes, and their bytes; those over its size limit
    are failures."""
    count = size = 0
    for row in rows:
        if limit is not None and _over(row, limit):
            rep.failed.append(
                f"{row.id.hex()[:16]}: {row.size} bytes is over {limit[0]}'s limit of"
                f" {limit[1]} bytes; not restored"
            )
            continue
        count += 1
        size += row.size
    return count, size


def _count_dry_run(
    vault: Vault, todo: Iterable[MessageRow], present: set[tuple[int, str]], rep: RestoreReport
) -> None:
    """Count what a real run would append: it skips what the folder scan finds."""
    if not present:
        rep.would_restore = sum(1 for _ in todo)
        return
    for row in todo:
        try:
            keys, _ = _imap_form(vault, row)
        except IntegrityError as exc:
            rep.failed.append(f"{row.id.hex()[:16]}: {exc.message}")
            continue
        if keys.isdisjoint(present):
            rep.would_restore += 1
        else:
            rep.already += 1


def _append_all(
    vault: Vault,
    client: ImapClient,
    folder: str,
    target_id: str,
    todo: Iterable[MessageRow],
    present: set[tuple[int, str]],
    date_from: DateFrom,
    rep: RestoreReport,
    progress: Progress,
) -> None:
    """APPEND (in batches, pipelined) what the folder does not hold yet; record each
    message restored, commit in batches."""
    queue: list[tuple[MessageRow, int]] = []

    def items() -> Any:
        for row in todo:
            try:
                keys, item = _imap_form(vault, row)
            except IntegrityError as exc:
                rep.failed.append(f"{row.id.hex()[:16]}: {exc.message}")
                continue
            if not keys.isdisjoint(present):
                vault.record_restore(target_id, row.id, None)
                rep.already += 1
                continue
            queue.append((row, item.size))
            yield replace(
                item,
                flags=maildir_flags_to_imap(row.flags),
                internaldate=internaldate(row, date_from),
            )

    full = False
    for outcome in client.append_batches(folder, items()):
        row, size = queue.pop(0)
        if outcome.error is not None:
            rep.failed.append(f"{row.id.hex()[:16]}: {outcome.error.message}")
            if outcome.error.code == "OVERQUOTA" and not full:
                full = True
                progress.warn(f"{target_id}: the target is full ({outcome.error.server_text})")
            continue
        vault.record_restore(target_id, row.id, outcome.uid)
        rep.restored += 1
        rep.bytes += size
        progress.advance(1, size)
        if vault.pending >= BATCH:
            _commit(vault, False)
    _commit(vault, False)


def _imap_form(vault: Vault, row: MessageRow) -> tuple[set[tuple[int, str]], AppendItem]:
    """The keys under which ``row`` may be listed on the server, and its bytes as IMAP
    wants them: whole for a small message, streamed from the vault (read twice, each
    piece authenticated) for one over ``STREAM_ABOVE``. Raises IntegrityError."""
    if row.size > STREAM_ABOVE:
        scan = header_keys_streamed(crlf_pieces(vault.iter_message(row.id)))
        if scan is not None:
            keys, size = scan
            msg_id = row.id

            def pieces() -> Iterator[bytes]:
                return crlf_pieces(vault.iter_message(msg_id))

            return keys, AppendItem(b"", stream=pieces, stream_size=size)
    data = to_crlf(vault.read_message(row.id))
    return header_keys(data), AppendItem(data)


def _server_folder(client: ImapClient, folder: str) -> str:
    """Folder path as the server spells it: '/' in the URL becomes its delimiter."""
    if "/" not in folder:
        return folder
    delim = client.hierarchy_delimiter()
    return folder.replace("/", delim) if delim else folder


def _size_limit(client: ImapClient, host: str) -> tuple[str, int] | None:
    for cap in client.capabilities:
        if cap.upper().startswith("APPENDLIMIT="):
            try:
                return ("the server", int(cap.split("=", 1)[1]))
            except ValueError:
                pass
    return PROVIDER_LIMITS.get(host.lower())


__all__ = ["DateFrom", "RestoreReport", "restore"]
