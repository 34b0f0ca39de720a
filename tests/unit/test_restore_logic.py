"""Restore's pure decisions: size limits before APPEND, CRLF for IMAP, INTERNALDATE order."""

from __future__ import annotations

from dataclasses import dataclass, field

from popvault.app.restore import PROVIDER_LIMITS, _size_limit, internaldate, to_crlf
from popvault.vault.index import MessageRow


@dataclass
class FakeClient:
    capabilities: frozenset[str] = field(default_factory=frozenset)


def row(**times: float | None) -> MessageRow:
    base: dict[str, float | None] = {
        "date": None,
        "received": None,
        "file_time": None,
        "first_archived": 5.0,
    }
    base.update(times)
    return MessageRow(
        id=b"\x00" * 32,
        size=1,
        pieces=[],
        date=base["date"],
        received=base["received"],
        from_="",
        to="",
        cc="",
        subject="",
        message_id="",
        file_time=base["file_time"],
        first_archived=base["first_archived"] or 0.0,
        accounts=[],
        uidls=[],
        sources=[],
        flags=None,
    )


def test_server_appendlimit_wins_over_provider_table() -> None:
    client = FakeClient(frozenset({"IMAP4REV1", "APPENDLIMIT=1000"}))
    assert _size_limit(client, "imap.gmail.com") == ("the server", 1000)  # type: ignore[arg-type]


def test_provider_limits_apply_by_host_name() -> None:
    client = FakeClient()
    assert _size_limit(client, "IMAP.GMAIL.COM") == PROVIDER_LIMITS["imap.gmail.com"]  # type: ignore[arg-type]
    assert _size_limit(client, "outlook.office365.com") is not None  # type: ignore[arg-type]
    assert _size_limit(client, "imap.example.org") is None  # type: ignore[arg-type]


def test_to_crlf_only_adds_missing_cr() -> None:
    assert to_crlf(b"a\nb\r\nc\rd") == b"a\r\nb\r\nc\rd"
    assert to_crlf(b"no newline") == b"no newline"


def test_internaldate_fallbacks() -> None:
    assert internaldate(row(received=1.0, file_time=2.0, date=3.0), "auto") == 1.0
    assert internaldate(row(file_time=2.0, date=3.0), "auto") == 2.0
    assert internaldate(row(date=3.0), "auto") == 3.0
    assert internaldate(row(), "auto") == 5.0
    assert internaldate(row(received=1.0, date=3.0), "header") == 3.0
    assert internaldate(row(received=1.0, date=3.0), "archived") == 5.0
    assert internaldate(row(file_time=2.0, date=3.0), "received") == 2.0
