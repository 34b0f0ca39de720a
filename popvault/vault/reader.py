"""Reading blobs and messages back: frames, their small LRU, rebuilding messages (§6, §7).

Every frame is authenticated when it is read (with its length prefix, format §6.6) and
every blob checked against its keyed id; a message is rebuilt from its pieces (raw runs
and re-encoded base64 attachments) and checked against its id at the end. Nothing that
fails a check is returned as if it were good: IntegrityError instead. ``use_cache=False``
reads from storage only (the read-back before a deletion from a server must not trust
memory).
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Protocol

from popvault.errors import IntegrityError
from popvault.vault.backend import Backend, ObjectNotFound
from popvault.vault.config import FORMAT_VERSION, read_vault_config
from popvault.vault.crypto import MasterKeys
from popvault.vault.pack import (
    HEADER_SIZE,
    LENGTH_SIZE,
    BlobLocation,
    PackReader,
    PackScan,
    PackVersionError,
    pack_object_name,
)
from popvault.vault.records import BlobPiece, Pieces
from popvault.vault.split import wrap_lines

#: Decrypted frames kept in memory (about 1 MiB each).
FRAME_CACHE = 8


class HeaderStore(Protocol):
    """Where pack headers verified by a read are kept (the index cache)."""

    def pack_header(self, pack: str) -> bytes | None: ...

    def remember_pack_header(self, pack: str, header: bytes) -> None: ...


class Reader:
    """Reads one vault's blobs; ``locate`` finds a blob's location in the index.
    ``version`` is the vault's format version: the highest pack version it may hold."""

    def __init__(
        self,
        backend: Backend,
        keys: MasterKeys,
        vault_id: str,
        locate: Callable[[bytes], BlobLocation | None],
        version: int = FORMAT_VERSION,
        headers: HeaderStore | None = None,
    ) -> None:
        self.backend = backend
        self.keys = keys
        self.vault_id = vault_id
        self.locate = locate
        self.version = version
        #: Pack headers known from earlier reads (the index cache): one request less
        #: per pack for a read of one blob.
        self.headers = headers
        #: Packs whose header the store has (or was given now), and those read with one
        #: from the store (not from the pack).
        self._known_headers: set[str] = set()
        self._stored: set[str] = set()
        self._frames: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._pack_readers: dict[str, PackReader] = {}

    def forget_frames(self) -> None:
        """Drop the frames held in memory."""
        self._frames.clear()

    def open_pack(self, pack: str, header: bytes | None = None) -> PackReader:
        """A reader for ``pack`` from its header (read now unless given). A pack newer
        than the vault's version is refused (format §6.1), unless ``config`` was
        upgraded since this reader was made (another process ran ``popvault upgrade``)."""
        if header is None:
            header = self.backend.get_range(pack_object_name(pack), 0, HEADER_SIZE)
        try:
            return PackReader(self.keys, self.vault_id, pack, header, max_version=self.version)
        except PackVersionError as exc:
            now = read_vault_config(self.backend, "the vault").version
            if now < exc.version:
                raise
            self.version = now
            return PackReader(self.keys, self.vault_id, pack, header, max_version=now)

    def pack_reader(self, pack: str, header: bytes | None = None) -> PackReader:
        """A reader for ``pack``, kept; its header from the header store when it has it
        (never for reads that must not trust what is kept: :meth:`open_pack`)."""
        r = self._pack_readers.get(pack)
        if r is None:
            if header is None and self.headers is not None:
                header = self.headers.pack_header(pack)
                if header is not None:
                    self._known_headers.add(pack)
                    self._stored.add(pack)
            r = self.open_pack(pack, header)
            self._pack_readers[pack] = r
        return r

    def scan_pack(self, pack: str, progress: Callable[[int], None] | None = None) -> PackScan:
        """A bounded-memory pass over the whole of ``pack`` (``check --read-data``)."""
        name = pack_object_name(pack)
        reader = self.open_pack(pack)  # refuses a FIFO, a device, an oversized file
        size = self.backend.size(name)
        return PackScan(reader, size, lambda off, n: self.backend.get_range(name, off, n), progress)

    def _frame(self, loc: BlobLocation, use_cache: bool) -> bytes:
        key = (loc.pack, loc.frame)
        if use_cache and key in self._frames:
            self._frames.move_to_end(key)
            return self._frames[key]
        if loc.frame_offset < HEADER_SIZE + LENGTH_SIZE:
            raise IntegrityError(f"blob {loc.blob_id.hex()[:12]} has a bad location")
        try:
            # the frame with its length prefix: it is checked (and in pack version 2
            # authenticated) too, so that every byte read is verified
            data = self.backend.get_range(
                pack_object_name(loc.pack),
                loc.frame_offset - LENGTH_SIZE,
                LENGTH_SIZE + loc.frame_length,
            )
            reader = self.pack_reader(loc.pack) if use_cache else self.open_pack(loc.pack)
        except ObjectNotFound:
            raise IntegrityError(
                f"pack {loc.pack[:12]} is missing",
                hint="run 'popvault check --read-data' to list affected messages",
            ) from None
        try:
            plain = reader.framed(loc.frame, loc.frame_offset, loc.frame_length, data)
        except IntegrityError:
            if not (use_cache and loc.pack in self._stored):
                raise
            # the kept header, not the pack, may be what is wrong: the pack decides
            self._stored.discard(loc.pack)
            self._known_headers.discard(loc.pack)
            reader = self._pack_readers[loc.pack] = self.open_pack(loc.pack)
            plain = reader.framed(loc.frame, loc.frame_offset, loc.frame_length, data)
        if self.headers is not None and loc.pack not in self._known_headers:
            # verified: the frame decrypted with it
            self.headers.remember_pack_header(loc.pack, reader.header)
            self._known_headers.add(loc.pack)
        if use_cache:
            self._frames[key] = plain
            while len(self._frames) > FRAME_CACHE:
                self._frames.popitem(last=False)
        return plain

    def read_blob(
        self, blob_id: bytes, *, loc: BlobLocation | None = None, use_cache: bool = True
    ) -> bytes:
        """A blob's bytes, authenticated and checked against its keyed id."""
        loc = loc or self.locate(blob_id)
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

    def iter_pieces(self, pieces: Pieces, *, use_cache: bool = True) -> Iterator[bytes]:
        """A message's bytes from its pieces (§7.2), each blob verified first."""
        for piece in pieces:
            if isinstance(piece, BlobPiece):
                yield self.read_blob(bytes.fromhex(piece.blob), use_cache=use_cache)
                continue
            eolb = b"\r\n" if piece.eol == "crlf" else b"\n"
            carry = b""
            for i, bid in enumerate(piece.blobs):
                chunk = self.read_blob(bytes.fromhex(bid), use_cache=use_cache)
                s = carry + base64.b64encode(chunk)
                last = i == len(piece.blobs) - 1
                cut = len(s) if last else len(s) - len(s) % piece.line_length
                yield wrap_lines(s[:cut], piece.line_length, eolb)
                carry = s[cut:]

    def iter_message(
        self, msg_id: bytes, size: int, pieces: Pieces, *, use_cache: bool = True
    ) -> Iterator[bytes]:
        """Stream a message's exact bytes; IntegrityError (at the end at the latest) if
        the whole does not hash to its id. Every piece is authenticated before it is
        yielded, so nothing unauthenticated is ever returned."""
        h = self.keys.hasher()
        n = 0
        for chunk in self.iter_pieces(pieces, use_cache=use_cache):
            h.update(chunk)
            n += len(chunk)
            yield chunk
        if n != size or h.digest() != msg_id:
            raise IntegrityError(f"message {msg_id.hex()[:12]} does not rebuild to its id")
