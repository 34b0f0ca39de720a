"""What a POP3 server can make us hold in memory or wait for (issue 10: a hostile
server, or anyone on the path before STLS, must not exhaust memory or hold a session
forever).

Message bodies (RETR) are streamed to a sink and have none of these limits (guarantee
1). A status line is capped by the parser at MAX_STATUS_LINE (64 KiB; RFC 2449 says 512).
"""

from __future__ import annotations

import time
from typing import NamedTuple

from popvault.pop3.parser import MAX_STATUS_LINE, LineLimits

#: A line of a reply collected in memory: as long as the longest status line accepted.
MAX_REPLY_LINE = MAX_STATUS_LINE
#: CAPA: real servers send 5 to 30 lines of a few dozen bytes each.
CAPA_LIMITS = LineLimits(max_line=MAX_REPLY_LINE, max_lines=1000, max_bytes=1024 * 1024)
#: UIDL and LIST: one line per message, up to 10 million messages. A UIDL line is at most
#: 81 bytes by RFC 1939 (8-digit number, space, 70-character id, CRLF), so 10 M of them
#: are 810 MB and the 1 GiB cap never binds before the line cap for a conforming server
#: (Dovecot's 16-character ids: 27 bytes a line, 270 MB; LIST lines are about 20 bytes).
#: An endless listing of short lines stops at 10 M lines in about 2 s and 0.7 GB (measured).
LISTING_LIMITS = LineLimits(
    max_line=MAX_REPLY_LINE, max_lines=10_000_000, max_bytes=1024 * 1024 * 1024
)
#: TOP (the header section, to identify messages on servers without UIDL): header lines
#: may legally be long, so only the total is capped; real header sections are a few KB.
MAX_TOP_BYTES = 64 * 1024 * 1024
#: Per-read timeouts do not fire while bytes keep trickling in, so each reply we collect
#: also has an overall deadline, counted from when we start reading it and checked after
#: every read (so it may be passed by at most one ``timeout``). A status line (at most
#: 64 KiB) gets STATUS_DEADLINE_FACTOR times the account's ``timeout``: the server may
#: think for up to one timeout before it answers. A collected multi-line reply gets
#: COLLECTED_DEADLINE_FACTOR times the timeout, at least COLLECTED_DEADLINE_MIN seconds:
#: with the default 60 s timeout, 10 minutes, in which a listing of 1 million messages
#: (about 30 MB) needs only 50 KB/s. The size caps alone would not do: they bound memory,
#: not time (1 GiB sent one byte every 59 s would take 2,000 years).
STATUS_DEADLINE_FACTOR = 2.0
COLLECTED_DEADLINE_FACTOR = 10.0
COLLECTED_DEADLINE_MIN = 300.0


class Deadline(NamedTuple):
    """When (``time.monotonic()``) a reply must be complete, and the allowance in s."""

    at: float
    seconds: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)


def status_deadline(timeout: float) -> Deadline:
    """The deadline of one status line, from now."""
    return Deadline.after(STATUS_DEADLINE_FACTOR * timeout)


def collected_deadline(timeout: float) -> Deadline:
    """The deadline of one multi-line reply collected in memory, from now."""
    return Deadline.after(max(COLLECTED_DEADLINE_FACTOR * timeout, COLLECTED_DEADLINE_MIN))
