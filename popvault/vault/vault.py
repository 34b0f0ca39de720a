"""The vault: create, open, add, commit, read, check (docs/format.md, all sections).

A :class:`Vault` joins the pieces of this package: the backend holding objects, the key
slots, packs of sealed frames, index segments and commit records, the writer lock and
the local index cache. Writes go to pending state until :meth:`Vault.commit`, which makes
them durable in the order packs, index segment, commit record (format §8). Only a commit
record makes messages archived. Reads authenticate every frame and check every blob's
and message's keyed id, so corrupt data raises IntegrityError instead of coming back.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from popvault import interrupts
from popvault.errors import (
    IntegrityError,
    PopvaultError,
    UsageError,
    VaultNotFound,
    WrongPassphrase,
)
from popvault.vault import lock as lockmod
from popvault.vault.backend import Backend, LocalBackend, ObjectNotFound
from popvault.vault.crypto import (
    KdfParams,
    MasterKeys,
    checksum_json,
    export_keys,
    import_keys,
    make_key_slot,
    open_key_slot,
    open_object,
    parse_checksum_json,
    random_hex,
    seal_object,
)
from popvault.vault.index import Filter, IndexCache, MessageRow, piece_ids
from popvault.vault.meta import MessageMeta as MessageMeta  # part of this module's API
from popvault.vault.pack import (
    HEADER_SIZE,
    BlobLocation,
    PackReader,
    PackWriter,
    pack_object_name,
)
from popvault.vault.prepare import Base64Piece, PreparedMessage
from popvault.vault.split import ATT_CHUNK, CHUNK, HEADER_MAX, header_end, split_message, wrap_lines

FORMAT_NAME = "popvault-vault"
FORMAT_VERSION = 1
SEGMENT_MAGIC = b"PVINDX01"
COMMIT_MAGIC = b"PVCMIT01"
#: Messages up to this size are split in memory (attachment dedup); larger ones stream.
INLINE_LIMIT = 32 << 20
FRAME_TARGET = 1 << 20
PACK_TARGET = 8 << 20
DEFAULT_LEVEL = 9
#: zstd level of the record lists and index segments written at each commit (on the
#: writer's critical path: level 10 cost about 4% of a backup's main thread for 0.1% fewer
#: bytes).
RECORD_LEVEL = 3

_COMMIT_NAME = re.compile(r"^commits/(\d{10})-([0-9a-f]{64})$")


@dataclass(frozen=True)
class SourceInfo:
    """Where one arrival of a message came from (format §9.2, record ``src``)."""

    account: str
    source: str
    uidl: str | None = None
    flags: str | None = None
    file_time: float | None = None
    from_line_time: float | None = None


@dataclass(frozen=True)
class AddResult:
    msg_id: bytes
    new: bool
    size: int


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


def default_cache_dir() -> Path:
    env = os.environ.get("POPVAULT_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "popvault"


def _config_body(vault_id: str) -> dict[str, Any]:
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "id": vault_id}


def read_config(backend: Backend, where: str) -> str:
    """The vault id from ``config``: VaultNotFound (10) if there is no vault, a clear
    refusal for a newer format version, IntegrityError (20) if it is damaged."""
    try:
        data = backend.get("config")
    except ObjectNotFound:
        raise VaultNotFound(
            f"no vault at {where}", hint="create one with 'popvault init' or check --vault"
        ) from None
    body = parse_checksum_json(data, "vault config")
    if body.get("format") != FORMAT_NAME:
        raise VaultNotFound(f"{where} is not a popvault vault")
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise IntegrityError("vault config has an invalid format version")
    if version > FORMAT_VERSION:
        raise PopvaultError(
            f"vault format version {version} is newer than this popvault supports"
            f" ({FORMAT_VERSION})",
            hint="upgrade popvault to read this vault; it was not changed",
        )
    vid = body.get("id")
    if not isinstance(vid, str) or not re.fullmatch(r"[0-9a-f]{32}", vid):
        raise IntegrityError("vault config has a malformed id")
    return vid


def as_backend(where: Path | str | Backend) -> tuple[Backend, str]:
    if isinstance(where, (str, Path)):
        return LocalBackend(Path(where)), str(where)
    return where, "the vault"


class _FrameGroup:
    def __init__(self) -> None:
        self.blobs: list[tuple[bytes, str, bytes]] = []
        self.size = 0
        #: Leading blobs already looked up in the index (none of them is stored yet).
        self.checked = 0


class Vault:
    """An open vault. Thread-safe for the write path (one lock around mutations)."""

    def __init__(
        self,
        backend: Backend,
        vault_id: str,
        keys: MasterKeys,
        cache: IndexCache,
        *,
        warn: Callable[[str], None],
        level: int = DEFAULT_LEVEL,
    ) -> None:
        self.backend = backend
        self.vault_id = vault_id
        self.keys = keys
        self.cache = cache
        self.warn = warn
        self.level = level
        self._mutex = threading.RLock()
        self._lock: lockmod.Lock | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pack: PackWriter | None = None
        self._groups: dict[str, _FrameGroup] = {}
        self._pending_blobs: set[bytes] = set()
        self._pending_msgs: set[bytes] = set()
        self._pending_srcs: set[tuple[bytes, str, str | None, str]] = set()
        self._records: list[dict[str, Any]] = []
        self.pending_bytes = 0
        self.pending_arrivals = 0
        self._written_packs: list[str] = []
        self._written_locs: list[BlobLocation] = []
        self._frames: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._pack_readers: dict[str, PackReader] = {}
        self._broken = False

    # ---------------------------------------------------------------- create / open

    @classmethod
    def init(
        cls,
        where: Path | str | Backend,
        passphrase: bytes,
        *,
        kdf: KdfParams | None = None,
        cache_dir: Path | None = None,
        cache_file: Path | None = None,
    ) -> Vault:
        """Create a new vault (config, one key slot) and open it read-only."""
        backend, label = as_backend(where)
        if isinstance(backend, LocalBackend):
            root = backend.root
            if root.exists() and (not root.is_dir() or any(root.iterdir())):
                raise UsageError(
                    f"{label} exists and is not empty", hint="choose a new or empty directory"
                )
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
        elif backend.exists("config"):
            raise UsageError(f"{label} already holds a vault")
        vault_id = random_hex(16)
        keys = MasterKeys.generate()
        slot = make_key_slot(keys, passphrase, vault_id, kdf or KdfParams())
        backend.put(f"keys/{random_hex(16)}", slot)
        backend.put("config", checksum_json(_config_body(vault_id)))
        return cls.open(backend, passphrase, cache_dir=cache_dir, cache_file=cache_file)

    @classmethod
    def open(
        cls,
        where: Path | str | Backend,
        passphrase: bytes | None = None,
        *,
        keys: MasterKeys | None = None,
        write: bool = False,
        command: str = "popvault",
        cache_dir: Path | None = None,
        cache_file: Path | None = None,
        warn: Callable[[str], None] | None = None,
        sync: bool = True,
    ) -> Vault:
        """Open a vault: unlock the keys, sync the cache, and with ``write`` take the lock.

        Raises VaultNotFound (10), WrongPassphrase (12), VaultLocked (11), IntegrityError.
        """
        backend, label = as_backend(where)
        vault_id = read_config(backend, label)
        if keys is None:
            if passphrase is None:
                raise UsageError("a passphrase is needed to open the vault")
            keys = unlock(backend, vault_id, passphrase)
        warn = warn or (lambda _m: None)
        if cache_file is not None:
            path: Path | None = cache_file
        elif isinstance(backend, LocalBackend):
            path = (cache_dir or default_cache_dir()) / f"{vault_id}.sqlite"
        else:
            path = None
        cache = IndexCache(path)
        owner = cache.get_meta("vault_id")
        if owner is not None and owner != vault_id:
            cache.close()
            raise UsageError(
                f"index cache {path} belongs to another vault ({owner[:8]}…)",
                hint="delete that file or point --cache elsewhere; it is only a cache",
            )
        v = cls(backend, vault_id, keys, cache, warn=warn)
        try:
            if write:
                with interrupts.critical():  # a lock taken is a lock this Vault releases
                    v._lock = lockmod.acquire(backend, command, warn)
                v._cleanup_leftovers()
            if sync:
                v.sync_cache()
        except BaseException:
            v.close()
            raise
        return v

    def close(self) -> None:
        """Release the lock and the cache. Pending (uncommitted) work is dropped. Not
        torn by a signal (the lock is always released); waits for a commit that another
        thread is making."""
        with interrupts.critical(), self._mutex:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            self.cache.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def mutex(self) -> threading.RLock:
        """Held around every change and cache look-up; callers that run several
        accounts in threads hold it around their own check-then-act sequences."""
        return self._mutex

    @property
    def broken(self) -> bool:
        """True after a failed write: the vault must be reopened."""
        return self._broken

    @property
    def writable(self) -> bool:
        return self._lock is not None

    # ---------------------------------------------------------------- commits & cache

    def commit_names(self) -> list[str]:
        names = [n for n in self.backend.list("commits") if _COMMIT_NAME.match(n)]
        return sorted(names)

    def read_commit(self, name: str) -> dict[str, Any]:
        data = self.backend.get(name)
        m = _COMMIT_NAME.match(name)
        if m is None or hashlib.sha256(data).hexdigest() != m.group(2):
            raise IntegrityError(f"commit record {name} does not match its name")
        plain = open_object(self.keys, self.vault_id, COMMIT_MAGIC, data, name)
        body = _json_object(plain, f"commit record {name}")
        if body.get("seq") != int(m.group(1)):
            raise IntegrityError(f"commit record {name} carries the wrong sequence number")
        try:
            if not all(isinstance(x, str) for x in body["packs"] + body["segments"]):
                raise TypeError
        except (KeyError, TypeError):
            raise IntegrityError(f"commit record {name} is malformed") from None
        return body

    def read_segment(self, name: str) -> dict[str, Any]:
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
        body = _json_object(raw, what)
        if not isinstance(body.get("blobs"), list) or not isinstance(body.get("records"), list):
            raise IntegrityError(f"{what} is malformed")
        return body

    @staticmethod
    def _segment_blobs(seg: dict[str, Any]) -> list[BlobLocation]:
        return [
            BlobLocation(bytes.fromhex(b), k, p, f, fo, fl, o, n)
            for b, k, p, f, fo, fl, o, n in seg["blobs"]
        ]

    def sync_cache(self) -> int:
        """Bring the cache up to date with the vault's commits; returns commits applied."""
        names = self.commit_names()
        have = self.cache.applied_commits()
        wanted = {n.split("/", 1)[1] for n in names}
        if not have <= wanted:
            self.warn(
                f"the vault lacks {len(have - wanted)} commit(s) this machine has seen:"
                " commit records were deleted or an older copy of the vault was restored;"
                " rebuilding the index cache"
            )
        if not have <= wanted or self.cache.get_meta("vault_id") is None:
            self.cache.reset(self.vault_id)
            have = set()
        applied = 0
        for name in names:
            short = name.split("/", 1)[1]
            if short in have:
                continue
            body = self.read_commit(name)
            blobs: list[BlobLocation] = []
            records: list[dict[str, Any]] = []
            for seg_name in body["segments"]:
                seg = self.read_segment(seg_name)
                blobs += self._segment_blobs(seg)
                records += seg["records"]
            self.cache.apply(short, blobs, records)
            applied += 1
        return applied

    def rebuild_cache(self, *, from_packs: bool = False) -> dict[str, int]:
        """Rebuild the cache from segments, or from packs (when segments are lost)."""
        if not from_packs:
            self.cache.reset(self.vault_id)
            try:
                self.sync_cache()
                return {"commits": len(self.cache.applied_commits()), "packs": 0}
            except (IntegrityError, ObjectNotFound) as exc:
                self.warn(f"index segments unusable ({exc.message}); rebuilding from packs")
        self.cache.reset(self.vault_id)
        packs: list[str] = []
        commits: list[str] = []
        try:
            for name in self.commit_names():
                body = self.read_commit(name)
                packs += [p for p in body["packs"] if p not in packs]
                commits.append(name.split("/", 1)[1])
        except (IntegrityError, ObjectNotFound, ValueError) as exc:
            self.warn(f"commit records unusable ({exc}); reading every pack")
            packs = [n.rsplit("/", 1)[1] for n in self.backend.list("packs")]
            commits = []
        for pack in packs:
            data = self.backend.get(pack_object_name(pack))
            reader = self._reader(pack, data[:HEADER_SIZE])
            _frames, blobs = reader.parse(data)
            self.cache.apply(None, blobs, [])
            for loc in blobs:
                if loc.kind == "rec":
                    raw = self.read_blob(loc.blob_id, loc=loc)
                    self.cache.apply(
                        None, [], json.loads(zstandard.ZstdDecompressor().decompress(raw))
                    )
        with self.cache.db:
            for c in commits:
                self.cache.db.execute("INSERT OR IGNORE INTO commits VALUES(?)", (c,))
        return {"commits": len(commits), "packs": len(packs)}

    def _cleanup_leftovers(self) -> None:
        """Remove what interrupted runs left: temp files, packs/segments of no commit."""
        removed = self.backend.cleanup_temporary()
        present = {n.split("/", 1)[1] for n in self.commit_names()}
        lost = self.cache.applied_commits() - present
        if lost:
            self.warn(
                f"not cleaning up: the vault lacks {len(lost)} commit(s) this machine has seen;"
                " their packs may be all that is left of them"
            )
            return
        try:
            packs: set[str] = set()
            segs: set[str] = set()
            parent: str | None = None
            for seq, name in enumerate(self.commit_names(), start=1):
                body = self.read_commit(name)
                short = name.split("/", 1)[1]
                if body["seq"] != seq or body.get("parent") != parent:
                    raise IntegrityError(
                        f"commit records are not a complete chain at {short}"
                        " (a commit record is missing)"
                    )
                parent = short
                packs.update(body["packs"])
                segs.update(body["segments"])
        except (PopvaultError, ValueError, KeyError) as exc:
            self.warn(f"not cleaning up after interrupted runs: {exc}")
            return
        for obj in self.backend.list("packs"):
            if obj.rsplit("/", 1)[1] not in packs:
                self.backend.delete(obj)
                removed += 1
        for obj in self.backend.list("index"):
            if obj.rsplit("/", 1)[1] not in segs:
                self.backend.delete(obj)
                removed += 1
        if removed:
            self.warn(f"removed {removed} leftover file(s) of an interrupted run")

    # ---------------------------------------------------------------- writing

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Around every change of pending state: one thread at a time, no signal in the
        middle (:func:`popvault.interrupts.critical`), and any failure half-way marks the
        vault broken, so that a torn state (a blob queued but its frame lost, a pack
        written but not listed) can never be committed."""
        with interrupts.critical(), self._mutex:
            self._require_writable()
            try:
                yield
            except BaseException:
                self._broken = True
                raise

    def _require_writable(self) -> None:
        if self._lock is None:
            raise PopvaultError("vault was opened read-only")
        if self._broken:
            raise PopvaultError("an earlier write failed; reopen the vault")

    def has_message(self, msg_id: bytes) -> bool:
        return msg_id in self._pending_msgs or self.cache.has_message(msg_id)

    def has_message_id(self, header: str) -> bool:
        """Whether a committed message has this Message-ID header (metadata, never
        identity: a cheap first look before comparing keyed ids)."""
        return bool(header) and self.cache.has_message_id(header)

    def _store_blob(self, kind: str, data: bytes, blob_id: bytes | None = None) -> str:
        """Queue a blob for its frame unless this commit already holds it. Blobs that an
        earlier commit stored are dropped when the group reaches a frame's worth (one
        look-up for the group instead of one per blob); the frame is sealed only when a
        frame's worth of new blobs remains, so duplicates do not make frames smaller.
        ``blob_id`` when already computed."""
        if blob_id is None:
            blob_id = self.keys.keyed_id(data)
        if blob_id not in self._pending_blobs:
            self._pending_blobs.add(blob_id)
            group = self._groups.setdefault(kind, _FrameGroup())
            group.blobs.append((blob_id, kind, data))
            group.size += len(data)
            if group.size >= FRAME_TARGET:
                self._drop_stored(group)
                if group.size >= FRAME_TARGET:
                    self._flush_group(kind)
        return blob_id.hex()

    def _drop_stored(self, group: _FrameGroup) -> None:
        """Remove the group's blobs that the index already holds (looked up once each)."""
        fresh = group.blobs[group.checked :]
        stored = self.cache.stored_blobs([b[0] for b in fresh])
        if stored:
            kept = [b for b in fresh if b[0] not in stored]
            group.blobs[group.checked :] = kept
            group.size = sum(len(b[2]) for b in group.blobs)
        group.checked = len(group.blobs)

    def _flush_group(self, kind: str) -> None:
        group = self._groups.pop(kind, None)
        if group is None:
            return
        self._drop_stored(group)
        if not group.blobs:
            return
        if self._pack is None:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1))
            self._pack = PackWriter(self.keys, self.vault_id, self.level, self._executor)
        self._pack.add_frame(group.blobs)
        if self._pack.size >= PACK_TARGET:
            self._finish_pack()

    def _finish_pack(self) -> None:
        if self._pack is None:
            return
        name, data, locs = self._pack.finish()
        self._pack = None
        self.backend.put(pack_object_name(name), data)
        self._written_packs.append(name)
        self._written_locs += locs

    def _pieces(self, segments: Iterable[tuple[str, bytes, int, bytes]]) -> list[Any]:
        pieces: list[Any] = []
        for kind, data, line_length, eol in segments:
            if kind == "b64":
                ids = [
                    self._store_blob("att", data[i : i + ATT_CHUNK])
                    for i in range(0, len(data), ATT_CHUNK)
                ]
                pieces.append(["b", ids, line_length, "crlf" if eol == b"\r\n" else "lf"])
            else:
                pieces.append(["r", self._store_blob(kind, data)])
        return pieces

    def new_message(self) -> MessageWriter:
        """A writer for one message streamed in chunks (bounded memory for any size)."""
        self._require_writable()
        return MessageWriter(self)

    def add_message(
        self, data: bytes, source: SourceInfo, meta: MessageMeta | None = None
    ) -> AddResult:
        """Add one message's exact bytes (pending until :meth:`commit`)."""
        w = self.new_message()
        w.write(data)
        return w.finish(source, meta)

    def add_prepared(
        self,
        data: bytes,
        prepared: PreparedMessage,
        source: SourceInfo,
        meta: MessageMeta | None = None,
    ) -> AddResult:
        """Add a message :func:`prepare_message` has split and keyed (pending until
        :meth:`commit`): the same as :meth:`add_message` of ``data``, without the work.

        ``prepared`` must come from ``data`` and this vault's MAC key: its ids are taken
        as they are (reads, ``check --read-data`` and the read-back before any deletion
        verify them against the stored bytes)."""
        if prepared.size != len(data):
            raise ValueError("prepared message does not match its bytes")

        def pieces() -> list[Any]:
            out: list[Any] = []
            for piece in prepared.pieces:
                if isinstance(piece, Base64Piece):
                    ids = [self._store_blob("att", chunk, bid) for bid, chunk in piece.chunks]
                    eol = "crlf" if piece.eol == b"\r\n" else "lf"
                    out.append(["b", ids, piece.line_length, eol])
                else:
                    raw = data[piece.start : piece.end]
                    out.append(["r", self._store_blob(piece.kind, raw, piece.blob_id)])
            return out

        return self._finish_message(prepared.msg_id, len(data), pieces, source, meta)

    def _finish_message(
        self,
        msg_id: bytes,
        size: int,
        pieces: Callable[[], list[Any]],
        source: SourceInfo,
        meta: MessageMeta | None,
    ) -> AddResult:
        """File one message: ``pieces`` stores its blobs, called only when it is new."""
        with self._writing():
            new = not self.has_message(msg_id)
            if new:
                self._pending_msgs.add(msg_id)
                self.pending_bytes += size
                self._records.append(
                    {
                        "t": "msg",
                        "id": msg_id.hex(),
                        "size": size,
                        "pieces": pieces(),
                        "meta": (meta or MessageMeta()).to_json(),
                    }
                )
            key = (msg_id, source.account, source.uidl, source.source)
            seen = key in self._pending_srcs or (
                not new
                and self.cache.source_exists(msg_id, source.account, source.uidl, source.source)
            )
            if not seen:
                self._pending_srcs.add(key)
                self.pending_arrivals += 1
                self._records.append(
                    {
                        "t": "src",
                        "msg": msg_id.hex(),
                        "account": source.account,
                        "uidl": source.uidl,
                        "source": source.source,
                        "flags": source.flags,
                        "archived": time.time(),
                        "file_time": source.file_time,
                        "from_line_time": source.from_line_time,
                    }
                )
            return AddResult(msg_id, new, size)

    def record_deletion(self, account: str, uidl: str, msg_id: bytes | None) -> None:
        """Note that ``uidl`` was deleted from the server (pending until commit)."""
        with self._writing():
            self._records.append(
                {
                    "t": "del",
                    "account": account,
                    "uidl": uidl,
                    "msg": msg_id.hex() if msg_id else None,
                    "time": time.time(),
                }
            )

    def record_restore(self, target: str, msg_id: bytes, uid: int | None) -> None:
        """Note that a message was restored to ``target`` (pending until commit)."""
        with self._writing():
            self._records.append(
                {"t": "rst", "target": target, "msg": msg_id.hex(), "uid": uid, "time": time.time()}
            )

    @property
    def pending(self) -> int:
        """Records waiting for the next commit."""
        return len(self._records)

    def commit(self) -> str | None:
        """Make everything added so far durable and archived (format §8).

        Order: packs (already written as they filled), the last pack with the records
        blob, the index segment, then the commit record. On return the commit is durable.
        On failure nothing becomes archived; leftovers are removed by the next writer.
        Returns the commit name, or None when there was nothing to commit. If it raises
        after the commit record was renamed into place (a failing directory fsync), the
        commit may be visible on reopening: retrying is safe, dedup absorbs it.
        """
        with self._mutex:
            self._require_writable()
            if not self._records and not self._written_packs and not self._groups:
                return None
            try:
                return self._commit()
            except BaseException:
                self._broken = True
                raise

    def _commit(self) -> str:
        records = self._records
        records_json = json.dumps(records)  # encoded once: the segment holds it too
        rec_blob = zstandard.ZstdCompressor(level=RECORD_LEVEL).compress(records_json.encode())
        for kind in list(self._groups):
            self._flush_group(kind)
        self._store_blob("rec", rec_blob)
        self._flush_group("rec")
        self._finish_pack()
        locs = self._written_locs
        blobs = [[b.blob_id.hex(), b.kind, *b.fields()] for b in locs]
        self._assert_complete(records, {str(b[0]) for b in blobs})
        # json.dumps({"version": 1, "blobs": blobs, "records": records}), same bytes
        seg_json = f'{{"version": 1, "blobs": {json.dumps(blobs)}, "records": {records_json}}}'
        seg_plain = zstandard.ZstdCompressor(level=RECORD_LEVEL).compress(seg_json.encode())
        seg_data = seal_object(self.keys, self.vault_id, SEGMENT_MAGIC, seg_plain)
        seg_name = hashlib.sha256(seg_data).hexdigest()
        self.backend.put(f"index/{seg_name}", seg_data)
        names = self.commit_names()
        seq = int(_COMMIT_NAME.match(names[-1]).group(1)) + 1 if names else 1  # type: ignore[union-attr]
        body = {
            "version": 1,
            "seq": seq,
            "time": time.time(),
            "host": socket.gethostname(),
            "packs": self._written_packs,
            "segments": [seg_name],
            "parent": names[-1].split("/", 1)[1] if names else None,
        }
        cdata = seal_object(self.keys, self.vault_id, COMMIT_MAGIC, json.dumps(body).encode())
        cname = f"{seq:010d}-{hashlib.sha256(cdata).hexdigest()}"
        self.backend.put(f"commits/{cname}", cdata)
        self.cache.apply(cname, locs, records)
        self._records = []
        self.pending_bytes = 0
        self.pending_arrivals = 0
        self._written_packs = []
        self._written_locs = []
        self._pending_blobs.clear()
        self._pending_msgs.clear()
        self._pending_srcs.clear()
        return cname

    def _assert_complete(self, records: list[dict[str, Any]], written: set[str]) -> None:
        """Refuse a commit whose records name a blob that is neither in one of its packs
        (``written``: hex ids) nor in a pack an earlier commit lists (format §8.2, step
        3): a bug in the writer becomes a refused commit, never a vault whose messages
        have no data."""
        named: set[str] = set()
        for r in records:
            if r["t"] == "msg":
                for p in r["pieces"]:
                    if p[0] == "r":
                        named.add(p[1])
                    elif p[0] == "b":
                        named.update(p[1])
        named -= written
        if not named:
            return
        stored = self.cache.stored_blobs([bytes.fromhex(h) for h in named])
        missing = named - {b.hex() for b in stored}
        if missing:
            raise IntegrityError(
                f"refusing to commit: {len(missing)} blob(s) the new records name are in"
                f" no pack (first {min(missing)[:12]}); nothing was committed",
                hint="this is a bug in popvault, please report it; the vault is unchanged"
                " and the next run starts over from the last commit",
            )

    # ---------------------------------------------------------------- reading

    def _reader(self, pack: str, header: bytes | None = None) -> PackReader:
        r = self._pack_readers.get(pack)
        if r is None:
            if header is None:
                header = self.backend.get_range(pack_object_name(pack), 0, HEADER_SIZE)
            r = PackReader(self.keys, self.vault_id, pack, header)
            self._pack_readers[pack] = r
        return r

    def _frame(self, loc: BlobLocation, use_cache: bool) -> bytes:
        key = (loc.pack, loc.frame)
        if use_cache and key in self._frames:
            self._frames.move_to_end(key)
            return self._frames[key]
        try:
            ct = self.backend.get_range(
                pack_object_name(loc.pack), loc.frame_offset, loc.frame_length
            )
            reader = (
                self._reader(loc.pack)
                if use_cache
                else PackReader(
                    self.keys,
                    self.vault_id,
                    loc.pack,
                    self.backend.get_range(pack_object_name(loc.pack), 0, HEADER_SIZE),
                )
            )
        except ObjectNotFound:
            raise IntegrityError(
                f"pack {loc.pack[:12]} is missing",
                hint="run 'popvault check --read-data' to list affected messages",
            ) from None
        if len(ct) != loc.frame_length:
            raise IntegrityError(f"pack {loc.pack[:12]} is truncated")
        plain = reader.frame(loc.frame, ct)
        if use_cache:
            self._frames[key] = plain
            while len(self._frames) > 8:
                self._frames.popitem(last=False)
        return plain

    def read_blob(
        self, blob_id: bytes, *, loc: BlobLocation | None = None, use_cache: bool = True
    ) -> bytes:
        """A blob's bytes, authenticated and checked against its keyed id."""
        loc = loc or self.cache.blob(blob_id)
        if loc is None:
            raise IntegrityError(
                f"blob {blob_id.hex()[:12]} is not in the index",
                hint="run 'popvault index rebuild', then 'popvault check --read-data'",
            )
        frame = self._frame(loc, use_cache)
        data = frame[loc.offset : loc.offset + loc.length]
        if len(data) != loc.length or self.keys.keyed_id(data) != blob_id:
            raise IntegrityError(
                f"blob {blob_id.hex()[:12]} in pack {loc.pack[:12]} does not match its id",
                hint="run 'popvault check --read-data' to list affected messages",
            )
        return data

    def iter_pieces(self, pieces: list[Any], *, use_cache: bool = True) -> Iterator[bytes]:
        for piece in pieces:
            if piece[0] == "r":
                yield self.read_blob(bytes.fromhex(piece[1]), use_cache=use_cache)
            elif piece[0] == "b":
                _tag, ids, line_length, eol = piece
                eolb = b"\r\n" if eol == "crlf" else b"\n"
                carry = b""
                for i, bid in enumerate(ids):
                    chunk = self.read_blob(bytes.fromhex(bid), use_cache=use_cache)
                    s = carry + base64.b64encode(chunk)
                    last = i == len(ids) - 1
                    cut = len(s) if last else len(s) - len(s) % line_length
                    yield wrap_lines(s[:cut], line_length, eolb)
                    carry = s[cut:]
            else:
                raise IntegrityError(f"unknown piece type {piece[0]!r}")

    def message(self, msg_id: bytes) -> MessageRow:
        row = self.cache.message(msg_id)
        if row is None:
            raise UsageError(f"no message {msg_id.hex()[:12]} in the vault")
        return row

    def iter_message(self, msg_id: bytes, *, use_cache: bool = True) -> Iterator[bytes]:
        """Stream a message's exact bytes; raises IntegrityError (at the end at the latest)
        if the whole does not hash to its id. Every piece is authenticated before it is
        yielded, so nothing unauthenticated is ever returned."""
        row = self.message(msg_id)
        h = self.keys.hasher()
        n = 0
        for chunk in self.iter_pieces(row.pieces, use_cache=use_cache):
            h.update(chunk)
            n += len(chunk)
            yield chunk
        if n != row.size or h.digest() != msg_id:
            raise IntegrityError(f"message {msg_id.hex()[:12]} does not rebuild to its id")

    def read_message(self, msg_id: bytes, *, use_cache: bool = True) -> bytes:
        """A whole message, verified before it is returned."""
        return b"".join(self.iter_message(msg_id, use_cache=use_cache))

    def verify_messages(self, msg_ids: Iterable[bytes]) -> dict[bytes, tuple[int, int]]:
        """Read committed messages back from storage (no caches) and check their ids.

        This is the read-back that must pass before a message is DELE'd on a server;
        raises IntegrityError. Returns each message's (size, line feeds), so a caller can
        compare them with what a server claims."""
        self._frames.clear()
        shape: dict[bytes, tuple[int, int]] = {}
        for mid in msg_ids:
            size = lines = 0
            for chunk in self.iter_message(mid, use_cache=False):
                size += len(chunk)
                lines += chunk.count(b"\n")
            shape[mid] = (size, lines)
        return shape

    def resolve(self, prefix: str) -> bytes:
        """A message id from an unambiguous hex prefix; UsageError otherwise."""
        p = prefix.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{4,64}", p):
            raise UsageError(f"{prefix!r} is not a message id (4 to 64 hex digits)")
        found = self.cache.resolve_prefix(p)
        if not found:
            raise UsageError(f"no message with id {p}")
        if len(found) > 1:
            raise UsageError(f"id prefix {p} is ambiguous", hint="give more digits")
        return found[0]

    def messages(self, flt: Filter | None = None) -> Iterator[MessageRow]:
        return self.cache.messages(flt)

    def known_uidls(self, account: str) -> dict[str, bytes]:
        """UIDL -> message id of what is committed for ``account``."""
        with self._mutex:
            return self.cache.uidls(account)

    # ---------------------------------------------------------------- stats & check

    def stats(self) -> dict[str, Any]:
        t = self.cache.totals()
        stored = sum(self.backend.size(n) for n in self.backend.list("packs"))
        stored += sum(self.backend.size(n) for n in self.backend.list("index"))
        stored += sum(self.backend.size(n) for n in self.backend.list("commits"))
        raw = t["raw_bytes"]
        return {
            "messages": t["messages"],
            "arrivals": t["arrivals"],
            "accounts": t["accounts"],
            "raw_bytes": raw,
            "arrival_bytes": t["arrival_bytes"],
            "unique_blob_bytes": t["blob_bytes"],
            "stored_bytes": stored,
            "dedup_ratio": (t["arrival_bytes"] / raw) if raw else 1.0,
            "compression_ratio": (raw / stored) if stored else 1.0,
            "commits": len(self.commit_names()),
            "packs": len(self.backend.list("packs")),
        }

    def check(
        self, *, read_data: bool = False, progress: Callable[[int], None] | None = None
    ) -> CheckReport:
        """Check structure (and with ``read_data`` every byte); never raises on damage,
        reports it. See docs/format.md §11 for what is verified at each level."""
        rep = CheckReport()
        # key slots
        for slot in self.backend.list("keys"):
            try:
                parse_checksum_json(self.backend.get(slot), f"key slot {slot}")
            except IntegrityError as exc:
                rep.problems.append(exc.message)
        # commits
        packs: dict[str, str] = {}
        seg_names: list[str] = []
        names = self.commit_names()
        extra = [n for n in self.backend.list("commits") if not _COMMIT_NAME.match(n)]
        for n in extra:
            rep.problems.append(f"unexpected object {n} in commits/")
        prev: str | None = None
        for i, name in enumerate(names, start=1):
            m = _COMMIT_NAME.match(name)
            assert m is not None
            if int(m.group(1)) != i:
                rep.problems.append(f"commit sequence broken at {name} (expected {i})")
            try:
                body = self.read_commit(name)
            except (IntegrityError, ValueError) as exc:
                rep.problems.append(str(exc))
                prev = name.split("/", 1)[1]
                continue
            if body.get("parent") != prev:
                rep.problems.append(f"commit {name} does not follow its predecessor")
            prev = name.split("/", 1)[1]
            for p in body.get("packs", []):
                packs[p] = name
            seg_names += body.get("segments", [])
        # segments: authoritative blob locations
        seg_locs: dict[bytes, BlobLocation] = {}
        for s in seg_names:
            try:
                seg = self.read_segment(s)
                for loc in self._segment_blobs(seg):
                    seg_locs[loc.blob_id] = loc
            except (IntegrityError, ValueError, KeyError, TypeError) as exc:
                rep.problems.append(str(exc))
        present = {n.rsplit("/", 1)[1] for n in self.backend.list("packs")}
        for p in packs:
            if p not in present:
                rep.problems.append(f"pack {p[:12]} is missing")
        uncommitted = sorted(present - set(packs))
        writer = lockmod.running_writer(self.backend) if self._lock is None else None
        if uncommitted and writer is not None:
            rep.notes.append(
                f"a writer is running ({writer}): its {len(uncommitted)} pack(s) not"
                " committed yet are work in progress, not problems"
            )
        for p in [] if writer is not None else uncommitted:
            rep.notes.append(f"pack {p[:12]} belongs to no commit (left by an interrupted run)")
        rep.packs = len(packs)
        bad_blobs: set[bytes] = set()
        for loc in seg_locs.values():
            if loc.pack not in present:
                bad_blobs.add(loc.blob_id)
        if read_data:
            bad_blobs |= self._check_packs(sorted(packs), seg_locs, rep, progress)
        # messages: every piece's blob must be known and good
        cached = {r[0] for r in self.cache.db.execute("SELECT id FROM blobs")}
        rep.blobs = len(cached)
        for row in self.cache.messages():
            rep.messages += 1
            ids = piece_ids(row.pieces)
            if any(b in bad_blobs or (seg_locs and b not in seg_locs) for b in ids):
                rep.affected.add(row.id)
                continue
            if read_data:
                try:
                    for _ in self.iter_message(row.id):
                        pass
                except IntegrityError as exc:
                    rep.problems.append(exc.message)
                    rep.affected.add(row.id)
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
        return rep

    def _check_packs(
        self,
        packs: list[str],
        seg_locs: dict[bytes, BlobLocation],
        rep: CheckReport,
        progress: Callable[[int], None] | None,
    ) -> set[bytes]:
        bad: set[bytes] = set()
        by_pack: dict[str, list[BlobLocation]] = {}
        for loc in seg_locs.values():
            by_pack.setdefault(loc.pack, []).append(loc)
        for p in packs:
            try:
                data = self.backend.get(pack_object_name(p))
            except ObjectNotFound:
                bad.update(b.blob_id for b in by_pack.get(p, []))
                continue
            if progress:
                progress(len(data))
            try:
                if hashlib.sha256(data).hexdigest() != p:
                    raise IntegrityError(
                        f"pack {p[:12]} does not match its name (damaged or swapped)"
                    )
                reader = PackReader(self.keys, self.vault_id, p, data[:HEADER_SIZE])
                frames, blobs = reader.parse(data)
                plains = list(reader.iter_frames(data, frames))
                trailer = {b.blob_id: b for b in blobs}
                for loc in by_pack.get(p, []):
                    t = trailer.get(loc.blob_id)
                    if t != loc:
                        rep.problems.append(
                            f"pack {p[:12]}: index and pack disagree"
                            f" on blob {loc.blob_id.hex()[:12]}"
                        )
                        bad.add(loc.blob_id)
                        continue
                    chunk = plains[loc.frame][loc.offset : loc.offset + loc.length]
                    if self.keys.keyed_id(chunk) != loc.blob_id:
                        rep.problems.append(
                            f"pack {p[:12]}: blob {loc.blob_id.hex()[:12]} is damaged"
                        )
                        bad.add(loc.blob_id)
            except IntegrityError as exc:
                rep.problems.append(exc.message)
                bad.update(b.blob_id for b in by_pack.get(p, []))
        return bad

    # ---------------------------------------------------------------- keys

    def add_passphrase(self, passphrase: bytes, kdf: KdfParams | None = None) -> str:
        """Write a new key slot and verify it opens; returns its object name."""
        name = f"keys/{random_hex(16)}"
        self.backend.put(
            name, make_key_slot(self.keys, passphrase, self.vault_id, kdf or KdfParams())
        )
        check = open_key_slot(self.backend.get(name), passphrase, self.vault_id, name)
        if check != self.keys:
            self.backend.delete(name)
            raise IntegrityError("new key slot did not verify; the old one was kept")
        return name

    def change_passphrase(self, old: bytes, new: bytes, kdf: KdfParams | None = None) -> None:
        """Replace the slot(s) that ``old`` opens by one for ``new`` (new verified first)."""
        old_slots = []
        for slot in self.backend.list("keys"):
            try:
                open_key_slot(self.backend.get(slot), old, self.vault_id, slot)
                old_slots.append(slot)
            except (WrongPassphrase, IntegrityError):
                continue
        if not old_slots:
            raise WrongPassphrase("wrong passphrase")
        # not torn by a signal: a user told "interrupted" must not find both passphrases
        # working, nor be told that the change failed when it is done
        with interrupts.critical():
            self.add_passphrase(new, kdf)
            for slot in old_slots:
                self.backend.delete(slot)

    def export_keys(self) -> str:
        return export_keys(self.keys, self.vault_id)


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    """A JSON object of format version 1; IntegrityError or a clear refusal otherwise."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise IntegrityError(f"{what} is malformed") from None
    if not isinstance(body, dict):
        raise IntegrityError(f"{what} is malformed")
    version = body.get("version")
    if version != 1:
        if isinstance(version, int) and not isinstance(version, bool) and version > 1:
            raise PopvaultError(
                f"{what} has format version {version}, newer than this popvault supports",
                hint="upgrade popvault; the vault was not changed",
            )
        raise IntegrityError(f"{what} has an invalid format version")
    return body


def unlock(backend: Backend, vault_id: str, passphrase: bytes) -> MasterKeys:
    """Try every key slot; WrongPassphrase (12) when none opens."""
    slots = backend.list("keys")
    if not slots:
        raise IntegrityError(
            "the vault has no key slots", hint="restore keys with 'popvault key import'"
        )
    damaged: IntegrityError | None = None
    for slot in slots:
        try:
            return open_key_slot(backend.get(slot), passphrase, vault_id, slot)
        except WrongPassphrase:
            continue
        except IntegrityError as exc:
            damaged = exc
    if damaged is not None and len(slots) == 1:
        raise damaged
    raise WrongPassphrase(
        "wrong passphrase: no key slot of this vault opens with it",
        hint="check --passphrase-file/--passphrase-command/POPVAULT_PASSPHRASE",
    )


def import_key_export(
    where: Path | str | Backend, text: str, passphrase: bytes, kdf: KdfParams | None = None
) -> None:
    """Write a new key slot from a key export (for a vault whose passphrase is lost)."""
    backend, label = as_backend(where)
    vault_id = read_config(backend, label)
    try:
        exp_id, keys = import_keys(text)
    except ValueError as exc:
        raise UsageError(f"key export: {exc}") from None
    if exp_id != vault_id:
        raise UsageError(f"that key export belongs to vault {exp_id[:8]}…, not {vault_id[:8]}…")
    name = f"keys/{random_hex(16)}"
    backend.put(name, make_key_slot(keys, passphrase, vault_id, kdf or KdfParams()))
    if open_key_slot(backend.get(name), passphrase, vault_id, name) != keys:
        backend.delete(name)
        raise IntegrityError("new key slot did not verify")


class MessageWriter:
    """Streams one message into the vault (format §7.2).

    Up to INLINE_LIMIT bytes are buffered and split in memory (attachment dedup); past
    that the header is stored and the rest goes out as 1 MiB ``txt`` blobs as it comes,
    so memory stays bounded for any message size. The keyed hash of a streamed message
    is computed as it comes; that of a buffered one at the end, in one call.
    """

    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._buf = bytearray()
        self._hasher: hmac.HMAC | None = None  # from the start of streaming
        self._size = 0
        self._streaming = False
        self._pieces: list[Any] = []
        self._head = b""

    @property
    def head(self) -> bytes:
        """The header section (for metadata parsing), available after writes."""
        if self._streaming:
            return self._head
        end = header_end(self._buf, HEADER_MAX + 4)
        return bytes(self._buf[: end if end >= 0 else HEADER_MAX])

    @property
    def size(self) -> int:
        return self._size

    def write(self, chunk: bytes) -> None:
        """Add the next bytes of the message; a large chunk is taken in 1 MiB slices so
        the writer never holds more than the inline limit plus one slice."""
        view = memoryview(chunk)
        for i in range(0, len(view), CHUNK):
            piece = view[i : i + CHUNK]
            if self._hasher is not None:
                self._hasher.update(piece)
            self._size += len(piece)
            self._buf += piece
            if not self._streaming and len(self._buf) > INLINE_LIMIT:
                self._start_streaming()
            if self._streaming:
                self._drain(final=False)

    def _start_streaming(self) -> None:
        self._hasher = self._vault.keys.hasher()
        self._hasher.update(self._buf)  # everything so far: nothing has left the buffer
        self._head = self.head
        self._streaming = True
        with self._vault._writing():
            if 0 < len(self._head) <= HEADER_MAX and header_end(self._head) > 0:
                self._pieces.append(["r", self._vault._store_blob("hdr", self._head)])
                del self._buf[: len(self._head)]

    def _drain(self, final: bool) -> None:
        with self._vault._writing():
            while len(self._buf) >= CHUNK or (final and self._buf):
                part = bytes(self._buf[:CHUNK])
                del self._buf[:CHUNK]
                self._pieces.append(["r", self._vault._store_blob("txt", part)])

    def finish(self, source: SourceInfo, meta: MessageMeta | None = None) -> AddResult:
        """Add the message (pending until commit). Returns its id and whether it is new."""
        if self._streaming:
            assert self._hasher is not None
            msg_id = self._hasher.digest()
            self._drain(final=True)
            streamed = self._pieces
            return self._vault._finish_message(msg_id, self._size, lambda: streamed, source, meta)
        data = bytes(self._buf)
        self._buf = bytearray()
        msg_id = self._vault.keys.keyed_id(data)
        segs = ((s.kind, s.data, s.line_length, s.eol) for s in split_message(data))
        return self._vault._finish_message(
            msg_id, self._size, lambda: self._vault._pieces(segs), source, meta
        )
