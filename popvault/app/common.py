"""Small pieces the use cases share: date parsing for filters."""

from __future__ import annotations

import datetime as dt

from popvault.errors import UsageError


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
