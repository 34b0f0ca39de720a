"""The visible text of an HTML part, for the search index (:mod:`popvault.app.searchtext`).

What is kept: the text between tags, character references decoded, without the
contents of ``script``, ``style``, ``head``, ``title`` and ``template``; block tags
(``br``, ``p``, ``div``, table cells...) separate words; whitespace collapsed to single
spaces. The standard library's ``html.parser`` defines it (:class:`_HtmlText`, lenient
with any input). Most mail HTML is plain markup, and for that a scanner of one regular
expression a tag gives the same text three to four times faster
(:func:`_plain_markup`): it takes only what it knows ``html.parser`` reads the same
way (start and end tags of ASCII names with ordinary attributes, comments, a
doctype, a ``<`` that starts no tag) and hands anything else (CDATA sections,
processing instructions, unterminated constructs, unusual names) to the parser. A test
compares the two on generated, real-world and random markup.
"""

from __future__ import annotations

import contextlib
import re
from html import unescape
from html.parser import HTMLParser

#: Elements whose content is not text a reader sees.
_SKIP = frozenset({"script", "style", "head", "title", "template"})
#: Elements that separate words.
_BREAK = frozenset({"br", "p", "div", "li", "tr", "td", "th", "h1", "h2", "h3", "h4"})
#: Elements whose content ``html.parser`` reads raw, up to their end tag.
_RAW = frozenset({"script", "style"})


class _HtmlText(HTMLParser):
    """The visible text of an HTML document: no tags, no script or style contents."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skipping += 1
        elif tag in _BREAK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.out.append(data)


# A tag as html.parser reads it, in a form it reads no other way: an ASCII name, then
# attributes each after whitespace (a bare value never ends in or touches a slash: the
# parser would take the slash into the value), then an optional slash (an empty tag).
# Whitespace is HTML's (W): the parser ends a tag's name at no other, so a name followed
# by, say, a no-break space is left to it.
_TAG = re.compile(
    r"""<(?:
        (?P<open>[a-zA-Z][a-zA-Z0-9]*)
            (?:W+[^\s"'<>/=]+(?:W*=W*(?:"[^"]*"|'[^']*'|[^\s"'=<>`/]+(?=W|>)))?)*
            W*(?P<empty>/?)>
      | /(?P<close>[a-zA-Z][a-zA-Z0-9]*)W*>
      | (?P<comment>!--)
      | (?P<doctype>![dD][oO][cC][tT][yY][pP][eE])
      | (?P<lt>(?![a-zA-Z/!?]))
    )""".replace("W", r"[ \t\n\r\f]"),
    re.VERBOSE,
)
_COMMENT_END = re.compile(r"--\s*>")
_RAW_END = {tag: re.compile(rf"</\s*{tag}\s*>", re.IGNORECASE) for tag in _RAW}


def _plain_markup(html: str) -> list[str] | None:
    """The pieces of text :class:`_HtmlText` would give for ``html``, or None when the
    markup holds anything this scanner does not read exactly as the parser does."""
    out: list[str] = []
    skipping = 0
    pos = 0
    while True:
        i = html.find("<", pos)
        if i < 0:
            if pos < len(html) and not skipping:
                out.append(unescape(html[pos:]))
            return out
        if i > pos and not skipping:
            out.append(unescape(html[pos:i]))
        m = _TAG.match(html, i)
        if m is None:
            return None
        pos = m.end()
        opened, closed = m.group("open", "close")
        if opened is not None:
            tag = opened.lower()
            if tag in _SKIP:
                skipping += 1
            elif tag in _BREAK:
                out.append("\n")
            if m.group("empty"):  # <br/>: its start and its end
                if tag in _SKIP:
                    skipping -= 1
            elif tag in _RAW:  # its content is never markup; skipped, as it is in _SKIP
                end = _RAW_END[tag].search(html, pos)
                if end is None:
                    return None
                skipping -= 1
                pos = end.end()
        elif closed is not None:
            if closed.lower() in _SKIP and skipping:
                skipping -= 1
        elif m.group("comment") is not None:
            end = _COMMENT_END.search(html, i + 4)
            if end is None:
                return None
            pos = end.end()
        elif m.group("doctype") is not None:
            gt = html.find(">", i + 9)
            if gt < 0:
                return None
            pos = gt + 1
        else:  # a "<" that starts nothing: text
            if i + 1 >= len(html):
                return None  # the parser's own end-of-input rules
            if not skipping:
                out.append("<")
            pos = i + 1


def parsed_html_text(html: str) -> str:
    """The visible text of ``html`` as ``html.parser`` reads it (never raises)."""
    parser = _HtmlText()
    with contextlib.suppress(Exception):  # lenient parser; what is left is not indexed
        parser.feed(html)
        parser.close()
    return " ".join("".join(parser.out).split())


def html_text(html: str) -> str:
    """The visible text of ``html`` (never raises)."""
    with contextlib.suppress(Exception):  # anything unexpected: the parser decides
        pieces = _plain_markup(html)
        if pieces is not None:
            return " ".join("".join(pieces).split())
    return parsed_html_text(html)
