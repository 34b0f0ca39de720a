"""Writing: pending blobs in frame groups, packs as they fill, and the commit (§6, §8.2).

Messages are split into blobs (:mod:`popvault.vault.split`), queued in one frame group per
blob kind, sealed into zstd frames of about 1 MiB and written in packs of about 8 MiB as
they fill. Records wait in a list. :meth:`Writer.commit` makes all of it durable in the
order packs, index segment, commit record; only the commit record makes anything
archived. The facade (:class:`popvault.vault.vault.Vault`) holds its lock and keeps
signals out while this state changes, and refuses to commit it once a change failed
half-way.
"""

from __future__ import annotations

import hmac
import io
import json
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager

import zstandard

from popvault.errors import IntegrityError
from popvault.vault.backend import Backend, LocalBackend
from popvault.vault.cache import IndexCache
from popvault.vault.crypto import MasterKeys
from popvault.vault.ids import Base64Piece, PreparedMessage
from popvault.vault.meta import MessageMeta
from popvault.vault.pack import (
    LATEST_PACK_VERSION,
    BlobLocation,
    PackWriter,
    pack_object_name,
)
from popvault.vault.records import (
    AddResult,
    CommitMark,
    DelRecord,
    MsgRecord,
    Pieces,
    Record,
    RstRecord,
    SourceInfo,
    SrcRecord,
    attachment_piece,
    blob_piece,
    piece_hex_ids,
)
from popvault.vault.segments import RECORD_LEVEL, CommitLog
from popvault.vault.split import (
    CHUNK,
    HEADER_MAX,
    Base64Run,
    header_end,
    split_message_lazily,
)

#: Messages up to this size are split in memory (attachment dedup); larger ones stream.
INLINE_LIMIT = 32 << 20
FRAME_TARGET = 1 << 20
PACK_TARGET = 8 << 20
DEFAULT_LEVEL = 9


class FrameGroup:
    """Blobs of one kind waiting for their frame."""

    def __init__(self) -> None:
        self.blobs: list[tuple[bytes, str, bytes]] = []
        self.size = 0
        #: Leading blobs already looked up in the index (none of them is stored yet).
        self.checked = 0


def store_threads(backend: Backend) -> int:
    """Threads storing packs for ``backend``: its ``upload_concurrency`` (an object
    store: several uploads at once), one for a local directory (write and fsync beside
    the caller), none for an in-memory store."""
    threads = getattr(backend, "upload_concurrency", None)
    if isinstance(threads, int):
        return threads
    return 1 if isinstance(backend, LocalBackend) else 0


class PackStore:
    """Packs sealed, named and stored off the thread that fills them (format §8.2 step 1).

    Sealing a pack's last frames and trailer, hashing it (its name) and storing it
    (write and fsync, or an upload) release the interpreter lock: they run on up to
    ``concurrency`` threads while the caller goes on receiving and splitting. At most
    ``concurrency`` packs are in flight (memory: that many packs); a submission waits for
    the oldest beyond that. With ``concurrency`` 0 packs are stored in the caller's
    thread, at once (an in-memory backend: nothing to overlap). :meth:`drain` waits for
    all of them and gives their names and blob locations in submission order; the
    commit calls it before it writes anything that names them, so the order packs ->
    index segment -> commit record holds. A pack that failed raises from :meth:`check`,
    :meth:`submit` or :meth:`drain`; the others are still waited for (no thread writes
    into the vault after its writer has given up).
    """

    def __init__(self, backend: Backend, concurrency: int) -> None:
        self.backend = backend
        self.limit = concurrency
        self._pool = (
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="popvault-pack")
            if concurrency > 0
            else None
        )
        self._inflight: deque[Future[tuple[str, list[BlobLocation]]]] = deque()
        self._done: list[tuple[str, list[BlobLocation]]] = []

    def __len__(self) -> int:
        return len(self._inflight) + len(self._done)

    def _store(self, pack: PackWriter) -> tuple[str, list[BlobLocation]]:
        name, data, locs = pack.finish()
        if self.limit > 1:
            # an upload holds bytes (S3 signs and sends them): make them once and free
            # the pack's buffer now, not when the upload is done (one pack, not two,
            # for each upload in flight)
            payload: bytes | bytearray = bytes(data)
            data.clear()
        else:
            payload = data
        self.backend.put(pack_object_name(name), payload)
        return name, locs

    def submit(self, pack: PackWriter) -> None:
        if self._pool is None:
            self._done.append(self._store(pack))
            return
        while len(self._inflight) >= self.limit:
            self._collect_oldest()
        self._inflight.append(self._pool.submit(self._store, pack))

    def check(self) -> None:
        """Raise now the failure of a pack that already failed (never waits)."""
        while self._inflight and self._inflight[0].done():
            self._collect_oldest()

    def _collect_oldest(self) -> None:
        fut = self._inflight.popleft()
        try:
            self._done.append(fut.result())
        except BaseException:
            self._wait_all()
            raise

    def _wait_all(self) -> None:
        while self._inflight:
            fut = self._inflight.popleft()
            try:
                fut.result()
            except BaseException:  # noqa: S110 - the first failure is being raised
                pass

    def drain(self) -> list[tuple[str, list[BlobLocation]]]:
        """Wait for every pack in flight: (name, blob locations) of each stored pack."""
        while self._inflight:
            self._collect_oldest()
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        """Wait for the packs in flight (their failures are dropped) and stop."""
        self._wait_all()
        self._done = []
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class Writer:
    """The pending writes of one open vault, and their commit. Not thread-safe: the
    facade serialises calls."""

    def __init__(
        self,
        backend: Backend,
        keys: MasterKeys,
        vault_id: str,
        cache: IndexCache,
        log: CommitLog,
        level: int = DEFAULT_LEVEL,
        pack_version: int = LATEST_PACK_VERSION,
    ) -> None:
        self.backend = backend
        self.keys = keys
        self.vault_id = vault_id
        self.cache = cache
        self.log = log
        self.level = level
        #: The pack version written: the vault's format version (format §4, §6.1).
        self.pack_version = pack_version
        self._executor: ThreadPoolExecutor | None = None
        self._pack: PackWriter | None = None
        #: Packs stored off this thread; uploads to an object store run several at once.
        self._store = PackStore(backend, store_threads(backend))
        self.groups: dict[str, FrameGroup] = {}
        self.pending_blobs: set[bytes] = set()
        self.pending_msgs: set[bytes] = set()
        #: Messages :meth:`prefetch` found not archived (until the next commit).
        self.absent: set[bytes] = set()
        self.pending_srcs: set[tuple[bytes, str, str | None, str]] = set()
        self.records: list[Record] = []
        self.pending_bytes = 0
        self.pending_arrivals = 0
        self.written_packs: list[str] = []
        self.written_locs: list[BlobLocation] = []
        #: Packs no commit names, taken into the next commit (§8.4), and their blobs.
        self.adopted_packs: list[str] = []
        self.adopted_locs: list[BlobLocation] = []
        #: Chain damage the next commit accepts (``popvault repair``, §8.7).
        self.accepts: tuple[str, ...] = ()

    def close(self) -> None:
        self._store.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @property
    def empty(self) -> bool:
        return (
            not self.records
            and not self.written_packs
            and not self._store
            and not self.groups
            and not self.adopted_packs
            and not self.accepts
        )

    def adopt(self, packs: list[str], locs: list[BlobLocation], records: list[Record]) -> None:
        """Take packs that no commit names into the next commit (§8.4): their blobs
        become reachable and ``records`` (those of their ``rec`` blobs that the vault
        does not hold yet) are committed first."""
        self.adopted_packs += [p for p in packs if p not in self.adopted_packs]
        self.adopted_locs += locs
        self.pending_blobs.update(loc.blob_id for loc in locs)
        for r in records:
            if isinstance(r, MsgRecord):
                self.pending_msgs.add(r.id)
            elif isinstance(r, SrcRecord):
                s = r.source
                self.pending_srcs.add((r.msg, s.account, s.uidl, s.source))
        self.records[:0] = records

    def has_message(self, msg_id: bytes) -> bool:
        if msg_id in self.pending_msgs:
            return True
        return msg_id not in self.absent and self.cache.has_message(msg_id)

    def prefetch(self, msg_ids: list[bytes]) -> None:
        """Look up which of ``msg_ids`` are archived in one query, so that
        :meth:`has_message` answers for the others without one (until the next commit)."""
        ids = [i for i in msg_ids if i not in self.pending_msgs and i not in self.absent]
        if ids:
            self.absent.update(set(ids) - self.cache.known_messages(ids))

    # ------------------------------------------------------------------ blobs

    def store_blob(self, kind: str, data: bytes, blob_id: bytes | None = None) -> str:
        """Queue a blob for its frame unless this commit already holds it. Blobs that an
        earlier commit stored are dropped when the group reaches a frame's worth (one
        look-up for the group instead of one per blob); the frame is sealed only when a
        frame's worth of new blobs remains, so duplicates do not make frames smaller.
        ``blob_id`` when already computed. Returns the blob id in hex."""
        if blob_id is None:
            blob_id = self.keys.keyed_id(data)
        self._store.check()  # a pack that failed stops the run before more is added
        if blob_id not in self.pending_blobs:
            self.pending_blobs.add(blob_id)
            group = self.groups.setdefault(kind, FrameGroup())
            group.blobs.append((blob_id, kind, data))
            group.size += len(data)
            if group.size >= FRAME_TARGET:
                self._drop_stored(group)
                if group.size >= FRAME_TARGET:
                    self._flush_group(kind)
        return blob_id.hex()

    def _drop_stored(self, group: FrameGroup) -> None:
        """Remove the group's blobs that the index already holds (looked up once each)."""
        fresh = group.blobs[group.checked :]
        stored = self.cache.stored_blobs([b[0] for b in fresh])
        if stored:
            kept = [b for b in fresh if b[0] not in stored]
            group.blobs[group.checked :] = kept
            group.size = sum(len(b[2]) for b in group.blobs)
        group.checked = len(group.blobs)

    def _flush_group(self, kind: str) -> None:
        group = self.groups.pop(kind, None)
        if group is None:
            return
        self._drop_stored(group)
        if not group.blobs:
            return
        if self._pack is None:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1))
            self._pack = PackWriter(
                self.keys, self.vault_id, self.level, self._executor, self.pack_version
            )
        self._pack.add_frame(group.blobs)
        if self._pack.size >= PACK_TARGET:
            self._finish_pack()

    def _finish_pack(self) -> None:
        if self._pack is None:
            return
        pack, self._pack = self._pack, None
        self._store.submit(pack)

    def _stored_packs(self) -> None:
        """Wait for the packs in flight; they join this commit's written packs."""
        for name, locs in self._store.drain():
            self.written_packs.append(name)
            self.written_locs += locs

    # ------------------------------------------------------------------ messages

    def split_pieces(self, data: bytes) -> Pieces:
        """Split a whole message and store its blobs; its pieces (§7.2). An attachment
        is decoded a blob at a time, as its blobs are stored."""
        pieces: Pieces = []
        for seg in split_message_lazily(data):
            if isinstance(seg, Base64Run):
                ids = [self.store_blob("att", chunk) for chunk in seg.chunks()]
                pieces.append(attachment_piece(ids, seg.line_length, seg.eol))
            else:
                pieces.append(blob_piece(self.store_blob(seg.kind, seg.data)))
        return pieces

    def prepared_pieces(self, data: bytes, prepared: PreparedMessage) -> Pieces:
        """Store the blobs of a message :func:`prepare_message` split; its pieces."""
        out: Pieces = []
        for piece in prepared.pieces:
            if isinstance(piece, Base64Piece):
                ids = [self.store_blob("att", chunk, bid) for bid, chunk in piece.chunks]
                out.append(attachment_piece(ids, piece.line_length, piece.eol))
            else:
                raw = data[piece.start : piece.end]
                out.append(blob_piece(self.store_blob(piece.kind, raw, piece.blob_id)))
        return out

    def file_message(
        self,
        msg_id: bytes,
        size: int,
        pieces: Callable[[], Pieces],
        source: SourceInfo,
        meta: MessageMeta | None,
    ) -> AddResult:
        """File one message: ``pieces`` stores its blobs, called only when it is new."""
        new = not self.has_message(msg_id)
        if new:
            self.pending_msgs.add(msg_id)
            self.pending_bytes += size
            self.records.append(MsgRecord(msg_id, size, pieces(), meta or MessageMeta()))
        key = (msg_id, source.account, source.uidl, source.source)
        seen = key in self.pending_srcs or (
            not new and self.cache.source_exists(msg_id, source.account, source.uidl, source.source)
        )
        if not seen:
            self.pending_srcs.add(key)
            self.pending_arrivals += 1
            self.records.append(SrcRecord(msg_id, source, time.time()))
        return AddResult(msg_id, new, size)

    def record(self, rec: DelRecord | RstRecord) -> None:
        self.records.append(rec)

    # ------------------------------------------------------------------ commit

    def commit(self) -> tuple[str, list[BlobLocation], list[Record]]:
        """Make everything pending durable (§8.2); returns the commit's short name, its
        blob locations and records (for the cache), and clears the pending state."""
        records = self.records
        for kind in list(self.groups):
            self._flush_group(kind)
        self._stored_packs()
        # the records carry the commit's place and its packs so far (§9.2): a pack
        # that outlives a lost commit record still says which commit it belonged to
        position = self.log.next_position()
        mark = CommitMark(*position, tuple(self.adopted_packs + self.written_packs))
        records_json = json.dumps([mark.to_json(), *(r.to_json() for r in records)])
        rec_blob = zstandard.ZstdCompressor(level=RECORD_LEVEL).compress(records_json.encode())
        self.store_blob("rec", rec_blob)
        self._flush_group("rec")
        self._finish_pack()
        self._stored_packs()
        packs = self.adopted_packs + self.written_packs
        locs = self.adopted_locs + self.written_locs
        blobs = [[b.blob_id.hex(), b.kind, *b.fields()] for b in locs]
        self.assert_complete(records, {str(b[0]) for b in blobs})
        seg_name = self.log.put_segment(blobs, records_json)
        cname = self.log.put_commit(packs, [seg_name], position, self.accepts)
        self.adopted_packs = []
        self.adopted_locs = []
        self.accepts = ()
        self.records = []
        self.pending_bytes = 0
        self.pending_arrivals = 0
        self.written_packs = []
        self.written_locs = []
        self.pending_blobs.clear()
        self.pending_msgs.clear()
        self.absent.clear()  # the cache is about to hold them
        self.pending_srcs.clear()
        return cname, locs, records

    def assert_complete(self, records: list[Record], written: set[str]) -> None:
        """Refuse a commit whose records name a blob that is neither in one of its packs
        (``written``: hex ids) nor in a pack an earlier commit lists (format §8.2, step
        3): a bug in the writer becomes a refused commit, never a vault whose messages
        have no data."""
        named: set[str] = set()
        for r in records:
            if isinstance(r, MsgRecord):
                named.update(piece_hex_ids(r.pieces))
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


class MessageWriter:
    """Streams one message into the vault (format §7.2).

    Up to INLINE_LIMIT bytes are buffered and split in memory (attachment dedup); past
    that the header is stored and the rest goes out as 1 MiB ``txt`` blobs as it comes,
    so memory stays bounded for any message size. The keyed hash of a streamed message
    is computed as it comes; that of a buffered one at the end, in one call. ``guard``
    is the facade's lock-and-no-signals section around every change of pending state.
    """

    def __init__(self, writer: Writer, guard: Callable[[], AbstractContextManager[None]]) -> None:
        self._writer = writer
        self._guard = guard
        #: The message so far, until it streams: its bytes are handed to the splitter
        #: without a copy (``getvalue``), so a message is held once, not twice.
        self._whole = io.BytesIO()
        #: Once streaming: the bytes not yet cut into a blob.
        self._buf = bytearray()
        self._hasher: hmac.HMAC | None = None  # from the start of streaming
        self._size = 0
        self._streaming = False
        self._pieces: Pieces = []
        self._head = b""
        #: The message's bytes once it is finished, when it was split in memory.
        self.data: bytes | None = None

    @property
    def head(self) -> bytes:
        """The header section (for metadata parsing), available after writes."""
        if self._streaming:
            return self._head
        with self._whole.getbuffer() as view:
            prefix = bytes(view[: HEADER_MAX + 4])
        end = header_end(prefix)
        return prefix[: end if end >= 0 else HEADER_MAX]

    @property
    def size(self) -> int:
        return self._size

    def write(self, chunk: bytes) -> None:
        """Add the next bytes of the message; a large chunk is taken in 1 MiB slices so
        the writer never holds more than the inline limit plus one slice."""
        view = memoryview(chunk)
        for i in range(0, len(view), CHUNK):
            piece = view[i : i + CHUNK]
            self._size += len(piece)
            if self._hasher is not None:
                self._hasher.update(piece)
                self._buf += piece
                self._drain(final=False)
                continue
            self._whole.write(piece)
            if self._size > INLINE_LIMIT:
                self._start_streaming()

    def _start_streaming(self) -> None:
        self._hasher = self._writer.keys.hasher()
        self._head = self.head
        self._streaming = True
        whole, self._whole = self._whole, io.BytesIO()
        with whole.getbuffer() as view:
            self._hasher.update(view)  # everything so far: nothing has left the buffer
            start = 0
            with self._guard():
                if 0 < len(self._head) <= HEADER_MAX and header_end(self._head) > 0:
                    self._pieces.append(blob_piece(self._writer.store_blob("hdr", self._head)))
                    start = len(self._head)
                # the full blobs go now, straight from the buffer; the rest waits
                for pos in range(start, len(view) - CHUNK + 1, CHUNK):
                    self._store_txt(bytes(view[pos : pos + CHUNK]))
                    start = pos + CHUNK
            self._buf = bytearray(view[start:])

    def _store_txt(self, part: bytes) -> None:
        self._pieces.append(blob_piece(self._writer.store_blob("txt", part)))

    def _drain(self, final: bool) -> None:
        with self._guard():
            while len(self._buf) >= CHUNK or (final and self._buf):
                part = bytes(self._buf[:CHUNK])
                del self._buf[:CHUNK]
                self._store_txt(part)

    def file_prepared(
        self,
        data: bytes,
        prepared: PreparedMessage,
        source: SourceInfo,
        meta: MessageMeta | None = None,
    ) -> AddResult:
        """Add ``data`` whole instead of writing it (pending until commit), split and
        keyed already by :func:`~popvault.vault.ids.prepare_message` with this vault's
        MAC key in another thread of this process: the same ids and pieces as
        :meth:`finish` would give, without that work on the caller's thread."""
        if self._size or prepared.size != len(data):
            raise ValueError("prepared message does not match its bytes")
        w = self._writer
        with self._guard():
            return w.file_message(
                prepared.msg_id, len(data), lambda: w.prepared_pieces(data, prepared), source, meta
            )

    def finish(self, source: SourceInfo, meta: MessageMeta | None = None) -> AddResult:
        """Add the message (pending until commit). Returns its id and whether it is new."""
        w = self._writer
        if self._streaming:
            assert self._hasher is not None
            msg_id = self._hasher.digest()
            self._drain(final=True)
            streamed = self._pieces
            with self._guard():
                return w.file_message(msg_id, self._size, lambda: streamed, source, meta)
        data = self._whole.getvalue()  # the buffer's own bytes, not a copy
        self._whole = io.BytesIO()
        self.data = data
        msg_id = w.keys.keyed_id(data)
        with self._guard():
            return w.file_message(msg_id, self._size, lambda: w.split_pieces(data), source, meta)
