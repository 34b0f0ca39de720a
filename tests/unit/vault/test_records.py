"""Records round-trip through their canonical JSON (popvault.vault.records, format §9.2).

``to_json`` gives exactly the dict the format describes (the keys popvault has always
written, in that order); ``record_from_json`` reads it back to an equal record, skips a
record type it does not know, and refuses a malformed one as damage (IntegrityError).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from popvault.errors import IntegrityError
from popvault.vault.meta import MessageMeta
from popvault.vault.records import (
    AttachmentPiece,
    BlobPiece,
    CommitRecord,
    DelRecord,
    MsgRecord,
    Pieces,
    Record,
    RstRecord,
    SourceInfo,
    SrcRecord,
    piece_hex_ids,
    piece_ids,
    pieces_from_json,
    record_from_json,
    records_from_json,
)

ids = st.binary(min_size=32, max_size=32)
text = st.text(max_size=30)
opt_text = st.one_of(st.none(), text)
times = st.floats(0, 4e9, allow_nan=False)
opt_times = st.one_of(st.none(), times)
hexes = ids.map(bytes.hex)
pieces: st.SearchStrategy[Pieces] = st.lists(
    st.one_of(
        st.builds(BlobPiece, st.just("r"), hexes),
        st.builds(
            AttachmentPiece,
            st.just("b"),
            st.lists(hexes, min_size=1, max_size=4),
            st.integers(4, 998),
            st.sampled_from(["crlf", "lf"]),
        ),
    ),
    max_size=5,
)
metas = st.builds(
    MessageMeta,
    date=opt_times,
    received=opt_times,
    from_=text,
    to=text,
    cc=text,
    subject=text,
    message_id=text,
)
sources = st.builds(
    SourceInfo,
    account=text,
    source=text,
    uidl=opt_text,
    flags=opt_text,
    file_time=opt_times,
    from_line_time=opt_times,
)
records: st.SearchStrategy[Record] = st.one_of(
    st.builds(MsgRecord, ids, st.integers(0, 1 << 40), pieces, metas),
    st.builds(SrcRecord, ids, sources, times),
    st.builds(DelRecord, text, text, st.one_of(st.none(), ids), times),
    st.builds(RstRecord, text, ids, st.one_of(st.none(), st.integers(1, 1 << 32)), times),
)


@given(st.lists(records, max_size=6))
def test_records_round_trip_through_json_text(items: list[Record]) -> None:
    text_form = json.dumps([r.to_json() for r in items])
    assert records_from_json(json.loads(text_form)) == items


def test_the_json_is_the_formats() -> None:
    msg = MsgRecord(b"\x01" * 32, 12, [BlobPiece("r", "ab" * 32)], MessageMeta(subject="hi"))
    assert json.dumps(msg.to_json()["pieces"]) == f'[["r", "{"ab" * 32}"]]'  # the format's
    assert list(msg.to_json()) == ["t", "id", "size", "pieces", "meta"]
    assert msg.to_json()["meta"] == MessageMeta(subject="hi").to_json()
    src = SrcRecord(b"\x02" * 32, SourceInfo("acct", "pop3://x", uidl="u1"), 5.0)
    assert list(src.to_json()) == [
        "t",
        "msg",
        "account",
        "uidl",
        "source",
        "flags",
        "archived",
        "file_time",
        "from_line_time",
    ]
    assert DelRecord("a", "u", None, 1.0).to_json() == {
        "t": "del",
        "account": "a",
        "uidl": "u",
        "msg": None,
        "time": 1.0,
    }
    assert RstRecord("imap://x", b"\x03" * 32, 7, 2.0).to_json()["msg"] == "03" * 32


def test_unknown_record_types_are_skipped() -> None:
    assert record_from_json({"t": "future", "x": 1}) is None
    assert records_from_json([{"t": "future"}, DelRecord("a", "u", None, 1.0).to_json()]) == [
        DelRecord("a", "u", None, 1.0)
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"t": "msg", "id": "zz", "size": 1, "pieces": []},
        {"t": "msg", "id": "00", "pieces": []},
        {"t": "msg", "id": "00", "size": 1, "pieces": "r"},
        {"t": "src", "msg": "00", "account": "a", "source": "s"},
        {"t": "del", "account": "a", "uidl": "u", "time": "soon"},
        {"t": "rst", "target": "t", "msg": "00", "uid": "x", "time": 1},
        ["t", "msg"],
    ],
)
def test_a_malformed_record_is_damage(bad: object) -> None:
    with pytest.raises(IntegrityError, match="malformed"):
        record_from_json(bad)


@given(pieces)
def test_piece_ids_in_both_forms(ps: Pieces) -> None:
    assert [b.hex() for b in piece_ids(ps)] == piece_hex_ids(ps)


@pytest.mark.parametrize(
    "bad",
    [
        [["x", "00"]],
        [["r"]],
        [["r", 5]],
        [["b", ["00"], 0, "crlf"]],
        [["b", ["00"], 76, "cr"]],
        [["b", "00", 76, "lf"]],
        "r",
    ],
)
def test_malformed_pieces_are_damage(bad: object) -> None:
    with pytest.raises(IntegrityError, match="pieces are malformed"):
        pieces_from_json(bad)


@given(
    st.integers(1, 10**9),
    times,
    text,
    st.lists(hexes.map(lambda h: h[:64]), max_size=3),
    st.lists(hexes, max_size=2),
    opt_text,
)
def test_commit_records_round_trip(
    seq: int, t: float, host: str, packs: list[str], segs: list[str], parent: str | None
) -> None:
    rec = CommitRecord(seq, t, host, packs, segs, parent)
    body = json.loads(json.dumps(rec.to_json()))
    assert list(body) == ["version", "seq", "time", "host", "packs", "segments", "parent"]
    assert CommitRecord.from_json(body, "commit") == rec


@pytest.mark.parametrize(
    "bad",
    [
        {"seq": 1, "packs": "p", "segments": []},
        {"seq": 1, "packs": [], "segments": [5]},
        {"seq": "1", "packs": [], "segments": []},
        {"seq": 1, "packs": [], "segments": [], "parent": 3},
        {"packs": [], "segments": []},
    ],
)
def test_a_malformed_commit_record_is_damage(bad: dict[str, object]) -> None:
    with pytest.raises(IntegrityError, match="commit 7 is malformed"):
        CommitRecord.from_json(bad, "commit 7")
