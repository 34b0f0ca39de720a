"""Small pieces the use cases share: metadata conversion, date parsing for filters."""

from __future__ import annotations

import datetime as dt

from popvault.app.metadata import parse_metadata
from popvault.errors import UsageError
from popvault.vault.vault import MessageMeta


def meta_of(head: bytes) -> MessageMeta:
    """Vault metadata from a message's header bytes (never raises)."""
    m = parse_metadata(head)
    return MessageMeta(
        date=m.date,
        received=m.received,
        from_=m.from_,
        to=m.to,
        cc=m.cc,
        subject=m.subject,
        message_id=m.message_id,
    )


def parse_when(text: str, *, option: str = "date") -> float:
    """``YYYY-MM-DD`` or an ISO 8601 date-time (UTC unless it names a zone) -> epoch."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{option}: {text!r} is not a date", hint="use YYYY-MM-DD or YYYY-MM-DDTHH:MM"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()
