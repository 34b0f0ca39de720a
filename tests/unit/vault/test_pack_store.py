"""Packs stored off the filling thread (vault/writer.py PackStore, format §8.2 step 1).

An object store uploads ``upload_concurrency`` packs at once while messages go on being
added; a commit waits for every one before it writes the index segment and the commit
record that name them, and a pack whose upload failed stops the run: nothing names it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from popvault.errors import PopvaultError
from popvault.vault.backend import LocalBackend, MemoryBackend
from popvault.vault.writer import store_threads
from tests.support.vaults import (
    add_batch,
    attachment_message,
    create,
    open_ro,
    open_rw,
    random_bytes,
)

BIG = [attachment_message(random_bytes(3 << 20, s), n=s) for s in range(14)]


class SlowStore(MemoryBackend):
    """An object store whose pack uploads take a while; counts how many run at once and
    what was stored when each commit record was written."""

    upload_concurrency = 3

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.threads: set[str] = set()
        self.fail = False
        self.packs_at_commit: list[set[str]] = []

    def put(self, name: str, data: bytes | bytearray) -> None:
        if name.startswith("packs/"):
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
                self.threads.add(threading.current_thread().name)
            try:
                time.sleep(0.5)
                if self.fail:
                    raise OSError(5, "Input/output error")
            finally:
                with self.lock:
                    self.running -= 1
        elif name.startswith("commits/"):
            self.packs_at_commit.append(set(self.list("packs")))
        super().put(name, data)


def test_uploads_run_in_parallel_and_the_commit_waits_for_them() -> None:
    store = SlowStore()
    create(store)
    with open_rw(store) as v:
        add_batch(v, BIG)
        v.commit()
    assert 1 < store.most <= SlowStore.upload_concurrency
    assert all(t.startswith("popvault-pack") for t in store.threads)
    packs = set(store.list("packs"))
    assert len(packs) >= 4
    assert packs == store.packs_at_commit[-1]  # every pack stored before the record
    with open_ro(store) as v:
        rep = v.check(read_data=True)
        assert rep.ok, rep.problems
        assert len(list(v.messages())) == len(BIG)


def test_a_failed_upload_commits_nothing() -> None:
    store = SlowStore()
    create(store)
    commits = store.list("commits")
    v = open_rw(store)
    try:
        store.fail = True
        with pytest.raises(OSError):
            add_batch(v, BIG)
            v.commit()
        store.fail = False
        assert v.broken
        with pytest.raises(PopvaultError, match="reopen"):
            v.commit()
    finally:
        v.close()
    assert store.list("commits") == commits
    with open_ro(store) as v:
        assert v.check(read_data=True).ok


def test_store_threads_by_backend(tmp_path: Path) -> None:
    assert store_threads(MemoryBackend()) == 0
    assert store_threads(SlowStore()) == 3
    assert store_threads(LocalBackend(tmp_path)) == 1
