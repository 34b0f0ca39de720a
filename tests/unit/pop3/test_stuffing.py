"""Dot-stuffing (RFC 1939 section 3): what ``dot_stuff`` writes, the parser reads back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.pop3.parser import BodyChunk, BodyEnd, Expect, ResponseParser, dot_stuff

# Messages built from the pieces that matter to stuffing: dots, line ends, the terminator.
_pieces = st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b".\r\n", b"\n.\n", b"x", b" "])
_messages = st.lists(_pieces | st.binary(max_size=6), max_size=80).map(b"".join)


def _as_sent(message: bytes) -> bytes:
    """The body a client receives: the message, plus CRLF when it does not end in LF."""
    return message if message.endswith(b"\n") else message + b"\r\n"


def _parse(wire: bytes, cuts: list[int]) -> tuple[bytes, int]:
    """Feed ``wire`` (an +OK multi-line reply) cut at ``cuts``: (body, BodyEnd count)."""
    parser = ResponseParser()
    parser.expect(Expect.MULTI)
    points = sorted({c for c in cuts if 0 < c < len(wire)})
    body = bytearray()
    ends = 0
    for a, b in zip([0, *points], [*points, len(wire)], strict=True):
        parser.feed(wire[a:b])
        while (event := parser.next_event()) is not None:
            if isinstance(event, BodyChunk):
                body += event.data
            elif isinstance(event, BodyEnd):
                ends += 1
    assert parser.pending == 0 and parser.buffered == 0
    return bytes(body), ends


@settings(max_examples=300, deadline=None)
@given(
    message=_messages | st.binary(max_size=2000),
    cuts=st.lists(st.integers(min_value=0, max_value=2500), max_size=8),
)
def test_stuffing_then_parsing_gives_the_bytes_back(message: bytes, cuts: list[int]) -> None:
    wire = b"+OK\r\n" + dot_stuff(message) + b".\r\n"
    body, ends = _parse(wire, cuts)
    assert body == _as_sent(message)
    assert ends == 1  # no line of the message passes for the terminator


@settings(max_examples=300, deadline=None)
@given(message=_messages)
def test_stuffing_only_doubles_leading_dots(message: bytes) -> None:
    stuffed = dot_stuff(message)
    lines = stuffed.split(b"\n")
    assert all(not line.startswith(b".") or line.startswith(b"..") for line in lines)
    unstuffed = b"\n".join(line[1:] if line.startswith(b".") else line for line in lines)
    assert unstuffed == _as_sent(message)


@pytest.mark.parametrize(
    ("message", "stuffed"),
    [
        (b"", b"\r\n"),
        (b"x", b"x\r\n"),
        (b".", b"..\r\n"),
        (b".\r\n", b"..\r\n"),
        (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n"),
        (b"a\r\n..x\r\n", b"a\r\n...x\r\n"),
        (b"bare\n.lf\n", b"bare\n..lf\n"),
        (b"no dot.\r\n", b"no dot.\r\n"),
        (b"ends in cr\r", b"ends in cr\r\r\n"),
    ],
)
def test_stuffing_examples(message: bytes, stuffed: bytes) -> None:
    assert dot_stuff(message) == stuffed
