"""Keeping the full-text search index up to date (docs/search.md, "What is indexed"):
each message's document (:func:`document`, its text by column), and indexing what the
cache knows and the index does not (:func:`index_new`), after a writer's run
(:func:`index_run`) or as a run goes (:class:`Indexer`, whose documents are made where
the run prepares its messages, :func:`prepare_indexed`). The query language and
searching are :mod:`popvault.app.search`'s; the SQL is :mod:`popvault.vault.fts`'s.
"""

from __future__ import annotations

import os
from collections.abc import Container, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from popvault.app.helper import Document, Preparer, Result, Work, prepare_batch
from popvault.app.progress import NullProgress, Progress
from popvault.app.searchtext import search_text
from popvault.errors import PopvaultError
from popvault.vault import SearchDoc, SearchIndex, index_text

if TYPE_CHECKING:  # not at run time: a helper process that imports this (its work is
    # prepare_indexed) loads neither the vault's storage nor its cache code (17 MB)
    from popvault.vault import Vault

#: Bytes of one message read for indexing (the rest of a huge message is not indexed).
MAX_INDEXED = 32 << 20
#: The index's word for a message with attachments (what has:attachment matches).
ATTACHMENT_FACT = "attachment"
#: Messages indexed a transaction: read back from the vault (their text held meanwhile),
#: or given by the caller (fewer, larger transactions: FTS5 merges less).
BATCH = 200
BATCH_GIVEN = 2000
#: Documents an :class:`Indexer` makes itself before it starts a helper process (whose
#: start costs about 0.3 s of CPU: a small import is over sooner without one).
INLINE_FIRST = 200


@dataclass
class IndexReport:
    """What :func:`index_new` did."""

    indexed: int = 0
    #: Messages indexed only in part (broken MIME, damaged or incomplete data).
    partial: int = 0
    #: Stopped before a message to read back (``read_back=False``).
    unread: bool = False


def document(data: bytes, *, ready: bool = False) -> tuple[SearchDoc, bool]:
    """A message's index document, and whether it was read only in part; ``ready``:
    its texts already as the index takes them (:meth:`SearchDoc.for_index`)."""
    st = search_text(data)
    fix = index_text if ready else str
    doc = SearchDoc(
        sender=fix(st.from_),
        recipients=fix(f"{st.to}\n{st.cc}".strip()),
        subject=fix(st.subject),
        body=fix(st.body),
        filename=fix("\n".join(st.filenames)),
        facts=ATTACHMENT_FACT if st.has_attachment else "",
        ready=ready,
    )
    return doc, st.problems > 0


def pending_count(vault: Vault) -> int:
    """Messages the cache knows that the index does not yet."""
    return SearchIndex.of(vault).unindexed_count()


def index_new(
    vault: Vault,
    docs: Mapping[bytes, tuple[SearchDoc, bool]] | None = None,
    *,
    progress: Progress | None = None,
    coming: Container[bytes] = (),
    read_back: bool = True,
    index: SearchIndex | None = None,
) -> IndexReport:
    """Index every message the cache knows and the index does not: from ``docs``
    (message id -> :func:`document`, when the caller has them) or else read back from
    the vault. A message that cannot be read (damaged, incomplete) is indexed by its
    headers as the cache knows them and counted as partial; nothing here raises for a
    message. Each batch is committed to the cache as it is done (an interrupted run
    keeps them; the next goes on from there). Indexing stops before the first message
    in ``coming`` (its document is still being made: the next call goes on from it),
    and, unless ``read_back``, before the first that would be read back (``unread``).
    The documents used are taken out of ``docs`` when it is a dict. ``index``: the
    vault's index on another connection (a thread's own; the vault's by default)."""
    progress = progress or NullProgress()
    index = index or SearchIndex.of(vault)
    rep = IndexReport()
    total = index.unindexed_count()
    if not total:
        return rep
    progress.start("search index", total, None)
    waiting = False
    while not waiting:
        batch = index.unindexed(BATCH if docs is None else BATCH_GIVEN)
        if not batch:
            break
        out: list[tuple[int, bytes, SearchDoc]] = []
        broken = 0
        for rowid, msg_id, size in batch:
            got = docs.get(msg_id) if docs is not None else None
            if msg_id in coming or (got is None and not read_back):
                waiting, rep.unread = True, msg_id not in coming
                break
            doc, part = got if got is not None else _read_document(vault, msg_id, size)
            out.append((rowid, msg_id, doc))
            broken += part
            progress.advance(1, size)
        rep.indexed += index.add(out, broken)
        rep.partial += broken
        if isinstance(docs, dict):
            for _, msg_id, _ in out:
                docs.pop(msg_id, None)
    progress.done()
    return rep


def _read_document(vault: Vault, msg_id: bytes, size: int) -> tuple[SearchDoc, bool]:
    try:
        if size <= MAX_INDEXED:
            return document(vault.read_message(msg_id))
        head = bytearray()
        for chunk in vault.iter_message(msg_id):
            head += chunk
            if len(head) >= MAX_INDEXED:
                break
        doc, _ = document(bytes(head[:MAX_INDEXED]))
        return doc, True
    except PopvaultError:
        return SearchIndex.of(vault).header_doc(msg_id), True


def indexing_enabled() -> bool:
    """Whether writers index as they go: not with ``POPVAULT_SEARCH_INDEX=0`` (then
    ``search`` indexes what is missing when it runs)."""
    return os.environ.get("POPVAULT_SEARCH_INDEX", "1").strip().lower() not in ("0", "off", "no")


def index_run(
    vault: Vault,
    progress: Progress | None = None,
    *,
    always: bool = False,
    docs: Mapping[bytes, tuple[SearchDoc, bool]] | None = None,
) -> IndexReport:
    """After a writer's run (backup, repair): :func:`index_new` (with the ``docs`` the
    run made while it had the bytes: the rest is read back), unless
    ``POPVAULT_SEARCH_INDEX=0`` (then ``search`` indexes when it runs); ``always``
    (search, ``export --query``): whatever that says. A failure (the cache busy for a
    minute, say) is a warning, never the run's failure: a search then answers from what
    is indexed."""
    if not (always or indexing_enabled()):
        return IndexReport()
    progress = progress or NullProgress()
    try:
        return index_new(vault, docs, progress=progress)
    except Exception as exc:  # a by-product of the run: the run itself succeeded
        progress.warn(_NOT_INDEXED.format(exc))
        return IndexReport()


_NOT_INDEXED = "search index not brought up to date ({}); searches may miss new mail"


def indexed_document(data: bytes) -> Document:
    """:func:`document`, its texts already as the index takes them (made where the bytes
    are, off the thread that inserts)."""
    return document(data, ready=True)


def _document_batch(_mac: bytes, batch: list[bytes]) -> list[Any]:
    """The helper process's work (:class:`Indexer`): each message's document."""
    return list(map(indexed_document, batch))


def prepare_indexed(mac: bytes, batch: list[bytes]) -> list[Result]:
    """A :class:`~popvault.app.helper.Preparer`'s work for a run that indexes: each
    message prepared and its document made in one visit (:attr:`Indexer.work`): no
    second helper, and no second copy of the bytes, for the index."""
    return [
        (p, m, indexed_document(data))
        for (p, m, _), data in zip(prepare_batch(mac, batch), batch, strict=True)
    ]


class Indexer:
    """Indexes what a run (import) adds, after each of its commits: documents of the
    messages it was given (:meth:`add`) are made by a helper process while the run goes
    on (:mod:`popvault.app.helper`; made here if a helper fails), and inserted by a
    thread of this process on its own connection to the cache (SQLite works outside
    Python's lock: the run goes on meanwhile); the rest are read back from the vault,
    on the run's thread. A commit indexes what is ready and leaves the messages whose
    documents are still being made to the next: the run waits for neither the helper
    nor the thread but at its end. Close it (a context manager) to stop both. Given a
    ``progress``, a failure to index is a warning on it and indexing stops for the run
    (a backup's index is a by-product: the next run or search catches up)."""

    def __init__(
        self, vault: Vault, helpers: int | None = None, *, progress: Progress | None = None
    ) -> None:
        self.vault = vault
        self.enabled = indexing_enabled()
        self._progress = progress
        self._docs: dict[bytes, tuple[SearchDoc, bool]] = {}
        #: Messages a helper is making the documents of.
        self._coming: set[bytes] = set()
        # a helper for every core the run leaves free (the run itself keeps about one
        # busy), up to four; ``helpers=0``: made in this process. The helpers never see
        # a key: they make documents of bytes the run already has
        n = helpers if helpers is not None else min(4, max(1, (os.cpu_count() or 1) - 1))
        self._helpers: list[Preparer[bytes]] = [
            Preparer(b"", work=_document_batch, max_pending=8 << 20) for _ in range(n)
        ]
        self._added = self._inline = 0
        self.report = IndexReport()
        #: The inserting thread, its connection, and the batch it is on.
        self._thread: ThreadPoolExecutor | None = None
        self._own: SearchIndex | None = None
        self._job: Future[IndexReport] | None = None
        self._given: dict[bytes, tuple[SearchDoc, bool]] = {}
        self._read_back = False

    @property
    def processes(self) -> int:
        """Helper processes for the run's own preparer: two when it also makes the
        documents (then the larger part of an import's work) and a second core is there."""
        return 2 if self.enabled and (os.cpu_count() or 1) >= 2 else 1

    @property
    def work(self) -> Work:
        """What the run's own :class:`~popvault.app.helper.Preparer` should do: prepare
        its messages, and make their documents when this indexes (given to :meth:`add`)."""
        return prepare_indexed if self.enabled else prepare_batch

    def add(self, msg_id: bytes, data: bytes, doc: Document | None = None) -> None:
        """A new message's bytes (pending until the next commit), and its document when
        the run's preparer made it (:attr:`work`)."""
        if doc is not None:
            if self.enabled:
                self._docs[msg_id] = doc
        elif self.enabled and (not self._helpers or self._inline < INLINE_FIRST):
            self._docs[msg_id] = document(data)
            self._inline += 1
        elif self.enabled:
            # 64 messages to a helper in turn (a helper's batch); answers are looked for
            # once a batch (every message: a tenth of the run's indexing time in polls)
            self._helpers[self._added // 64 % len(self._helpers)].submit(data, msg_id)
            self._coming.add(msg_id)
            self._added += 1
            if self._added % 64 == 0:
                self._collect(wait=False)

    def _collect(self, wait: bool) -> None:
        for helper in self._helpers:
            for data, msg_id, result in helper.ready(wait):
                self._docs[msg_id] = document(data) if result is None else cast(Any, result)
                self._coming.discard(msg_id)

    def committed(self, *, last: bool = False) -> None:
        """After a commit: index what it added whose documents are ready, in the thread;
        ``last`` (the run's last commit): all of it, before returning."""
        if not self.enabled:
            return
        if self._progress is None:
            self._committed(last)
            return
        try:
            self._committed(last)
        except Exception as exc:  # a by-product of the run: the run itself goes on
            self.enabled = False
            self._progress.warn(_NOT_INDEXED.format(exc))

    def _committed(self, last: bool) -> None:
        self._collect(wait=last)
        self._finish_job()
        docs, self._docs = self._docs, {}
        coming = frozenset(self._coming)
        index = self._index()
        if last or self._read_back or index is None:
            # a message to read back is read here (the vault's reader is this thread's)
            self._account(index_new(self.vault, docs, coming=coming))
            self._docs.update(docs)
            return
        assert self._thread is not None
        self._given = docs  # what the thread leaves of them goes to the next commit
        self._job = self._thread.submit(
            index_new, self.vault, docs, coming=coming, read_back=False, index=index
        )

    def _index(self) -> SearchIndex | None:
        """The thread's index on its own connection (None for a cache in memory)."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="popvault-index")
            self._own = SearchIndex.own(self.vault)
        return self._own

    def _finish_job(self) -> None:
        if self._job is not None:
            job, self._job = self._job, None
            self._account(job.result())
            self._docs.update(self._given)  # the documents it left for the next
            self._given = {}

    def _account(self, rep: IndexReport) -> None:
        self.report.indexed += rep.indexed
        self.report.partial += rep.partial
        self._read_back = rep.unread

    def close(self) -> None:
        try:
            for helper in self._helpers:
                helper.close()
            if self._job is not None:
                self._job.exception()  # waited for; a failed run's own error is raised
        finally:
            if self._thread is not None:
                self._thread.shutdown()
            if self._own is not None:
                self._own.close()

    def __enter__(self) -> Indexer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
