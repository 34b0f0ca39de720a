"""Preparing messages in a helper process while the writer goes on receiving.

Python runs one thread at a time, and a backup's main thread does everything that holds
that lock: reading the POP3 stream, and for every message splitting it, keying it and its
blobs and parsing its metadata. On a backup of many messages that thread is the limit.
A :class:`Preparer` hands the pure part (:func:`prepare_message` and
:func:`parse_metadata`) to a helper process in batches and gives the results back in
the order the messages were submitted; the caller files them with
:meth:`Vault.add_prepared`. The helper holds only the MAC key (never the encryption key
or the passphrase) and sees message bytes the caller already has. If the helper fails in
any way, the messages it held come back without a result and the caller adds them the
ordinary way: nothing is lost and nothing changes. Memory is bounded: at most
``max_pending`` bytes are out at a time.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Generic, TypeVar

from popvault.app.metadata import parse_metadata
from popvault.vault.meta import MessageMeta
from popvault.vault.prepare import PreparedMessage, prepare_message

T = TypeVar("T")

#: A prepared message and its metadata, as the helper returns them.
Result = tuple[PreparedMessage, MessageMeta]

#: Seconds between a helper's checks that its writer is still there.
ORPHAN_CHECK = 0.2

_mac = b""


def _start_helper(mac: bytes, writer: int) -> None:
    """In the helper: keep the key; stay silent; end when the writer is gone."""
    global _mac
    _mac = mac
    # the helper inherited the writer's standard streams: it must neither write to them
    # (a failure comes back as an exception) nor hold them open after the writer is gone
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    threading.Thread(target=_exit_when_orphaned, args=(writer,), daemon=True).start()


def _exit_when_orphaned(writer: int) -> None:
    """A writer killed with SIGKILL cannot stop its helper, and the helper's queues never
    report it gone (it holds both ends): notice being re-parented, and exit. The writer's
    pid comes from the writer: it may be gone before this helper has started."""
    while os.getppid() == writer:
        time.sleep(ORPHAN_CHECK)
    os._exit(0)


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """While a helper starts, hide the path of the program's main script from spawn.

    spawn imports the parent's main script in the child (for functions defined there);
    the helper needs none, and the ``popvault`` console script imports the whole CLI,
    about 12 MB the helper would carry for nothing. (``python -m popvault`` is imported
    by module name instead, and that module imports nothing unless run.)
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _prepare_batch(batch: list[bytes]) -> list[Result]:
    return [(prepare_message(_mac, data), parse_metadata(data)) for data in batch]


class Preparer(Generic[T]):
    """Prepares submitted messages in one helper process; see the module doc.

    ``submit(data, tag)`` queues a message (``tag`` is the caller's, given back with it);
    ``ready()`` yields ``(data, tag, result)`` for the messages done so far, in submission
    order, waiting only while more than ``max_pending`` bytes are out; ``ready(wait=True)``
    yields every message submitted. ``result`` is None when the helper failed.
    """

    def __init__(
        self,
        mac: bytes,
        *,
        batch_bytes: int = 128 << 10,
        batch_count: int = 64,
        max_pending: int = 2 << 20,
    ) -> None:
        # spawn, not fork: the caller has threads (compression), and a forked child
        # would inherit their locks in whatever state they were
        self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_helper,
            initargs=(mac, os.getpid()),
        )
        self._batch: list[tuple[bytes, T]] = []
        self._batch_size = 0
        self._batch_bytes = batch_bytes
        self._batch_count = batch_count
        self._max_pending = max_pending
        self._out: deque[tuple[Future[list[Result]] | None, list[tuple[bytes, T]], int]] = deque()
        self._pending = 0
        self.failed: BaseException | None = None

    def submit(self, data: bytes, tag: T) -> None:
        self._batch.append((data, tag))
        self._batch_size += len(data)
        self._pending += len(data)
        if len(self._batch) >= self._batch_count or self._batch_size >= self._batch_bytes:
            self._send()

    def _send(self) -> None:
        if not self._batch:
            return
        batch, size = self._batch, self._batch_size
        self._batch, self._batch_size = [], 0
        fut: Future[list[Result]] | None = None
        if self._pool is not None and self.failed is None:
            try:
                with _main_script_hidden():  # the helper starts at the first submit
                    fut = self._pool.submit(_prepare_batch, [data for data, _ in batch])
            except Exception as exc:  # the helper is gone (BrokenProcessPool) or shut down
                self.failed = exc
        self._out.append((fut, batch, size))

    def ready(self, wait: bool = False) -> Iterator[tuple[bytes, T, Result | None]]:
        if wait:
            self._send()
        while self._out:
            fut, batch, size = self._out[0]
            if fut is not None and not fut.done():
                if not wait and self._pending <= self._max_pending:
                    return
            self._out.popleft()
            self._pending -= size
            results: list[Result] | None = None
            if fut is not None:
                try:
                    results = fut.result()
                except Exception as exc:  # a helper died or raised: add these directly
                    self.failed = exc
            for i, (data, tag) in enumerate(batch):
                yield data, tag, results[i] if results is not None else None

    def close(self) -> None:
        """Stop the helper; messages still out are dropped (call ``ready(wait=True)``
        first to have them)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Preparer[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
