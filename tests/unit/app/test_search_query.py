"""The search query language and its translation to FTS5 (popvault.app.search).

No vault here: what a query parses to, which queries are refused (QueryError, exit 2,
one line naming the problem), and that no user text reaches FTS5 unquoted: every
expression is checked against a real in-memory FTS5 table, including hostile input.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.app.search import Query, QueryError, Term, parse_query, to_sql
from popvault.vault import SearchDoc
from popvault.vault.fts import SCHEMA, index_text, plain_text


def test_words_phrases_prefixes_and_fields() -> None:
    q = parse_query('anna "the contract" invoi* from:berg subject:"q3 report"')
    assert q.must == (
        Term("anna"),
        Term("the contract"),
        Term("invoi", prefix=True),
        Term("berg", "from"),
        Term("q3 report", "subject"),
    )
    assert q.exclude == ()


def test_or_binds_tighter_than_and_and_exclusions() -> None:
    q = parse_query("a OR b c -d -from:spam")
    assert q.must == ((Term("a"), Term("b")), Term("c"))
    assert q.exclude == (Term("d"), Term("spam", "from"))


def test_filters() -> None:
    q = parse_query("has:attachment account:work -account:old after:2014 before:2015-06-15")
    assert q.has_attachment is True
    assert q.accounts == ("work",)
    assert q.not_accounts == ("old",)
    assert q.after == dt.datetime(2014, 1, 1, tzinfo=dt.UTC).timestamp()
    assert q.before == dt.datetime(2015, 6, 15, tzinfo=dt.UTC).timestamp()
    assert parse_query("-has:attachment x").has_attachment is False
    assert parse_query("after:2014-03").after == dt.datetime(2014, 3, 1, tzinfo=dt.UTC).timestamp()


def test_fields_ignore_case() -> None:
    assert parse_query("FROM:anna Subject:x").must == (Term("anna", "from"), Term("x", "subject"))


def test_punctuation_only_words_are_dropped() -> None:
    assert parse_query("anna -- & !!!").must == (Term("anna"),)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "nothing to search for"),
        ("   ", "nothing to search for"),
        ("!!! ...", "nothing to search for"),
        ('"unclosed phrase', "no closing quote"),
        ("OR anna", "OR must stand between two words"),
        ("anna OR", "OR must stand between two words"),
        ("anna OR OR berg", "OR must stand between two words"),
        ("subjct:invoice", "unknown field subjct:"),
        ("has:pdf", "only has:attachment"),
        ("after:2014-13-01", "after:2014-13-01 is not a date"),
        ("before:yesterday", "before:yesterday is not a date"),
        ("-before:2014", "-before: is not supported"),
        ("a OR -b", "-word cannot be part of an OR"),
        ("a OR has:attachment", "has: cannot be part of an OR"),
        ("from:", "from: needs a value"),
        ("from:!!!", "from: has no word to search for"),
    ],
)
def test_bad_queries_are_refused_with_one_line(text: str, says: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_query(text)
    assert says in info.value.message
    assert "\n" not in info.value.message
    assert info.value.exit_code == 2


def test_unknown_field_hint_says_how_to_search_the_text() -> None:
    with pytest.raises(QueryError) as info:
        parse_query("re:meeting")
    assert info.value.hint is not None and '"re:..."' in info.value.hint
    assert parse_query('"re:meeting"').must == (Term("re:meeting"),)


def _fts() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    docs = [
        SearchDoc("Anna Berg <anna@example.org>", "bob@example.net", "The contract", "signed"),
        SearchDoc("x@example.org", "", "Crème brûlée", "東京都庁の会議", "Q3 report.pdf"),
    ]
    for n, d in enumerate(docs):
        db.execute(
            "INSERT INTO fts(rowid, sender, recipients, subject, body, filename, facts)"
            " VALUES(?,?,?,?,?,?,?)",
            (n, *d.values()),
        )
    return db


def _match(db: sqlite3.Connection, query: str) -> set[str]:
    sql = to_sql(parse_query(query))
    assert sql.match is not None
    rows = db.execute("SELECT rowid FROM fts WHERE fts MATCH ?", (sql.match,))
    return {f"m{r[0]}" for r in rows}


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("anna", {"m0"}),
        ("ANNA contract", {"m0"}),
        ('"the contract"', {"m0"}),
        ('"contract the"', set()),
        ("contr*", {"m0"}),
        ("from:anna", {"m0"}),
        ("to:anna", set()),
        ("creme brulee", {"m1"}),  # accents folded
        ("東京", {"m1"}),
        ("都庁", {"m1"}),
        ("東", {"m1"}),
        ("京都庁", {"m1"}),
        ("東庁", set()),  # not adjacent
        ("filename:report", {"m1"}),
        ("subject:report", set()),
        ("anna OR creme", {"m0", "m1"}),
        ("anna -signed", set()),
        ('"example.org"', {"m0", "m1"}),
    ],
)
def test_translation_matches_what_it_should(query: str, found: set[str]) -> None:
    assert _match(_fts(), query) == found


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_any_text_is_a_valid_query_or_a_query_error(text: str) -> None:
    """No input reaches FTS5 as syntax: it parses to an expression FTS5 accepts, or is
    refused as a QueryError; never an FTS5 syntax error."""
    try:
        q = parse_query(text)
    except QueryError:
        return
    sql = to_sql(q)
    db = _fts()
    for expr in (sql.match, sql.exclude):
        if expr is not None:
            db.execute("SELECT count(*) FROM fts WHERE fts MATCH ?", (expr,)).fetchone()


def test_fts5_syntax_in_a_term_is_plain_text() -> None:
    """FTS5 operators, column filters and quotes inside a term are words to match, in
    order, as a phrase: none of these matches (as syntax, each would match m0)."""
    db = _fts()
    for hostile in (
        'anna" OR "x',
        "NEAR(anna signed)",
        "sender:anna OR x",
        "{body}:signed y",
        "^anna x",
    ):
        expr = to_sql(Query(must=(Term(hostile),))).match
        assert expr is not None
        rows = db.execute("SELECT rowid FROM fts WHERE fts MATCH ?", (expr,)).fetchall()
        assert rows == []
    assert _match(db, "sender anna") == set()  # the column's name is no word of it


def test_cjk_bigrams_and_snippets_turn_back() -> None:
    assert index_text("東京都") == "東京\u200b京都"
    assert index_text("abc") == "abc"
    assert index_text("a\u200bb") == "a b"  # a joiner in mail text is not kept
    assert index_text("Привет, мир \u00e9t\u00e9") == "Привет, мир \u00e9t\u00e9"  # below CJK
    assert index_text("ok \U0001f600 \u2603") == "ok \U0001f600 \u2603"  # above, not CJK
    assert index_text("Привет\u200bмир 東京") == "Привет мир 東京"  # two: one bigram
    far = "\U00020000\U00020001\U00020002"  # CJK beyond the BMP
    want = "x 会議\u200b議室 \U00020000\U00020001\u200b\U00020001\U00020002"
    assert index_text(f"x 会議室 {far}") == want
    marked = "\x02東京\x03\u200b\x02京都\x03\u200b都庁"
    assert plain_text(marked, ("[", "]")) == "[東京都]庁"
    assert plain_text("東京\u200b京都\u200b\x02都庁\x03", ("<", ">")) == "東京<都庁>"
    assert plain_text("\x02attachment\x03", ("[", "]")) == ""
