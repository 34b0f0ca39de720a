"""The cache's rows as Python values, and a commit's records as rows (no SQL here: the
queries are :mod:`popvault.vault.cache`'s).

A listing yields :class:`MessageRow` (what ``list``, ``export`` and ``restore`` show or
need); a look-up of one message yields :class:`StoredMessage`, which adds the pieces its
bytes are rebuilt from. A listing never decodes the pieces column.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from popvault.vault.records import (
    DelRecord,
    MsgRecord,
    Pieces,
    Record,
    SrcRecord,
    piece_ids,
    pieces_from_json,
)


@dataclass(frozen=True)
class MessageRow:
    """One distinct message as the cache knows it (a listing's row)."""

    id: bytes
    size: int
    date: float | None
    received: float | None
    from_: str
    to: str
    cc: str
    subject: str
    message_id: str
    file_time: float | None
    first_archived: float
    accounts: list[str]
    uidls: list[str]
    sources: list[str]
    flags: str | None

    @property
    def delivered(self) -> float:
        """When it reached its mailbox: Received, else file/From_ time, else archived."""
        for t in (self.received, self.file_time):
            if t is not None:
                return t
        return self.first_archived


@dataclass(frozen=True)
class StoredMessage(MessageRow):
    """One message with the pieces its bytes are rebuilt from (format §7.2)."""

    pieces: Pieces


@dataclass(frozen=True)
class Filter:
    """Message filters shared by list, export and restore (all optional, all AND)."""

    account: str | None = None
    since: float | None = None
    until: float | None = None
    from_: str | None = None
    to: str | None = None
    subject: str | None = None
    ids: frozenset[bytes] | None = None


#: The columns of a message a listing reads (not ``pieces``), in :func:`message_row`'s order.
LISTED_COLUMNS = (
    "m.id, m.size, m.date, m.received, m.from_, m.to_, m.cc, m.subject,"
    " m.message_id, m.file_time, m.first_archived"
)


def message_row(row: Sequence[Any], srcs: Sequence[Sequence[Any]]) -> MessageRow:
    """A message's row (:data:`LISTED_COLUMNS`) and its arrivals (account, uidl, source,
    flags; oldest first) as a :class:`MessageRow`.

    Made without the dataclass's ``__init__`` (fifteen frozen-field assignments, a third
    of a listing's time per row in Python): the same attributes, their dict given to the
    object as it is (not copied into another)."""
    out = object.__new__(MessageRow)
    object.__setattr__(out, "__dict__", _fields(row, srcs))
    return out


def stored_message(
    row: Sequence[Any], srcs: Sequence[Sequence[Any]], pieces_text: str
) -> StoredMessage:
    """The same with the message's ``pieces`` column (JSON) decoded."""
    return StoredMessage(**_fields(row, srcs), pieces=pieces_from_json(json.loads(pieces_text)))


def _fields(row: Sequence[Any], srcs: Sequence[Sequence[Any]]) -> dict[str, Any]:
    if len(srcs) == 1:  # most messages arrived once: the same lists, made directly
        account, uidl, source, flags = srcs[0]
        accounts, uidls, sources = [account], [] if uidl is None else [uidl], [source]
    else:
        accounts = sorted({s[0] for s in srcs})
        uidls = [s[1] for s in srcs if s[1] is not None]
        sources = [s[2] for s in srcs]
        flags = next((s[3] for s in srcs if s[3] is not None), None)
    return {
        "id": row[0],
        "size": row[1],
        "date": row[2],
        "received": row[3],
        "from_": row[4] or "",
        "to": row[5] or "",
        "cc": row[6] or "",
        "subject": row[7] or "",
        "message_id": row[8] or "",
        "file_time": row[9],
        "first_archived": row[10] if row[10] is not None else 0.0,
        "accounts": accounts,
        "uidls": uidls,
        "sources": sources,
        "flags": flags,
    }


class CommitRows:
    """One commit's records as the rows of each table."""

    def __init__(self) -> None:
        self.msgs: list[tuple[Any, ...]] = []
        self.pieces: list[tuple[bytes, list[bytes]]] = []
        self.srcs: list[tuple[Any, ...]] = []
        #: Per message of the arrivals: [earliest file time (None when no arrival has
        #: one), earliest archived time], in order of first arrival.
        self.times: dict[bytes, list[Any]] = {}
        self.dels: list[tuple[Any, ...]] = []
        self.rsts: list[tuple[Any, ...]] = []

    def message_rows(self) -> list[tuple[Any, ...]]:
        """The ``messages`` rows, each with its file time and first archived time from
        this commit's arrivals (None, None without one)."""
        none = (None, None)
        return [(*m, *self.times.get(m[0], none)) for m in self.msgs]

    def other_times(self) -> list[tuple[Any, ...]]:
        """(first archived, file time, message) for the messages arriving in this commit
        whose ``msg`` record is not in it (their rows exist already)."""
        here = {m[0] for m in self.msgs}
        return [(fa, ft, msg) for msg, (ft, fa) in self.times.items() if msg not in here]

    def add(self, r: Record) -> None:
        if isinstance(r, MsgRecord):
            m = r.meta
            self.pieces.append((r.id, piece_ids(r.pieces)))
            self.msgs.append(
                (
                    r.id,
                    r.size,
                    json.dumps(r.pieces),
                    m.date,
                    m.received,
                    m.from_,
                    m.to,
                    m.cc,
                    m.subject,
                    m.message_id,
                )
            )
        elif isinstance(r, SrcRecord):
            s = r.source
            ft = s.file_time if s.file_time is not None else s.from_line_time
            self.srcs.append(
                (
                    r.msg,
                    s.account,
                    s.uidl,
                    s.source,
                    s.flags,
                    r.archived,
                    s.file_time,
                    s.from_line_time,
                )
            )
            t = self.times.get(r.msg)
            if t is None:
                self.times[r.msg] = [ft, r.archived]
            else:
                if ft is not None and (t[0] is None or ft < t[0]):
                    t[0] = ft
                t[1] = min(t[1], r.archived)
        elif isinstance(r, DelRecord):
            self.dels.append((r.account, r.uidl, r.msg, r.time))
        else:
            self.rsts.append((r.target, r.msg, r.uid, r.time))
