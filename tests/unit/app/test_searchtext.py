"""The searchable text of a message: decoded headers, text and HTML parts in any
transfer encoding and charset, attachment names; broken mail never stops it."""

from __future__ import annotations

import base64
import quopri

from hypothesis import given, settings
from hypothesis import strategies as st

from popvault.app.htmltext import html_text
from popvault.app.searchtext import MAX_PARTS, decode_text, search_text


def _multipart(*parts: bytes, headers: bytes = b"") -> bytes:
    body = b"".join(b"--XYZ\r\n" + p + b"\r\n" for p in parts) + b"--XYZ--\r\n"
    return (
        b"From: =?UTF-8?Q?Ren=C3=A9e_M=C3=BCller?= <renee@example.org>\r\n"
        b"To: Anna <anna@example.net>, =?KOI8-R?B?8NLJ18XU?= <ivan@example.ru>\r\n"
        b"Cc: team@example.com\r\n"
        b"Subject: =?ISO-8859-1?Q?Vertrag_f=FCr_2014?= =?UTF-8?B?5aWR57SE?=\r\n"
        + headers
        + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XYZ"\r\n\r\n'
        + body
    )


def test_headers_are_decoded_in_any_charset() -> None:
    t = search_text(_multipart(b"Content-Type: text/plain\r\n\r\nhi"))
    assert "Renée Müller" in t.from_ and "renee@example.org" in t.from_
    assert "Привет" in t.to and "anna@example.net" in t.to
    assert t.cc == "team@example.com"
    assert t.subject == "Vertrag für 2014契約"


def test_bodies_in_every_transfer_encoding_and_charset() -> None:
    koi = "Договор подписан".encode("koi8-r")
    jp = "請求書番号 4711".encode("iso-2022-jp")
    qp = quopri.encodestring("Grüße aus Köln".encode("iso-8859-1"))
    msg = _multipart(
        b"Content-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(koi),
        b"Content-Type: text/plain; charset=iso-2022-jp\r\n\r\n" + jp,
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + qp,
    )
    body = search_text(msg).body
    assert "Договор подписан" in body
    assert "請求書番号 4711" in body
    assert "Grüße aus Köln" in body


def test_html_text_without_scripts_styles_or_tags() -> None:
    html = (
        b"<html><head><title>t</title><style>.x{color:red}</style></head><body>"
        b"<p>Invoice&nbsp;<b>RE-2024-017</b></p><script>var secret='tracker';</script>"
        b"<img src='http://track.example/p.gif'></body></html>"
    )
    t = search_text(_multipart(b"Content-Type: text/html; charset=utf-8\r\n\r\n" + html))
    assert "Invoice" in t.body and "RE-2024-017" in t.body
    assert "tracker" not in t.body and "color" not in t.body and "<" not in t.body


def test_attachment_names_rfc2231_and_rfc2047() -> None:
    msg = _multipart(
        b"Content-Type: text/plain\r\n\r\nsee attached",
        b"Content-Type: application/pdf\r\nContent-Disposition: attachment;"
        b" filename*=UTF-8''Vertr%C3%A4ge%202014.pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\nJVBERi0xLjQK",
        b'Content-Type: image/jpeg; name="=?UTF-8?B?0YTQvtGC0L4uanBn?="\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n/9j/4AAQ",
        b"Content-Type: text/plain\r\nContent-Disposition: attachment; filename=notes.txt\r\n"
        b"\r\nattached text is not body text",
    )
    t = search_text(msg)
    assert t.filenames == ["Verträge 2014.pdf", "фото.jpg", "notes.txt"]
    assert t.has_attachment
    assert "see attached" in t.body and "attached text is not body text" not in t.body


def test_undeclared_eight_bit_falls_back() -> None:
    assert decode_text("Café".encode(), None) == "Café"
    assert decode_text("Café".encode("cp1252"), None) == "Café"
    assert decode_text("Café".encode("cp1252"), "no-such-charset") == "Café"
    msg = b"Subject: x\r\nContent-Type: text/plain\r\n\r\n" + "Äpfel".encode("latin-1")
    assert "Äpfel" in search_text(msg).body


def test_broken_parts_are_counted_and_the_rest_is_indexed() -> None:
    msg = _multipart(
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64",
        b"Content-Type: text/plain\r\n\r\nthe readable part",
    )
    t = search_text(msg)
    assert "the readable part" in t.body
    # a group address and a bare word where addresses belong do not stop it either
    odd = b"From: undisclosed-recipients:;\r\nTo: ,,, @\r\nSubject: ok\r\n\r\nbody text"
    t = search_text(odd)
    assert t.subject == "ok" and "body text" in t.body


def test_a_bomb_of_parts_is_cut() -> None:
    parts = [b"Content-Type: text/plain\r\n\r\np%d" % i for i in range(MAX_PARTS + 50)]
    t = search_text(_multipart(*parts))
    assert t.problems >= 1
    assert "p0" in t.body and f"p{MAX_PARTS + 40}" not in t.body


def test_html_helper_on_malformed_markup() -> None:
    assert html_text("<p>one</p><p>two<b>three</b></div><script>x</script>") == "one twothree"
    assert html_text("price a < b &amp; c") == "price a < b & c"
    assert html_text("<style>unclosed") == ""


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_never_raises_on_any_bytes(data: bytes) -> None:
    t = search_text(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" + data)
    assert isinstance(t.body, str)
    search_text(data)
