"""A message prepared for the vault away from it: split and keyed (format §5.1, §7).

Splitting a message and computing the keyed ids of the message and its blobs is the
CPU-heavy, pure part of adding it. :func:`prepare_message` does that part with nothing
but the MAC key, so a helper process can run it while the writer goes on receiving;
:meth:`Vault.add_prepared <popvault.vault.vault.Vault.add_prepared>` then files the result
exactly as :meth:`Vault.add_message` would have (same ids, same pieces). Raw pieces are
given as offsets into the message, which the writer holds anyway: only decoded
attachment bytes travel back.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import NamedTuple

from popvault.vault.split import ATT_CHUNK, split_message


class RawPiece(NamedTuple):
    """A run of the message's own bytes, ``data[start:end]``, as one blob."""

    kind: str  # "hdr" or "txt"
    blob_id: bytes
    start: int
    end: int


class Base64Piece(NamedTuple):
    """An attachment: its decoded bytes in keyed chunks, and how it was wrapped."""

    chunks: list[tuple[bytes, bytes]]  # (blob id, decoded bytes)
    line_length: int
    eol: bytes


@dataclass(frozen=True)
class PreparedMessage:
    """The keyed id, size and pieces of one message, in message order."""

    msg_id: bytes
    size: int
    pieces: list[RawPiece | Base64Piece]


def keyed_id(mac: bytes, data: bytes) -> bytes:
    """HMAC-SHA256(mac, data): the id of a message or blob (format §5.1)."""
    return hmac.digest(mac, data, "sha256")


def encoded_length(decoded: int, line_length: int, eol: bytes) -> int:
    """Bytes of ``decoded`` bytes as wrapped base64 with ``eol`` after every line."""
    chars = (decoded + 2) // 3 * 4
    return chars + -(-chars // line_length) * len(eol)


def prepare_message(mac: bytes, data: bytes) -> PreparedMessage:
    """Split ``data`` (format §7.1) and key it and its blobs with ``mac``."""
    pieces: list[RawPiece | Base64Piece] = []
    pos = 0
    for seg in split_message(data):
        if seg.kind == "b64":
            chunks = [seg.data[i : i + ATT_CHUNK] for i in range(0, len(seg.data), ATT_CHUNK)]
            keyed = [(keyed_id(mac, c), c) for c in chunks]
            pieces.append(Base64Piece(keyed, seg.line_length, seg.eol))
            pos += encoded_length(len(seg.data), seg.line_length, seg.eol)
        else:
            pieces.append(RawPiece(seg.kind, keyed_id(mac, seg.data), pos, pos + len(seg.data)))
            pos += len(seg.data)
    if pos != len(data):  # the segments always cover the message exactly
        raise AssertionError(f"prepared pieces cover {pos} of {len(data)} bytes")
    return PreparedMessage(keyed_id(mac, data), len(data), pieces)
