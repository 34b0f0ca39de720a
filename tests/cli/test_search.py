"""``popvault search`` and ``export --query`` through the real entry point (issue 13).

Planted words hide in every place the index reads (base64 UTF-8 body, quoted-printable
Latin-1 body, RFC 2047 subject, HTML-only body, RFC 2231 attachment name, Cyrillic and
CJK text) among generated mail; each is found in its message and nowhere else, and words
in places that are not indexed (other headers, script, attachment bytes) are found
nowhere. The shared real-world corpus (read in place) is checked against an independent
oracle: every word picked from its decoded text is found in exactly the messages whose
text holds it. Also: incremental indexing by import, by ``index rebuild`` and when the
cache is deleted; broken MIME counted; bad queries and a writer's lock.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from popvault.app.searchtext import search_text
from popvault.vault import Vault
from tests.cli.helpers import (
    PASSPHRASE,
    REPO,
    first_error_line,
    messages,
    run,
    write_eml_dir,
    write_maildir,
)
from tests.support.corpus import find_corpus

CORPUS = find_corpus()


def _msg(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode() + b"\r\n" + body


def planted() -> dict[str, bytes]:
    """Message name -> a message hiding one planted word (and words that must not be
    found: in headers other than From/To/Cc/Subject, in a script, inside attachment
    bytes)."""
    b64 = base64.encodebytes("Grüße vom plantaübersee heute\n".encode()).replace(b"\n", b"\r\n")
    att = base64.encodebytes(b"plantinsideattachment " * 8).replace(b"\n", b"\r\n")
    return {
        "b64": _msg(
            "From: a@example.org\nTo: b@example.net\nSubject: one\n"
            "X-Note: plantxheader\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n",
            b64,
        ),
        "qp": _msg(
            "From: a@example.org\nTo: b@example.net\nSubject: two\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=iso-8859-1\n"
            "Content-Transfer-Encoding: quoted-printable\n",
            b"La plantb=E9casse est l=E0=\r\n ici\r\n",
        ),
        "subject": _msg(
            "From: a@example.org\nTo: b@example.net\n"
            "Subject: =?utf-8?b?" + base64.b64encode("Отчёт плантарус".encode()).decode() + "?=\n",
            b"nothing here\r\n",
        ),
        "html": _msg(
            "From: a@example.org\nTo: b@example.net\nSubject: four\nMIME-Version: 1.0\n"
            "Content-Type: text/html; charset=utf-8\n",
            b"<html><head><script>var plantscriptword=1;</script></head>"
            b"<body><p>The <b>planthtmlword</b> is here</p></body></html>\r\n",
        ),
        "filename": _msg(
            "From: a@example.org\nTo: b@example.net\nSubject: five\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="b1"\n',
            b"--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b1\r\n"
            b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment;\r\n"
            b" filename*=utf-8''plant%C3%A4ttach%20report.pdf\r\n"
            b"\r\n" + att + b"--b1--\r\n",
        ),
        "cjk": _msg(
            "From: =?utf-8?b?"
            + base64.b64encode("鷺沢鴎外".encode()).decode()
            + "?= <y@example.jp>\n"
            "To: b@example.net\nSubject: six\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n",
            "東京都庁で会議があります\r\n".encode(),
        ),
        "cc": _msg(
            "From: a@example.org\nTo: b@example.net\nCc: Plantcc Person <pc@example.net>\n"
            "Subject: seven\n",
            b"body\r\n",
        ),
    }


#: Query -> the planted message it finds (and only it).
FOUND = {
    "plantaubersee": "b64",  # accents folded
    "PLANTAÜBERSEE": "b64",
    "plantbecasse": "qp",
    "плантарус": "subject",
    "ПЛАНТАРУС": "subject",
    "subject:плантарус": "subject",
    "planthtmlword": "html",
    "body:planthtmlword": "html",
    "plantättach": "filename",
    "filename:plantattach": "filename",
    '"plantättach report"': "filename",
    "plantätt*": "filename",
    "都庁": "cjk",
    "東京": "cjk",
    "会議": "cjk",
    "from:鷺沢": "cjk",
    "to:plantcc": "cc",
    "has:attachment plantattach": "filename",
    "plantbecasse OR nothingatall": "qp",
}
#: Queries that must find nothing: words where the index does not look.
NOT_FOUND = [
    "plantxheader",
    "plantscriptword",
    "plantinsideattachment",
    "subject:plantbecasse",
    "from:plantcc",
    "body:plantattach",
    "東庁",
    "plantbecasse -ici",
    "has:attachment plantbecasse",
]


def _import(vault: Path, tmp: Path, msgs: list[bytes], name: str = "md") -> None:
    write_maildir(tmp / name, msgs)
    res = run("--vault", vault, "import", tmp / name)
    assert res.code == 0, str(res)


def _search(vault: Path, *args: str) -> list[dict[str, Any]]:
    res = run("--vault", vault, "search", "--json", *args)
    assert res.code == 0, str(res)
    return [json.loads(line) for line in res.text.splitlines()]


def _ids(vault: Path, query: str) -> set[str]:
    return {h["id"] for h in _search(vault, query)}


@pytest.fixture
def planted_vault(vault: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A vault with the planted messages among 30 generated ones; name -> message id."""
    plants = planted()
    _import(vault, tmp_path, [*messages(30, seed=7), *plants.values()])
    with Vault.open(vault, PASSPHRASE.encode()) as v:
        ids = {name: v.keyed_id(data).hex() for name, data in plants.items()}
    return vault, ids


def test_planted_words_found_where_they_hide_and_nowhere_else(
    planted_vault: tuple[Path, dict[str, str]],
) -> None:
    vault, ids = planted_vault
    for query, name in FOUND.items():
        assert _ids(vault, query) == {ids[name]}, query
    for query in NOT_FOUND:
        assert _ids(vault, query) == set(), query


def test_json_has_list_keys_rank_and_snippet(planted_vault: tuple[Path, dict[str, str]]) -> None:
    vault, ids = planted_vault
    (hit,) = _search(vault, "planthtmlword")
    listed = json.loads(run("--vault", vault, "list", "--json").text.splitlines()[0])
    assert set(hit) == set(listed) | {"rank", "snippet"}
    assert hit["id"] == ids["html"]
    assert hit["rank"] > 0
    assert "[planthtmlword]" in hit["snippet"]
    assert "plantscriptword" not in hit["snippet"]
    (cjk,) = _search(vault, "都庁")
    assert "[都庁]" in cjk["snippet"]
    assert "\u200b" not in cjk["snippet"]


def test_text_output_is_lists(planted_vault: tuple[Path, dict[str, str]]) -> None:
    vault, ids = planted_vault
    res = run("--vault", vault, "search", "plantbecasse")
    assert res.code == 0, str(res)
    listed = run("--vault", vault, "list").text.splitlines()
    (line,) = res.text.splitlines()
    assert line.startswith(ids["qp"][:12])
    assert line in listed


def test_sort_and_limit(vault: Path, tmp_path: Path) -> None:
    msgs = [
        (
            f"From: a@example.org\r\nSubject: report {n}\r\n"
            f"Date: Mon, 0{n + 1} Jan 2018 12:00:00 +0000\r\n"
            f"Received: from x by y; Mon, 0{n + 1} Jan 2018 12:00:00 +0000\r\n\r\n"
            + "quarterly " * (1 + 3 * (n == 1))
            + "\r\n"
        ).encode()
        for n in range(4)
    ]
    _import(vault, tmp_path, msgs)
    by_rank = _search(vault, "quarterly")
    assert len(by_rank) == 4
    assert by_rank[0]["subject"] == "report 1"  # the word four times: most relevant
    assert [h["rank"] for h in by_rank] == sorted((h["rank"] for h in by_rank), reverse=True)
    by_date = _search(vault, "--sort", "date", "quarterly")
    assert [h["subject"] for h in by_date] == ["report 3", "report 2", "report 1", "report 0"]
    assert [
        h["subject"] for h in _search(vault, "--sort", "date", "--limit", "2", "quarterly")
    ] == [
        "report 3",
        "report 2",
    ]
    assert len(_search(vault, "--limit", "1", "quarterly")) == 1
    dated = _search(vault, "after:2018-01-02 before:2018-01-04 quarterly")
    assert {h["subject"] for h in dated} == {"report 1", "report 2"}


def test_account_filter(vault: Path, tmp_path: Path) -> None:
    one, two = planted()["qp"], planted()["html"]
    write_maildir(tmp_path / "a", [one])
    write_maildir(tmp_path / "b", [two])
    assert run("--vault", vault, "import", "--account", "work", tmp_path / "a").code == 0
    assert run("--vault", vault, "import", "--account", "home", tmp_path / "b").code == 0
    assert [h["accounts"] for h in _search(vault, "account:work")] == [["work"]]
    assert [h["accounts"] for h in _search(vault, "--", "-account:work")] == [["home"]]
    assert _search(vault, "account:work planthtmlword") == []


def test_export_query_and_search_output_as_ids(
    planted_vault: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    vault, ids = planted_vault
    out = tmp_path / "out"
    res = run("--vault", vault, "export", "--format", "eml", "--query", "plantbecasse OR 都庁", out)
    assert res.code == 0, str(res)
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2
    assert {n.split("-")[1][:16] for n in names} == {ids["qp"][:16], ids["cjk"][:16]}
    # search --json lines are what export --ids takes
    hits = tmp_path / "hits.jsonl"
    hits.write_bytes(run("--vault", vault, "search", "--json", "planthtmlword").out)
    res = run("--vault", vault, "export", "--format", "eml", "--ids", hits, tmp_path / "out2")
    assert res.code == 0, str(res)
    assert [p.name.split("-")[1][:16] for p in (tmp_path / "out2").iterdir()] == [ids["html"][:16]]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ('"open', "no closing quote"),
        ("subjct:x", "unknown field subjct:"),
        ("after:2014-99", "is not a date"),
        ("x OR", "OR must stand between two words"),
    ],
)
def test_bad_query_is_one_line_exit_2_before_the_passphrase(
    vault: Path, query: str, says: str
) -> None:
    res = run("--vault", vault, "search", query, env={"POPVAULT_PASSPHRASE": "wrong"})
    assert res.code == 2, str(res)
    assert first_error_line(res.err).startswith("popvault: error: search query")
    assert says in res.err
    assert "Traceback" not in res.err
    res = run("--vault", vault, "export", "--format", "eml", "--query", query, "out")
    assert res.code == 2, str(res)
    assert says in res.err


def test_incremental_indexing_and_rebuild(vault: Path, tmp_path: Path, pv_env: Path) -> None:
    plants = planted()
    _import(vault, tmp_path, [plants["qp"]], "one")
    assert len(_search(vault, "plantbecasse")) == 1
    _import(vault, tmp_path, [plants["qp"], plants["html"]], "two")  # one new, one again
    with Vault.open(vault, PASSPHRASE.encode()) as v:
        rows = v.cache.db.execute("SELECT count(*) FROM fts").fetchone()
    assert rows == (2,)  # indexed once each
    assert len(_search(vault, "planthtmlword")) == 1
    res = run("--vault", vault, "index", "rebuild")
    assert res.code == 0, str(res)
    assert "search index rebuilt: 2 messages" in res.err
    assert len(_search(vault, "plantbecasse OR planthtmlword")) == 2
    # the cache deleted: search indexes what is missing first, and says so
    for f in (pv_env / "cache").iterdir():
        f.unlink()
    res = run("--vault", vault, "search", "planthtmlword")
    assert res.code == 0, str(res)
    assert "indexing 2 message(s) not yet indexed" in res.err
    assert len(res.text.splitlines()) == 1


def test_import_without_indexing_then_search_catches_up(vault: Path, tmp_path: Path) -> None:
    write_maildir(tmp_path / "md", [planted()["b64"]])
    res = run("--vault", vault, "import", tmp_path / "md", env={"POPVAULT_SEARCH_INDEX": "0"})
    assert res.code == 0, str(res)
    with Vault.open(vault, PASSPHRASE.encode()) as v:
        assert v.cache.db.execute("SELECT count(*) FROM fts").fetchone() == (0,)
    assert len(_search(vault, "plantaubersee")) == 1


def test_broken_mime_is_indexed_as_far_as_readable_and_counted(vault: Path, tmp_path: Path) -> None:
    broken = _msg(
        "From: a@example.org\nSubject: plantbrokensubject\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="zz"\n',
        b"--zz\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64 at all plantbroken\r\n"
        b"--zz\r\nContent-Type: text/plain\r\n\r\nplantreadablepart\r\n",  # no final boundary
    )
    # past MAX_PARTS parts the rest is not read: indexed in part, and counted
    bomb = _msg(
        "From: b@example.org\nSubject: plantbombsubject\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="p"\n',
        b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(600))
        + b"--p--\r\n",
    )
    write_eml_dir(tmp_path / "eml", [broken, bomb])
    assert run("--vault", vault, "import", tmp_path / "eml").code == 0
    assert len(_search(vault, "plantbrokensubject")) == 1
    assert len(_search(vault, "plantreadablepart")) == 1
    assert len(_search(vault, "plantbombsubject")) == 1
    res = run("--vault", vault, "index", "rebuild")
    assert res.code == 0, str(res)
    assert "search index rebuilt: 2 messages (1 read only in part)" in res.err


def test_search_while_a_writer_holds_the_vault(
    planted_vault: tuple[Path, dict[str, str]],
) -> None:
    vault, ids = planted_vault
    with Vault.open(vault, PASSPHRASE.encode(), write=True, command="popvault backup"):
        assert _ids(vault, "plantbecasse") == {ids["qp"]}


# ------------------------------------------------------------------------ real-world corpus


def _words_of(text: str) -> set[str]:
    """Words as the index sees them: case and accents folded, split on anything that is
    not a letter or digit (the oracle for unicode61 with remove_diacritics 2)."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return set(re.findall(r"[^\W_]+", folded))


def _real_world_corpus_against_an_oracle(vault: Path, tmp_path: Path) -> None:
    assert CORPUS is not None
    files = sorted(p for p in CORPUS.rglob("*.eml") if p.is_file())
    assert len(files) > 300
    datas = list(dict.fromkeys(p.read_bytes() for p in files))
    write_maildir(tmp_path / "corpus", datas)
    res = run("--vault", vault, "import", tmp_path / "corpus")
    assert res.code == 0, str(res)
    with Vault.open(vault, PASSPHRASE.encode()) as v:
        keyed = {v.keyed_id(d).hex(): d for d in datas}
    words: dict[str, set[str]] = {}
    for mid, data in keyed.items():
        st = search_text(data)
        text = " ".join([st.from_, st.to, st.cc, st.subject, st.body, *st.filenames])
        for w in _words_of(text):
            words.setdefault(w, set()).add(mid)
    latin = sorted(w for w in words if w.isascii() and w.isalpha() and 5 <= len(w) <= 20)
    rng = random.Random(13)
    picked = rng.sample(latin, 25)
    # and words of other scripts, found in the corpus
    picked += [w for w in ("юникод", "картинка") if w in words]
    assert len(picked) >= 26
    for w in picked:
        assert _ids(vault, w) == words[w], w
    assert _ids(vault, "filename:картинка") == words["картинка"]


if CORPUS is not None:  # only where the corpus is (tests/support/corpus.py)
    test_real_world_corpus_against_an_oracle = _real_world_corpus_against_an_oracle


def test_search_piped_into_export(
    planted_vault: tuple[Path, dict[str, str]], tmp_path: Path, pv_env: Path
) -> None:
    """``search --json ... | export --ids /dev/stdin``, as docs/search.md shows it."""
    vault, ids = planted_vault
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "popvault", "--vault", str(vault)]
    found = subprocess.run(
        [*argv, "search", "--json", "plantbecasse OR planthtmlword"],
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    out = tmp_path / "piped"
    res = subprocess.run(
        [*argv, "export", "--format", "eml", "--ids", "/dev/stdin", str(out)],
        env=env,
        input=found,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    got = {p.name.split("-")[1][:16] for p in out.iterdir()}
    assert got == {ids["qp"][:16], ids["html"][:16]}
