"""``popvault repair`` and ``popvault prune`` (format §8.7).

Repair rebuilds the vault's state from every authentic object present, and deletes
nothing: the cache is rebuilt from the commit records that can be read (from their
segments, else from their packs' trailers and ``rec`` blobs); every pack that no
readable commit names and that authenticates is adopted by one new commit, with the
messages, arrivals, deletion and restore records of its ``rec`` blobs; that commit's
record accepts the damage found in the chain (so that it is reported once, not forever);
this machine's anchor is reset to it. Prune deletes only what the vault holds elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from popvault.errors import IntegrityError
from popvault.vault import guard
from popvault.vault.backend import ObjectNotFound
from popvault.vault.cache import IndexCache
from popvault.vault.housekeeping import commit_contents
from popvault.vault.orphans import (
    Adoption,
    Survey,
    pack_contents,
    plan_adoption,
    prunable,
    segment_orphans,
)
from popvault.vault.pack import BlobLocation, pack_object_name
from popvault.vault.reader import Reader
from popvault.vault.records import DelRecord, MsgRecord, Record, RstRecord, SrcRecord
from popvault.vault.records import records_from_json as _records
from popvault.vault.segments import CommitLog, short_name


@dataclass
class RepairReport:
    commits: int = 0
    unreadable_commits: list[str] = field(default_factory=list)
    #: Commits whose segments were unusable: read from their packs instead.
    from_packs: int = 0
    packs_adopted: int = 0
    messages_recovered: int = 0
    arrivals_recovered: int = 0
    deletions_recovered: int = 0
    restores_recovered: int = 0
    #: Messages a lost commit recorded whose data is gone too.
    unrecoverable: int = 0
    #: Packs that do not authenticate with this vault's keys: left alone.
    foreign_packs: int = 0
    accepted: list[str] = field(default_factory=list)
    commit: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def rebuild(log: CommitLog, cache: IndexCache, reader: Reader, sv: Survey) -> RepairReport:
    """Empty the cache and apply every readable commit (segments, else packs); note
    chain damage as :func:`popvault.vault.housekeeping.sync_cache` does."""
    rep = RepairReport()
    cache.reset(log.vault_id)
    breaks: set[str] = set()
    accepts: set[str] = set()
    prev: str | None = None
    for name, body in sv.commits:
        short = short_name(name)
        if body is None:
            rep.unreadable_commits.append(short)
            prev = short
            continue
        if body.parent != prev:
            breaks.add(f"parent:{short}")
        prev = short
        accepts.update(body.accepts)
        try:
            blobs, records = commit_contents(log, body)
        except (IntegrityError, ObjectNotFound, ValueError):
            rep.from_packs += 1
            blobs, records = _from_packs(log, reader, body.packs)
        cache.apply(short, blobs, records)
        rep.commits += 1
    guard.save_keys(cache, guard.BREAKS_KEY, breaks)
    guard.save_keys(cache, guard.ACCEPTS_KEY, accepts)
    return rep


def _from_packs(
    log: CommitLog, reader: Reader, packs: list[str]
) -> tuple[list[BlobLocation], list[Record]]:
    blobs: list[BlobLocation] = []
    records: list[Record] = []
    for pack in packs:
        try:
            locs, lists = pack_contents(reader, pack)
        except (IntegrityError, ObjectNotFound):
            continue  # a lost or damaged pack: check names the messages it held
        blobs += locs
        for items in lists:
            records += _records(items)
    return blobs, records


def count_recovered(rep: RepairReport, plan: Adoption) -> None:
    rep.packs_adopted = len(plan.packs)
    rep.unrecoverable = plan.unrecoverable
    for r in plan.records:
        if isinstance(r, MsgRecord):
            rep.messages_recovered += 1
        elif isinstance(r, SrcRecord):
            rep.arrivals_recovered += 1
        elif isinstance(r, DelRecord):
            rep.deletions_recovered += 1
        elif isinstance(r, RstRecord):
            rep.restores_recovered += 1


def plan_repair(
    log: CommitLog, cache: IndexCache, reader: Reader, sv: Survey
) -> tuple[RepairReport, Adoption, tuple[str, ...]]:
    """Rebuild the cache; what to adopt; the damage the repair commit accepts."""
    rep = rebuild(log, cache, reader, sv)
    plan = plan_adoption(sv.orphans + segment_orphans(log, sv), cache)
    count_recovered(rep, plan)
    rep.foreign_packs = len(sv.foreign)
    names = [n for n, _ in sv.commits]
    found = guard.merge(guard.chain_findings(names, cache), guard.claim_findings(log, names))
    accepts = set(found.items) | {f"unreadable:{s}" for s in rep.unreadable_commits}
    rep.accepted = [*found.messages, *(f"commit {s} is unreadable" for s in rep.unreadable_commits)]
    return rep, plan, tuple(sorted(accepts))


@dataclass
class PruneReport:
    packs: list[str] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    bytes: int = 0
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def prune_unnamed(
    log: CommitLog,
    cache: IndexCache,
    sv: Survey,
    *,
    dry_run: bool,
    warn: Callable[[str], None],
) -> PruneReport:
    """Delete unnamed packs and segments whose contents the vault holds elsewhere."""
    rep = PruneReport(dry_run=dry_run)
    packs, segments = prunable(log, sv, cache)
    for o in packs:
        rep.packs.append(o.name)
        rep.bytes += o.size
        if not dry_run:
            log.backend.delete(pack_object_name(o.name))
    for s in segments:
        rep.segments.append(s)
        if not dry_run:
            log.backend.delete(f"index/{s}")
    if sv.foreign:
        warn(
            f"{len(sv.foreign)} pack(s) do not authenticate with this vault's keys; left"
            " alone (they may belong to another vault: delete them by hand if so)"
        )
    return rep
