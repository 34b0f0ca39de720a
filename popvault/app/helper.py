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

Stopping is bounded too (an interrupted backup must exit within seconds, and must never
wait forever on its helper): the helper ignores the terminal's SIGINT and SIGHUP (its
writer decides when it ends), reads batches from one pipe and writes results to another,
and exits at the end of its input, when its writer's end of either pipe closes, or when
its writer is gone. :meth:`Preparer.close` closes both pipes, waits at most
``stop_timeout`` seconds, then kills it. No thread of the writer blocks its exit: the one
that feeds the pipe is a daemon, and no queue is joined at exit (a
``ProcessPoolExecutor`` joins its feeder thread at exit, which hangs for good when its
worker died with a batch unread).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Generic, TypeVar

from popvault import interrupts
from popvault.app.metadata import parse_metadata
from popvault.vault import MessageMeta, PreparedMessage, SearchDoc, prepare_message

T = TypeVar("T")
U = TypeVar("U")

#: A message's search index document, as indexed, and whether it was read only in part
#: (:func:`popvault.app.indexing.document`).
Document = tuple[SearchDoc, bool]
#: A prepared message, its metadata, and its index document when the work makes one
#: (:func:`popvault.app.indexing.prepare_indexed`), as the helper returns them.
Result = tuple[PreparedMessage, MessageMeta, Document | None]

#: Seconds between a helper's checks that its writer is still there.
ORPHAN_CHECK = 0.2
#: A batch (at most a few hundred KiB) takes milliseconds; a helper silent this long is
#: treated as failed (its messages are added directly).
ANSWER_TIMEOUT = 60.0
#: Results filed together (:func:`slices`): a look-up of their ids in one query.
SLICE = 256
#: Bytes the pipe of a helper's answers holds (:func:`_widen`): several batches.
ANSWER_PIPE = 1 << 20


class _NotYet:
    """The answer to a batch has not arrived yet."""


NOT_YET = _NotYet()


class HelperFailed(Exception):
    """The helper stopped answering, or answered with something other than results."""


#: What a helper does with a batch: (MAC key, messages) -> one result a message.
Work = Callable[[bytes, list[bytes]], list[Result]]


def _helper_main(
    mac: bytes, writer: int, inbox: Connection, outbox: Connection, work: Work
) -> None:
    """The helper process: ``work`` on each batch read from ``inbox``, answer on
    ``outbox``, in order; stop at the end of the input or when the writer is gone."""
    for s in (signal.SIGINT, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    threading.Thread(target=_exit_when_orphaned, args=(writer,), daemon=True).start()
    try:
        while True:
            batch: list[bytes] = inbox.recv()
            try:
                answer: object = work(mac, batch)
            except Exception as exc:  # given back: the writer adds these messages itself
                outbox.send(_picklable(exc))
                return
            outbox.send(answer)
    except (EOFError, OSError):  # the writer closed a pipe: stop
        return


def _picklable(exc: Exception) -> Exception:
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own object, round-tripped
    except Exception:
        return HelperFailed(repr(exc))
    return exc


def _exit_when_orphaned(writer: int) -> None:
    """A writer killed with SIGKILL cannot stop its helper: notice being re-parented, and
    exit. The writer's pid comes from the writer: it may be gone before this helper has
    started."""
    while os.getppid() == writer:
        time.sleep(ORPHAN_CHECK)
    os._exit(0)


#: What a helper process runs (``python -c``): its pipes' descriptors, then the writer's
#: module search path, follow on its command line (:meth:`_Helper.start`).
_CHILD = (
    "import sys; sys.path[:0] = sys.argv[3:];"
    " from popvault.app.helper import _helper_child; _helper_child()"
)


def _helper_child() -> None:
    """A helper process's start (:data:`_CHILD`): its pipes from its command line, then
    its MAC key, its writer's pid and its work as the first message on its input."""
    inbox = Connection(int(sys.argv[1]), writable=False)
    outbox = Connection(int(sys.argv[2]), readable=False)
    try:
        mac, writer, work = inbox.recv()
    except (EOFError, OSError):  # the writer is gone before it said anything
        return
    _helper_main(mac, writer, inbox, outbox, work)


def prepare_batch(mac: bytes, batch: list[bytes]) -> list[Result]:
    """The helper's work by default: each message prepared, with its metadata."""
    return [(prepare_message(mac, data), parse_metadata(data), None) for data in batch]


def slices(ready: Iterator[U], size: int = SLICE) -> Iterator[list[U]]:
    """What :meth:`Preparer.ready` gives, ``size`` at a time (for one look-up of their
    ids each): all of it at once held every answer waiting in the pipe, unpickled
    (13 MB of a backup of small messages)."""
    while done := list(itertools.islice(ready, size)):
        yield done


def _widen(pipe: Connection) -> None:
    """Let the answer pipe hold :data:`ANSWER_PIPE` bytes (Linux; elsewhere, or past the
    system's limit, it stays as it is). A helper blocks when the pipe is full, and an
    answer of 64 messages fills the default 64 KiB: while the writer commits (a quarter
    of a second on an import) its helpers stood still after one batch. An import of
    small messages ran 20-30 % faster with room for a few batches (docs/performance.md)."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsize is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), setsize, ANSWER_PIPE)


def _feed(outbox: queue.SimpleQueue[list[bytes] | None], pipe: Connection) -> None:
    """The writer's feeding thread: batches into the helper's pipe, so that the writer
    never blocks on a full pipe while the helper blocks on a full answer pipe."""
    try:
        while (batch := outbox.get()) is not None:
            pipe.send(batch)
    except OSError:  # the helper is gone or the pipe was closed: close() cleans up
        pass
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


class _Helper:
    """One helper process and the writer's ends of its pipes (started by
    :meth:`start`)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.answers: Connection | None = None
        self.outbox: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()

    def start(self, mac: bytes, work: Work) -> None:
        # a process of its own (python -c), not multiprocessing's: spawn also starts a
        # resource tracker process (15 MB for nothing here), and fork would copy this
        # process's threads' locks in whatever state they were
        batches_in, batches_out = os.pipe()
        answers_in, answers_out = os.pipe()
        # isolated (-I: no PYTHON* variables, no current directory or user site on its
        # path), with the writer's module search path instead, as spawn gives it
        path = [p for p in sys.path if p]
        argv = [sys.executable, "-I", "-c", _CHILD, str(batches_in), str(answers_out), *path]
        batches = Connection(batches_out, readable=False)
        answers = Connection(answers_in, writable=False)
        try:
            # not torn by a signal: the helper must get its first message whole
            with interrupts.critical():
                proc = subprocess.Popen(
                    argv,
                    pass_fds=(batches_in, answers_out),
                    # none of the writer's streams: the helper never writes to them (a
                    # failure comes back as an exception) nor holds them once it is gone
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                batches.send((mac, os.getpid(), work))  # a few bytes: never blocks
        except BaseException:
            batches.close()
            answers.close()
            raise
        finally:
            # the helper's ends are the helper's alone: its exit then closes the pipes
            os.close(batches_in)
            os.close(answers_out)
        self.proc = proc
        self.answers = answers
        _widen(answers)
        threading.Thread(
            target=_feed, args=(self.outbox, batches), name="popvault-feed", daemon=True
        ).start()

    def stop(self) -> None:
        """Close both pipes (the helper then ends; see :meth:`Preparer.close`)."""
        self.outbox.put(None)  # the feeder closes the helper's input: it ends
        if self.answers is not None:
            self.answers.close()  # a helper blocked on a full answer pipe ends too


class Preparer(Generic[T]):
    """Prepares submitted messages in helper processes; see the module doc.

    ``submit(data, tag)`` queues a message (``tag`` is the caller's, given back with it);
    ``ready()`` yields ``(data, tag, result)`` for the messages done so far, in submission
    order, waiting only while more than ``max_pending`` bytes are out; ``ready(wait=True)``
    yields every message submitted. ``result`` is None when a helper failed.
    ``work``: what the helper does instead of preparing (a module-level function, as
    the helper imports it by name; the search index makes documents so). ``processes``:
    helpers batches go to in turn (each started when it gets its first batch; a second
    pays where the helper's work is the larger part of a run, as when it also makes
    index documents).

    ``submit_local(data, tag)`` prepares a large message in a thread of this process
    instead (pickling megabytes through a pipe costs more than it saves, while decoding
    base64 and keyed hashing release the interpreter lock, so the thread runs beside the
    one reading the socket); it comes back in the same order as the others. At most
    ``max_local`` bytes of such messages are out at a time. A failure there gives the
    message back without a result, like a helper failure, and does not stop the helper.
    """

    def __init__(
        self,
        mac: bytes,
        *,
        batch_bytes: int = 128 << 10,
        batch_count: int = 64,
        max_pending: int = 2 << 20,
        stop_timeout: float = 5.0,
        work: Work = prepare_batch,
        max_local: int = 8 << 20,
        processes: int = 1,
    ) -> None:
        self._mac = mac
        self._work = work
        self._threads: ThreadPoolExecutor | None = None
        self._max_local = max_local
        self._local = 0
        self._helpers = [_Helper() for _ in range(max(1, processes))]
        self._turn = 0
        self._closed = False
        self._batch: list[tuple[bytes, T]] = []
        self._batch_size = 0
        self._batch_bytes = batch_bytes
        self._batch_count = batch_count
        self._max_pending = max_pending
        self._stop_timeout = stop_timeout
        #: Batches out, in order: (messages, bytes, the helper that has it (None: not
        #: sent), or the thread preparing it here).
        self._out: deque[
            tuple[list[tuple[bytes, T]], int, _Helper | Future[list[Result]] | None]
        ] = deque()
        self._pending = 0
        self.failed: BaseException | None = None

    @property
    def helper_pid(self) -> int | None:
        """The (first) helper's process id, once it has been started."""
        proc = self._helpers[0].proc
        return None if proc is None else proc.pid

    @property
    def helper_pids(self) -> list[int]:
        """The process ids of the helpers started so far."""
        return [h.proc.pid for h in self._helpers if h.proc is not None and h.proc.pid]

    def submit(self, data: bytes, tag: T) -> None:
        with interrupts.critical():
            self._batch.append((data, tag))
            self._batch_size += len(data)
            self._pending += len(data)
            if len(self._batch) >= self._batch_count or self._batch_size >= self._batch_bytes:
                self._send()

    def submit_local(self, data: bytes, tag: T) -> None:
        """Queue a message to be prepared by a thread of this process (see the class)."""
        with interrupts.critical():
            self._send()  # what came before goes first
            if self._threads is None:
                self._threads = ThreadPoolExecutor(1, thread_name_prefix="popvault-prepare")
            fut = self._threads.submit(self._work, self._mac, [data])
            self._local += len(data)
            self._out.append(([(data, tag)], len(data), fut))

    def _send(self) -> None:
        if not self._batch:
            return
        batch, size = self._batch, self._batch_size
        self._batch, self._batch_size = [], 0
        sent: _Helper | None = None
        if self.failed is None and not self._closed:
            helper = self._helpers[self._turn]
            self._turn = (self._turn + 1) % len(self._helpers)
            try:
                if helper.proc is None:
                    helper.start(self._mac, self._work)
                helper.outbox.put([data for data, _ in batch])
                sent = helper
            except Exception as exc:  # the helper cannot start: add these directly
                self.failed = exc
        self._out.append((batch, size, sent))

    def _answer(self, helper: _Helper, block: bool) -> list[Result] | _NotYet | None:
        """The next batch's results from ``helper``: None when it has none (a helper
        failed), NOT_YET when ``block`` is false and they have not arrived (nothing is
        consumed then)."""
        pipe = helper.answers
        if pipe is None or self.failed is not None:
            return None
        try:
            if not pipe.poll(ANSWER_TIMEOUT if block else 0):
                if not block:
                    return NOT_YET
                raise HelperFailed(f"no answer from the helper in {ANSWER_TIMEOUT:.0f} s")
            answer = pipe.recv()
        except (EOFError, OSError, HelperFailed) as exc:  # the helper died or hangs
            self.failed = exc
            return None
        if isinstance(answer, BaseException):
            self.failed = answer
            return None
        if not isinstance(answer, list):
            self.failed = HelperFailed(f"unexpected answer {type(answer).__name__}")
            return None
        return answer

    def ready(self, wait: bool = False) -> Iterator[tuple[bytes, T, Result | None]]:
        if wait:
            self._send()
        while self._out:
            batch, size, sent = self._out[0]
            results: list[Result] | None = None
            if isinstance(sent, Future):
                if not (wait or self._local > self._max_local or sent.done()):
                    return
                try:
                    results = sent.result()
                except Exception:  # given back without a result: added directly
                    results = None
            elif sent is not None:
                answer = self._answer(sent, wait or self._pending > self._max_pending)
                if isinstance(answer, _NotYet):
                    return
                results = answer
            if results is not None and len(results) != len(batch):
                self.failed = HelperFailed("the helper answered for the wrong messages")
                results = None
            self._out.popleft()
            if isinstance(sent, Future):
                self._local -= size
            else:
                self._pending -= size
            for i, (data, tag) in enumerate(batch):
                yield data, tag, results[i] if results is not None else None

    def close(self) -> None:
        """Stop the helpers, waiting at most ``stop_timeout`` seconds (in all) before
        killing them; messages still out are dropped (call ``ready(wait=True)`` first to
        have them)."""
        with interrupts.critical():
            if self._closed:
                return
            self._closed = True
            if self._threads is not None:
                self._threads.shutdown(wait=False, cancel_futures=True)
            for helper in self._helpers:
                helper.stop()
        deadline = time.monotonic() + self._stop_timeout
        for proc in [h.proc for h in self._helpers if h.proc is not None]:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(1.0)

    def __enter__(self) -> Preparer[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
