"""Frames in flight in a pack being filled, and where packs end (format §6, §8.2).

A pack writer compresses at most ``IN_FLIGHT`` frames at a time (memory: each holds its
payload and its output), while its ``size`` still leaves out the latest ``SIZE_LAG``
frames, as when that many were in flight: the writer ends a pack on that size, so the
same input still makes the same packs (the same frames in each).
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from popvault.vault.crypto import MasterKeys
from popvault.vault.pack import (
    HEADER_SIZE,
    IN_FLIGHT,
    LENGTH_SIZE,
    SIZE_LAG,
    PackReader,
    PackWriter,
)

KEYS = MasterKeys.generate()
VAULT_ID = "ab" * 16


@pytest.mark.parametrize("threads", [0, 2])
def test_size_leaves_out_the_latest_frames(threads: int) -> None:
    rng = random.Random(threads)
    executor = ThreadPoolExecutor(threads) if threads else None
    try:
        pw = PackWriter(KEYS, VAULT_ID, 3, executor)
        sizes: list[int] = []
        blobs = []
        for n in range(12):
            data = rng.randbytes(rng.randrange(1, 200_000)) if n % 2 else b"text " * 5000
            blobs.append(data)
            pw.add_frame([(bytes([n]) * 32, "txt", data)])
            assert len(pw._pending) <= IN_FLIGHT
            sizes.append(pw.size)
        _name, pack, _locs = pw.finish()
    finally:
        if executor is not None:
            executor.shutdown()
    reader = PackReader(KEYS, VAULT_ID, "x" * 64, bytes(pack[:HEADER_SIZE]))
    frames, _ = reader.parse(pack)
    assert [p for p in reader.iter_frames(pack, frames)] == blobs
    for n, size in enumerate(sizes, start=1):
        counted = frames[: max(0, n - SIZE_LAG)]
        assert size == HEADER_SIZE + sum(LENGTH_SIZE + length for _, length in counted)
