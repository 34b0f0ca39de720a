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
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from popvault.app.indexing import (
    Indexer,
    IndexReport,
    document,
    index_new,
    index_run,
    pending_count,
)
from popvault.app.progress import Progress
from popvault.errors import UsageError
from popvault.vault import Filter, MessageRow, SearchIndex, SearchSql, Vault

__all__ = [
    "Hit",
    "IndexReport",
    "Indexer",
    "Query",
    "QueryError",
    "Term",
    "document",
    "index_new",
    "index_run",
    "only_hits",
    "parse_query",
    "pending_count",
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
