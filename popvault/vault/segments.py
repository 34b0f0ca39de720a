"""Commit records and index segments: the vault's own, encrypted index (format §8, §9).

"Index" in the format means these objects: a commit record (``commits/<seq>-<sha256>``)
names the packs and the index segment of one commit; a segment (``index/<sha256>``)
holds the locations of that commit's blobs and its records. Both are single-shot sealed
objects whose names are the SHA-256 of their bytes. :class:`CommitLog` reads and writes
them; the local SQLite cache of what they say is :mod:`popvault.vault.cache`.

On storage with exclusive creation a commit also **claims** its sequence number: after
its record, ``claims/<seq>`` is created only-if-absent, naming the record (format
§8.1.1). A record that reaches the storage late, after another writer took its number
(a killed writer's request outlives it on object storage), is then **void**: its claim
names the other record. Readers look at a claim only when two records carry one number,
so the claim costs readers nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import zstandard

from popvault.errors import IntegrityError, VaultLocked
from popvault.vault.backend import MAX_OBJECT, Backend, ObjectNotFound
from popvault.vault.config import json_object
from popvault.vault.crypto import MasterKeys, open_object, seal_object
from popvault.vault.lock import host_name
from popvault.vault.pack import BlobLocation
from popvault.vault.records import CommitRecord, Segment

SEGMENT_MAGIC = b"PVINDX01"
COMMIT_MAGIC = b"PVCMIT01"
#: zstd level of the record lists and index segments written at each commit (on the
#: writer's critical path: level 10 cost about 4% of a backup's main thread for 0.1% fewer
#: bytes).
RECORD_LEVEL = 3

#: ASCII digits only (``\d`` would take other scripts' digits) and no trailing newline.
COMMIT_NAME = re.compile(r"^commits/([0-9]{10})-([0-9a-f]{64})\Z")
#: A sequence number's claim (§8.1.1); its content is the short name of one record.
CLAIM_NAME = re.compile(r"^claims/([0-9]{10})\Z")


def claim_name(seq: int) -> str:
    return f"claims/{seq:010d}"


@dataclass
class Chain:
    """The listing of ``commits/``: the records that count, in commit order, the void
    ones (each with the record its number's claim admits instead), and the names there
    that are no commit record (``check`` reports them)."""

    names: list[str]
    void: list[tuple[str, str]] = field(default_factory=list)
    other: list[str] = field(default_factory=list)


def segment_blobs(seg: Segment) -> list[BlobLocation]:
    """The blob locations a segment lists (§9.1)."""
    try:
        return [
            BlobLocation(bytes.fromhex(b), k, p, f, fo, fl, o, n)
            for b, k, p, f, fo, fl, o, n in seg.blobs
        ]
    except (TypeError, ValueError):
        raise IntegrityError("an index segment's blob list is malformed") from None


def _blob_entry_ok(entry: Any) -> bool:
    """A segment's blob entry has the types and bounds of §9.1 (so that a forged one
    is damage, not a crash): 8 elements, hex ids, integers within one object."""
    if not isinstance(entry, list) or len(entry) != 8:
        return False
    blob, kind, pack, *numbers = entry
    return (
        isinstance(blob, str)
        and isinstance(kind, str)
        and isinstance(pack, str)
        and re.fullmatch(r"[0-9a-f]{64}", blob) is not None
        and re.fullmatch(r"[0-9a-f]{64}", pack) is not None
        and all(type(n) is int and 0 <= n <= MAX_OBJECT for n in numbers)
    )


def short_name(name: str) -> str:
    """``commits/NAME`` -> ``NAME``."""
    return name.split("/", 1)[1]


class CommitLog:
    """Reads and writes one vault's commit records and index segments."""

    def __init__(self, backend: Backend, keys: MasterKeys, vault_id: str) -> None:
        self.backend = backend
        self.keys = keys
        self.vault_id = vault_id

    def names(self) -> list[str]:
        """Every commit record's object name, in commit order (void records left out)."""
        return self.chain().names

    def chain(self) -> Chain:
        """The commit records that count (§8.1.1): where several carry one number and
        that number's claim names one of them, only that one; the others are void. A
        number without a claim keeps all its records (two of them are damage, §8.6)."""
        by_seq: dict[int, list[str]] = {}
        out = Chain([])
        for n in sorted(self.backend.list("commits")):
            m = COMMIT_NAME.match(n)
            if m is not None:
                by_seq.setdefault(int(m.group(1)), []).append(n)
            else:
                out.other.append(n)
        for seq, records in by_seq.items():
            if len(records) > 1:
                try:
                    admitted = self.claimed(seq)
                except IntegrityError:
                    admitted = None  # a malformed claim decides nothing (check says so)
                if admitted in records:
                    out.void += [(r, admitted) for r in records if r != admitted]
                    records = [admitted]
            out.names += records
        return out

    def claimed(self, seq: int) -> str | None:
        """The record (``commits/...``) that the claim of ``seq`` names; None without a
        claim. IntegrityError for a claim that names no record of that number."""
        try:
            data = self.backend.get(claim_name(seq))
        except ObjectNotFound:
            return None
        name = "commits/" + data.decode("ascii", "replace")
        m = COMMIT_NAME.match(name)
        if m is None or int(m.group(1)) != seq:
            raise IntegrityError(f"the claim of commit number {seq} is malformed")
        return name

    def claim(self, seq: int, name: str) -> None:
        """Claim ``seq`` for the record ``name`` (just put), only if absent. Raises
        VaultLocked when the claim names another record that is there: another writer
        took the number, and this commit is not part of the vault. A claim naming a
        record that is gone (a lost commit, §8.6: the storage dropped it) or that is
        malformed is replaced: that record cannot come back late (a claim is made only
        once its record is durable), and the number is this commit's."""
        data = short_name(name).encode()
        if self.backend.create_exclusive(claim_name(seq), data):
            return
        try:
            admitted = self.claimed(seq)
        except IntegrityError:
            admitted = None
        if admitted == name:
            return
        if admitted is not None and self.backend.exists(admitted):
            raise VaultLocked(
                f"commit number {seq} was taken by another writer while this one held the"
                " lock: this commit is not part of the vault",
                hint="no message was deleted from a server for it; the next run commits"
                " what this one wrote",
            )
        self.backend.put(claim_name(seq), data)

    def read_commit(self, name: str) -> CommitRecord:
        data = self.backend.get(name)
        m = COMMIT_NAME.match(name)
        if m is None or hashlib.sha256(data).hexdigest() != m.group(2):
            raise IntegrityError(f"commit record {name} does not match its name")
        plain = open_object(self.keys, self.vault_id, COMMIT_MAGIC, data, name)
        what = f"commit record {name}"
        body = json_object(plain, what)
        if body.get("seq") != int(m.group(1)):
            raise IntegrityError(f"commit record {name} carries the wrong sequence number")
        return CommitRecord.from_json(body, what)

    def read_segment(self, name: str) -> Segment:
        obj = f"index/{name}"
        try:
            data = self.backend.get(obj)
        except ObjectNotFound:
            # a segment a commit names is part of the vault: missing is damage (exit 20)
            raise IntegrityError(
                f"index segment {name[:12]} is missing",
                hint="run 'popvault index rebuild --from-packs'",
            ) from None
        if hashlib.sha256(data).hexdigest() != name:
            raise IntegrityError(f"index segment {name[:12]} does not match its name")
        what = f"index segment {name[:12]}"
        plain = open_object(self.keys, self.vault_id, SEGMENT_MAGIC, data, what)
        try:
            raw = zstandard.ZstdDecompressor().decompress(plain)
        except zstandard.ZstdError:
            raise IntegrityError(f"{what} does not decompress") from None
        body = json_object(raw, what)
        if not isinstance(body.get("blobs"), list) or not isinstance(body.get("records"), list):
            raise IntegrityError(f"{what} is malformed")
        if not all(_blob_entry_ok(b) for b in body["blobs"]):
            raise IntegrityError(f"{what} has a malformed blob entry")
        return Segment(body["blobs"], body["records"])

    def put_segment(self, blobs: list[list[Any]], records_json: str) -> str:
        """Seal and put one segment (§9.1); returns its name. ``records_json`` is the
        records' JSON array, encoded once by the caller (it is also the ``rec`` blob)."""
        # json.dumps({"version": 1, "blobs": blobs, "records": records}), same bytes
        seg_json = f'{{"version": 1, "blobs": {json.dumps(blobs)}, "records": {records_json}}}'
        seg_plain = zstandard.ZstdCompressor(level=RECORD_LEVEL).compress(seg_json.encode())
        seg_data = seal_object(self.keys, self.vault_id, SEGMENT_MAGIC, seg_plain)
        seg_name = hashlib.sha256(seg_data).hexdigest()
        self.backend.put(f"index/{seg_name}", seg_data)
        return seg_name

    def next_position(self) -> tuple[int, str | None]:
        """The sequence number and parent of the next commit (§8.1): computed under the
        writer lock, before the commit's records are written (they carry both, §9.2)."""
        names = self.names()
        last = COMMIT_NAME.match(names[-1]) if names else None
        return (int(last.group(1)) + 1 if last else 1), (short_name(names[-1]) if names else None)

    def put_commit(
        self,
        packs: list[str],
        segments: list[str],
        position: tuple[int, str | None] | None = None,
        accepts: tuple[str, ...] = (),
    ) -> str:
        """Put the next commit record (§8.1); the commit point. Returns its short name.
        ``position``: the (seq, parent) taken by :meth:`next_position` for this commit."""
        seq, parent = position if position is not None else self.next_position()
        record = CommitRecord(seq, time.time(), host_name(), packs, segments, parent, accepts)
        body = json.dumps(record.to_json()).encode()
        cdata = seal_object(self.keys, self.vault_id, COMMIT_MAGIC, body)
        cname = f"{seq:010d}-{hashlib.sha256(cdata).hexdigest()}"
        self.backend.put(f"commits/{cname}", cdata)
        if getattr(self.backend, "exclusive_create", True):
            self.claim(seq, f"commits/{cname}")  # not on lease storage (§10.1)
        return cname
