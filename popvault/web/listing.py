"""Pages of the message list for ``popvault serve``: keyset paging over the cache listing.

The vault lists messages oldest delivery first (:meth:`Vault.messages`, keyset paging
inside the cache), so a page *after* a row is the next rows of that listing, started at
the row's delivery time (``Filter.since``). A page *before* a row (newest first with a
sender filter; without one the viewer uses the search engine's date order, see
:mod:`popvault.web.pages`) is found in a time window ending at the row: the window
is widened or narrowed until it holds at least a page and at most :data:`CAP` rows, so no
page reads more than a few thousand rows of the cache however big the vault is. Messages
that share one delivery time beyond :data:`CAP` (an import without dates) are read
through once.

A position in the list is a :class:`Cursor`: a row's delivery time and id, the order
of the listing. Nothing here holds a statement of the cache open between two rows.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace

from popvault.errors import UsageError
from popvault.vault import Filter, MessageRow, Vault

#: Rows a probe of :func:`rows_before` reads at most before it narrows its window
#: (four pages, if that is more).
CAP = 400
#: The first window :func:`rows_before` tries, in seconds, and how much it grows by.
FIRST_SPAN = 86400.0
GROWTH = 8.0
#: A window longer than this (about 300 years) is the whole listing.
MAX_SPAN = 1e10
#: Probes before :func:`rows_before` stops narrowing and reads its window through.
MAX_PROBES = 30


@dataclass(frozen=True)
class Cursor:
    """A place in the listing: a row's delivery time and id (the listing's order)."""

    when: float
    id: bytes

    @classmethod
    def of(cls, row: MessageRow) -> Cursor:
        return cls(row.delivered, row.id)

    def text(self) -> str:
        return f"{self.when!r}:{self.id.hex()}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        m = re.fullmatch(r"(-?[0-9][0-9.e+-]*):([0-9a-f]{64})", text.strip())
        if m is None:
            raise UsageError(f"{text!r} is not a list position")
        try:
            when = float(m.group(1))
        except ValueError:
            raise UsageError(f"{text!r} is not a list position") from None
        if not math.isfinite(when):
            raise UsageError(f"{text!r} is not a list position")
        return cls(when, bytes.fromhex(m.group(2)))

    @property
    def key(self) -> tuple[float, bytes]:
        return (self.when, self.id)


def _key(row: MessageRow) -> tuple[float, bytes]:
    return (row.delivered, row.id)


#: What serialises the server's threads' use of the vault (a ``threading.RLock``).
Lock = AbstractContextManager[object]


def _take(
    vault: Vault, flt: Filter, lock: Lock, keep: Callable[[MessageRow], bool], limit: int | None
) -> Iterator[MessageRow]:
    """Rows of ``vault.messages(flt)`` that ``keep`` accepts, each read under ``lock``
    (the cache is one connection shared by the server's threads), ``limit`` at most."""
    rows = vault.messages(flt)
    taken = 0
    try:
        while limit is None or taken < limit:
            with lock:
                row = next(rows, None)
            if row is None:
                return
            if keep(row):
                taken += 1
                yield row
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            with lock, contextlib.suppress(Exception):
                close()


def rows_after(
    vault: Vault, flt: Filter, cursor: Cursor | None, n: int, lock: Lock
) -> list[MessageRow]:
    """The first ``n`` rows matching ``flt`` after ``cursor``, oldest first."""
    if cursor is None:
        return list(_take(vault, flt, lock, lambda _r: True, n))
    since = cursor.when if flt.since is None else max(flt.since, cursor.when)
    after = cursor.key
    return list(_take(vault, replace(flt, since=since), lock, lambda r: _key(r) > after, n))


def rows_before(
    vault: Vault, flt: Filter, cursor: Cursor | None, n: int, lock: Lock
) -> list[MessageRow]:
    """The ``n`` rows matching ``flt`` just before ``cursor`` (the newest ``n`` without
    one), newest first."""
    limit = None if cursor is None else cursor.key
    until = flt.until
    if cursor is not None:  # the cursor's own time, for rows of that time with smaller ids
        stop = math.nextafter(cursor.when, math.inf)
        until = stop if until is None else min(until, stop)
    base = replace(flt, until=until)
    # no matching row lies between top and the cursor (or the future): windows end at top
    top = cursor.when if cursor is not None else time.time() + FIRST_SPAN

    def window(span: float | None, cap: int | None) -> tuple[list[MessageRow], int, float, float]:
        """The last ``n`` rows of the window of ``span`` seconds before ``top`` (all
        before it when None), how many it holds (``cap + 1`` at most), and the times of
        the first and the last row read."""
        since = None if span is None else top - span
        if flt.since is not None:
            since = flt.since if since is None else max(since, flt.since)
        last: deque[MessageRow] = deque(maxlen=n)
        seen = 0
        first = top
        keep = (lambda r: _key(r) < limit) if limit is not None else (lambda _r: True)
        for row in _take(vault, replace(base, since=since), lock, keep, None):
            if not seen:
                first = row.delivered
            last.append(row)
            seen += 1
            if cap is not None and seen > cap:
                break
        return list(last), seen, first, last[-1].delivered if last else top

    cap = max(CAP, 4 * n)  # a window that holds a page is not "too big"
    span: float | None = FIRST_SPAN
    small: float | None = None  # a span known to hold too few rows
    big = math.inf  # a span known to hold too many
    for _ in range(MAX_PROBES):
        rows, seen, first, reached = window(span, cap)
        if seen <= cap and (seen >= n or span is None):
            return rows[::-1]
        # the next span from the density seen (2 pages' worth), kept between the bounds
        if seen > cap:  # the oldest cap + 1 rows of the window were read
            big = math.inf if span is None else span
            guess = 2 * n * max(reached - first, 0.0) / seen
        else:  # the whole window was read: nothing newer than its last row
            assert span is not None
            guess = span * GROWTH if seen == 0 else 2 * n * span / seen
            top, small = reached if seen else top - span, None
        if small is not None and guess <= small:
            guess = math.sqrt(small * big) if big < math.inf else small * GROWTH
        if guess >= big:
            guess = math.sqrt(small * big) if small is not None else big / GROWTH
        span = None if guess > MAX_SPAN else max(guess, 1e-3)
        if big < 1.0 or (small is not None and big - small < 1.0):
            break  # a second holds more than CAP rows: narrowing does not help
    # many rows share (nearly) one time: read the narrowest too-big window through
    rows, _, _, _ = window(None if big == math.inf else big, None)
    return rows[::-1]
