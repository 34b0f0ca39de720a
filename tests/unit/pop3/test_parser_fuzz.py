"""Hypothesis fuzzing of the reply parser: any bytes give a result or ProtocolError."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.errors import ProtocolError
from popvault.pop3.parser import BodyChunk, Expect, ResponseParser, dot_stuff, parse_response

# Bytes biased towards the ones that matter to the grammar.
_interesting = st.lists(
    st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"+OK", b"-ERR", b"+ ", b" ", b"\x00", b"x"])
    | st.binary(max_size=8),
    max_size=60,
).map(b"".join)
_inputs = st.binary(max_size=2000) | _interesting


@settings(max_examples=400, deadline=None)
@given(data=_inputs, multiline=st.booleans())
def test_any_bytes_give_result_or_protocol_error(data: bytes, multiline: bool) -> None:
    started = time.monotonic()
    try:
        resp = parse_response(data, multiline=multiline)
    except ProtocolError:
        pass
    else:
        assert resp.ok in (True, False)
        assert (resp.body is not None) == (multiline and resp.ok)
        if resp.body is not None:
            assert len(resp.body) <= len(data)
    assert time.monotonic() - started < 2.0


@settings(max_examples=200, deadline=None)
@given(data=_inputs, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10))
def test_chunking_does_not_change_the_result(data: bytes, cuts: list[int]) -> None:
    def run(pieces: list[bytes]) -> tuple[str, bytes]:
        parser = ResponseParser()
        for kind in (Expect.MULTI, Expect.SINGLE, Expect.SASL, Expect.MULTI):
            parser.expect(kind)
        out = bytearray()
        trace = []
        try:
            for piece in pieces:
                parser.feed(piece)
                while (ev := parser.next_event()) is not None:
                    if isinstance(ev, BodyChunk):
                        out += ev.data
                    else:
                        trace.append(repr(ev))
        except ProtocolError:
            trace.append("error")
        return "|".join(trace), bytes(out)

    points = sorted({c for c in cuts if c < len(data)})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert run(pieces) == run([data])


@settings(max_examples=300, deadline=None)
@given(message=st.binary(max_size=3000) | _interesting)
def test_server_stuffing_roundtrips(message: bytes) -> None:
    resp = parse_response(b"+OK\r\n" + dot_stuff(message) + b".\r\n", multiline=True)
    expected = message if message.endswith(b"\n") else message + b"\r\n"
    assert resp.body == expected
