"""Keeping the local cache in step with the vault (§9.3).

The cache applies each commit it has not seen, from its segments; a cache that knows a
commit the vault no longer has is discarded and rebuilt (and the commits it lacks are
evidence of a rollback, :mod:`popvault.vault.guard`). Each commit applied is checked
against its predecessor. When segments are lost, the cache is rebuilt from the packs
themselves (their trailers and ``rec`` blobs). Nothing here deletes anything: packs that
no commit names are adopted by writers (:mod:`popvault.vault.orphans`).
"""

from __future__ import annotations

from collections.abc import Callable

from popvault.errors import IntegrityError
from popvault.vault import guard
from popvault.vault.anchor import Anchor
from popvault.vault.backend import Backend, ObjectNotFound
from popvault.vault.cache import IndexCache
from popvault.vault.orphans import pack_contents
from popvault.vault.pack import BlobLocation
from popvault.vault.reader import Reader
from popvault.vault.records import CommitRecord, Record, records_from_json
from popvault.vault.segments import CommitLog, segment_blobs, short_name


def sync_cache(
    log: CommitLog,
    cache: IndexCache,
    warn: Callable[[str], None],
    lost: list[str] | None = None,
    names: list[str] | None = None,
) -> int:
    """Bring the cache up to date with the vault's commits; returns commits applied.
    ``names``: the listing of ``commits/`` when the caller has it (one request less).

    Commits the cache applied that the vault lacks are added to ``lost`` (evidence of a
    rollback, :mod:`popvault.vault.guard`) and the cache is rebuilt. Each commit applied
    is checked against its predecessor (``parent``); a mismatch is remembered, and so is
    the damage a repair commit accepts."""
    names = log.names() if names is None else names
    have = cache.applied_commits()
    wanted = {short_name(n) for n in names}
    if not have <= wanted:
        if lost is not None:
            lost += sorted(have - wanted)
        warn(
            f"the vault lacks {len(have - wanted)} commit(s) this machine has seen:"
            " commit records were deleted or an older copy of the vault was restored;"
            " rebuilding the index cache"
        )
    if not have <= wanted or cache.get_meta("vault_id") is None:
        cache.reset(log.vault_id)
        have = set()
    breaks = guard.load_keys(cache, guard.BREAKS_KEY)
    accepts = guard.load_keys(cache, guard.ACCEPTS_KEY)
    applied = 0
    for i, name in enumerate(names):
        short = short_name(name)
        if short in have:
            continue
        body = log.read_commit(name)
        if body.parent != (short_name(names[i - 1]) if i else None):
            breaks.add(f"parent:{short}")
        accepts.update(body.accepts)
        cache.apply(short, *commit_contents(log, body))
        applied += 1
    if applied:
        guard.save_keys(cache, guard.BREAKS_KEY, breaks)
        guard.save_keys(cache, guard.ACCEPTS_KEY, accepts)
    return applied


def commit_contents(log: CommitLog, body: CommitRecord) -> tuple[list[BlobLocation], list[Record]]:
    """A commit's blob locations and records, from its segments."""
    blobs: list[BlobLocation] = []
    records: list[Record] = []
    for seg_name in body.segments:
        seg = log.read_segment(seg_name)
        blobs += segment_blobs(seg)
        records += seg.records()
    return blobs, records


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
        blobs, lists = pack_contents(reader, pack)  # bounded windows, every byte checked
        cache.apply(None, blobs, [])
        for items in lists:
            cache.apply(None, [], records_from_json(items))
    cache.mark_applied(commits)
    return {"commits": len(commits), "packs": len(packs)}


def note_probe(backend: Backend, anchor: Anchor, label: str, warn: Callable[[str], None]) -> None:
    """Remember whether the storage honours conditional writes (probed when the writer
    lock was taken) and say so when the answer changed since this machine last asked:
    the lock protocol changes with it (format §10.1), so every machine writing to the
    vault must see the same answer. A state folder that cannot be written is no error."""
    honoured = getattr(backend, "conditional_writes", None)
    if not isinstance(honoured, bool):
        return
    try:
        before = anchor.note_conditional_writes(honoured)
    except OSError:
        return
    if before is not None:
        now, then = ("honours", "lease") if honoured else ("no longer honours", "lock object")
        warn(
            f"the storage of {label} {now} conditional writes (If-None-Match): the writer"
            f" lock is no longer a {then}; let no older popvault, and no machine that"
            " reaches the storage another way, write to this vault meanwhile"
        )
