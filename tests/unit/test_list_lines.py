"""``list --json`` lines are built as text (``cmd_list._row_text``): the same bytes as the
documented object encoded by :mod:`json`, for any row; and listing rows made for one
arrival equal those made by the general path."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.cli.cmd_list import (
    _CHARS,
    _datetime_iso,
    _iso,
    _minute,
    echo_lines,
    json_line,
    row_json,
)
from popvault.vault.rows import MessageRow, message_row

_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30) | st.just(
    "\x1b[31mred"
)
_TIME = st.one_of(
    st.none(),
    st.floats(min_value=-2e9, max_value=4e9, allow_nan=False),
    st.integers(min_value=-2_000_000_000, max_value=4_000_000_000).map(float),
)
_SRC = st.tuples(_TEXT, st.one_of(st.none(), _TEXT), _TEXT, st.one_of(st.none(), _TEXT))


@st.composite
def _rows(draw: st.DrawFn) -> tuple[list[object], list[tuple[object, ...]]]:
    row: list[object] = [
        draw(st.binary(min_size=32, max_size=32)),
        draw(st.integers(min_value=0, max_value=2**40)),
        draw(_TIME),
        draw(_TIME),
        *(draw(st.one_of(st.none(), _TEXT)) for _ in range(5)),
        draw(_TIME),
        draw(st.one_of(st.none(), st.floats(min_value=0, max_value=4e9))),
    ]
    return row, draw(st.lists(_SRC, max_size=3))


def _general(row: list[object], srcs: list[tuple[object, ...]]) -> MessageRow:
    """The row as the listing made it before the one-arrival path."""
    return MessageRow(
        id=row[0],  # type: ignore[arg-type]
        size=row[1],  # type: ignore[arg-type]
        date=row[2],  # type: ignore[arg-type]
        received=row[3],  # type: ignore[arg-type]
        from_=row[4] or "",  # type: ignore[arg-type]
        to=row[5] or "",  # type: ignore[arg-type]
        cc=row[6] or "",  # type: ignore[arg-type]
        subject=row[7] or "",  # type: ignore[arg-type]
        message_id=row[8] or "",  # type: ignore[arg-type]
        file_time=row[9],  # type: ignore[arg-type]
        first_archived=row[10] if row[10] is not None else 0.0,  # type: ignore[arg-type]
        accounts=sorted({str(s[0]) for s in srcs}),
        uidls=[str(s[1]) for s in srcs if s[1] is not None],
        sources=[str(s[2]) for s in srcs],
        flags=next((str(s[3]) for s in srcs if s[3] is not None), None),
    )


@settings(max_examples=400, deadline=None)
@given(_rows())
def test_json_line_is_the_encoded_object(
    drawn: tuple[list[object], list[tuple[object, ...]]],
) -> None:
    row, srcs = drawn
    made = message_row(row, srcs)
    assert made == _general(row, srcs)
    encoded = json.JSONEncoder(ensure_ascii=False).encode(row_json(made))
    assert json_line(made) == encoded
    assert "\x1b" not in encoded  # list --json does not have click strip colour codes
    assert json.loads(json_line(made)) == row_json(made)
    times = row_json(made)
    assert times["delivered"] == _iso(made.delivered)  # the text of the time it shows
    assert (times["received"], times["archived"]) == (_iso(row[3]), _iso(made.first_archived))  # type: ignore[arg-type]


def test_extra_keys_follow_the_row_s_own() -> None:
    made = message_row([b"\x01" * 32, 5, None, 1.5, 'a\n"b"', "", None, "é", None, None, 2.0], [])
    line = json_line(made, rank=1.25, snippet="x")
    assert line.endswith(', "rank": 1.25, "snippet": "x"}')
    assert json.loads(line)["from"] == 'a\n"b"'


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, min_value=-1e10, max_value=3e11),
        st.integers(min_value=0, max_value=260_000_000_000).map(float),
        st.integers(min_value=0, max_value=4_000_000_000).map(lambda s: s + 0.9999995),
        st.integers(min_value=0, max_value=4_000_000_000).map(lambda s: s + 0.0000005),
    )
)
def test_iso_dates_are_datetime_s(t: float) -> None:
    """The listing's ISO dates are datetime's text, also where its microseconds round."""
    try:
        expected = _datetime_iso(t)
    except (ValueError, OverflowError, OSError) as exc:
        try:
            _iso(t)
        except type(exc):
            return
        raise AssertionError(f"{t!r}: datetime fails, the listing does not") from None
    assert _iso(t) == expected


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, min_value=-1e10, max_value=2.6e11),
        st.integers(min_value=0, max_value=4_000_000_000).map(lambda s: s * 60 + 59.9999996),
        st.integers(min_value=0, max_value=4_000_000_000).map(lambda s: s + 0.0000004),
    )
)
def test_list_minutes_are_strftime_s(t: float) -> None:
    """Plain ``list`` shows the delivery as datetime's ``strftime`` did, also where the
    microseconds round up into the next minute."""
    try:
        expected = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")
    except (ValueError, OverflowError, OSError):
        return  # as before: no date to show
    assert _minute(t) == expected


@pytest.mark.parametrize("count", [0, 1, 2, 3, 100, 1000])
@pytest.mark.parametrize("escapes", [True, False])
def test_lines_are_printed_whole_and_in_order(
    capsys: pytest.CaptureFixture[str], count: int, escapes: bool
) -> None:
    """Batches of about ``_CHARS`` characters: every line once, in order, each ending in a
    newline, whatever the batches' boundaries."""
    lines = [f"{n:05d}" + "é" * (n % 7) * 1000 for n in range(count)]
    echo_lines(iter(lines), escapes=escapes)
    out = capsys.readouterr().out
    assert out == "".join(f"{line}\n" for line in lines)
    assert sum(map(len, lines)) > 3 * _CHARS or count < 1000  # the batches were several
