"""Frame compression: bounded compressor memory, codec choice, exact round trip."""

from __future__ import annotations

import os

import pytest

from popvault.vault.pack import (
    CODEC_STORED,
    CODEC_ZSTD,
    MAX_CHAIN_LOG,
    MAX_HASH_LOG,
    compress_frame,
    decompress_frame,
    frame_params,
)
from popvault.vault.vault import DEFAULT_LEVEL, FRAME_TARGET


@pytest.mark.parametrize("level", [1, 3, DEFAULT_LEVEL, 12, 19])
def test_a_frame_compressor_stays_small(level: int) -> None:
    """Each compressing thread holds one context: about 3 MB for a full frame at the
    default level, under 5 MB at any (level 9 uncapped would take 11 MB per thread)."""
    p = frame_params(level, FRAME_TARGET)
    assert p.hash_log <= MAX_HASH_LOG and p.chain_log <= MAX_CHAIN_LOG
    assert p.window_log <= 20  # the frame size bounds the window
    limit = 3_500_000 if level <= DEFAULT_LEVEL else 5_000_000
    assert p.estimated_compression_context_size() < limit


def test_frames_round_trip_and_pick_their_codec() -> None:
    text = b"".join(b"Line %d of a mail body, much like the others.\r\n" % i for i in range(20000))
    noise = os.urandom(300_000)
    for payload, codec in ((text, CODEC_ZSTD), (noise, CODEC_STORED), (b"", CODEC_STORED)):
        plain = compress_frame(payload, DEFAULT_LEVEL)
        assert plain[0] == codec
        assert decompress_frame(plain, "test frame") == payload
    assert len(compress_frame(text, DEFAULT_LEVEL)) < len(text) // 10
