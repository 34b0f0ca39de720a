"""Copying a vault to another location: ``popvault copy DEST`` (format §8.8).

A copy is the same vault (same id, same key slots, the very same objects under the same
names) at another place: a local folder or an S3 location, either way. It is
incremental: both sides are listed, and only what the destination lacks is read from
the source, verified (the SHA-256 that names a pack, segment or commit record, and the
keys: a pack's trailer and layout, a segment's and a commit record's authentication, a
key slot's and ``config``'s checksum) and put. Nothing is ever deleted on either side,
so the copy works under an append-only bucket policy.

Ordering makes a destination interrupted at any instant (kill -9) a valid vault, older
perhaps: key slots, then ``config`` (when the copy is new), then for each commit the
destination lacks, in sequence order, its packs, then its segments, and only then its
commit record and the claim of its number. A rerun resumes: what is there is skipped.
Only packs and segments that commits name are copied (unnamed ones of the source are an
interrupted run's work, which its next writer adopts and commits). The destination's
writer lock (or lease) is held while writing; the source is only read.

A destination with commits the source lacks (one side rolled back, or both written to)
is refused (IntegrityError, exit 20) naming them; so is a source whose own opening found
lost commits. A destination holding another vault or anything that is not a vault is
refused (UsageError, exit 2) before anything is written.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from popvault import interrupts
from popvault.errors import IntegrityError, UsageError, VaultNotFound
from popvault.vault import lock as lockmod
from popvault.vault.anchor import Anchor
from popvault.vault.backend import Backend, LocalBackend, MemoryBackend, ObjectNotFound
from popvault.vault.config import as_backend, check_new_location, read_vault_config
from popvault.vault.crypto import MasterKeys, parse_checksum_json
from popvault.vault.pack import HEADER_SIZE, pack_object_name
from popvault.vault.reader import Reader
from popvault.vault.records import CommitRecord
from popvault.vault.segments import CommitLog, claim_name, short_name

#: Objects read and verified at the same time, and put at the same time unless the
#: destination says (bounded memory: a pack is ~8 MiB).
CONCURRENCY = 4
#: Names (top-level entries) an unfinished copy may have left at a destination that
#: has no ``config`` yet: key slots, the writer lock, writer leases.
_LEFTOVERS = ("keys", "lock", "locks")

T = TypeVar("T")


class CopyProgress(Protocol):
    """What a copy reports its progress to (app.progress.Progress has these)."""

    def start(self, label: str, total: int | None = None, total_bytes: int | None = None) -> None:
        """A new phase with its total of objects."""

    def advance(self, messages: int = 1, nbytes: int = 0) -> None:
        """``messages`` more objects (or commits read) done."""

    def done(self) -> None:
        """The phase ended."""


@dataclass
class CopyReport:
    """What a copy did. ``objects``/``bytes``: copied (``kinds``: by folder);
    ``skipped``: objects the destination already had (its commit records and key
    slots, and packs and segments of copied commits that an interrupted copy had put)."""

    destination: str
    vault_id: str
    created: bool = False
    bucket_created: bool = False
    upgraded: bool = False
    commits: int = 0
    objects: int = 0
    bytes: int = 0
    skipped: int = 0
    commits_present: int = 0
    newest: str | None = None
    kinds: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "vault_id": self.vault_id,
            "created": self.created,
            "bucket_created": self.bucket_created,
            "upgraded": self.upgraded,
            "commits_copied": self.commits,
            "commits_present": self.commits_present,
            "objects_copied": self.objects,
            "bytes_copied": self.bytes,
            "objects_skipped": self.skipped,
            "copied": dict(sorted(self.kinds.items())),
            "newest_commit": self.newest,
        }


@dataclass(frozen=True)
class Source:
    """The open source vault's parts a copy needs (handed over by Vault.copy_to)."""

    backend: Backend
    keys: MasterKeys
    vault_id: str
    log: CommitLog
    reader: Reader
    location: str
    damage: Sequence[str]
    state_dir: Path | None


def copy_vault(
    src: Source,
    where: Path | str | Backend,
    *,
    progress: CopyProgress | None = None,
    warn: Callable[[str], None] = lambda _m: None,
    command: str = "popvault copy",
) -> CopyReport:
    """Copy the vault ``src`` to ``where`` (see the module doc); returns what was done.

    Durable on return: every object put. Safe to retry and to interrupt at any point.
    Raises UsageError (2) for a destination that is another vault, not a vault, or the
    source itself; IntegrityError (20) for diverged commits, a damaged source or an
    object that fails verification; VaultLocked (11) when the destination has a writer;
    the backends' errors (75, 77, 10) as they come."""
    if src.damage:
        raise IntegrityError(
            f"refusing to copy this vault: {src.damage[0]}",
            hint="nothing was copied; run 'popvault check', then 'popvault repair'",
        )
    dest, label = as_backend(where)
    from popvault.vault.vault import location_of  # vault.py imports this module: late

    location = location_of(dest, label)
    if location == src.location:
        raise UsageError(f"{label} is the vault itself", hint="name another location to copy to")
    report = CopyReport(label, src.vault_id)
    src_keys = src.backend.list("keys")
    creating = _prepare(src, src_keys, dest, label, report)
    with interrupts.critical():  # a lock taken is a lock released below
        held = lockmod.acquire(dest, command, warn)
    try:
        dest.cleanup_temporary()
        _Copier(src, dest, label, report, progress).run(src_keys, creating=creating)
    finally:
        with interrupts.critical():
            held.release()
    anchor = Anchor(src.vault_id, location, src.state_dir)
    try:
        if report.newest is not None:
            anchor.advance(report.newest)
        anchor.remember_location()
    except OSError as exc:
        warn(f"cannot record what this machine has seen of the copy: {exc}")
    return report


def _prepare(src: Source, src_keys: list[str], dest: Backend, label: str, rep: CopyReport) -> bool:
    """Look at the destination before writing: True when the vault is to be created
    there (the location made ready: folder or bucket), False when it holds this vault.
    Refuses another vault and anything that is not a vault (nothing written)."""
    try:
        dest.get("config")
    except ObjectNotFound:
        pass
    except VaultNotFound:  # an S3 bucket that does not exist yet
        return _make_location(dest, label, rep)
    else:
        conf = read_vault_config(dest, label)
        if conf.id != src.vault_id:
            raise UsageError(
                f"{label} holds another vault ({conf.id}), not a copy of this one"
                f" ({src.vault_id}); nothing was copied",
                hint="copy to a new location, or give the right source with --vault",
            )
        return False
    found = _names_at(dest, label)
    if found is None or not found:
        return _make_location(dest, label, rep)
    ours = set(src_keys)
    foreign = [n for n in found if n.split("/", 1)[0] not in _LEFTOVERS]
    foreign += [n for n in found if n.startswith("keys/") and n not in ours]
    foreign += [n for n in found if n in ours and dest.get(n) != src.backend.get(n)]
    if foreign:
        raise UsageError(
            f"{label} holds objects that are not a vault ({foreign[0]}); nothing was copied",
            hint="copy to a new folder or an empty prefix: s3://BUCKET/PREFIX",
        )
    rep.created = True  # a copy interrupted before its config: carry on creating it
    return True


def _names_at(dest: Backend, label: str) -> list[str] | None:
    """Every object at a location without a config (None: an S3 bucket that does not
    exist). Local folders are looked at directly (the backend lists folders only)."""
    if isinstance(dest, LocalBackend):
        root = dest.root
        if not root.exists():
            return []
        if not root.is_dir():
            raise UsageError(f"{label} exists and is not a folder; nothing was copied")
        out: list[str] = []
        for entry in sorted(os.listdir(root)):
            if not entry.startswith("."):
                out += dest.list(entry) if (root / entry).is_dir() else [entry]
        return out
    try:
        return dest.list("")
    except VaultNotFound:
        return None


def _make_location(dest: Backend, label: str, rep: CopyReport) -> bool:
    """Make an empty location ready for a new copy: a local folder (its parent must
    exist, as for ``init``), an S3 bucket created if missing (and a prefix checked to be
    empty, conditional writes probed)."""
    if isinstance(dest, LocalBackend):
        parent = dest.root.absolute().parent
        if not parent.is_dir():
            raise UsageError(
                f"cannot create the copy {label}: its parent folder {parent} does not exist",
                hint="is a disk not mounted? create the parent folder first",
            )
        dest.root.mkdir(mode=0o700, exist_ok=True)
    else:
        check_new_location(dest, label)
        rep.bucket_created = bool(getattr(dest, "bucket_created", False))
    rep.created = True
    return True


class _Copier:
    """The writing part of a copy, under the destination's lock."""

    def __init__(
        self,
        src: Source,
        dest: Backend,
        label: str,
        report: CopyReport,
        progress: CopyProgress | None,
    ) -> None:
        self.src = src
        self.dest = dest
        self.label = label
        self.report = report
        self.progress = progress
        self._count = threading.Lock()
        #: Puts at once: an S3 destination's ``upload_concurrency``, else CONCURRENCY.
        self.uploads = int(getattr(dest, "upload_concurrency", None) or CONCURRENCY)

    def run(self, src_keys: list[str], *, creating: bool) -> None:
        src_names = self.src.log.names()
        dest_names = set(self.dest.list("commits"))
        self._refuse_diverged(src_names, dest_names)
        self._keys_and_config(src_keys, creating)
        todo = [n for n in src_names if n not in dest_names]
        self.report.commits_present = len(src_names) - len(todo)
        self.report.skipped += self.report.commits_present
        if src_names:
            self.report.newest = short_name(src_names[-1])
        claims = self._claims_to_copy(src_names)
        going = set(todo)
        for record in [r for r in claims if r not in going]:  # cut between record and claim
            self._put(claims.pop(record), short_name(record).encode())
        if not todo:
            return
        have = set(self.dest.list("packs")) | set(self.dest.list("index"))
        with (
            ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="copy-get") as gets,
            ThreadPoolExecutor(self.uploads, thread_name_prefix="copy-put") as puts,
        ):
            self._start("reading commits", len(todo))
            records = dict(zip(todo, self._each(gets, self._read_commit, todo), strict=True))
            objects = {
                n: [o for o in _objects(r) if o not in have] for n, (r, _d) in records.items()
            }
            self.report.skipped += sum(len(_objects(r)) for r, _d in records.values())
            self.report.skipped -= sum(len(objs) for objs in objects.values())
            self._start("copying", sum(len(objs) for objs in objects.values()) + len(todo))
            # read (and verified) ahead while earlier objects are put
            ahead = _ReadAhead(
                gets,
                self._fetch,
                [o for n in todo for o in objects[n]],
                window=self.uploads + CONCURRENCY,
            )
            try:
                for name in todo:
                    # packs before the segments that list their blobs, segments before
                    # the record that names them, and nothing of a commit before the
                    # record of the one before it: an unnamed pack at the destination is
                    # always the next commit's, as an interrupted writer leaves it
                    # (format §8.4, §8.8)
                    for folder in ("packs/", "index/"):
                        part = [o for o in objects[name] if o.startswith(folder)]
                        self._put_all(puts, ahead, part)
                    self._put(name, records[name][1])
                    if name in claims:
                        self._put(claims.pop(name), short_name(name).encode())
                    self.report.commits += 1
            finally:
                ahead.cancel()
        self._done()

    def _claims_to_copy(self, src_names: list[str]) -> dict[str, str]:
        """Record -> its number's claim (format §8.1.1): the source's claims that the
        destination lacks, each put right after its record (or at once, for a record an
        interrupted copy put without it). A source claim is read only when it is new."""
        src_claims = set(self.src.backend.list("claims"))
        dest_claims = set(self.dest.list("claims"))
        out: dict[str, str] = {}
        for name in src_names:
            seq = int(short_name(name)[:10])
            claim = claim_name(seq)
            if claim in src_claims and claim not in dest_claims:
                if self.src.log.claimed(seq) == name:
                    out[name] = claim
        return out

    # ---------------------------------------------------------------- checks

    def _refuse_diverged(self, src_names: list[str], dest_names: set[str]) -> None:
        extra = sorted(dest_names - set(src_names))
        if not extra:
            return
        shown = ", ".join(short_name(n)[:23] for n in extra[:3])
        more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
        newest = short_name(src_names[-1])[:10].lstrip("0") if src_names else "none"
        raise IntegrityError(
            f"{self.label} has {len(extra)} commit(s) this vault lacks ({shown}{more};"
            f" the newest commit here is {newest}): one side was rolled back, or both"
            " were written to; nothing was copied",
            hint=f"find out which side is right ('popvault --vault {self.label} check');"
            " copy to a new location, or from the side that has every commit",
        )

    def _keys_and_config(self, src_keys: list[str], creating: bool) -> None:
        """Key slots first, then (new copy) ``config``: until ``config`` is there the
        destination is no vault, never a vault without keys. A destination of an older
        format version gets the source's ``config`` (an upgrade, format §4.5) before any
        pack of the newer version."""
        dest_keys = set(self.dest.list("keys"))
        for name in src_keys:
            if name in dest_keys:
                self.report.skipped += 1
            else:
                self._copy(name)
        if creating:
            self._copy("config")
        elif read_vault_config(self.dest, self.label).version < self.src.reader.version:
            self._copy("config")
            self.report.upgraded = True

    # ---------------------------------------------------------------- copying

    def _each(self, pool: ThreadPoolExecutor, fn: Callable[[str], T], names: list[str]) -> list[T]:
        """``fn`` of every name, a few at a time, in order; progress as each finishes.
        The first failure cancels what has not started and is raised."""
        futures = [pool.submit(fn, n) for n in names]
        try:
            for fut in as_completed(futures):
                fut.result()
                self._advance()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return [f.result() for f in futures]

    def _read_commit(self, name: str) -> tuple[CommitRecord, bytes]:
        """A commit record to copy, verified, with its bytes (put after its objects)."""
        data = self.src.backend.get(name)
        return _scratch(self.src, name, data, lambda log: log.read_commit(name)), data

    def _copy(self, name: str) -> None:
        """Read ``name`` from the source, verify it, put it."""
        self._put(name, self._fetch(name))

    def _fetch(self, name: str) -> bytes:
        """``name`` read from the source and verified (as its folder says). Thread-safe."""
        data = self.src.backend.get(name)
        folder = name.split("/", 1)[0]
        if folder == "packs":
            self._verify_pack(name, data)
        elif folder == "index":
            self._verify_segment(name, data)
        elif folder == "keys":
            _verify_key_slot(name, data)
        elif name == "config":
            self._verify_config(name, data)
        else:
            raise ValueError(f"not an object a copy reads: {name}")
        return data

    def _put_all(self, pool: ThreadPoolExecutor, ahead: _ReadAhead, names: list[str]) -> None:
        """Put ``names`` (taken from ``ahead`` in order), :attr:`uploads` at a time;
        returns when all are durable. The first failure is raised once the puts under
        way have ended (what they wrote is an unnamed object of the next commit)."""
        inflight: deque[Future[None]] = deque()
        try:
            for name in names:
                if len(inflight) >= self.uploads:
                    inflight.popleft().result()
                    self._advance()
                inflight.append(pool.submit(self._put, name, ahead.take(name)))
            while inflight:
                inflight.popleft().result()
                self._advance()
        finally:
            for fut in inflight:
                fut.cancel()

    def _put(self, name: str, data: bytes) -> None:
        """Put one object (durable on return) and check that the destination holds all
        of it: a local file's size; an S3 put carries Content-MD5, so the server itself
        refuses a body that differs."""
        self.dest.put(name, data)
        if isinstance(self.dest, LocalBackend) and self.dest.size(name) != len(data):
            raise IntegrityError(f"{name} did not arrive whole at {self.label}")
        with self._count:
            self.report.objects += 1
            self.report.bytes += len(data)
            kind = name.split("/", 1)[0]
            self.report.kinds[kind] = self.report.kinds.get(kind, 0) + 1
        if name.startswith("commits/"):
            self._advance()

    # ---------------------------------------------------------------- verification

    def _verify_pack(self, obj: str, data: bytes) -> None:
        """The SHA-256 is the name; the trailer authenticates and the frames tile the
        pack (format §6.3). Its frames are authenticated by every read of a blob, and
        all of them by ``check --read-data``."""
        name = obj.rsplit("/", 1)[1]
        if obj != pack_object_name(name) or hashlib.sha256(data).hexdigest() != name:
            raise IntegrityError(f"pack {name[:12]} of the source does not match its name")
        self.src.reader.open_pack(name, data[:HEADER_SIZE]).parse(data)

    def _verify_segment(self, obj: str, data: bytes) -> None:
        """Name, authentication and contents, as a reader checks them (format §9)."""
        _scratch(self.src, obj, data, lambda log: log.read_segment(short_name(obj)))

    def _verify_config(self, _obj: str, data: bytes) -> None:
        body = parse_checksum_json(data, "vault config")
        if body.get("id") != self.src.vault_id:
            raise IntegrityError("the source's config changed while it was being copied")

    # ---------------------------------------------------------------- progress

    def _start(self, label: str, total: int) -> None:
        if self.progress is not None:
            self.progress.start(label, total)

    def _advance(self) -> None:
        if self.progress is not None and threading.current_thread() is threading.main_thread():
            self.progress.advance(1)

    def _done(self) -> None:
        if self.progress is not None:
            self.progress.done()


def _scratch(src: Source, obj: str, data: bytes, check: Callable[[CommitLog], T]) -> T:
    """A reader's check of bytes already read, run in a one-object scratch backend, so
    that the very bytes that are put are the ones verified."""
    scratch = MemoryBackend()
    scratch.put(obj, data)
    return check(CommitLog(scratch, src.keys, src.vault_id))


def _verify_key_slot(_obj: str, data: bytes) -> None:
    parse_checksum_json(data, "key slot")


def _objects(record: CommitRecord) -> list[str]:
    """The objects a commit names, in the order they are copied: packs, then segments."""
    return [pack_object_name(p) for p in record.packs] + [f"index/{s}" for s in record.segments]


class _ReadAhead:
    """Objects read from the source and verified ahead of their puts, in copy order:
    at most ``window`` held or under way (bounded memory: packs are ~8 MiB). A failure
    to read or verify shows when that object is taken, after all before it were put."""

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        fetch: Callable[[str], bytes],
        names: list[str],
        window: int,
    ) -> None:
        self._pool = pool
        self._fetch = fetch
        self._names = iter(names)
        self._window = window
        self._queue: deque[tuple[str, Future[bytes]]] = deque()
        self._fill()

    def _fill(self) -> None:
        while len(self._queue) < self._window:
            name = next(self._names, None)
            if name is None:
                return
            self._queue.append((name, self._pool.submit(self._fetch, name)))

    def cancel(self) -> None:
        """Stop reading ahead (reads under way end by themselves)."""
        for _name, fut in self._queue:
            fut.cancel()
        self._names = iter(())

    def take(self, name: str) -> bytes:
        """The next object's bytes; ``name`` must be the next in copy order."""
        queued, fut = self._queue.popleft()
        if queued != name:
            raise AssertionError(f"read ahead {queued}, asked for {name}")
        self._fill()
        return fut.result()
