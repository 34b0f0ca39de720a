"""Message attributes a restore sets: INTERNALDATE and flags (RFC 3501 sections 2.3.2-2.3.3).

INTERNALDATE is written and read as an IMAP ``date-time`` (``17-Jul-1996 02:44:25
-0700``), without the locale-dependent ``strftime``; restore sends it in UTC. Maildir's
info letters map to IMAP system flags (and ``$Forwarded``), except ``T`` (trashed): as
``\\Deleted`` the next EXPUNGE would destroy the restored message.
"""

from __future__ import annotations

import calendar
import re
import time

from popvault.errors import ProtocolError

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE_TIME_RE = re.compile(
    r"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$"
)


def format_internaldate(when: float) -> str:
    """Format epoch seconds as an IMAP date-time (UTC), locale-independent."""
    t = time.gmtime(when)
    return (
        f'"{t.tm_mday:2d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year:04d} '
        f'{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"'
    )


def parse_internaldate(text: str) -> float:
    """Parse an IMAP date-time (``17-Jul-1996 02:44:25 -0700``) to epoch seconds."""
    m = _DATE_TIME_RE.match(text)
    if m is None or m.group(2).title() not in _MONTHS:
        raise ProtocolError(f"invalid INTERNALDATE {text!r}")
    day, mon, year = int(m.group(1)), _MONTHS.index(m.group(2).title()) + 1, int(m.group(3))
    hh, mm, ss = int(m.group(4)), int(m.group(5)), int(m.group(6))
    offset = (int(m.group(8)) * 60 + int(m.group(9))) * 60
    if m.group(7) == "-":
        offset = -offset
    return float(calendar.timegm((year, mon, day, hh, mm, ss, 0, 0, 0)) - offset)


# Maildir's T (trashed) is not restored as \Deleted: the next EXPUNGE would destroy it.
_MAILDIR_TO_IMAP = {"S": "\\Seen", "R": "\\Answered", "F": "\\Flagged"}
_MAILDIR_TO_IMAP |= {"D": "\\Draft", "P": "$Forwarded"}


def maildir_flags_to_imap(flags: str | None) -> list[str]:
    """Map Maildir info flags (``"FRS"``) to IMAP flags; unknown letters are dropped."""
    return [_MAILDIR_TO_IMAP[c] for c in sorted(set(flags or "")) if c in _MAILDIR_TO_IMAP]


__all__ = ["format_internaldate", "maildir_flags_to_imap", "parse_internaldate"]
