"""Frame compression: bounded compressor memory, codec choice, exact round trip."""

from __future__ import annotations

import os

import pytest
import zstandard

import popvault.vault.pack as pack
from popvault.vault.pack import (
    CODEC_STORED,
    CODEC_ZSTD,
    MAX_CHAIN_LOG,
    MAX_HASH_LOG,
    compress_frame,
    decompress_frame,
    frame_params,
)
from popvault.vault.writer import DEFAULT_LEVEL, FRAME_TARGET


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


def test_duplicates_of_earlier_commits_do_not_shrink_frames() -> None:
    """Blobs an earlier commit stored are dropped when a group reaches a frame's worth,
    and the frame is sealed only once a frame's worth of new blobs remains: a mailbox
    full of duplicates still gets full frames (smaller ones compress worse)."""
    from popvault.vault.vault import SourceInfo
    from tests.support.vaults import memory_vault, random_bytes, text_message

    bodies = [random_bytes(100_000, seed) for seed in range(40)]
    _backend, v = memory_vault()
    with v:
        for i, body in enumerate(bodies[:20]):
            v.add_message(text_message(i, body=body), SourceInfo("a", "x", uidl=f"old{i}"))
        v.commit()
        first = {bytes(r[0]) for r in v.cache.db.execute("SELECT id FROM blobs")}
        for i in range(20):  # an old body (stored) after each new one
            new = text_message(100 + i, body=bodies[20 + i])
            old = text_message(200 + i, body=bodies[i])
            v.add_message(new, SourceInfo("a", "x", uidl=f"new{i}"))
            v.add_message(old, SourceInfo("a", "x", uidl=f"dup{i}"))
        v.commit()
        frames: dict[tuple[str, int], int] = {}
        for blob_id, pack, frame, length in v.cache.db.execute(
            "SELECT id, pack, frame, length FROM blobs WHERE kind = 'txt'"
        ):
            if bytes(blob_id) not in first:
                frames[(pack, frame)] = frames.get((pack, frame), 0) + length
        sizes = sorted(frames.values())
        assert sum(sizes) == 20 * 100_000  # every new body once, no old one again
        assert all(size >= FRAME_TARGET for size in sizes[1:])  # only the last is short
        for i, body in enumerate(bodies):
            assert body in v.read_message(
                v.known_uidls("a")[f"{'old' if i < 20 else 'new'}{i % 20}"]
            )


def test_a_probe_spares_level_9_on_incompressible_payloads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large payload whose four windows do not compress at level 1 is stored without
    trying the writer's level; one with a compressible stretch of a quarter and a
    window, wherever it lies, is compressed as before; small payloads are always tried."""
    size = 1 << 20
    noise = os.urandom(size)
    text = b"".join(b"Line %d of a mail body.\r\n" % i for i in range(40000))
    stretch = size // 4 + pack.PROBE
    tried: list[int] = []
    real = pack.frame_params

    def params(level: int, n: int) -> zstandard.ZstdCompressionParameters:
        tried.append(n)
        return real(level, n)

    monkeypatch.setattr(pack, "frame_params", params)
    assert compress_frame(noise, DEFAULT_LEVEL)[0] == CODEC_STORED and tried == []
    for at in range(0, size - stretch + 1, size // 16):
        payload = noise[:at] + text[:stretch] + noise[at + stretch :]
        assert pack._incompressible(payload) is False, at
        plain = compress_frame(payload, DEFAULT_LEVEL)
        assert plain[0] == CODEC_ZSTD and decompress_frame(plain, "f") == payload
    small = os.urandom(8 * pack.PROBE - 1)
    assert compress_frame(small, DEFAULT_LEVEL)[0] == CODEC_STORED and tried[-1] == len(small)
