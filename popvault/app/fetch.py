"""The fetch-and-store stage of a backup: RETR pipelined into the vault, in batches.

Each message goes from the POP3 stream into the vault as it arrives: collected whole for
the helper process (:mod:`popvault.app.helper`) when it is small and a helper runs, or
for a thread of this process when it is up to THREAD_MAX (decoding and keyed hashing
release the interpreter lock, so it runs beside the socket reader), else streamed into
a :class:`~popvault.vault.MessageWriter`. It is checked against its LIST
size (a mismatch keeps it on the server for good) and committed in batches. Whatever
arrived whole is committed when the session breaks; on an interrupt, what is filed is
committed and the rest dropped without waiting for the helper (the next run fetches it
again).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from popvault import interrupts
from popvault.app.config import AccountConfig
from popvault.app.helper import Preparer, Work, slices
from popvault.app.helper import Result as PrepareResult
from popvault.app.indexing import Indexer
from popvault.app.metadata import parse_metadata
from popvault.app.progress import Progress
from popvault.errors import UsageError
from popvault.pop3.client import Pop3Client
from popvault.pop3.errors import Pop3CommandFailed
from popvault.pop3.numbers import ByNumber
from popvault.vault import AddResult, MessageWriter, SourceInfo, Vault

BATCH_MESSAGES = 2000
BATCH_BYTES = 128 << 20
#: A run fetching at least this many messages prepares them in a helper process
#: (popvault.app.helper); fewer are not worth starting one.
PREPARE_MIN = 200
#: Messages larger than this are never held whole for the helper process.
PREPARE_MAX = 512 << 10
#: Messages from PREPARE_MAX up to this size are prepared by a thread of this process
#: (helper.Preparer.submit_local); larger ones are streamed into the vault.
THREAD_MAX = 4 << 20

#: What the preparer carries with each message: number, UIDL, bytes and lines received.
Tag = tuple[int, str, int, int]


@dataclass
class Fetched:
    """What the stage did: each fetched UIDL's message id, and the UIDLs whose LIST size
    disagreed with what arrived (never deleted).

    A download that is the very message the vault already holds under that UIDL (fetched
    again to prove its identity) is ``confirmed``: counted as fetched, neither new nor a
    duplicate (the vault records no new arrival for it)."""

    ids: dict[str, bytes] = field(default_factory=dict)
    mismatched: set[str] = field(default_factory=set)
    bytes: int = 0
    new: int = 0
    duplicates: int = 0
    warnings: list[str] = field(default_factory=list)
    confirmed: set[str] = field(default_factory=set)
    #: UIDL -> the server's ``-ERR`` for a RETR it refused (``skip_refused`` only).
    refused: dict[str, str] = field(default_factory=dict)

    def merge(self, other: Fetched) -> None:
        """Add a later fetch of the same session to this one."""
        self.ids.update(other.ids)
        self.mismatched |= other.mismatched
        self.bytes += other.bytes
        self.new += other.new
        self.duplicates += other.duplicates
        self.warnings += other.warnings
        self.confirmed |= other.confirmed
        self.refused.update(other.refused)


def size_ok(listed: int | None, got: int, lines: int) -> bool:
    """LIST sizes may count CRLF or LF line ends (notes/dovecot.md): tolerate either."""
    if listed is None:
        return True
    return got - lines - 2 <= listed <= got + 2


class _Sink:
    """Where one message's bytes go as they arrive; counts line feeds (size check).

    Collected whole for the preparer (up to ``collect`` bytes), or streamed into a
    MessageWriter: a large message (by LIST), one that outgrows ``collect`` on the way,
    or any without a preparer (``collect`` 0)."""

    def __init__(self, vault: Vault, collect: int) -> None:
        self.vault = vault
        self.limit = collect
        #: The pieces received, while collected: joined once at the end (a buffer they
        #: were appended to cost a copy of every byte more).
        self.parts: list[bytes] | None = [] if collect else None
        self.held = 0
        self.writer: MessageWriter | None = None if collect else vault.new_message()
        self.lines = 0

    def __call__(self, chunk: bytes) -> None:
        if self.parts is None:
            assert self.writer is not None
            self.lines += chunk.count(b"\n")
            self.writer.write(chunk)
            return
        self.parts.append(chunk)
        self.held += len(chunk)
        if self.held > self.limit:  # LIST understated it: stream it after all
            parts, self.parts = self.parts, None
            self.lines = sum(p.count(b"\n") for p in parts)
            self.writer = self.vault.new_message()
            for part in parts:
                self.writer.write(part)

    def data(self) -> bytes:
        """The message collected (one copy of its pieces)."""
        assert self.parts is not None
        return self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)

    def line_feeds(self, listed: int | None, got: int) -> int:
        """The line feeds received, when :func:`size_ok` needs them (``listed`` is more
        than two bytes short of ``got``); else 0, which gives the same answer. A message
        held whole is counted only then (a pass over its bytes on the thread that reads
        the socket)."""
        if self.parts is None:
            return self.lines
        if listed is None or listed >= got - 2:
            return 0
        return sum(p.count(b"\n") for p in self.parts)


def preparer_for(vault: Vault, count: int, work: Work) -> Preparer[Tag] | None:
    """A helper process for a fetch of ``count`` messages, when it pays: enough messages,
    and a second CPU for it to run on. One: the thread reading POP3 is the limit, and
    each helper costs about 30 MB. ``work``: the indexer's (documents made there too)."""
    if count < PREPARE_MIN or (os.cpu_count() or 1) < 2:
        return None
    return Preparer(vault.helper_key(), work=work)


def _collect_limit(preparer: Preparer[Tag] | None, listed: int) -> int:
    """How much of a message of ``listed`` bytes to collect whole for preparing (0:
    stream it): small ones for the helper process, large ones for a thread (given a
    second CPU for it to run on), the largest streamed in bounded memory."""
    if preparer is not None and listed <= PREPARE_MAX:
        return PREPARE_MAX
    if listed <= THREAD_MAX and (os.cpu_count() or 1) >= 2:
        return THREAD_MAX
    return 0


class _Stage:
    """One account's fetch: the callbacks ``retr_many`` calls, and the filing."""

    def __init__(
        self,
        vault: Vault,
        acct: AccountConfig,
        source: str,
        todo: list[tuple[int, str]],
        sizes: Mapping[int, int],
        progress: Progress,
        expected: Mapping[str, bytes],
    ) -> None:
        self.vault = vault
        self.acct = acct
        self.source = source
        self.uidl_of = dict(todo)
        self.expected = expected
        #: Message number -> bytes received, for every message whose RETR ended.
        self.ended = ByNumber()
        self.sizes = sizes
        self.progress = progress
        self.out = Fetched()
        self.current: dict[int, _Sink] = {}
        #: Indexes the new messages whose bytes were in hand after each commit (their
        #: text made where they are prepared, or here: a helper process of its own cost
        #: more than it saved on the attachment-heavy mailbox; inserted by a thread); the
        #: others are read back.
        self.indexer = Indexer(vault, helpers=0, progress=progress)
        self.preparer = preparer_for(vault, len(todo), self.indexer.work)
        #: Prepares large messages in a thread when there is no helper process.
        self.threads: Preparer[Tag] | None = None

    def begin(self, num: int) -> Callable[[bytes], None]:
        interrupts.checkpoint()  # accounts in other threads stop here (--jobs)
        collect = _collect_limit(self.preparer, self.sizes.get(num, 0))
        sink = self.current[num] = _Sink(self.vault, collect)
        return sink

    def _queue(self) -> Preparer[Tag]:
        """The helper's queue, or one for threads alone (no helper process is started:
        only large messages go to it)."""
        if self.preparer is not None:
            return self.preparer
        if self.threads is None:
            self.threads = Preparer(self.vault.helper_key(), work=self.indexer.work)
        return self.threads

    def end(self, num: int, nbytes: int) -> None:
        self.ended[num] = nbytes
        sink = self.current.pop(num)
        uidl = self.uidl_of[num]
        if sink.parts is not None:
            queue = self._queue()
            tag = (num, uidl, nbytes, sink.line_feeds(self.sizes.get(num), nbytes))
            if sink.held > PREPARE_MAX or queue is self.threads:
                queue.submit_local(sink.data(), tag)
            else:
                queue.submit(sink.data(), tag)
            self._file_all(queue.ready())
            return
        assert sink.writer is not None
        res = sink.writer.finish(self._src(uidl), parse_metadata(sink.writer.head))
        if res.new and sink.writer.data is not None:  # indexed from it, not read back
            self.indexer.add(res.msg_id, sink.writer.data)
        self.filed(num, uidl, nbytes, sink.lines, res)

    def _src(self, uidl: str) -> SourceInfo:
        return SourceInfo(account=self.acct.name, source=self.source, uidl=uidl)

    def _file_all(self, ready: Iterator[tuple[bytes, Tag, PrepareResult | None]]) -> None:
        """File what a preparer gave back, the ids of each slice looked up in one query."""
        for done in slices(ready):
            self.vault.prefetch([r[0].msg_id for _, _, r in done if r is not None])
            for item in done:
                self.file_prepared(*item)

    def file_prepared(self, data: bytes, tag: Tag, result: PrepareResult | None) -> None:
        num, uidl, nbytes, lines = tag
        if result is None:  # the helper failed: the ordinary way, same outcome
            res = self.vault.add_message(data, self._src(uidl), parse_metadata(data))
        elif len(data) > PREPARE_MAX or self.preparer is None:  # prepared by a thread
            writer = self.vault.new_message()
            res = writer.file_prepared(data, result[0], self._src(uidl), result[1])
        else:
            res = self.vault.add_prepared(data, result[0], self._src(uidl), result[1])
        if res.new:
            self.indexer.add(res.msg_id, data, result[2] if result is not None else None)
        self.filed(num, uidl, nbytes, lines, res)

    def filed(self, num: int, uidl: str, nbytes: int, lines: int, res: AddResult) -> None:
        out = self.out
        out.ids[uidl] = res.msg_id
        out.bytes += nbytes
        if res.new:
            out.new += 1
        elif self._arrived_before(uidl, res.msg_id):
            out.confirmed.add(uidl)
        else:
            out.duplicates += 1
        if not size_ok(self.sizes.get(num), nbytes, lines):
            out.mismatched.add(uidl)
            out.warnings.append(
                f"#{num} {uidl}: LIST said {self.sizes.get(num)} bytes, received {nbytes};"
                " kept, and never deleted from the server"
            )
        self.progress.advance(1, nbytes)
        if self.vault.commit_if(arrivals=BATCH_MESSAGES, nbytes=BATCH_BYTES):
            self.indexer.committed()

    def _arrived_before(self, uidl: str, msg_id: bytes) -> bool:
        """Whether a message already in the vault is the one archived under ``uidl``:
        the one ``expected`` names, or (a UIDL with several arrivals, the server having
        reused it) another committed one that has this account and UIDL."""
        if uidl not in self.expected:
            return False
        if self.expected[uidl] == msg_id:
            return True
        try:
            row = self.vault.message(msg_id)
        except UsageError:  # not committed yet: an arrival of this run
            return False
        return self.acct.name in row.accounts and uidl in row.uidls

    def finish(self, stopped: bool) -> None:
        """After the RETRs: file what the helper still holds (unless stopped), stop it,
        commit."""
        try:
            for queue in (self.preparer, self.threads):
                if queue is not None and not self.vault.broken and not stopped:
                    self._file_all(queue.ready(wait=True))
        finally:
            if self.threads is not None:
                self.threads.close()
            if self.preparer is not None:
                self.preparer.close()
                if self.preparer.failed is not None:
                    self.out.warnings.append(
                        f"the helper process failed ({self.preparer.failed!r}); its messages"
                        " were added directly"
                    )
            try:
                if not self.vault.broken:
                    self.vault.commit()
                    self.indexer.committed(last=not stopped)  # stopped: what is ready
            finally:
                self.indexer.close()


def fetch_and_store(
    vault: Vault,
    client: Pop3Client,
    acct: AccountConfig,
    todo: list[tuple[int, str]],
    sizes: Mapping[int, int],
    progress: Progress,
    *,
    source: str,
    expected: Mapping[str, bytes] | None = None,
    skip_refused: bool = False,
) -> Fetched:
    """RETR every message of ``todo`` (number, UIDL) into the vault and commit it.

    Whatever arrived whole is committed even when the session breaks (the error is then
    raised); every message is filed whole or not at all (the vault holds signals back
    meanwhile), and a commit refuses records whose blobs are not stored. ``expected``:
    UIDL -> the message the vault holds under it (a download of that very message is
    ``confirmed``). ``skip_refused``: a RETR answered ``-ERR`` is noted in ``refused``
    and the rest are fetched; else the error is raised."""
    stage = _Stage(vault, acct, source, todo, sizes, progress, expected or {})
    stopped = False
    try:
        with _fetching(client):
            numbers = [n for n, _ in todo]
            while numbers:
                try:
                    client.retr_many(numbers, stage.begin, stage.end, window=acct.pipeline_window)
                    numbers = []
                except Pop3CommandFailed as exc:
                    if not skip_refused:
                        raise
                    # replies come in order: the refused one is the first not ended
                    failed = next(i for i, n in enumerate(numbers) if n not in stage.ended)
                    stage.out.refused[stage.uidl_of[numbers[failed]]] = exc.message
                    numbers = [n for n in numbers[failed + 1 :] if n not in stage.ended]
    except BaseException as exc:
        # an interrupt; or, in a --jobs thread, the connection cut because of one
        stopped = isinstance(exc, KeyboardInterrupt) or interrupts.requested() is not None
        raise
    finally:
        stage.finish(stopped)
    return stage.out


#: The POP3 sessions fetching right now, for an interrupt to cut (``cut_sessions``).
_sessions: set[Pop3Client] = set()
_sessions_lock = threading.Lock()


@contextlib.contextmanager
def _fetching(client: Pop3Client) -> Iterator[None]:
    """While ``client`` fetches, an interrupt may cut it (never later: from QUIT on,
    a deletion must be recorded)."""
    with _sessions_lock:
        _sessions.add(client)
    try:
        yield
    finally:
        with _sessions_lock:
            _sessions.discard(client)


def cut_sessions() -> None:
    """Make the accounts fetching in other threads stop now: a read blocked on a slow
    or silent server would otherwise hold the interrupt up until its timeout."""
    with _sessions_lock:
        for client in _sessions:
            client.abort()
