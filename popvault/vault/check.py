"""``check``: every commit, segment, pack and message verified (format §11).

The structural check reads every key slot, commit record and index segment and compares
the packs they name with the packs present; with ``read_data`` it also reads every pack
whole, authenticates every frame, checks every blob against its keyed id and rebuilds
every message against its id. Damage is reported, never raised: the report lists the
problems and the messages they affect. Packs are read in bounded windows: the trailer,
then frame by frame, hashing on the way (one frame in memory at a time, not the pack).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TypeVar

from popvault.errors import IntegrityError
from popvault.vault import guard
from popvault.vault import lock as lockmod
from popvault.vault.anchor import Anchor
from popvault.vault.backend import Backend, ObjectNotFound
from popvault.vault.cache import WINDOW, IndexCache
from popvault.vault.crypto import MasterKeys, parse_checksum_json
from popvault.vault.keys import SLOT_NAME, slot_names
from popvault.vault.orphans import Orphan, lost_commits, read_orphan
from popvault.vault.pack import BlobLocation
from popvault.vault.reader import Reader
from popvault.vault.records import piece_ids
from popvault.vault.scratch import BlobTable
from popvault.vault.segments import CommitLog, segment_blobs, short_name


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    affected: set[bytes] = field(default_factory=set)
    packs: int = 0
    messages: int = 0
    blobs: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Checker:
    """The parts of an open vault a check reads."""

    backend: Backend
    keys: MasterKeys
    vault_id: str
    log: CommitLog
    cache: IndexCache
    reader: Reader
    #: Whether the check runs under this process's own writer lock.
    locked: bool
    #: This machine's anchor, and the damage found when the vault was opened.
    anchor: Anchor
    damage: list[str]

    def run(
        self, *, read_data: bool = False, progress: Callable[[int], None] | None = None
    ) -> CheckReport:
        rep = CheckReport()
        self._key_slots(rep)
        packs, seg_names = self._commits(rep)
        directory = None if self.cache.path is None else self.cache.path.parent
        with BlobTable(directory) as seg_locs:
            self._segments(seg_names, seg_locs, rep)
            present = {n.rsplit("/", 1)[1] for n in self.backend.list("packs")}
            for p in packs:
                if p not in present:
                    rep.problems.append(f"pack {p[:12]} is missing")
            self._uncommitted(sorted(present - set(packs)), rep)
            rep.packs = len(packs)
            bad_blobs = set(seg_locs.ids_in(sorted(seg_locs.packs() - present)))
            if read_data:
                bad_blobs |= self._check_packs(sorted(packs), seg_locs, rep, progress)
            self._messages(seg_locs, bad_blobs, read_data, rep)
        return rep

    def _key_slots(self, rep: CheckReport) -> None:
        for n in self.backend.list("keys"):
            if not SLOT_NAME.match(n):
                rep.problems.append(f"unexpected object {n} in keys/")
        for slot in slot_names(self.backend):
            try:
                parse_checksum_json(self.backend.get(slot), f"key slot {slot}")
            except IntegrityError as exc:
                rep.problems.append(exc.message)

    def _commits(self, rep: CheckReport) -> tuple[dict[str, str], list[str]]:
        """The packs (-> the commit naming them) and segments the commit records name;
        the chain's damage (§8.6) that no repair has accepted is a problem."""
        packs: dict[str, str] = {}
        seg_names: list[str] = []
        chain = self.log.chain()
        names = chain.names
        for n in chain.other:
            rep.problems.append(f"unexpected object {n} in commits/")
        claims = guard.claim_findings(self.log, names)
        for void, admitted in chain.void:
            rep.notes.append(
                f"commit record {short_name(void)[:23]} is void: number"
                f" {int(short_name(void)[:10])} was claimed by {short_name(admitted)[:23]}"
                " (its writer died at its commit point, or its record reached the storage"
                " late); its packs are committed by the next writer"
            )
        found = guard.Findings()
        accepted: set[str] = set()
        prev: str | None = None
        for name in names:
            short = short_name(name)
            try:
                body = self.log.read_commit(name)
            except (IntegrityError, ValueError) as exc:
                found.add(f"unreadable:{short}", str(exc))
                prev = short
                continue
            if body.parent != prev:
                found.add(f"parent:{short}", f"commit {name} does not follow its predecessor")
            prev = short
            accepted.update(body.accepts)
            for p in body.packs:
                packs[p] = name
            seg_names += body.segments
        breaks = guard.chain_findings(names, self.cache)
        found = guard.merge(
            found, breaks, claims, guard.anchor_findings(names, self.anchor, self.vault_id)
        )
        for key, text in found.items.items():
            if key not in accepted:
                rep.problems.append(text)
        for text in self.damage:
            if text not in rep.problems:
                rep.problems.append(text)
        return packs, seg_names

    def _segments(self, seg_names: list[str], seg_locs: BlobTable, rep: CheckReport) -> None:
        """The authoritative blob locations, into ``seg_locs`` (on disk, not in memory)."""
        for s in seg_names:
            try:
                seg_locs.add(segment_blobs(self.log.read_segment(s)))
            except (IntegrityError, ValueError, KeyError, TypeError) as exc:
                rep.problems.append(str(exc))

    def _uncommitted(self, uncommitted: list[str], rep: CheckReport) -> None:
        """Packs no commit names: work in progress of a running writer; an interrupted
        run's (adopted by the next writer); evidence of lost commits (a problem); or
        not this vault's at all. None is ever deleted (§8.4)."""
        writer = None if self.locked else lockmod.running_writer(self.backend)
        if uncommitted and writer is not None:
            rep.notes.append(
                f"a writer is running ({writer}): its {len(uncommitted)} pack(s) not"
                " committed yet are work in progress, not problems"
            )
            return
        found: list[Orphan] = []
        for p in uncommitted:
            orphan = read_orphan(self.reader, p)
            if orphan is None:
                rep.notes.append(
                    f"pack {p[:12]} belongs to no commit and does not authenticate with this"
                    " vault's keys (not part of it; left alone)"
                )
            else:
                found.append(orphan)
        lost = lost_commits(found, self.log.names())
        rep.problems += lost
        if not lost:
            for o in found:
                rep.notes.append(
                    f"pack {o.name[:12]} belongs to no commit (left by an interrupted run);"
                    " the next backup or import commits it"
                )

    def _messages(
        self,
        seg_locs: BlobTable,
        bad_blobs: set[bytes],
        read_data: bool,
        rep: CheckReport,
    ) -> None:
        """Every message's blobs must be known and good (and rebuild, with read_data)."""
        rep.blobs = self.cache.count("blobs")
        any_segment = len(seg_locs) > 0
        # id, size and pieces only, streamed in delivery order (the order of the report),
        # looked up in the segments' blob table a window of messages at a time
        for window in _windows(self.cache.message_pieces(), WINDOW):
            unknown: set[bytes] = set()
            if any_segment:
                unknown = seg_locs.missing(list({b for m in window for b in piece_ids(m[2])}))
            for msg_id, size, pieces in window:
                rep.messages += 1
                if any(b in bad_blobs or b in unknown for b in piece_ids(pieces)):
                    rep.affected.add(msg_id)
                    continue
                if read_data:
                    try:
                        for _ in self.reader.iter_message(msg_id, size, pieces):
                            pass
                    except IntegrityError as exc:
                        rep.problems.append(exc.message)
                        rep.affected.add(msg_id)
        torn = self.cache.incomplete()
        if torn:
            rep.problems.append(
                f"{len(torn)} message(s) were recorded without all of their data (left by an"
                " interrupted run of an earlier popvault): they are not archived; the next"
                " backup fetches them again while they are on the server (an import, from"
                " its source)"
            )
            rep.affected |= torn
        elif rep.affected and not rep.problems:
            rep.problems.append(f"{len(rep.affected)} message(s) reference damaged data")

    def _check_packs(
        self,
        packs: list[str],
        seg_locs: BlobTable,
        rep: CheckReport,
        progress: Callable[[int], None] | None,
    ) -> set[bytes]:
        bad: set[bytes] = set()
        for p in packs:
            locs = seg_locs.in_pack(p)  # one pack's blobs in memory at a time
            try:
                bad |= self._check_pack(p, locs, rep, progress)
            except ObjectNotFound:
                bad.update(b.blob_id for b in locs)
            except IntegrityError as exc:  # damage, or not a regular file, or far too large
                rep.problems.append(exc.message)
                bad.update(b.blob_id for b in locs)
        return bad

    def _check_pack(
        self,
        p: str,
        locs: list[BlobLocation],
        rep: CheckReport,
        progress: Callable[[int], None] | None,
    ) -> set[bytes]:
        """One whole pack against its name, its trailer and the index; the bad blobs.
        Read in windows: the trailer, then one frame at a time (format §11)."""
        bad: set[bytes] = set()
        found: list[str] = []  # reported only if the pack is the one its name says
        scan = self.reader.scan_pack(p, progress)
        trailer = {b.blob_id: b for b in scan.blobs}
        by_frame: dict[int, list[BlobLocation]] = {}
        for loc in locs:
            if trailer.get(loc.blob_id) != loc:
                found.append(
                    f"pack {p[:12]}: index and pack disagree on blob {loc.blob_id.hex()[:12]}"
                )
                bad.add(loc.blob_id)
            else:
                by_frame.setdefault(loc.frame, []).append(loc)
        for index, payload in scan.payloads():
            for loc in by_frame.get(index, []):
                chunk = payload[loc.offset : loc.offset + loc.length]
                if self.keys.keyed_id(chunk) != loc.blob_id:
                    found.append(f"pack {p[:12]}: blob {loc.blob_id.hex()[:12]} is damaged")
                    bad.add(loc.blob_id)
        if scan.digest() != p:
            raise IntegrityError(f"pack {p[:12]} does not match its name (damaged or swapped)")
        rep.problems += found
        return bad


T = TypeVar("T")


def _windows(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while window := list(islice(it, size)):
        yield window
