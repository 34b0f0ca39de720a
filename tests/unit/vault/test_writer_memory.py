"""Filing a large message holds it once (format §7.1, issue 12).

A message up to 32 MiB is split in memory, so it is held whole; but only once: the
writer hands its own buffer to the splitter (no copy of it), the splitter finds the
base64 headers without a lower-cased copy, and an attachment is decoded a blob at a
time as its blobs are stored. Packs are dropped as they are stored here, so what is
measured is the message and the writer's own buffers (a pack being filled, frames).
"""

from __future__ import annotations

import base64
import random
import tracemalloc

from popvault.vault.backend import MemoryBackend
from popvault.vault.vault import SourceInfo
from tests.support.vaults import create, open_rw


class DroppedPacks(MemoryBackend):
    """A store that keeps everything but the bytes of packs (their sizes only)."""

    def __init__(self) -> None:
        super().__init__()
        self.pack_bytes = 0

    def put(self, name: str, data: bytes | bytearray) -> None:
        if name.startswith("packs/"):
            self.pack_bytes += len(data)
            return
        super().put(name, data)


def test_a_large_message_is_held_once() -> None:
    att = random.Random(1).randbytes(18 << 20)
    data = (
        b"From: a@example.org\r\nSubject: the scan\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
        b"--XX\r\nContent-Type: text/plain\r\n\r\nsee the scan\r\n"
        b'--XX\r\nContent-Type: application/pdf; name="scan.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(att).replace(b"\n", b"\r\n")
        + b"--XX--\r\n"
    )
    backend = DroppedPacks()
    create(backend)
    vault = open_rw(backend)
    try:
        w = vault.new_message()
        tracemalloc.start()
        try:
            for i in range(0, len(data), 1 << 16):
                w.write(data[i : i + (1 << 16)])
            held = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            res = w.finish(SourceInfo(account="a", source="s", uidl="u"))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        vault.commit()
        assert res.new and backend.pack_bytes > len(att)  # the attachment was stored
        assert held < len(data) + (2 << 20)
        # a pack being filled (up to 14 MB) and frames in flight, not a second copy of
        # the message (26 MB) nor the decoded attachment (19 MB): +23 MB, it was +41 MB
        assert peak - held < 30 << 20, peak - held
    finally:
        vault.close()
