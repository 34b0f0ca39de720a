"""Keeping the local cache in step with the vault, and removing leftovers (§8.4, §9.3).

The cache applies each commit it has not seen, from its segment; a cache that knows a
commit the vault no longer has is discarded and rebuilt (and says why: commit records
were deleted, or an older copy of the vault was put back). When segments are lost, the
cache is rebuilt from the packs themselves (their trailers and ``rec`` blobs). A writer
removes the packs and segments of interrupted runs only after reading every commit
record, and never while the cache knows a commit that is missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import zstandard

from popvault.errors import IntegrityError, PopvaultError
from popvault.vault.backend import ObjectNotFound
from popvault.vault.cache import IndexCache
from popvault.vault.pack import HEADER_SIZE, BlobLocation, pack_object_name
from popvault.vault.reader import Reader
from popvault.vault.records import Record, records_from_json
from popvault.vault.segments import CommitLog, segment_blobs, short_name


def sync_cache(log: CommitLog, cache: IndexCache, warn: Callable[[str], None]) -> int:
    """Bring the cache up to date with the vault's commits; returns commits applied."""
    names = log.names()
    have = cache.applied_commits()
    wanted = {short_name(n) for n in names}
    if not have <= wanted:
        warn(
            f"the vault lacks {len(have - wanted)} commit(s) this machine has seen:"
            " commit records were deleted or an older copy of the vault was restored;"
            " rebuilding the index cache"
        )
    if not have <= wanted or cache.get_meta("vault_id") is None:
        cache.reset(log.vault_id)
        have = set()
    applied = 0
    for name in names:
        short = short_name(name)
        if short in have:
            continue
        body = log.read_commit(name)
        blobs: list[BlobLocation] = []
        records: list[Record] = []
        for seg_name in body.segments:
            seg = log.read_segment(seg_name)
            blobs += segment_blobs(seg)
            records += seg.records()
        cache.apply(short, blobs, records)
        applied += 1
    return applied


def rebuild_cache(
    log: CommitLog,
    cache: IndexCache,
    reader: Reader,
    warn: Callable[[str], None],
    *,
    from_packs: bool = False,
) -> dict[str, int]:
    """Rebuild the cache from segments, or from packs (when segments are lost)."""
    if not from_packs:
        cache.reset(log.vault_id)
        try:
            sync_cache(log, cache, warn)
            return {"commits": len(cache.applied_commits()), "packs": 0}
        except (IntegrityError, ObjectNotFound) as exc:
            warn(f"index segments unusable ({exc.message}); rebuilding from packs")
    cache.reset(log.vault_id)
    packs: list[str] = []
    commits: list[str] = []
    try:
        for name in log.names():
            body = log.read_commit(name)
            packs += [p for p in body.packs if p not in packs]
            commits.append(short_name(name))
    except (IntegrityError, ObjectNotFound, ValueError) as exc:
        warn(f"commit records unusable ({exc}); reading every pack")
        packs = [n.rsplit("/", 1)[1] for n in log.backend.list("packs")]
        commits = []
    for pack in packs:
        data = log.backend.get(pack_object_name(pack))
        _frames, blobs = reader.pack_reader(pack, data[:HEADER_SIZE]).parse(data)
        cache.apply(None, blobs, [])
        for loc in blobs:
            if loc.kind == "rec":
                raw = reader.read_blob(loc.blob_id, loc=loc)
                items = json.loads(zstandard.ZstdDecompressor().decompress(raw))
                cache.apply(None, [], records_from_json(items))
    cache.mark_applied(commits)
    return {"commits": len(commits), "packs": len(packs)}


def remove_leftovers(log: CommitLog, cache: IndexCache, warn: Callable[[str], None]) -> None:
    """Remove what interrupted runs left: temp files, packs/segments of no commit."""
    backend = log.backend
    removed = backend.cleanup_temporary()
    present = {short_name(n) for n in log.names()}
    lost = cache.applied_commits() - present
    if lost:
        warn(
            f"not cleaning up: the vault lacks {len(lost)} commit(s) this machine has seen;"
            " their packs may be all that is left of them"
        )
        return
    try:
        packs: set[str] = set()
        segs: set[str] = set()
        parent: str | None = None
        for seq, name in enumerate(log.names(), start=1):
            body = log.read_commit(name)
            short = short_name(name)
            if body.seq != seq or body.parent != parent:
                raise IntegrityError(
                    f"commit records are not a complete chain at {short}"
                    " (a commit record is missing)"
                )
            parent = short
            packs.update(body.packs)
            segs.update(body.segments)
    except (PopvaultError, ValueError, KeyError) as exc:
        warn(f"not cleaning up after interrupted runs: {exc}")
        return
    for obj in backend.list("packs"):
        if obj.rsplit("/", 1)[1] not in packs:
            backend.delete(obj)
            removed += 1
    for obj in backend.list("index"):
        if obj.rsplit("/", 1)[1] not in segs:
            backend.delete(obj)
            removed += 1
    if removed:
        warn(f"removed {removed} leftover file(s) of an interrupted run")
