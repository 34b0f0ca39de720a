"""Packs: sealed, compressed frames of blobs in one write-once file (docs/format.md §6).

Byte layout (all integers big-endian)::

    pack    = magic | salt (32) | frame* | trailer-ct | u32 trailer-ct-length
    frame   = u32 ct-length | ct            ct = AEAD(pack key, nonce = frame index, ...)
    plain   = u8 codec (0 stored, 1 zstd) | payload     payload = blob bytes concatenated

Two versions share that layout. ``PVPACK01`` (vaults of format version 1) binds the
magic, vault id and salt into every ciphertext's associated data; ``PVPACK02`` (version
2) binds each frame's offset and length, and the trailer's, too, so that every byte of
the pack is authenticated by whatever reads it. The trailer (nonce all-ones) is
zstd-compressed JSON listing every frame and blob, so the index can be rebuilt from packs
alone. A pack's name is the SHA-256 of its bytes. Frames are compressed on a thread pool
(zstandard releases the GIL), in order of submission, and sealed in order once their
offset is known.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import zstandard

from popvault.errors import IntegrityError
from popvault.vault.crypto import SALT_SIZE, TAG_SIZE, MasterKeys, PackCipher

#: Pack magic by pack version (format §6.1); a vault of format version N writes pack
#: version N and reads every pack version up to N.
PACK_MAGICS = {1: b"PVPACK01", 2: b"PVPACK02"}
PACK_VERSIONS = {magic: version for version, magic in PACK_MAGICS.items()}
LATEST_PACK_VERSION = max(PACK_MAGICS)
HEADER_SIZE = 8 + SALT_SIZE
LENGTH_SIZE = 4
#: The smallest pack: header, an empty trailer's tag, the trailer length.
MIN_PACK = HEADER_SIZE + TAG_SIZE + LENGTH_SIZE
CODEC_STORED = 0
CODEC_ZSTD = 1
#: A frame whose zstd output is not at least this much smaller is stored as is.
MIN_SAVING = 0.97
MAX_FRAME_PLAIN = 64 << 20
#: Frames compressing at a time, at most (each holds its payload, then its output).
IN_FLIGHT = 2
#: Frames :attr:`PackWriter.size` leaves out, the latest added: packs end after the
#: frames they always ended after (when that many were in flight), so that the same
#: input still makes the same packs.
SIZE_LAG = 4


class PackVersionError(IntegrityError):
    """A pack of a newer pack version than the vault's config allows (format §6.1)."""

    def __init__(self, message: str, version: int) -> None:
        super().__init__(
            message,
            hint="if this vault was upgraded, its config was replaced by an older copy:"
            " 'popvault upgrade' sets its version again",
        )
        self.version = version


@dataclass(frozen=True)
class BlobLocation:
    """Where a blob lives: pack name, frame index, frame ciphertext span, blob span."""

    blob_id: bytes
    kind: str
    pack: str
    frame: int
    frame_offset: int
    frame_length: int
    offset: int
    length: int

    def fields(self) -> tuple[str, int, int, int, int, int]:
        """(pack, frame, frame_offset, frame_length, offset, length)."""
        return (
            self.pack,
            self.frame,
            self.frame_offset,
            self.frame_length,
            self.offset,
            self.length,
        )


def pack_object_name(pack: str) -> str:
    return f"packs/{pack[:2]}/{pack}"


#: Match-finder table sizes (log2) a frame's compressor may use at most. Level 9 would
#: take 2**21 and 2**20 entries for a 1 MiB frame: an 11 MB context per compressing
#: thread. These give 3 MB for 0.14% more bytes on realistic mail (performance.md).
MAX_HASH_LOG = 19
MAX_CHAIN_LOG = 18


def frame_params(level: int, size: int) -> zstandard.ZstdCompressionParameters:
    """zstd parameters for a frame of ``size`` bytes: ``level``'s, tables capped."""
    base = zstandard.ZstdCompressionParameters.from_level(level, source_size=size)
    return zstandard.ZstdCompressionParameters.from_level(
        level,
        source_size=size,
        hash_log=min(base.hash_log, MAX_HASH_LOG),
        chain_log=min(base.chain_log, MAX_CHAIN_LOG),
    )


#: Bytes of each of the :data:`PROBES` windows of a large payload compressed at level 1
#: first (:func:`_incompressible`).
PROBE = 32 << 10
PROBES = 4


def _incompressible(payload: bytes) -> bool:
    """Whether a payload of at least 256 KiB looks incompressible: none of four windows
    spread over it (start, quarter, half, three quarters) saves 3 % at zstd's level 1.
    Attachments that are JPEG, PDF or zip already take most of the bytes of real mail:
    level 9 spent a millisecond a MiB on each such frame only to store it (of the
    attachment-heavy mailbox's 230 frames, 196 were stored, every one of which level 1
    also found incompressible); the windows cost a fifteenth of that. A compressible
    stretch longer than a quarter of the payload and a window holds one window whole;
    shorter ones may be stored uncompressed (that mailbox's vault: 0.3 % larger)."""
    if len(payload) < 8 * PROBE:
        return False
    probe = zstandard.ZstdCompressor(level=1)
    view = memoryview(payload)
    for k in range(PROBES):
        window = view[len(payload) * k // PROBES :][:PROBE]
        if len(probe.compress(window)) < len(window) * MIN_SAVING:
            return False
    return True


def compress_frame(payload: bytes, level: int) -> bytes:
    """Codec byte + payload, compressed only when that saves at least 3% (and not tried
    when a probe finds the payload incompressible)."""
    if payload and not _incompressible(payload):
        params = frame_params(level, len(payload))
        comp = zstandard.ZstdCompressor(compression_params=params).compress(payload)
        if len(comp) < len(payload) * MIN_SAVING:
            return bytes([CODEC_ZSTD]) + comp
        del comp  # not held while the stored frame is made (a frame less per thread)
    return bytes([CODEC_STORED]) + payload


def decompress_frame(plain: bytes, what: str) -> bytes:
    if not plain:
        raise IntegrityError(f"{what} is empty")
    codec = plain[0]
    if codec == CODEC_STORED:
        return plain[1:]
    if codec == CODEC_ZSTD:
        try:
            # max_output_size binds only frames without a content size: check the size
            # a frame declares before decompressing it (format §6.2, at most 64 MiB)
            declared = zstandard.frame_content_size(plain[1:])
            if declared > MAX_FRAME_PLAIN:
                raise IntegrityError(f"{what} decompresses to more than 64 MiB")
            return zstandard.ZstdDecompressor().decompress(
                plain[1:], max_output_size=MAX_FRAME_PLAIN
            )
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"{what} does not decompress: {exc}") from None
    raise IntegrityError(f"{what} names unknown codec {codec}")


class PackWriter:
    """Builds one pack in memory (bounded by the pack target size) and returns its bytes."""

    def __init__(
        self,
        keys: MasterKeys,
        vault_id: str,
        level: int,
        executor: Executor | None,
        version: int = LATEST_PACK_VERSION,
    ) -> None:
        self.salt = secrets.token_bytes(SALT_SIZE)
        magic = PACK_MAGICS[version]
        self.version = version
        self._cipher = PackCipher(keys, vault_id, magic, self.salt, bind_layout=version >= 2)
        self._level = level
        self._executor = executor
        self._pending: list[tuple[int, list[tuple[bytes, str, int, int]], Future[bytes]]] = []
        self._buf = bytearray(magic + self.salt)
        self._frames: list[tuple[int, int]] = []
        self._blobs: list[tuple[bytes, str, int, int, int]] = []
        self.plain_bytes = 0

    @property
    def size(self) -> int:
        """Bytes of the pack so far, the latest ``SIZE_LAG`` frames not counted (they are
        sealed already: ``IN_FLIGHT <= SIZE_LAG``)."""
        counted = self.frame_count - SIZE_LAG
        if counted <= 0:
            return HEADER_SIZE
        start, length = self._frames[counted - 1]
        return start + length

    @property
    def frame_count(self) -> int:
        return len(self._frames) + len(self._pending)

    def add_frame(self, blobs: list[tuple[bytes, str, bytes]]) -> None:
        """Queue a frame holding ``blobs`` (id, kind, data) for compression and sealing."""
        index = self.frame_count
        spans: list[tuple[bytes, str, int, int]] = []
        off = 0
        for blob_id, kind, data in blobs:
            spans.append((blob_id, kind, off, len(data)))
            off += len(data)
        payload = b"".join(d for _, _, d in blobs)
        self.plain_bytes += len(payload)
        fut: Future[bytes]
        if self._executor is None:
            fut = Future()
            fut.set_result(compress_frame(payload, self._level))
        else:
            fut = self._executor.submit(compress_frame, payload, self._level)
        self._pending.append((index, spans, fut))
        while len(self._pending) > IN_FLIGHT:
            self._drain_one()

    def _drain_one(self) -> None:
        """Seal the oldest compressed frame at the end of the pack: its offset is known
        only now (version 2 binds it into the frame's associated data)."""
        index, spans, fut = self._pending.pop(0)
        start = len(self._buf) + LENGTH_SIZE
        ct = self._cipher.seal_frame(index, fut.result(), start)
        self._buf += struct.pack(">I", len(ct))
        self._buf += ct
        self._frames.append((start, len(ct)))
        for blob_id, kind, off, length in spans:
            self._blobs.append((blob_id, kind, index, off, length))

    def finish(self) -> tuple[str, bytearray, list[BlobLocation]]:
        """Seal the trailer; returns (pack name, pack bytes, blob locations)."""
        while self._pending:
            self._drain_one()
        trailer = {
            "version": 1,
            "frames": self._frames,
            "blobs": [[b.hex(), k, f, o, n] for b, k, f, o, n in self._blobs],
        }
        tplain = zstandard.ZstdCompressor(level=3).compress(json.dumps(trailer).encode())
        tct = self._cipher.seal_trailer(tplain, len(self._buf))
        self._buf += tct + struct.pack(">I", len(tct))
        data = self._buf  # handed over as is: a copy would cost another pack in memory
        name = hashlib.sha256(data).hexdigest()
        locs = [
            BlobLocation(b, k, name, f, self._frames[f][0], self._frames[f][1], o, n)
            for b, k, f, o, n in self._blobs
        ]
        return name, data, locs


def _count(value: object) -> int:
    """A JSON integer of the trailer (format §6.3): an int, not a bool, float or string,
    from 0 to 2^63-1; ValueError otherwise."""
    if type(value) is not int or not 0 <= value < 1 << 63:
        raise ValueError(f"not a count: {value!r}")
    return value


def _u32(data: bytes | bytearray | memoryview) -> int:
    value: int = struct.unpack(">I", data)[0]
    return value


class PackReader:
    """Opens frames of one pack given its header; verification is the caller's choice.

    ``max_version`` is the highest pack version the vault may hold (its config version):
    a newer pack raises :class:`PackVersionError`."""

    def __init__(
        self,
        keys: MasterKeys,
        vault_id: str,
        name: str,
        header: bytes,
        *,
        max_version: int = LATEST_PACK_VERSION,
    ) -> None:
        self.name = name
        self.what = f"pack {name[:12]}"
        version = PACK_VERSIONS.get(bytes(header[:8])) if len(header) >= HEADER_SIZE else None
        if version is None:
            raise IntegrityError(f"{self.what} has a damaged header")
        if version > max_version:
            raise PackVersionError(
                f"{self.what} is a version {version} pack in a vault whose config says"
                f" version {max_version}",
                version,
            )
        self.version = version
        self.header = bytes(header[:HEADER_SIZE])
        self._cipher = PackCipher(
            keys, vault_id, header[:8], header[8:HEADER_SIZE], bind_layout=version >= 2
        )

    def frame(self, index: int, start: int, ciphertext: bytes | memoryview) -> bytes:
        """Frame ``index``'s payload from its ciphertext at offset ``start``."""
        what = f"{self.what} frame {index}"
        plain = self._cipher.open_frame(index, ciphertext, what, start)
        return decompress_frame(plain, what)

    def framed(self, index: int, start: int, length: int, data: bytes) -> bytes:
        """Frame ``index``'s payload from ``data``: the 4-byte length prefix and the
        ``length`` ciphertext bytes read at ``start - 4``. The prefix must say ``length``
        (in version 2 it is authenticated; in version 1 a mismatch is damage too)."""
        if len(data) != LENGTH_SIZE + length:
            raise IntegrityError(f"{self.what} is truncated")
        if _u32(data[:LENGTH_SIZE]) != length:
            raise IntegrityError(f"{self.what} frame {index} has a damaged length")
        return self.frame(index, start, memoryview(data)[LENGTH_SIZE:])

    def trailer_span(self, size: int, tail: bytes) -> tuple[int, int]:
        """(start, length) of the trailer ciphertext of a pack of ``size`` bytes whose
        last 4 bytes are ``tail``."""
        if size < MIN_PACK or len(tail) != LENGTH_SIZE:
            raise IntegrityError(f"{self.what} is truncated")
        tlen = _u32(tail)
        tstart = size - LENGTH_SIZE - tlen
        if tlen < TAG_SIZE or tstart < HEADER_SIZE:
            raise IntegrityError(f"{self.what} is truncated (bad trailer length)")
        return tstart, tlen

    def trailer(
        self, tstart: int, ciphertext: bytes
    ) -> tuple[list[tuple[int, int]], list[BlobLocation]]:
        """The frames and blob list of the trailer ciphertext found at ``tstart``."""
        what = self.what
        tplain = self._cipher.open_trailer(ciphertext, what, tstart)
        try:
            trailer = json.loads(
                zstandard.ZstdDecompressor().decompress(tplain, max_output_size=MAX_FRAME_PLAIN)
            )
            version = trailer["version"]
            if type(version) is not int or version != 1:
                raise IntegrityError(f"{what} trailer has unknown version {version!r}")
            frames = [(_count(a), _count(b)) for a, b in trailer["frames"]]
            blobs = []
            for b, k, f, o, n in trailer["blobs"]:
                if not 0 <= _count(f) < len(frames) or not isinstance(k, str):
                    raise IndexError(f)
                o, n = _count(o), _count(n)
                start, length = frames[f]
                blobs.append(
                    BlobLocation(bytes.fromhex(b), str(k), self.name, f, start, length, o, n)
                )
        except (ValueError, KeyError, TypeError, IndexError, zstandard.ZstdError) as exc:
            raise IntegrityError(f"{what} has a malformed trailer") from exc
        return frames, blobs

    def parse(self, data: bytes | bytearray) -> tuple[list[tuple[int, int]], list[BlobLocation]]:
        """Read a whole pack: its frames and blob list from the trailer; verifies layout."""
        tstart, tlen = self.trailer_span(len(data), bytes(data[-LENGTH_SIZE:]))
        frames, blobs = self.trailer(tstart, bytes(data[tstart : tstart + tlen]))
        pos = HEADER_SIZE
        for start, length in frames:
            pos = self.tile(pos, start, length, tstart, data[pos : pos + LENGTH_SIZE])
        self.tiled(pos, tstart)
        return frames, blobs

    def tile(
        self, pos: int, start: int, length: int, tstart: int, prefix: bytes | bytearray
    ) -> int:
        """The next frame of the layout (format §6.3), whose 4-byte length ``prefix`` is
        at ``pos``, must start there and say ``length``; returns where the next begins."""
        if start != pos + LENGTH_SIZE or start + length > tstart or _u32(prefix) != length:
            raise self.layout_error()
        return start + length

    def layout_error(self) -> IntegrityError:
        return IntegrityError(f"{self.what} frame layout does not match its trailer")

    def tiled(self, pos: int, tstart: int) -> None:
        if pos != tstart:
            raise IntegrityError(f"{self.what} has bytes outside its frames")

    def iter_frames(
        self, data: bytes | bytearray, frames: list[tuple[int, int]]
    ) -> Iterator[bytes]:
        for i, (start, length) in enumerate(frames):
            yield self.frame(i, start, memoryview(data)[start : start + length])


class PackScan:
    """One pass over a whole pack in bounded windows (``check --read-data``, format §11):
    the trailer first, then frame by frame in order, hashing every byte on the way, so
    that no more than one frame is held at a time. ``fetch(offset, length)`` reads bytes
    of the pack; ``progress(n)`` is told of every ``n`` bytes read."""

    def __init__(
        self,
        reader: PackReader,
        size: int,
        fetch: Callable[[int, int], bytes],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.reader = reader
        self._fetch = fetch
        self._progress = progress
        self._hash = hashlib.sha256(reader.header)
        if progress is not None:
            progress(HEADER_SIZE)
        self._tail = self._read(size - LENGTH_SIZE, LENGTH_SIZE) if size >= MIN_PACK else b""
        self.tstart, tlen = reader.trailer_span(size, self._tail)
        self._tct = self._read(self.tstart, tlen)
        self.frames, self.blobs = reader.trailer(self.tstart, self._tct)

    def _read(self, offset: int, length: int) -> bytes:
        data = self._fetch(offset, length)
        if len(data) != length:
            raise IntegrityError(f"{self.reader.what} is truncated")
        if self._progress is not None:
            self._progress(length)
        return data

    def payloads(self) -> Iterator[tuple[int, bytes]]:
        """(frame index, payload) of every frame, authenticated, in order."""
        r = self.reader
        pos = HEADER_SIZE
        for i, (start, length) in enumerate(self.frames):
            if start != pos + LENGTH_SIZE or start + length > self.tstart:
                raise r.layout_error()  # before reading: the read stays within the pack
            data = self._read(pos, LENGTH_SIZE + length)
            pos = r.tile(pos, start, length, self.tstart, data[:LENGTH_SIZE])
            self._hash.update(data)
            yield i, r.framed(i, start, length, data)
        r.tiled(pos, self.tstart)

    def digest(self) -> str:
        """The SHA-256 of the whole pack, once :meth:`payloads` ran to its end."""
        h = self._hash.copy()
        h.update(self._tct)
        h.update(self._tail)
        return h.hexdigest()
