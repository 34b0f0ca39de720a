"""The HTML scanner gives exactly the text ``html.parser`` gives (popvault.app.htmltext):
on the HTML parts of generated and real-world mail (where it must be the path taken),
and on random markup made of the pieces that trip parsers (where it may hand over)."""

from __future__ import annotations

import email
import email.policy

from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.app.htmltext import _plain_markup, html_text, parsed_html_text
from tests.support.attachment_mail import attachment_heavy
from tests.support.corpus import find_corpus
from tests.support.generate import adversarial, realistic

CORPUS = find_corpus()

#: Pieces of markup, well-formed and not: random documents are made of them.
PIECES = [
    "<p>", "</p>", "<br>", "<br/>", "<br />", "<BR>", '<div class="a b">', "</div>",
    "<td>", "<li>", "<h1>", "<script>", "</script>", "</script >", "</SCRIPT>", "<script/>",
    "<style>", "</style>", "<head>", "</head>", "<title>", "</title>", "<template>",
    "</template>", "<!-- c -->", "<!--", "-->", "-- >", "<!DOCTYPE html>", "<!doctype",
    "<", ">", "<<", "&amp;", "&nbsp", "&#39;", "&#x41;", "&", "&lt;b&gt;", "a", "b c", " ",
    "\n", "\t", "\xa0", "\u2003", "é", "日本", "<a href=x/>", "<a href='q'>", "<a href=x>",
    "<a href = \"y\" title=z>", "</a>", "<X y=z>", "</X>", "<?pi?>", "<![CDATA[x]]>", "</ p>",
    "<p\xa0x>", "<b", "=", '"', "'", "/", "</", "<!x>", "<img src=a.png alt=\"b\"/>",
    "if (a<b)", "x</scripts>", "<my-tag>", "<p\vq>", "</p\xa0>", "<a b=`c`>",
]  # fmt: skip


def _html_parts(data: bytes) -> list[str]:
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    out = []
    for part in msg.walk():
        if part.get_content_type() == "text/html":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                out.append(raw.decode(part.get_content_charset() or "utf-8", "replace"))
    return out


def _mail_html() -> list[str]:
    messages = list(realistic(80, seed=11, avg_size=4000)) + [d for _, d in adversarial()]
    messages += list(attachment_heavy(30, seed=2))
    if CORPUS is not None:
        messages += [p.read_bytes() for p in sorted(CORPUS.rglob("*.eml"))]
    return [html for data in messages for html in _html_parts(data)]


def test_mail_html_takes_the_scanner_and_gets_the_parser_s_text() -> None:
    parts = _mail_html()
    scanned = 0
    for html in parts:
        pieces = _plain_markup(html)
        if pieces is not None:
            scanned += 1
            assert " ".join("".join(pieces).split()) == parsed_html_text(html)
        assert html_text(html) == parsed_html_text(html)
    assert len(parts) >= 20 and scanned >= 0.8 * len(parts)  # the path taken, mostly


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join))
def test_random_markup_gets_the_parser_s_text(html: str) -> None:
    pieces = _plain_markup(html)
    if pieces is not None:
        assert " ".join("".join(pieces).split()) == parsed_html_text(html)
    assert html_text(html) == parsed_html_text(html)


def test_what_is_handed_to_the_parser() -> None:
    for html in ("<![CDATA[x]]>", "<?pi?>", "<b", "<style>unclosed", "<!-- open", "</ p>"):
        assert _plain_markup(html) is None, html
    assert _plain_markup("a < b &amp; <p>c</p><!-- x -->") == ["a ", "<", " b & ", "\n", "c"]
    hostile = "<p>Hi</p><script>alert('<b>')</script><style>p{}</style><p>there</p>"
    assert html_text(hostile) == "Hi there" and _plain_markup(hostile) is not None
