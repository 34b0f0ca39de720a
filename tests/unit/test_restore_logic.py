"""Restore's pure decisions: size limits before APPEND, CRLF for IMAP, INTERNALDATE order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.app import restore as restore_mod
from popvault.app.restore import (
    PROVIDER_LIMITS,
    _size_limit,
    crlf_pieces,
    header_keys,
    header_keys_streamed,
    internaldate,
    to_crlf,
)
from popvault.vault import MessageRow


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


_LINE_BYTES = st.one_of(
    st.binary(max_size=12),
    st.sampled_from([b"\r", b"\n", b"\r\n", b"\r\r\n", b"\n\n", b"\r\n\r\n", b"\0", b": "]),
)


def _cut(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    """``data`` in pieces at the given (sorted, possibly repeated) offsets."""
    pos = 0
    for c in sorted(min(c, len(data)) for c in cuts):
        yield data[pos:c]
        pos = c
    yield data[pos:]


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(_LINE_BYTES, max_size=30).map(b"".join),
    cuts=st.lists(st.integers(0, 200), max_size=8),
)
def test_streamed_imap_form_equals_whole(data: bytes, cuts: list[int]) -> None:
    """crlf_pieces and header_keys_streamed give, for any cut of a message into pieces
    (a CRLF or CR CR LF split between two), exactly what to_crlf and header_keys give
    for the whole: the same bytes APPENDed and the same keys for the target scan."""
    whole = to_crlf(data)
    streamed = list(crlf_pieces(_cut(data, cuts)))
    assert b"".join(streamed) == whole
    scan = header_keys_streamed(_cut(whole, cuts))
    assert scan == (header_keys(whole), len(whole))


def test_a_header_section_that_never_ends_is_left_to_the_whole_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(restore_mod, "HEAD_SCAN_LIMIT", 100)
    endless = [b"X-Long: " + b"a" * 60 + b"\r\n"] * 5
    assert header_keys_streamed(endless) is None
    short = [b"X: 1\r\n", b"\r\nbody"]
    assert header_keys_streamed(short) == (header_keys(b"".join(short)), 12)
