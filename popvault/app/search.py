"""Full-text search use case: the query language, indexing, and finding messages
(``popvault search``, ``export --query``; docs/search.md).

The index is an FTS5 table in the encrypted local cache (:mod:`popvault.vault.fts`).
:func:`index_new` indexes the messages the cache knows and the index does not yet (read
back from the vault, or given by the caller that has their bytes); backup, import,
repair and ``index rebuild`` call it, and ``search`` calls it before it queries, so an
index is never behind the cache for long and never indexes a message twice.
:func:`search` only reads: it can run while a writer holds the vault.

A query (docs/search.md): words (every one must match), ``"exact phrases"``,
``prefix*``, ``a OR b`` (binds tighter than the implicit AND), ``-excluded``, fields
``from:`` ``to:`` (To and Cc) ``subject:`` ``body:`` ``filename:`` (attachment names),
``has:attachment``, ``account:NAME``, ``before:DATE`` and ``after:DATE`` (``YYYY``,
``YYYY-MM`` or ``YYYY-MM-DD``, UTC; after is inclusive). Matching ignores case and
accents. Every word reaches FTS5 quoted, never as FTS5 syntax; a query that cannot be
understood raises :class:`QueryError` (exit 2) naming the problem.

API changes against the first published form (compatible): :func:`search` also takes
``marks`` (the strings around hits in snippets, default ``[`` and ``]``) and
``snippets`` (False: no snippet is made, each is empty; faster for long result lists).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Container, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from popvault.app.helper import Preparer
from popvault.app.progress import NullProgress, Progress
from popvault.app.searchtext import search_text
from popvault.errors import PopvaultError, UsageError
from popvault.vault import Filter, MessageRow, SearchDoc, SearchIndex, SearchSql, Vault

__all__ = [
    "Hit",
    "Indexer",
    "Query",
    "QueryError",
    "Term",
    "index_new",
    "index_run",
    "only_hits",
    "parse_query",
    "search",
]

Sort = Literal["rank", "date"]

#: Query fields that name index columns.
FIELDS = {
    "from": "sender",
    "to": "recipients",
    "subject": "subject",
    "body": "body",
    "filename": "filename",
}
#: Fields that filter on what the cache knows (not words).
FILTERS = ("has", "account", "before", "after")
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


class QueryError(UsageError):
    """A search query that cannot be understood (exit 2)."""


@dataclass(frozen=True)
class Term:
    """A word or phrase (``text`` as typed), in one field or all, maybe a prefix."""

    text: str
    field: str | None = None
    prefix: bool = False


@dataclass(frozen=True)
class Query:
    """A parsed query: ``must`` all match (each a term, or a tuple of terms one of
    which matches), none of ``exclude`` does, and the filters hold."""

    must: tuple[Term | tuple[Term, ...], ...] = ()
    exclude: tuple[Term, ...] = ()
    has_attachment: bool | None = None
    accounts: tuple[str, ...] = ()
    not_accounts: tuple[str, ...] = ()
    before: float | None = None
    after: float | None = None


@dataclass(frozen=True)
class Hit:
    """One message found: its listing row, its relevance (higher is better; 0 for a
    query without words) and a snippet of its text with the hits marked."""

    row: MessageRow
    rank: float
    snippet: str


# ------------------------------------------------------------------------ parsing

_WORD = re.compile(r"\w")
_TOKEN = re.compile(r'\s*(-?)(?:([A-Za-z]+):)?("([^"]*)("?)(\*?)|[^\s"]+)')
_DATE = re.compile(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?")


@dataclass
class _Item:
    negated: bool
    name: str | None
    value: str
    quoted: bool
    prefix: bool


@dataclass
class _Parts:
    must: list[Term | tuple[Term, ...]] = field(default_factory=list)
    exclude: list[Term] = field(default_factory=list)
    has: bool | None = None
    accounts: list[str] = field(default_factory=list)
    not_accounts: list[str] = field(default_factory=list)
    before: float | None = None
    after: float | None = None


def _items(text: str) -> Iterator[_Item | None]:
    """The query's items; None for an ``OR``."""
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            return
        m = _TOKEN.match(text, pos)
        if m is None:  # only a lone quote can fail: [^\s"]+ takes everything else
            raise QueryError(f'search query: unbalanced quote (") at character {pos + 1}')
        pos = m.end()
        neg, name, whole = m.group(1) == "-", m.group(2), m.group(3)
        if whole.startswith('"'):
            if not m.group(5):
                raise QueryError('search query: a phrase has no closing quote (")')
            yield _Item(neg, name, m.group(4), True, bool(m.group(6)))
        elif whole == "OR" and not neg and name is None:
            yield None
        else:
            if name is None and re.fullmatch(r"[A-Za-z]+:", whole):
                name, whole = whole[:-1], ""
            if name is not None and whole == "":
                _field(name)  # an unknown one is said so first
                raise QueryError(f"search query: {name}: needs a value")
            yield _Item(neg, name, whole.rstrip("*"), False, whole.endswith("*"))


def parse_query(text: str) -> Query:
    """Parse a query (see the module doc). Raises :class:`QueryError`."""
    groups: list[list[_Item]] = []
    joining = False
    for item in _items(text):
        if item is None:
            if not groups or joining:
                raise QueryError("search query: OR must stand between two words")
            joining = True
        elif joining:
            groups[-1].append(item)
            joining = False
        else:
            groups.append([item])
    if joining:
        raise QueryError("search query: OR must stand between two words")
    parts = _Parts()
    for group in groups:
        if len(group) == 1:
            _one(group[0], parts)
        else:
            terms = [t for t in (_or_term(i) for i in group) if t is not None]
            if terms:
                parts.must.append(tuple(terms))
    q = Query(
        tuple(parts.must),
        tuple(parts.exclude),
        parts.has,
        tuple(parts.accounts),
        tuple(parts.not_accounts),
        parts.before,
        parts.after,
    )
    if q == Query():
        raise QueryError(
            f"search query {text!r} has nothing to search for",
            hint='give words, "a phrase", or a field such as from:anna or after:2014',
        )
    return q


def _field(name: str | None) -> str | None:
    if name is None:
        return None
    key = name.lower()
    if key in FIELDS or key in FILTERS:
        return key
    known = ", ".join(f"{f}:" for f in (*FIELDS, *FILTERS))
    raise QueryError(
        f"search query: unknown field {name}: (fields: {known})",
        hint=f'to search for the text itself, put it in quotes: "{name}:..."',
    )


def _term(item: _Item, name: str | None) -> Term | None:
    """The term of an item, None when it holds no word to search for."""
    if not _WORD.search(item.value):
        if name is not None:
            raise QueryError(f"search query: {name}: has no word to search for")
        return None
    return Term(item.value, name, item.prefix)


def _or_term(item: _Item) -> Term | None:
    name = _field(item.name)
    if item.negated or name in FILTERS:
        what = "-word" if item.negated else f"{name}:"
        raise QueryError(f"search query: {what} cannot be part of an OR")
    return _term(item, name)


def _one(item: _Item, parts: _Parts) -> None:
    name = _field(item.name)
    if name == "has":
        if item.value.lower() not in ("attachment", "attachments"):
            raise QueryError(f"search query: has:{item.value}: only has:attachment is known")
        parts.has = not item.negated
    elif name == "account":
        (parts.not_accounts if item.negated else parts.accounts).append(item.value)
    elif name in ("before", "after"):
        if item.negated:
            raise QueryError(f"search query: -{name}: is not supported; use the other one")
        when = _date(name, item.value)
        if name == "before":
            parts.before = when if parts.before is None else min(parts.before, when)
        else:
            parts.after = when if parts.after is None else max(parts.after, when)
    else:
        term = _term(item, name)
        if term is not None:
            (parts.exclude if item.negated else parts.must).append(term)


def _date(name: str, text: str) -> float:
    m = _DATE.fullmatch(text)
    try:
        if m is None:
            raise ValueError(text)
        y, mo, d = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
        return dt.datetime(y, mo, d, tzinfo=dt.UTC).timestamp()
    except ValueError:
        raise QueryError(
            f"search query: {name}:{text} is not a date", hint="use YYYY, YYYY-MM or YYYY-MM-DD"
        ) from None


# ------------------------------------------------------------------------ translation


def _fts_term(t: Term) -> str:
    return SearchSql.phrase(t.text, FIELDS[t.field] if t.field else None, prefix=t.prefix)


def to_sql(q: Query) -> SearchSql:
    """The FTS5 MATCH expressions and filters of a query."""
    must = [
        "(" + " OR ".join(_fts_term(t) for t in m) + ")" if isinstance(m, tuple) else _fts_term(m)
        for m in q.must
    ]
    exclude = [_fts_term(t) for t in q.exclude]
    if q.has_attachment is True:
        must.append(SearchSql.ATTACHMENT)
    elif q.has_attachment is False:
        exclude.append(SearchSql.ATTACHMENT)
    match = " AND ".join(f"({m})" for m in must) or None
    ex = " OR ".join(f"({e})" for e in exclude) or None
    if match is not None and ex is not None:
        match, ex = f"({match}) NOT ({ex})", None
    return SearchSql(match, ex, q.accounts, q.not_accounts, q.before, q.after)


# ------------------------------------------------------------------------ searching


def search(
    vault: Vault,
    query: str | Query,
    *,
    sort: Sort = "rank",
    limit: int | None = None,
    offset: int = 0,
    marks: tuple[str, str] = ("[", "]"),
    snippets: bool = True,
) -> Iterator[Hit]:
    """The messages matching ``query``: most relevant first (``sort="rank"``), or newest
    delivery first (``"date"``); ``offset`` hits skipped, at most ``limit`` given.
    Only reads the cache (works while a writer holds the vault); messages not indexed
    yet are not found (see :func:`index_new`). Raises :class:`QueryError`."""
    q = parse_query(query) if isinstance(query, str) else query
    if (limit is not None and limit < 0) or offset < 0:
        raise QueryError("search: limit and offset cannot be negative")
    found = SearchIndex.of(vault).hits(
        to_sql(q), sort=sort, limit=limit, offset=offset, marks=marks, snippets=snippets
    )
    for row, score, snippet in found:
        yield Hit(row, round(-score, 6) + 0.0, snippet)


def only_hits(
    vault: Vault, query: str | Query, flt: Filter, progress: Progress | None = None
) -> Filter:
    """``flt`` narrowed to the messages ``query`` finds (``export --query``), after
    indexing what is not indexed yet. Raises :class:`QueryError`."""
    q = parse_query(query) if isinstance(query, str) else query
    index_run(vault, progress, always=True)
    ids = frozenset(h.row.id for h in search(vault, q, sort="date", snippets=False))
    return dataclasses.replace(flt, ids=ids if flt.ids is None else flt.ids & ids)


# ------------------------------------------------------------------------ indexing


@dataclass
class IndexReport:
    """What :func:`index_new` did."""

    indexed: int = 0
    #: Messages indexed only in part (broken MIME, damaged or incomplete data).
    partial: int = 0
    #: Stopped before a message to read back (``read_back=False``).
    unread: bool = False


def document(data: bytes) -> tuple[SearchDoc, bool]:
    """A message's index document, and whether it was read only in part."""
    st = search_text(data)
    doc = SearchDoc(
        sender=st.from_,
        recipients=f"{st.to}\n{st.cc}".strip(),
        subject=st.subject,
        body=st.body,
        filename="\n".join(st.filenames),
        facts=ATTACHMENT_FACT if st.has_attachment else "",
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


def _document_batch(_mac: bytes, batch: list[bytes]) -> list[Any]:
    """The helper process's work (:class:`Indexer`): each message's :func:`document`,
    its texts already as the index takes them (the writer's thread only inserts)."""
    return [(doc.for_index(), part) for doc, part in map(document, batch)]


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

    def add(self, msg_id: bytes, data: bytes) -> None:
        """A new message's bytes (pending until the next commit)."""
        if self.enabled and (not self._helpers or self._inline < INLINE_FIRST):
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
