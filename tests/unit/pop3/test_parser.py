"""Unit tests of the POP3 reply parser: status lines, dot-unstuffing, chunking, EOF."""

from __future__ import annotations

import pytest

from popvault.errors import NetworkError, ProtocolError
from popvault.pop3.errors import MissingTerminator
from popvault.pop3.parser import (
    BodyChunk,
    BodyEnd,
    Continuation,
    Event,
    Expect,
    ResponseParser,
    Status,
    dot_stuff,
    parse_response,
)


def body_of(wire: bytes) -> bytes:
    """Parse an +OK multi-line reply whose body is ``wire``; return the body."""
    resp = parse_response(b"+OK\r\n" + wire, multiline=True)
    assert resp.ok and resp.body is not None
    return resp.body


def drain(parser: ResponseParser) -> list[Event]:
    events: list[Event] = []
    while (ev := parser.next_event()) is not None:
        events.append(ev)
    return events


def test_status_ok_and_err() -> None:
    assert parse_response(b"+OK 2 320\r\n") == parse_response(b"+OK 2 320\r\n")
    ok = parse_response(b"+OK 2 320\r\n")
    assert (ok.ok, ok.text, ok.body) == (True, "2 320", None)
    err = parse_response(b"-ERR [IN-USE] locked\r\n")
    assert (err.ok, err.text) == (False, "[IN-USE] locked")
    assert parse_response(b"+OK\r\n").text == ""


def test_status_line_tolerates_bare_lf() -> None:
    assert parse_response(b"+OK hi\n").text == "hi"


@pytest.mark.parametrize(
    "line", [b"OK\r\n", b"+OKAY\r\n", b"-ERROR x\r\n", b"\r\n", b"+ abc\r\n", b"ok\r\n"]
)
def test_malformed_status_line(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_response(line)


def test_overlong_status_line_is_refused() -> None:
    parser = ResponseParser(max_status_line=100)
    parser.expect(Expect.SINGLE)
    parser.feed(b"+OK " + b"x" * 200)
    with pytest.raises(ProtocolError, match="longer than"):
        parser.next_event()
    with pytest.raises(ProtocolError):  # stays failed
        parser.next_event()


def test_incomplete_and_trailing() -> None:
    with pytest.raises(ProtocolError, match="incomplete"):
        parse_response(b"+OK\r\nabc\r\n", multiline=True)
    with pytest.raises(ProtocolError, match="after the reply"):
        parse_response(b"+OK\r\nextra")


def test_err_reply_to_multiline_has_no_body() -> None:
    resp = parse_response(b"-ERR no such message\r\n", multiline=True)
    assert not resp.ok and resp.body is None


def test_empty_body() -> None:
    assert body_of(b".\r\n") == b""


def test_dot_unstuffing() -> None:
    assert body_of(b"..\r\n.\r\n") == b".\r\n"
    assert body_of(b"...x\r\n.\r\n") == b"..x\r\n"
    assert body_of(b"a\r\n..b\r\n.\r\n") == b"a\r\n.b\r\n"
    # a dot not at a line start is data
    assert body_of(b"a.b\r\n.\r\n") == b"a.b\r\n"


def test_lone_stuffed_dot_line_is_not_the_terminator() -> None:
    assert body_of(b"a\r\n..\r\nb\r\n.\r\n") == b"a\r\n.\r\nb\r\n"


def test_rfc_unstuffs_any_leading_dot() -> None:
    # RFC 1939: a leading '.' not followed by CRLF is always removed
    assert body_of(b".x\r\n.\r\n") == b"x\r\n"


def test_bare_lf_and_cr_are_kept() -> None:
    assert body_of(b"a\nb\rc\r\n.\r\n") == b"a\nb\rc\r\n"


def test_line_starts_after_bare_lf() -> None:
    # the server stuffs after every LF, so the client unstuffs after every LF
    assert body_of(b"x\n..y\r\n.\r\n") == b"x\n.y\r\n"
    # and the terminator may follow a message that ends in a bare LF
    assert body_of(b"x\n.\r\n") == b"x\n"


def test_lf_dot_lf_is_not_a_terminator() -> None:
    with pytest.raises(ProtocolError, match="incomplete"):
        parse_response(b"+OK\r\nabc\n.\n", multiline=True)


def test_nul_and_8bit_bytes() -> None:
    data = bytes(range(256)).replace(b"\n", b"") + b"\r\n\x00\xff\xfe\r\n"
    assert body_of(data + b".\r\n") == data


def test_long_lines() -> None:
    for size in (2049, 70_000, 1_500_000):
        line = b"L" * size + b"\r\n"
        assert body_of(line + b".\r\n") == line


def test_huge_line_streams_in_chunks_with_bounded_holdback() -> None:
    parser = ResponseParser()
    parser.expect(Expect.MULTI)
    parser.feed(b"+OK\r\n")
    assert parser.next_event() == Status(True, "")
    total = 0
    for _ in range(40):
        parser.feed(b"z" * 65536)
        events = drain(parser)
        assert len(events) == 1 and isinstance(events[0], BodyChunk)
        total += len(events[0].data)
        assert parser.buffered == 0  # nothing accumulates inside the parser
    assert total == 40 * 65536
    parser.feed(b"\r\n.\r\n")
    assert drain(parser) == [BodyChunk(b"\r\n"), BodyEnd()]


def test_byte_by_byte_feeding_gives_same_body() -> None:
    message = b"From: a\r\n\r\n.\r\n..\r\nx\ny\r\r\n.z\r\n"
    wire = b"+OK\r\n" + dot_stuff(message) + b".\r\n"
    parser = ResponseParser()
    parser.expect(Expect.MULTI)
    out = bytearray()
    ends = 0
    for i in range(len(wire)):
        parser.feed(wire[i : i + 1])
        for ev in drain(parser):
            if isinstance(ev, BodyChunk):
                out += ev.data
            elif isinstance(ev, BodyEnd):
                ends += 1
    assert bytes(out) == message and ends == 1


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b".",
        b"..",
        b".\r\n",
        b"a\r\n.\r\n",
        b"no newline at end",
        b"ends in bare lf\n",
        b"\n.\n.\n",
        b"\r\n.\r\n.\r\n",
        b"x\r",
    ],
)
def test_roundtrip_with_server_stuffing(message: bytes) -> None:
    body = body_of(dot_stuff(message) + b".\r\n")
    if message.endswith(b"\n"):
        assert body == message
    else:  # the server adds CRLF before the terminator, as Dovecot does
        assert body == message + b"\r\n"


def test_pipelined_replies() -> None:
    parser = ResponseParser()
    for kind in (Expect.MULTI, Expect.MULTI, Expect.SINGLE):
        parser.expect(kind)
    parser.feed(b"+OK\r\na\r\n.\r\n-ERR no such message\r\n+OK bye\r\n")
    assert drain(parser) == [
        Status(True, ""),
        BodyChunk(b"a\r\n"),
        BodyEnd(),
        Status(False, "no such message"),
        Status(True, "bye"),
    ]
    assert parser.pending == 0


def test_nothing_expected_means_no_events() -> None:
    parser = ResponseParser()
    parser.feed(b"+OK\r\n")
    assert parser.next_event() is None
    parser.expect(Expect.SINGLE)
    assert parser.next_event() == Status(True, "")


def test_sasl_continuations() -> None:
    parser = ResponseParser()
    parser.expect(Expect.SASL)
    parser.feed(b"+ VXNlcm5hbWU6\r\n+ \r\n+\r\n+OK logged in\r\n")
    assert drain(parser) == [
        Continuation("VXNlcm5hbWU6"),
        Continuation(""),
        Continuation(""),
        Status(True, "logged in"),
    ]


def test_discard_buffer_drops_plaintext() -> None:
    parser = ResponseParser()
    parser.expect(Expect.SINGLE)
    parser.feed(b"+OK begin TLS\r\n+OK injected\r\n")
    assert parser.next_event() == Status(True, "begin TLS")
    assert parser.discard_buffer() == len(b"+OK injected\r\n")
    parser.expect(Expect.SINGLE)
    assert parser.next_event() is None


def test_eof_after_complete_line_is_missing_terminator() -> None:
    parser = ResponseParser()
    parser.expect(Expect.MULTI)
    parser.feed(b"+OK\r\nline\r\n")
    drain(parser)
    assert isinstance(parser.eof_error(), MissingTerminator)
    assert isinstance(parser.eof_error(), ProtocolError)


def test_eof_mid_line_or_status_is_network_error() -> None:
    parser = ResponseParser()
    parser.expect(Expect.MULTI)
    parser.feed(b"+OK\r\npartial li")
    drain(parser)
    assert isinstance(parser.eof_error(), NetworkError)
    fresh = ResponseParser()
    fresh.expect(Expect.SINGLE)
    fresh.feed(b"+O")
    assert fresh.next_event() is None
    assert isinstance(fresh.eof_error(), NetworkError)


def test_status_text_with_invalid_utf8_is_replaced() -> None:
    assert parse_response(b"+OK caf\xe9\r\n").text == "caf\ufffd"
