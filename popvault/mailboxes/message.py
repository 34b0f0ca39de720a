"""The record every mailbox reader yields: one message's exact bytes plus where it came from.

Readers (:mod:`.mbox`, :mod:`.maildir`, :mod:`.eml`) produce :class:`SourceMessage`
records; the import use case turns them into vault messages. ``data`` is the message
after the format's documented reverse transform (for mbox: mboxrd unquoting), so writing
it back with the matching writer and reading it again gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceMessage:
    """One message read from a local mailbox.

    ``source`` names the message for error reports and progress output, e.g.
    ``"mbox:/path/inbox#12"`` (1-based position in the file) or
    ``"maildir:/path/cur/NAME"``. ``flags`` holds Maildir info flags such as ``"RS"``
    (``None`` when the format has none or they are unknown, ``""`` for a Maildir file in
    ``cur/`` with an empty ``:2,`` suffix). ``file_time`` is the Maildir file's mtime
    (delivery time by convention); ``from_line_time`` is the date of the mbox ``From_``
    line, in seconds since the epoch, read as UTC.
    """

    data: bytes
    source: str
    flags: str | None = None
    file_time: float | None = None
    from_line_time: float | None = None

    def __repr__(self) -> str:
        # The bytes can be megabytes; a repr must stay one readable line.
        return (
            f"SourceMessage(source={self.source!r}, size={len(self.data)}, "
            f"flags={self.flags!r}, file_time={self.file_time!r}, "
            f"from_line_time={self.from_line_time!r})"
        )
