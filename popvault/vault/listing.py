"""The cache's listings (docs/format.md §9.3): a vault's messages in delivery order, read
from the cache a window at a time, with their arrivals.

The queries behind ``Vault.messages`` (``list``, ``export``, ``restore``), ``check``'s
walk over every message's pieces and the arrivals of a page of search hits; they run on
an :class:`~popvault.vault.cache.IndexCache`'s connection (it delegates to them). (The
web interface's pages of rows, :mod:`popvault.web.listing`, are built on top of this.)
Memory does not grow with the vault: each query reads at most a window of messages,
seeking in the ``messages_delivered`` index past the last one it returned (keyset
paging), and no statement stays open between windows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from popvault.vault import fts
from popvault.vault.records import Pieces, pieces_from_json
from popvault.vault.rows import LISTED_COLUMNS, Filter, MessageRow, message_row

if TYPE_CHECKING:
    from popvault.vault.cache import IndexCache

#: Messages a listing reads a query (see :func:`messages`).
WINDOW = 500
#: A message's delivery time as listings sort it (``messages_delivered`` indexes it): NULL
#: (nothing known) sorts first, as it did before the index, with the row-value paging.
_DELIVERED = fts.DELIVERED
_AFTER = f"{_DELIVERED} >= ? AND ({_DELIVERED} > ? OR m.id > ?)"


def messages(
    cache: IndexCache, flt: Filter | None = None, *, window: int = WINDOW
) -> Iterator[MessageRow]:
    """Messages matching ``flt``, oldest delivery first: read ``window`` messages a
    query (ordered and filtered by SQLite), so memory does not grow with the vault and
    no statement stays open while the caller works (it may write to the cache)."""
    flt = flt or Filter()
    where, args = _where(flt)
    for page in _pages(cache, LISTED_COLUMNS, where, args, window, since=flt.since, joined=True):
        if flt.ids is not None:
            page = [g for g in page if g[0][1] in flt.ids]
        for row, srcs in page:
            yield message_row(row[1:_ARRIVAL_AT], srcs)


def message_pieces(
    cache: IndexCache, *, window: int = WINDOW
) -> Iterator[tuple[bytes, int, Pieces]]:
    """Every message's id, size and pieces, oldest delivery first (as :func:`messages`,
    without the arrivals and the header facts)."""
    for page in _pages(cache, "m.id, m.size, m.pieces", [], [], window):
        for _, msg_id, size, text in page:
            yield msg_id, size, pieces_from_json(json.loads(text))


def arrivals(cache: IndexCache, msg_ids: list[bytes]) -> dict[bytes, list[Any]]:
    """Message id -> its arrivals (account, uidl, source, flags), oldest first."""
    out: dict[bytes, list[Any]] = {}
    for i in range(0, len(msg_ids), 500):
        part = msg_ids[i : i + 500]
        marks = ",".join("?" * len(part))  # only placeholders go into the text
        q = (
            "SELECT msg, account, uidl, source, flags FROM sources"  # noqa: S608
            f" WHERE msg IN ({marks}) ORDER BY archived, rowid"
        )
        for r in cache.db.execute(q, part):
            out.setdefault(r[0], []).append(r[1:])
    return out


def _pages(
    cache: IndexCache,
    columns: str,
    where: list[str],
    args: list[Any],
    window: int,
    *,
    since: float | None = None,
    joined: bool = False,
) -> Iterator[list[Any]]:
    """Rows of ``messages m`` matching ``where``, each ``(delivery key, *columns)``
    (``columns`` start with ``m.id``), in delivery order, ``window`` rows a query: each
    query seeks past the last row of the one before in the ``messages_delivered``
    index (keyset paging), so none sorts the table or holds its rows.

    ``joined``: the same query also reads the window's arrivals (one ``LEFT JOIN`` of
    ``sources`` on the window, instead of a second query of the window's ids, which
    cost more than the window itself at 300,000 messages); the page is then a list of
    ``(row, arrivals)``, ``row`` as without it and ``arrivals`` its (account, uidl,
    source, flags) oldest first, none for a message without one."""
    # each query seeks to its first row in the index: past the previous page's last
    # (a row value compared would scan the index from its start), or to ``since``
    start, after = ([f"{_DELIVERED} >= ?"], [since]) if since is not None else ([], [])
    while True:
        cond = [*where, *start]
        sql = f"SELECT {_DELIVERED} AS delivered, {columns} FROM messages m"  # noqa: S608
        if cond:
            sql += " WHERE " + " AND ".join(cond)
        sql += f" ORDER BY {_DELIVERED}, m.id LIMIT ?"
        if joined:
            sql = _JOINED.format(sql)
        page = cache.db.execute(sql, [*args, *after, window]).fetchall()
        if joined:
            page = _grouped(page)
        yield page
        if len(page) < window:
            return
        last = page[-1][0] if joined else page[-1]
        start, after = [_AFTER], [last[0], last[0], last[1]]


#: A window's messages (the query ``{0}``, its delivery key first and its id second) and
#: their arrivals, in the window's order and each message's arrivals oldest first.
_JOINED = (
    "SELECT w.*, s.account, s.uidl, s.source, s.flags FROM ({0}) w"
    " LEFT JOIN sources s ON s.msg = w.id ORDER BY w.delivered, w.id, s.archived, s.rowid"
)
#: Where a joined row's arrival starts: after the key and :data:`LISTED_COLUMNS`.
_ARRIVAL_AT = 1 + len(LISTED_COLUMNS.split(","))


def _grouped(rows: list[Any]) -> list[tuple[Any, list[Any]]]:
    """Joined rows (one a message's arrival, consecutive for a message) as a list of
    ``(row, arrivals)``."""
    out: list[tuple[Any, list[Any]]] = []
    last = None
    at = _ARRIVAL_AT
    for r in rows:
        if r[1] == last:
            out[-1][1].append(r[at:])
        else:
            last = r[1]
            out.append((r, [] if r[at] is None else [r[at:]]))
    return out


def _where(flt: Filter) -> tuple[list[str], list[Any]]:
    """SQL conditions (and their arguments) for ``flt``: not its ``ids``, nor its
    ``since`` (where :func:`_pages` starts)."""
    where: list[str] = []
    args: list[Any] = []
    if flt.account is not None:
        where.append("EXISTS(SELECT 1 FROM sources s2 WHERE s2.msg=m.id AND s2.account=?)")
        args.append(flt.account)
    if flt.until is not None:
        # a message whose delivery is unknown (no time at all) matches no time range
        where.append(f"{_DELIVERED} < ? AND {_DELIVERED} > -1e308")
        args.append(flt.until)
    for col, val in (
        ("from_", flt.from_),
        ("to_ || ' ' || m.cc", flt.to),
        ("subject", flt.subject),
    ):
        if val is not None:
            where.append(f"instr(lower(m.{col}), lower(?)) > 0")
            args.append(val)
    return where, args
