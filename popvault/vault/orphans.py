"""Packs and segments that no commit names: what they are, adopting them, pruning them
(format §8.4).

A writer interrupted before its commit point leaves packs (and maybe a segment) that no
commit record names. So does a commit whose record was deleted or rolled back — and then
those packs may be the only copy of mail already deleted from its server. So nothing is
ever deleted for being unnamed: every pack that authenticates is **adopted** by the next
commit (its blobs and the records of its ``rec`` blobs become reachable again), unless
everything in it is already in the vault. A pack whose ``rec`` blob carries a commit mark
(§9.2) tells which commit it was written for; one whose commit's parent is missing, or
whose sequence number another commit now holds, is evidence of **lost commits**: writers
stop and ``popvault repair`` takes over (:mod:`popvault.vault.guard`). Only
``popvault prune`` deletes, and only what the vault holds elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zstandard

from popvault.errors import IntegrityError
from popvault.vault.backend import ObjectNotFound
from popvault.vault.cache import IndexCache
from popvault.vault.pack import BlobLocation, pack_object_name
from popvault.vault.reader import Reader
from popvault.vault.records import (
    CommitMark,
    CommitRecord,
    MsgRecord,
    Record,
    SrcRecord,
    commit_mark,
    piece_ids,
    records_from_json,
)
from popvault.vault.segments import CommitLog, short_name


@dataclass
class Orphan:
    """An authentic pack that no commit names."""

    name: str
    size: int
    locs: list[BlobLocation]
    #: The records of its ``rec`` blobs, and the commit mark among them (if any).
    records: list[Record] = field(default_factory=list)
    mark: CommitMark | None = None
    #: An unnamed index segment (``repair`` only): records to adopt, no pack.
    segment: bool = False


@dataclass
class Survey:
    """What lies in the vault beside its commits."""

    #: Commit records in name order, with their bodies (None: unreadable).
    commits: list[tuple[str, CommitRecord | None]]
    named_packs: set[str]
    named_segments: set[str]
    orphans: list[Orphan] = field(default_factory=list)
    #: Unnamed packs that do not authenticate with this vault's keys: left alone.
    foreign: list[str] = field(default_factory=list)
    #: Index segments no commit names.
    segments: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every commit record could be read (else nothing is called unnamed)."""
        return all(body is not None for _, body in self.commits)


def survey(
    log: CommitLog,
    reader: Reader,
    warn: Callable[[str], None],
    *,
    packs: bool = True,
    named: set[str] | None = None,
) -> Survey:
    """Read every commit record, then every pack and segment none of them names. With
    ``named`` (the packs a synchronised cache knows, :meth:`IndexCache.pack_names`) no
    commit record is read and segments are not looked at: a writer's survey costs one
    listing of ``packs/`` instead of a request per commit."""
    if named is not None:
        out = Survey([], set(named), set())
        _unnamed_packs(log, reader, out)
        return out
    commits: list[tuple[str, CommitRecord | None]] = []
    named_packs: set[str] = set()
    named_segments: set[str] = set()
    for name in log.names():
        try:
            body: CommitRecord | None = log.read_commit(name)
        except (IntegrityError, ObjectNotFound, ValueError) as exc:
            warn(f"commit record {short_name(name)[:16]} is unreadable: {exc}")
            body = None
        commits.append((name, body))
        if body is not None:
            named_packs.update(body.packs)
            named_segments.update(body.segments)
    out = Survey(commits, named_packs, named_segments)
    out.segments = [
        s
        for s in (n.rsplit("/", 1)[1] for n in log.backend.list("index"))
        if s not in named_segments
    ]
    if packs:
        _unnamed_packs(log, reader, out)
    return out


def _unnamed_packs(log: CommitLog, reader: Reader, out: Survey) -> None:
    for obj in log.backend.list("packs"):
        name = obj.rsplit("/", 1)[1]
        if name not in out.named_packs:
            orphan = read_orphan(reader, name)
            if orphan is None:
                out.foreign.append(name)
            else:
                out.orphans.append(orphan)


def pack_contents(reader: Reader, name: str) -> tuple[list[BlobLocation], list[list[Any]]]:
    """Read a whole pack in bounded windows (one frame at a time, format §11): its blob
    locations and the record lists of its ``rec`` blobs. IntegrityError unless every
    byte authenticates, every ``rec`` blob matches its keyed id and the pack's SHA-256
    is its name; ObjectNotFound if it is gone."""
    scan = reader.scan_pack(name)
    recs: dict[int, list[BlobLocation]] = {}
    for loc in scan.blobs:
        if loc.kind == "rec":
            recs.setdefault(loc.frame, []).append(loc)
    lists: list[list[Any]] = []
    for i, payload in scan.payloads():
        for loc in recs.get(i, []):
            raw = payload[loc.offset : loc.offset + loc.length]
            if len(raw) != loc.length or reader.keys.keyed_id(raw) != loc.blob_id:
                raise IntegrityError(f"pack {name[:12]}: blob {loc.blob_id.hex()[:12]} is damaged")
            try:
                items = json.loads(zstandard.ZstdDecompressor().decompress(raw))
            except (zstandard.ZstdError, ValueError, RecursionError):
                items = None
            if not isinstance(items, list):
                raise IntegrityError(f"pack {name[:12]}: a records blob is malformed")
            lists.append(items)
    if scan.digest() != name:
        raise IntegrityError(f"pack {name[:12]} does not match its name (damaged or swapped)")
    return scan.blobs, lists


def read_orphan(reader: Reader, name: str) -> Orphan | None:
    """Authenticate an unnamed pack whole (in bounded windows) and read its ``rec``
    blobs; None if it does not authenticate with this vault's keys, is not a pack, or
    does not match its name."""
    try:
        locs, lists = pack_contents(reader, name)
        orphan = Orphan(name, reader.backend.size(pack_object_name(name)), locs)
    except (IntegrityError, ObjectNotFound, ValueError):
        return None
    for items in lists:
        orphan.mark = orphan.mark or commit_mark(items)
        try:
            orphan.records += records_from_json(items)
        except IntegrityError:
            return None
    return orphan


def lost_commits(orphans: list[Orphan], names: list[str]) -> list[str]:
    """Descriptions of commits that existed but whose records are gone, as the marks of
    unnamed packs show them: a mark whose parent is missing, or whose sequence number
    is below the newest but held by no commit, or held by a commit that does not
    continue the mark's parent. A mark that continues the newest commit is an
    interrupted commit — or a lost newest one: only this machine's anchor can tell
    (guard). A mark for a number another commit took *from the same parent* is a writer
    that lost the race for that number: on object storage a killed writer's last pack
    can land after the next writer committed (its requests outlive it); it is adopted
    like an interrupted commit's (format §8.6 rule 4)."""
    present = {short_name(n) for n in names}
    at_seq: dict[int, list[str]] = {}
    for n in names:
        at_seq.setdefault(int(short_name(n)[:10]), []).append(short_name(n))
    newest = max(at_seq, default=0)
    out: list[str] = []
    for o in orphans:
        m = o.mark
        if m is None:
            continue
        if m.parent is not None and m.parent not in present:
            out.append(
                f"pack {o.name[:12]} belongs to commit {m.seq}, whose parent"
                f" {m.parent[:16]} is missing"
            )
        elif m.seq <= newest and not _lost_race(m.seq, m.parent, at_seq):
            taken = " (another commit now has that number)" if m.seq in at_seq else ""
            out.append(f"pack {o.name[:12]} belongs to a commit {m.seq} that is missing{taken}")
    return out


def _lost_race(seq: int, parent: str | None, at_seq: dict[int, list[str]]) -> bool:
    """Whether a commit holds ``seq`` and the mark's parent is the one commit before it
    (so that commit's parent, the chain being checked apart): the same position."""
    if seq not in at_seq:
        return False
    if seq == 1:
        return parent is None
    return at_seq.get(seq - 1) == [parent]


@dataclass
class Adoption:
    packs: list[str] = field(default_factory=list)
    locs: list[BlobLocation] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    #: Messages a lost commit recorded whose data is gone (not adopted).
    unrecoverable: int = 0
    #: Unnamed packs that hold nothing the vault lacks (left for ``prune``).
    redundant: list[Orphan] = field(default_factory=list)


def plan_adoption(orphans: list[Orphan], cache: IndexCache) -> Adoption:
    """Which unnamed packs to adopt, and which of their records are new to the vault.
    A ``msg`` record is adopted only when every blob it names is stored or adopted."""
    out = Adoption()
    incomplete = cache.incomplete()
    # a blob the vault holds, or one in an unnamed pack, in the order given
    available: set[bytes] = {loc.blob_id for o in orphans for loc in o.locs}
    msgs: set[bytes] = set()
    srcs: set[tuple[bytes, str, str | None, str]] = set()
    seen_records: set[str] = set()
    for o in orphans:
        stored = cache.stored_blobs([loc.blob_id for loc in o.locs])
        new_blobs = any(loc.blob_id not in stored and loc.kind != "rec" for loc in o.locs)
        kept: list[Record] = []
        for r in o.records:
            if isinstance(r, MsgRecord):
                if r.id in msgs or (cache.has_message(r.id) and r.id not in incomplete):
                    continue
                ids = piece_ids(r.pieces)
                missing = [b for b in ids if b not in available]
                if missing and len(cache.stored_blobs(missing)) < len(set(missing)):
                    out.unrecoverable += 1
                    continue
                msgs.add(r.id)
            elif isinstance(r, SrcRecord):
                s = r.source
                key = (r.msg, s.account, s.uidl, s.source)
                if key in srcs or cache.source_exists(r.msg, s.account, s.uidl, s.source):
                    continue
                srcs.add(key)
            kept.append(r)
        if not new_blobs and not kept:
            out.redundant.append(o)
            continue
        if not o.segment:
            out.packs.append(o.name)
            out.locs += o.locs
        for r in kept:  # a record once, when a pack and a segment both hold it
            text = json.dumps(r.to_json(), sort_keys=True)
            if text not in seen_records:
                seen_records.add(text)
                out.records.append(r)
    # sources of messages that are neither in the vault nor adopted stay out
    out.records = [
        r
        for r in out.records
        if not isinstance(r, SrcRecord) or r.msg in msgs or cache.has_message(r.msg)
    ]
    return out


def segment_orphans(log: CommitLog, sv: Survey) -> list[Orphan]:
    """The unnamed segments that authenticate, as record-only orphans (``repair``): a
    lost commit whose last pack is gone too may still have its records there."""
    out: list[Orphan] = []
    for s in sv.segments:
        try:
            out.append(Orphan(s, 0, [], log.read_segment(s).records(), segment=True))
        except (IntegrityError, ObjectNotFound, ValueError, TypeError):
            continue
    return out


def prunable(log: CommitLog, sv: Survey, cache: IndexCache) -> tuple[list[Orphan], list[str]]:
    """What ``popvault prune`` may delete: unnamed packs whose every blob and record the
    vault holds elsewhere, and unnamed segments that authenticate and whose packs are all
    named (their records are then in those packs' ``rec`` blobs). Nothing while a
    commit record is unreadable."""
    if not sv.complete:
        return [], []
    segments: list[str] = []
    for s in sv.segments:
        try:
            seg = log.read_segment(s)
            packs = {str(b[2]) for b in seg.blobs}
        except (IntegrityError, ObjectNotFound, ValueError, TypeError, IndexError):
            continue
        if packs <= sv.named_packs:
            segments.append(s)
    return plan_adoption(sv.orphans, cache).redundant, segments
