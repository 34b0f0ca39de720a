"""Packs: sealed, compressed frames of blobs in one write-once file (docs/format.md §6).

Byte layout (all integers big-endian)::

    pack    = magic "PVPACK01" | salt (32) | frame* | trailer-ct | u32 trailer-ct-length
    frame   = u32 ct-length | ct            ct = AEAD(pack key, nonce = frame index, ...)
    plain   = u8 codec (0 stored, 1 zstd) | payload     payload = blob bytes concatenated

The trailer (nonce all-ones) is zstd-compressed JSON listing every frame and blob, so the
index can be rebuilt from packs alone. A pack's name is the SHA-256 of its bytes.
Compression and sealing of frames run on a thread pool (zstandard and cryptography
release the GIL), in order of submission.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import zstandard

from popvault.errors import IntegrityError
from popvault.vault.crypto import SALT_SIZE, TAG_SIZE, MasterKeys, PackCipher

PACK_MAGIC = b"PVPACK01"
HEADER_SIZE = len(PACK_MAGIC) + SALT_SIZE
CODEC_STORED = 0
CODEC_ZSTD = 1
#: A frame whose zstd output is not at least this much smaller is stored as is.
MIN_SAVING = 0.97
MAX_FRAME_PLAIN = 64 << 20


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


def compress_frame(payload: bytes, level: int) -> bytes:
    """Codec byte + payload, compressed only when that saves at least 3%."""
    if payload:
        params = frame_params(level, len(payload))
        comp = zstandard.ZstdCompressor(compression_params=params).compress(payload)
        if len(comp) < len(payload) * MIN_SAVING:
            return bytes([CODEC_ZSTD]) + comp
    return bytes([CODEC_STORED]) + payload


def decompress_frame(plain: bytes, what: str) -> bytes:
    if not plain:
        raise IntegrityError(f"{what} is empty")
    codec = plain[0]
    if codec == CODEC_STORED:
        return plain[1:]
    if codec == CODEC_ZSTD:
        try:
            return zstandard.ZstdDecompressor().decompress(
                plain[1:], max_output_size=MAX_FRAME_PLAIN
            )
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"{what} does not decompress: {exc}") from None
    raise IntegrityError(f"{what} names unknown codec {codec}")


class PackWriter:
    """Builds one pack in memory (bounded by the pack target size) and returns its bytes."""

    def __init__(
        self, keys: MasterKeys, vault_id: str, level: int, executor: Executor | None
    ) -> None:
        self.salt = secrets.token_bytes(SALT_SIZE)
        self._cipher = PackCipher(keys, vault_id, PACK_MAGIC, self.salt)
        self._level = level
        self._executor = executor
        self._pending: list[tuple[int, list[tuple[bytes, str, int, int]], Future[bytes]]] = []
        self._buf = bytearray(PACK_MAGIC + self.salt)
        self._frames: list[tuple[int, int]] = []
        self._blobs: list[tuple[bytes, str, int, int, int]] = []
        self.plain_bytes = 0

    @property
    def size(self) -> int:
        """Bytes sealed so far (frames still in flight not counted)."""
        return len(self._buf)

    @property
    def frame_count(self) -> int:
        return len(self._frames) + len(self._pending)

    def _seal(self, index: int, payload: bytes) -> bytes:
        return self._cipher.seal_frame(index, compress_frame(payload, self._level))

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
            fut.set_result(self._seal(index, payload))
        else:
            fut = self._executor.submit(self._seal, index, payload)
        self._pending.append((index, spans, fut))
        while len(self._pending) > 4:
            self._drain_one()

    def _drain_one(self) -> None:
        index, spans, fut = self._pending.pop(0)
        ct = fut.result()
        self._buf += struct.pack(">I", len(ct))
        start = len(self._buf)
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
        tct = self._cipher.seal_trailer(tplain)
        self._buf += tct + struct.pack(">I", len(tct))
        data = self._buf  # handed over as is: a copy would cost another pack in memory
        name = hashlib.sha256(data).hexdigest()
        locs = [
            BlobLocation(b, k, name, f, self._frames[f][0], self._frames[f][1], o, n)
            for b, k, f, o, n in self._blobs
        ]
        return name, data, locs


class PackReader:
    """Opens frames of one pack given its header; verification is the caller's choice."""

    def __init__(self, keys: MasterKeys, vault_id: str, name: str, header: bytes) -> None:
        if len(header) < HEADER_SIZE or header[: len(PACK_MAGIC)] != PACK_MAGIC:
            raise IntegrityError(f"pack {name[:12]} has a damaged header")
        self.name = name
        self._cipher = PackCipher(keys, vault_id, PACK_MAGIC, header[len(PACK_MAGIC) :])

    def frame(self, index: int, ciphertext: bytes) -> bytes:
        what = f"pack {self.name[:12]} frame {index}"
        return decompress_frame(self._cipher.open_frame(index, ciphertext, what), what)

    def parse(self, data: bytes) -> tuple[list[tuple[int, int]], list[BlobLocation]]:
        """Read a whole pack: its frames and blob list from the trailer; verifies layout."""
        what = f"pack {self.name[:12]}"
        if len(data) < HEADER_SIZE + 4 + TAG_SIZE:
            raise IntegrityError(f"{what} is truncated")
        (tlen,) = struct.unpack(">I", data[-4:])
        tstart = len(data) - 4 - tlen
        if tlen < TAG_SIZE or tstart < HEADER_SIZE:
            raise IntegrityError(f"{what} is truncated (bad trailer length)")
        tplain = self._cipher.open_trailer(data[tstart : len(data) - 4], what)
        try:
            trailer = json.loads(zstandard.ZstdDecompressor().decompress(tplain))
            if trailer["version"] != 1:
                raise IntegrityError(f"{what} trailer has unknown version {trailer['version']!r}")
            frames = [(int(a), int(b)) for a, b in trailer["frames"]]
            blobs = [
                BlobLocation(
                    bytes.fromhex(b), str(k), self.name, int(f), frames[f][0], frames[f][1], o, n
                )
                for b, k, f, o, n in trailer["blobs"]
            ]
        except (ValueError, KeyError, TypeError, IndexError, zstandard.ZstdError) as exc:
            raise IntegrityError(f"{what} has a malformed trailer") from exc
        # frames must tile the space between header and trailer exactly
        pos = HEADER_SIZE
        for start, length in frames:
            if start != pos + 4 or struct.unpack(">I", data[pos : pos + 4])[0] != length:
                raise IntegrityError(f"{what} frame layout does not match its trailer")
            pos = start + length
        if pos != tstart:
            raise IntegrityError(f"{what} has bytes outside its frames")
        return frames, blobs

    def iter_frames(self, data: bytes, frames: list[tuple[int, int]]) -> Iterator[bytes]:
        for i, (start, length) in enumerate(frames):
            yield self.frame(i, data[start : start + length])
