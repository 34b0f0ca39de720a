"""searchtext's fast path (one text part, or multipart of text parts, read without the
email package's parser) gives what the full parser gives, and steps aside for the rest."""

from __future__ import annotations

import email
import email.policy

import pytest

from popvault.app import searchtext
from popvault.app.searchtext import SearchText, search_text
from tests.support.attachment_mail import attachment_heavy
from tests.support.corpus import find_corpus
from tests.support.generate import adversarial, realistic
from tests.support.vaults import scan_message

CORPUS = find_corpus()


def _full(data: bytes, monkeypatch: pytest.MonkeyPatch) -> SearchText:
    with monkeypatch.context() as m:
        m.setattr(searchtext, "_single_part", lambda _data, _depth=0: None)
        return search_text(data)


def _words(t: SearchText) -> tuple[object, ...]:
    def norm(s: str) -> list[str]:
        return "".join(c if c.isalnum() else " " for c in s).lower().split()

    return (
        norm(t.from_),
        norm(t.to),
        norm(t.cc),
        norm(t.subject),
        norm(t.body),
        [norm(f) for f in t.filenames],
        t.problems,
    )


def _samples() -> list[bytes]:
    out = list(realistic(60, seed=3, avg_size=4000)) + [d for _, d in adversarial()]
    out += list(attachment_heavy(40, seed=5))  # attachments, forwards, many charsets
    if CORPUS is not None:
        out += [p.read_bytes() for p in sorted(CORPUS.rglob("*.eml"))]
    return out


def test_fast_path_agrees_with_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = named = 0
    for data in _samples():
        got = searchtext._single_part(data)
        if got is not None:
            fast += 1
            named += bool(got.filenames)
        assert _words(search_text(data)) == _words(_full(data, monkeypatch))
    assert fast >= 20 and named >= 20  # not vacuous: attachments took the fast path too


def test_an_attachment_s_body_is_not_read() -> None:
    """The fast path names an attachment without decoding it: a body that is not even
    base64 changes nothing."""
    msg = (
        b"From: a@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
        b"Content-Type: text/plain\r\n\r\nthe letter\r\n--b1\r\n"
        b'Content-Type: application/pdf; name="=?utf-8?q?R=C3=A9sum=C3=A9?=.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''Lebenslauf%20J%C3%BCrgen.pdf\r\n"
        b"\r\n!!! not base64 at all !!!\r\n--b1--\r\n"
    )
    got = searchtext._single_part(msg)
    assert got is not None
    assert got.body == "the letter"
    assert got.filenames == ["Lebenslauf Jürgen.pdf"]
    assert got.problems == 0


@pytest.mark.parametrize(
    "data",
    [
        b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nno end boundary\r\n",
        b"Subject: x\r\nContent-Type: text/plain; name=a.txt\r\n\r\nnamed\r\n",
        b"Subject: x\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n",
        b"Subject: x\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n",
        b"no header section at all",
    ],
)
def test_fast_path_steps_aside(data: bytes) -> None:
    assert searchtext._single_part(data) is None


def test_multipart_alternative_takes_both_texts() -> None:
    msg = email.message_from_bytes(
        b"From: a@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="xx"\r\n\r\npreamble\r\n--xx\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"cGxhaW53b3Jk\r\n--xx\r\nContent-Type: text/html\r\n\r\n<p>html<b>word</b></p>\r\n"
        b"--xx--\r\nepilogue\r\n",
        policy=email.policy.compat32,
    )
    data = msg.as_bytes()
    got = searchtext._single_part(data)
    assert got is not None
    assert "plainword" in got.body
    assert "htmlword" in got.body
    assert "preamble" not in got.body and "epilogue" not in got.body


def test_a_big_attachment_is_never_copied() -> None:
    """The fast path reads parts as ranges of the message: a 27 MB message of one big
    attachment costs its text and header sections, not copies of the whole (it was four
    copies: 110 MB at the peak, the top of a backup's memory with the index on)."""
    import tracemalloc

    data = scan_message()
    assert len(data) > 25_000_000
    tracemalloc.start()
    try:
        got = searchtext._single_part(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got is not None and got.filenames == ["scan.pdf"] and "See the scan." in got.body
    assert got.subject == "the contract"
    assert peak < 1_000_000, peak
