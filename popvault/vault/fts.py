"""The full-text search index inside the local cache (docs/search.md; format §9.3).

An SQLite FTS5 table, ``fts``, in the same (SQLCipher-encrypted) cache file as the
rest of the index cache: one row a message, its rowid the message's rowid in
``messages``, with its sender, recipients (To and Cc),
subject, body text, attachment file names and ``facts`` (words such as ``attachment``
that ``has:`` queries match), tokenized by ``unicode61`` with ``remove_diacritics 2``
(case and accents folded, any script). ``unicode61`` does not split CJK text (a run of
ideographs is one token), so before indexing every run of Han, kana and Hangul is
written as its overlapping bigrams joined by U+200B (a separator to the tokenizer),
``東京都`` as ``東京\u200b京都``: a query's CJK words get the same treatment and become
phrases of bigrams (:func:`index_text`); snippets are turned back (:func:`plain_text`).

Which messages are indexed: every message whose ``messages`` rowid is at most the
``search_upto`` mark in ``meta`` (rowids only grow; a reset empties both the messages
and this index). Adding documents checks, in the same transaction, that each rowid still
names the same message and is above the mark, so two processes indexing at once, or an
index rebuilt meanwhile, never index a message twice. The SQL is here; what a message's
text is, and the query language, are :mod:`popvault.app.search`'s.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from popvault.vault.rows import LISTED_COLUMNS, MessageRow, message_row

if TYPE_CHECKING:
    from popvault.vault.cache import IndexCache
    from popvault.vault.vault import Vault

#: The FTS5 table's definition (created with the cache's other tables; emptied by a
#: reset). It is its own schema version: a cache whose table was made with another
#: definition (an earlier popvault's) has it dropped and made anew, empty, when the cache
#: opens (:func:`prepare`), and the next writer or ``search`` indexes every message again.
#: No ``prefix`` index (``prefix = '2 3'`` until 0.x): it doubled the cost of an insert
#: (docs/search.md, Speed); a prefix query reads the main index, and snippets are made on
#: a one-page table (:meth:`SearchIndex._snippets`), so a page costs no more than with it.
TABLE = "fts"
DEFINITION = (
    "fts5(sender, recipients, subject, body, filename, facts,"
    " tokenize = 'unicode61 remove_diacritics 2')"
)
SCHEMA = f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING {DEFINITION};"
#: Segments of a level merged at once (FTS5's default is 4): an insert merges a fifth
#: less, and queries read no more (docs/search.md, Speed). Set when the table is made.
AUTOMERGE = 8
#: Bytes of pending index data a connection holds before it writes them as a segment
#: (FTS5's default is 1 MiB, its ``hashsize``): a commit of an import's 2,000 documents
#: is written as one segment instead of several, which later merges would join again
#: (an insert costs about a sixth less; docs/search.md, Speed).
HASHSIZE = 8 << 20
#: The table's settings (its ``config`` table keeps them, for every connection).
SETTINGS = (("automerge", AUTOMERGE), ("hashsize", HASHSIZE))
#: KiB of page cache of the inserting thread's connection (:meth:`SearchIndex.own`):
#: an insert writes new segments and reads few pages, and the cache's 32 MiB a
#: connection (for listings) was 12 MB more of an import's memory at 100,000 messages,
#: for no speed (docs/performance.md).
OWN_CACHE_KIB = 2048
#: The table snippets of one page of hits are made on (in memory, this connection only).
_SNIP = "temp.fts_page"
_SNIP_SCHEMA = f"CREATE VIRTUAL TABLE IF NOT EXISTS {_SNIP} USING {DEFINITION};"
#: Columns a query's words look in unless a field names one (not ``facts``).
TEXT_COLUMNS = ("sender", "recipients", "subject", "body", "filename")
#: bm25 weights, in column order (sender, recipients, subject, body, filename, facts).
_WEIGHTS = "4.0, 2.0, 5.0, 1.0, 3.0, 0.0"
#: A message's delivery time as listings sort it (the cache's ``messages_delivered`` index).
DELIVERED = "COALESCE(m.received, m.file_time, m.first_archived, -1e308)"
UPTO_KEY = "search_upto"
#: Matches of a query ranked by relevance (the most recently indexed); see ``hits``.
RANKED = 10_000
#: Matches from which a date-sorted query walks the delivery index instead.
MANY = 2_000
#: The ``facts`` word of a message with attachments.
ATTACHMENT_FACT = "attachment"
PROBLEMS_KEY = "search_problems"

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f"
_CJK_RUN = re.compile(f"[{_CJK}]{{2,}}")
#: Any character from the first CJK one on: text without one (nor the joiner) is
#: indexed as it is (one range scans three times faster than the CJK ranges).
_FROM_CJK = re.compile("[\u3040-\U0010ffff]")
_OPENED = re.compile(f"[{_CJK}](\x03?)\u200b\x02")
_JOINED = re.compile(f"\u200b(\x03?)[{_CJK}]")
ZWSP = "\u200b"
_CONTROL = re.compile("[\x00-\x1f]")


@dataclass(frozen=True)
class SearchDoc:
    """One message's searchable text, by column."""

    sender: str = ""
    recipients: str = ""
    subject: str = ""
    body: str = ""
    filename: str = ""
    facts: str = ""
    #: Whether the texts are already as indexed (:meth:`for_index`).
    ready: bool = False

    def for_index(self) -> SearchDoc:
        """This document with its texts as the index takes them (:func:`index_text`);
        helper processes make it, so the writer's thread only inserts it."""
        if self.ready:
            return self
        return SearchDoc(
            index_text(self.sender),
            index_text(self.recipients),
            index_text(self.subject),
            index_text(self.body),
            index_text(self.filename),
            self.facts,
            ready=True,
        )

    def values(self) -> tuple[str, ...]:
        d = self.for_index()
        return (d.sender, d.recipients, d.subject, d.body, d.filename, d.facts)


def prepare(db: Any) -> None:
    """Make the table (when it is missing), or make it anew when the cache's was made
    with another :data:`DEFINITION`; its documents then count as not indexed."""
    row = db.execute("SELECT sql FROM sqlite_master WHERE name=?", (TABLE,)).fetchone()
    if row is None or not " ".join(str(row[0]).split()).endswith(DEFINITION):
        with db:
            if row is not None:
                db.execute(f"DROP TABLE {TABLE}")
            db.execute("DELETE FROM meta WHERE key IN (?,?)", (UPTO_KEY, PROBLEMS_KEY))
            db.execute(SCHEMA)
    # settings kept in the table's own config (an older table gets the newer ones once)
    q = f"SELECT k, v FROM {TABLE}_config WHERE k IN ('automerge', 'hashsize')"  # noqa: S608
    have = dict(db.execute(q).fetchall())
    for key, value in SETTINGS:
        if have.get(key) != value:
            with db:
                db.execute(f"INSERT INTO {TABLE}({TABLE}, rank) VALUES(?, ?)", (key, value))


def index_text(text: str) -> str:
    """``text`` with every CJK run of two or more characters as its bigrams."""
    if text.isascii():  # most text: nothing to do (a tenth of a document's making)
        return text
    if ZWSP not in text and not _FROM_CJK.search(text):  # most text: a quick scan
        return text
    if ZWSP in text:  # the joiner of bigrams only (snippets are turned back on it)
        text = text.replace(ZWSP, " ")
    if not _CJK_RUN.search(text):
        return text
    return _CJK_RUN.sub(lambda m: _bigrams(m.group(0)), text)


def _bigrams(run: str) -> str:
    return ZWSP.join(run[i : i + 2] for i in range(len(run) - 1))


def plain_text(snippet: str, marks: tuple[str, str]) -> str:
    """A snippet of indexed text (hits between ``\\x02`` and ``\\x03``) as it was
    before :func:`index_text`, with ``marks`` around the hits, on one line."""
    if snippet == f"\x02{ATTACHMENT_FACT}\x03":  # only has:attachment matched
        return ""
    text = snippet
    if ZWSP in text:
        # each bigram after the first repeats its first character; when a hit opens on
        # one, drop the character before instead, so the hit keeps its first character
        text = _JOINED.sub(r"\1", _OPENED.sub("\\1\x02", text)).replace("\x03\x02", "")
    return " ".join(text.replace("\x02", marks[0]).replace("\x03", marks[1]).split())


@dataclass(frozen=True)
class SearchSql:
    """A translated query: an FTS5 MATCH expression (None: no words), one whose
    messages are left out (a query of only -words), and filters on the messages.
    Build MATCH expressions from :meth:`phrase` and :data:`ATTACHMENT` only."""

    match: str | None
    exclude: str | None = None
    accounts: tuple[str, ...] = ()
    not_accounts: tuple[str, ...] = ()
    before: float | None = None
    after: float | None = None

    #: The expression of messages with attachments (``has:attachment``).
    ATTACHMENT = f'facts : "{ATTACHMENT_FACT}"'

    @staticmethod
    def phrase(text: str, column: str | None = None, *, prefix: bool = False) -> str:
        """Words as an FTS5 expression: always one quoted string (FTS5 syntax in ``text``
        is plain text to it), in ``column`` (one of :data:`TEXT_COLUMNS`) or all of
        them; a prefix query when ``prefix``, or when ``text`` is one CJK character
        (the index holds bigrams)."""
        if column is not None and column not in TEXT_COLUMNS:
            raise ValueError(f"no column {column!r} in the search index")
        word = text.strip()
        prefix = prefix or (len(word) == 1 and bool(re.fullmatch(f"[{_CJK}]", word)))
        cols = column or "{" + " ".join(TEXT_COLUMNS) + "}"
        # a NUL ends FTS5's reading of a string: control characters are separators anyway
        words = _CONTROL.sub(" ", index_text(text))
        quoted = '"' + words.replace('"', '""') + '"'
        return f"{cols} : {quoted}{' *' if prefix else ''}"

    def filters(self) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        for names, how in ((self.accounts, "EXISTS"), (self.not_accounts, "NOT EXISTS")):
            for name in names:
                where.append(f"{how}(SELECT 1 FROM sources a WHERE a.msg=m.id AND a.account=?)")  # noqa: S608
                args.append(name)
        if self.before is not None:
            # a message whose delivery is unknown matches no time range (as listings)
            where.append(f"{DELIVERED} < ? AND {DELIVERED} > -1e308")
            args.append(self.before)
        if self.after is not None:
            where.append(f"{DELIVERED} >= ?")
            args.append(self.after)
        if self.exclude is not None:
            where.append(f"m.rowid NOT IN (SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH ?)")  # noqa: S608
            args.append(self.exclude)
        return where, args


class SearchIndex:
    """The search index of one open vault's cache; every call holds the vault's lock."""

    def __init__(self, cache: IndexCache, mutex: threading.RLock) -> None:
        self._cache = cache
        self._db = cache.db
        self._mutex = mutex

    @classmethod
    def of(cls, vault: Vault) -> SearchIndex:
        """The index of an open vault (in its cache, under its lock)."""
        return cls(vault.cache, vault._mutex)

    @classmethod
    def own(cls, vault: Vault) -> SearchIndex | None:
        """The index of an open vault on a connection of its own to the cache's file (a
        thread's: SQLite works beside the vault's connection), None for a cache in
        memory; :meth:`close` it. The file is opened as it is, never replaced."""
        cache = vault.cache
        if cache.path is None:
            return None
        other = object.__new__(type(cache))
        other.path, other.encrypted, other._key = cache.path, cache.encrypted, cache._key
        other._open(cache.path, cache._key)
        other.db.execute(f"PRAGMA cache_size = -{OWN_CACHE_KIB}")
        return cls(other, threading.RLock())

    def close(self) -> None:
        """Close the connection of an index from :meth:`own`."""
        self._cache.close()

    def _meta_int(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    def problems(self) -> int:
        """Messages indexed only in part (broken MIME, unreadable data)."""
        with self._mutex:
            return self._meta_int(PROBLEMS_KEY)

    def unindexed_count(self) -> int:
        """Messages the cache knows that the index does not."""
        with self._mutex:
            q = "SELECT COUNT(*) FROM messages WHERE rowid > ?"
            return int(self._db.execute(q, (self._meta_int(UPTO_KEY),)).fetchone()[0])

    def unindexed(self, limit: int) -> list[tuple[int, bytes, int]]:
        """Up to ``limit`` messages not indexed yet: (rowid, id, size), in rowid order."""
        q = "SELECT rowid, id, size FROM messages WHERE rowid > ? ORDER BY rowid LIMIT ?"
        with self._mutex:
            rows = self._db.execute(q, (self._meta_int(UPTO_KEY), limit)).fetchall()
        return [(int(r[0]), bytes(r[1]), int(r[2])) for r in rows]

    def header_doc(self, msg_id: bytes) -> SearchDoc:
        """What the cache knows of a message whose bytes cannot be read: its headers."""
        q = "SELECT from_, to_, cc, subject FROM messages WHERE id=?"
        with self._mutex:
            row = self._db.execute(q, (msg_id,)).fetchone()
        if row is None:
            return SearchDoc()
        to = f"{row[1] or ''}\n{row[2] or ''}".strip()
        return SearchDoc(sender=row[0] or "", recipients=to, subject=row[3] or "")

    def add(self, docs: Sequence[tuple[int, bytes, SearchDoc]], broken: int) -> int:
        """Index ``docs`` (rowid, message id, text; rowid order) in one transaction and
        move the mark past them; ``broken`` of them were read only in part. Documents at
        or below the mark, or whose rowid names another message now, are skipped (another
        process indexed them, or the cache was rebuilt meanwhile). Returns how many were
        added."""
        if not docs:
            return 0
        with self._mutex, self._db:
            db = self._db
            db.execute("BEGIN IMMEDIATE")  # one writer at a time reads and moves the mark
            upto = self._meta_int(UPTO_KEY)
            span = (max(upto + 1, docs[0][0]), docs[-1][0])
            q = "SELECT rowid, id FROM messages WHERE rowid BETWEEN ? AND ?"
            now = {int(r): bytes(i) for r, i in db.execute(q, span)}
            rows = [
                (rowid, *doc.values())
                for rowid, msg_id, doc in docs
                if rowid > upto and now.get(rowid) == msg_id
            ]
            cols = "rowid, sender, recipients, subject, body, filename, facts"
            db.executemany(f"INSERT INTO {TABLE}({cols}) VALUES(?,?,?,?,?,?,?)", rows)
            total = self._meta_int(PROBLEMS_KEY) + (broken if rows else 0)
            meta = "INSERT OR REPLACE INTO meta VALUES(?,?)"
            db.execute(meta, (UPTO_KEY, str(max(upto, docs[-1][0]))))
            db.execute(meta, (PROBLEMS_KEY, str(total)))
        return len(rows)

    def hits(
        self,
        q: SearchSql,
        *,
        sort: str = "rank",
        limit: int | None = None,
        offset: int = 0,
        marks: tuple[str, str] = ("[", "]"),
        snippets: bool = True,
    ) -> Iterator[tuple[MessageRow, float, str]]:
        """The messages matching ``q``: each row, its bm25 score (lower is better; 0
        without words) and its snippet (hits between ``marks``; empty unless
        ``snippets``, and for a query without words), ``offset`` skipped, at most
        ``limit``.

        The index's rowids are the messages' (matching never reads the index's stored
        text; a hit is one rowid look-up from its row). ``sort`` "rank": best first,
        among the :data:`RANKED` most recently indexed matches; any older matches follow,
        newest first (ranking costs a few microseconds a match: a word in every message
        of a large vault would take seconds). "date": newest delivery first."""
        page = -1 if limit is None else limit
        if q.match is not None and sort == "rank":
            ranked = self._ranked(q, page, offset)
        else:
            ranked = self._dated(q, page, offset)
        for chunk in ranked:
            rowids = [r for r, _ in chunk]
            rows = self._rows(rowids)
            snips = self._snippets(q.match, rowids) if snippets and q.match else {}
            for rowid, score in chunk:
                found = rows.get(rowid)
                if found is None:  # the cache was rebuilt meanwhile
                    continue
                yield found, score, plain_text(snips.get(rowid, ""), marks)

    def _ranked(self, q: SearchSql, limit: int, offset: int) -> Iterator[list[tuple[int, float]]]:
        """Rowids and scores in rank order, 500 a list."""
        assert q.match is not None
        where, args = q.filters()
        join = " JOIN messages m ON m.rowid = s.rowid" if where else ""
        cond = " AND ".join([f"{TABLE} MATCH ?", *where])
        # the newest RANKED matches scored in one pass over the index (a prefix's terms
        # are gathered once), then sorted by score
        score = f"bm25({TABLE}, {_WEIGHTS})"
        newest = f"SELECT s.rowid, {score} FROM {TABLE} s{join} WHERE {cond}"  # noqa: S608
        newest += " ORDER BY s.rowid DESC LIMIT ?"
        with self._mutex:
            got = self._db.execute(newest, [q.match, *args, RANKED]).fetchall()
        first = sorted(((int(r), float(sc)) for r, sc in got), key=lambda h: (h[1], -h[0]))
        out = first[offset:] if limit < 0 else first[offset : offset + limit]
        yield from _chunks(out)
        if len(got) < RANKED or (limit >= 0 and len(out) >= limit):
            return
        edge = (int(got[-1][0]),)  # the oldest ranked: older matches follow, newest first
        skip = max(0, offset - len(first))
        rest = f"SELECT s.rowid, 0.0 FROM {TABLE} s{join} WHERE {cond}"  # noqa: S608
        rest += " AND s.rowid < ?"
        rest += " ORDER BY s.rowid DESC LIMIT ? OFFSET ?"
        left = -1 if limit < 0 else limit - len(out)
        yield from self._paged(rest, [q.match, *args, edge[0]], left, skip)

    def _dated(self, q: SearchSql, limit: int, offset: int) -> Iterator[list[tuple[int, float]]]:
        """Rowids newest delivery first, 500 a list (score 0)."""
        where, args = q.filters()
        if q.match is not None:
            with self._mutex:
                many = self._db.execute(
                    f"SELECT 1 FROM {TABLE} WHERE {TABLE} MATCH ? LIMIT 1 OFFSET ?",  # noqa: S608
                    (q.match, MANY - 1),
                ).fetchone()
            # many matches: walk the delivery index newest first, keep the matches (a
            # page is found soon); few: look each match up and sort them
            member = "+m.rowid" if many else "m.rowid"
            found = f"SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH ?"  # noqa: S608
            where.insert(0, f"{member} IN ({found})")
            args.insert(0, q.match)
        sql = "SELECT m.rowid, 0.0 FROM messages m"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {DELIVERED} DESC, m.id DESC LIMIT ? OFFSET ?"
        yield from self._paged(sql, args, limit, offset)

    def _paged(
        self, sql: str, args: list[Any], limit: int, offset: int
    ) -> Iterator[list[tuple[int, float]]]:
        """``sql``'s (rowid, score) rows, 500 a list, each list read in one query (the
        ``LIMIT``/``OFFSET`` arguments last): no statement stays open between lists."""
        while limit != 0:
            want = 500 if limit < 0 else min(500, limit)
            with self._mutex:
                got = self._db.execute(sql, [*args, want, offset]).fetchall()
            if got:
                yield [(int(r), float(sc)) for r, sc in got]
            if len(got) < want:
                return
            offset += len(got)
            limit = limit - len(got) if limit > 0 else limit

    def _rows(self, rowids: list[int]) -> dict[int, MessageRow]:
        marks = ",".join("?" * len(rowids))  # only placeholders go into the text
        sql = f"SELECT {LISTED_COLUMNS}, m.rowid FROM messages m WHERE m.rowid IN ({marks})"  # noqa: S608
        with self._mutex:
            found = self._db.execute(sql, rowids).fetchall()
            srcs = self._cache.arrivals([r[0] for r in found])
        return {r[-1]: message_row(r[:-1], srcs.get(r[0], ())) for r in found}

    def _snippets(self, match: str, rowids: list[int]) -> dict[int, str]:
        """Snippets of some hits (their text around the matches, ``\\x02``/``\\x03``):
        their stored text copied into an in-memory table of the same definition, and
        ``snippet()`` run there. The same text, tokenizer and function give the same
        snippets as on the index, but a prefix query (no prefix index) is matched
        against a page of documents instead of the whole index for each hit."""
        marks = ",".join("?" * len(rowids))  # only placeholders go into the text
        cols = "sender, recipients, subject, body, filename, facts"
        copy = (
            f"INSERT INTO {_SNIP}(rowid, {cols})"  # noqa: S608
            f" SELECT id, c0, c1, c2, c3, c4, c5 FROM main.{TABLE}_content WHERE id IN ({marks})"
        )
        made = (
            f"SELECT rowid, snippet(fts_page, -1, char(2), char(3), '…', 12) FROM {_SNIP}"  # noqa: S608
            " WHERE fts_page MATCH ?"
        )
        with self._mutex, self._db:
            self._db.execute(_SNIP_SCHEMA)
            self._db.execute(f"DELETE FROM {_SNIP}")  # noqa: S608
            self._db.execute(copy, rowids)
            found = {int(r): str(t or "") for r, t in self._db.execute(made, (match,))}
            self._db.execute(f"DELETE FROM {_SNIP}")  # noqa: S608
        return found


def _chunks(items: list[tuple[int, float]]) -> Iterator[list[tuple[int, float]]]:
    for i in range(0, len(items), 500):
        yield items[i : i + 500]
