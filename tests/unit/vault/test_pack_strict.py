"""A pack whose frames and trailer authenticate but break a rule of format §6.2/§6.3:
refused as damage (IntegrityError, exit 20), never an internal error or a wrong read.

Only a writer with the keys can make these; they stand for a buggy or hostile writer
that holds the keys, and they keep the reader's checks exact."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
import zstandard

from popvault.errors import IntegrityError
from popvault.vault.crypto import MasterKeys
from popvault.vault.pack import (
    CODEC_ZSTD,
    HEADER_SIZE,
    PackReader,
    PackWriter,
    decompress_frame,
)

VAULT_ID = "00112233445566778899aabbccddeeff"
KEYS = MasterKeys(bytes(range(32)), bytes(range(32, 64)))


def test_a_frame_declaring_more_than_64_mib_is_refused_before_it_is_decompressed() -> None:
    body = zstandard.ZstdCompressor(write_content_size=True).compress(bytes((64 << 20) + 1))
    assert zstandard.frame_content_size(body) == (64 << 20) + 1
    with pytest.raises(IntegrityError, match="more than 64 MiB"):
        decompress_frame(bytes([CODEC_ZSTD]) + body, "frame 0")
    # at the limit it reads
    ok = zstandard.ZstdCompressor(write_content_size=True).compress(bytes(64 << 20))
    assert len(decompress_frame(bytes([CODEC_ZSTD]) + ok, "frame 0")) == 64 << 20


def _pack_with_trailer(edit: Any) -> tuple[str, bytes]:
    """A genuine one-frame pack, then its trailer JSON edited and sealed again."""
    pw = PackWriter(KEYS, VAULT_ID, 3, None)
    pw.add_frame([(KEYS.keyed_id(b"Hello\r\n"), "txt", b"Hello\r\n")])
    _name, data, _locs = pw.finish()
    tlen = struct.unpack(">I", data[-4:])[0]
    tstart = len(data) - 4 - tlen
    trailer = {
        "version": 1,
        "frames": [list(f) for f in pw._frames],
        "blobs": [[b.hex(), k, f, o, n] for b, k, f, o, n in pw._blobs],
    }
    edit(trailer)
    tplain = zstandard.ZstdCompressor(level=3).compress(json.dumps(trailer).encode())
    tct = pw._cipher.seal_trailer(tplain, tstart)
    out = bytes(data[:tstart]) + tct + struct.pack(">I", len(tct))
    return "ab" * 32, out


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def edit(t: dict[str, Any]) -> None:
        obj: Any = t
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value

    return edit


def test_the_genuine_trailer_parses() -> None:
    name, data = _pack_with_trailer(lambda t: None)
    _frames, blobs = PackReader(KEYS, VAULT_ID, name, data[:HEADER_SIZE]).parse(data)
    assert [b.length for b in blobs] == [7]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("version",), True),
        (("version",), 1.0),
        (("version",), "1"),
        (("frames", 0, 0), "44"),
        (("frames", 0, 1), 24.0),
        (("blobs", 0, 2), True),
        (("blobs", 0, 3), "0"),
        (("blobs", 0, 4), -7),
        (("blobs", 0, 1), 7),
    ],
    ids=[
        "version-true",
        "version-float",
        "version-string",
        "frame-start-string",
        "frame-length-float",
        "blob-frame-bool",
        "blob-offset-string",
        "blob-length-negative",
        "blob-kind-number",
    ],
)
def test_a_trailer_with_a_value_of_the_wrong_type_is_damage(
    path: tuple[Any, ...], value: Any
) -> None:
    name, data = _pack_with_trailer(_set(path, value))
    reader = PackReader(KEYS, VAULT_ID, name, data[:HEADER_SIZE])
    with pytest.raises(IntegrityError):
        reader.parse(data)
