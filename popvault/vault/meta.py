"""The searchable header facts stored with a message (``meta`` of format §9.2).

A module of its own, importing nothing heavy, so that a helper process that parses
metadata (popvault.app.prepare) does not load the vault's storage code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MessageMeta:
    """Header facts stored with a message, for listing and search (all optional; parsed
    by the app layer, :func:`popvault.app.metadata.parse_metadata`).

    ``date`` is the Date header, ``received`` the date of the topmost (newest) Received
    header, both as UTC epoch seconds. ``to`` and ``cc`` join repeated headers with
    ``", "``; the other fields come from the first occurrence of their header.
    """

    date: float | None = None
    received: float | None = None
    from_: str = ""
    to: str = ""
    cc: str = ""
    subject: str = ""
    message_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "received": self.received,
            "from": self.from_,
            "to": self.to,
            "cc": self.cc,
            "subject": self.subject,
            "message_id": self.message_id,
        }
