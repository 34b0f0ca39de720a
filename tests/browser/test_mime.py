"""The viewer's message model (popvault.web.mime) without a browser: broken MIME never
raises, parts keep their numbers and bytes, and the sanitizer keeps nothing that runs
or reaches out."""

from __future__ import annotations

import pytest

from popvault.web import mime
from popvault.web.viewer import content_disposition
from tests.browser import mail


def _url(n: int) -> str:
    return f"/img/{n}"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe\x00garbage without headers",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n",
        b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nb\xe4d\r\n",
        b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64",
        b"Subject: =?utf-8?b?broken?=\r\nFrom: <<<\r\n\r\nbody\r\n",
    ],
)
def test_broken_mime_gives_a_view_not_an_exception(data: bytes) -> None:
    view = mime.view(data, _url)
    assert isinstance(view, mime.MessageView)


def test_latin1_text_and_rfc2047_subject_are_decoded() -> None:
    data = (
        b"Subject: =?iso-8859-1?q?Gr=FC=DFe?=\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nSch=F6ne Gr=FC=DFe\r\n"
    )
    view = mime.view(data, _url)
    assert ("Subject", "Grüße") in view.headers
    assert view.text is not None and "Schöne Grüße" in view.text


def test_attachments_keep_their_numbers_and_exact_bytes() -> None:
    made = mail.make(9)
    view = mime.view(made.attachment_msg, _url)
    (part,) = view.attachments
    assert part.filename == made.attachment_name
    found = mime.part_bytes(made.attachment_msg, part.number)
    assert found is not None and found[1] == made.attachment
    assert mime.part_bytes(made.attachment_msg, 999) is None


def test_cid_images_point_at_their_part_and_are_not_attachments() -> None:
    made = mail.make(9)
    view = mime.view(made.cid_msg, _url)
    n = mime.find_cid(made.cid_msg, "logo@example.org")
    assert n is not None
    assert view.html is not None and f'src="/img/{n}"' in view.html
    assert view.attachments == []


def test_the_sanitizer_keeps_nothing_that_runs_or_reaches_out() -> None:
    html, blocked = mime.sanitize(mail.hostile_html(4242), {}, _url)
    low = html.lower()
    for bad in (
        "<script",
        "onerror",
        "onload",
        "javascript:",
        "<iframe",
        "<meta",
        "<style",
        "<link",
        "<base",
        "<form",
        "<object",
        "<svg",
        "<video",
        "url(",
        "4242",
    ):
        assert bad not in low, bad
    assert blocked == 2  # the tracking pixel and the src="x" of the onerror image
    assert "end of the hostile message" in html  # the text stays


def test_safe_styles_and_data_images_stay() -> None:
    src = '<p style="color: red; position: fixed">t</p><img src="data:image/png;base64,AAAA">'
    html, blocked = mime.sanitize(src + '<img src="data:image/svg+xml,<svg/>">', {}, _url)
    assert 'style="color:red"' in html
    assert 'src="data:image/png;base64,AAAA"' in html
    assert "svg" not in html and blocked == 1


def test_attachment_names_cannot_break_the_header() -> None:
    header = content_disposition('evil"\r\nSet-Cookie: x=1; ü.pdf')
    assert "\r" not in header and "\n" not in header
    assert header.startswith('attachment; filename="evil_')
    assert "filename*=UTF-8''evil%22%0D%0ASet-Cookie" in header
