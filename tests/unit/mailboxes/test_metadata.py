"""Metadata parsing: RFC 2047, folding, several Received headers, garbage never raises."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.app.metadata import header_section, parse_date, parse_metadata, wanted_fields
from popvault.vault.vault import MessageMeta

FULL = (
    b"Received: from mx2 by mx3; Wed, 3 Jan 2024 00:00:00 +0000\r\n"
    b"Received: from a (x; y)\r\n\tby mx1; Tue, 2 Jan 2024 00:00:00 +0000\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0100\r\n"
    b"From: =?UTF-8?B?w4lsaWU=?= <elie@example.org>\r\n"
    b"To: a@example.org,\r\n b@example.org\r\n"
    b"To: c@example.org\r\n"
    b"Cc: d@example.org\r\n"
    b"Subject: =?utf-8?q?H=C3=A9llo?= =?iso-8859-1?q?_w=F6rld?= tail\r\n"
    b"Message-ID: <1@example.org>\r\n"
    b"\r\n"
    b"Subject: not a header, this is the body\r\n"
)


def test_full_header() -> None:
    m = parse_metadata(FULL)
    assert m == MessageMeta(
        date=1_704_099_600.0,
        received=1_704_240_000.0,  # topmost Received: 3 Jan
        from_="Élie <elie@example.org>",
        to="a@example.org, b@example.org, c@example.org",
        cc="d@example.org",
        subject="Héllo wörld tail",
        message_id="<1@example.org>",
    )


def test_lf_only_and_body_not_parsed() -> None:
    m = parse_metadata(b"Subject: one\n\nSubject: two\nFrom: x\n")
    assert m.subject == "one" and m.from_ == ""


def test_empty_and_missing() -> None:
    assert parse_metadata(b"") == MessageMeta()
    assert parse_metadata(b"\r\nSubject: body only\r\n") == MessageMeta()
    m = parse_metadata(b"X-Other: 1\n\n")
    assert m.subject == "" and m.date is None and m.received is None


def test_non_utf8_and_bad_encoded_words() -> None:
    m = parse_metadata(b"Subject: caf\xe9 =?x-unknown?q?abc?=\nFrom: =?utf-8?b?!!!?=\n\n")
    assert m.subject.startswith("caf\ufffd")
    assert "abc" in m.subject
    m2 = parse_metadata(b"Subject: =?iso-8859-1?q?=E9t=E9?=\n")
    assert m2.subject == "été"


def test_received_without_date() -> None:
    assert (
        parse_metadata(b"Received: from nowhere\nReceived: x; 1 Jan 2024 00:00 +0000\n\n").received
        is None
    )


def test_header_without_end_and_garbage_lines() -> None:
    m = parse_metadata(b"garbage line\n: empty name\nSubject : spaced\n continued")
    assert m.subject == "spaced continued"


def test_parse_date() -> None:
    assert parse_date("Mon, 1 Jan 2024 10:00:00 +0100") == 1_704_099_600.0
    assert parse_date("1 Jan 2024 09:00:00") == 1_704_099_600.0  # no zone: UTC
    assert parse_date("Mon, 1 Jan 24 09:00:00 GMT") == 1_704_099_600.0
    assert parse_date("not a date") is None
    assert parse_date("") is None
    assert parse_date("Mon, 45 Foo 2024 99:99:99 +0000") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_never_raises(data: bytes) -> None:
    assert isinstance(parse_metadata(data), MessageMeta)
    assert isinstance(parse_metadata(b"Subject: =?" + data + b"\n\n"), MessageMeta)


def reference_fields(data: bytes) -> dict[bytes, list[bytes]]:
    """The definition ``wanted_fields`` must match: read every header line in turn
    (unfolding continuation lines, skipping lines that are not ``name: value``) and keep
    the first value of each wanted field, every value of To and Cc."""
    fields: list[tuple[bytes, bytes]] = []
    name: bytes | None = None
    value: list[bytes] = []
    for line in header_section(data).split(b"\n"):
        line = line.rstrip(b"\r")
        if line[:1] in (b" ", b"\t"):
            if name is not None:
                value.append(line)
            continue
        if name is not None:
            fields.append((name, b"".join(value)))
            name = None
        key, colon, rest = line.partition(b":")
        key = key.rstrip(b" \t")
        if colon and re.fullmatch(rb"[\x21-\x39\x3b-\x7e]+", key):
            name, value = key.lower(), [rest]
    if name is not None:
        fields.append((name, b"".join(value)))
    found: dict[bytes, list[bytes]] = {}
    for key, raw in fields:
        wanted = key in (b"date", b"received", b"from", b"subject", b"message-id")
        if key in (b"to", b"cc") or (wanted and key not in found):
            found.setdefault(key, []).append(raw)
    return found


_HEADER_PIECES = st.sampled_from(
    [
        b"From: a",
        b"from :b",
        b"TO: c",
        b"to\t: d",
        b"Cc: e",
        b"Subject: s",
        b"subject",
        b"Date: Mon, 1 Jan 2024 10:00:00 +0100",
        b"Received: x; Tue, 2 Jan 2024 0:0:0 +0000",
        b"Message-ID: <m>",
        b"X-From: no",
        b"From x@y Mon Jan 1",
        b"Tox: no",
        b"to-do: no",
        b" folded",
        b"\tfolded",
        b"\r\n",
        b"\n",
        b"\r",
        b": empty name",
        b"garbage",
        b" ",
    ]
)


@given(st.lists(_HEADER_PIECES, max_size=30), st.binary(max_size=8))
@settings(max_examples=500)
def test_wanted_fields_match_reading_every_line(pieces: list[bytes], tail: bytes) -> None:
    data = b"".join(pieces) + tail
    assert wanted_fields(data) == reference_fields(data)


def test_wanted_fields_of_the_full_header() -> None:
    assert wanted_fields(FULL) == reference_fields(FULL)
    assert wanted_fields(FULL)[b"to"] == [b" a@example.org, b@example.org", b" c@example.org"]
