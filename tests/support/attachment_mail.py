"""Attachment-heavy test mail: the bytes real mailboxes are made of (issue 12, item 1).

Real mailboxes are mostly attachments: PDFs, photos and screenshots, office files, and
the same files forwarded again. Those formats are already compressed inside (Flate
streams in a PDF, JPEG entropy coding, the zip container of .docx/.xlsx), so their bytes
barely compress. :func:`attachment_heavy` gives such a mailbox, seeded and reproducible
like everything in :mod:`tests.support.generate`, whose people, threads and text it uses:

- about half of the messages carry no attachment (plain, HTML, or both, in UTF-8,
  ISO-8859-1/15, windows-1252, KOI8-R, windows-1251 or ISO-2022-JP, as 7bit, 8bit,
  quoted-printable or base64);
- the others carry one to four: mostly 50 KB-2 MB (log-uniform) PDFs, JPEGs, PNGs and
  office files, small inline images and logos, text/calendar/CSV files, and now and then
  a 5-25 MB one (a scan, a video clip, a slide deck);
- about one message in sixteen forwards an earlier attachment (same decoded bytes, base64
  wrapped at 76, 72 or 64 columns), and one in twenty-five forwards an earlier message
  whole as ``message/rfc822``.

The mean is near 280 KB a message (1,600 messages ≈ 450 MB, about the size of the mailbox
of issue 12); 86 % of the bytes are in messages over 512 KiB.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Iterator

from tests.support.generate import (
    _Attachment,
    _attachment_lines,
    _b64_lines,
    _encode,
    _Forge,
    _html_of,
    _multipart,
    _qp_lines,
)

__all__ = ["attachment_heavy"]

_KB = 1024
_MB = 1024 * 1024

#: (charset, sample words in it): bodies are written in one of these.
_SCRIPTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("utf-8", ("ça", "déjà", "Grüße", "naïve", "señor", "€", "✓", "Ωμέγα")),
    ("iso-8859-1", ("ça", "déjà", "Grüße", "naïve", "señor", "über")),
    ("iso-8859-15", ("ça", "déjà", "€", "œuvre", "Grüße")),
    ("windows-1252", ("déjà", "“quoted”", "€", "naïve", "–")),
    ("koi8-r", ("привет", "спасибо", "документ", "счёт", "отчёт")),
    ("windows-1251", ("привет", "спасибо", "документ", "договор")),
    ("iso-2022-jp", ("こんにちは", "資料", "よろしく", "お願いします", "会議")),
)


def _log_uniform(rng: random.Random, lo: int, hi: int) -> int:
    return int(math.exp(rng.random() * (math.log(hi) - math.log(lo)) + math.log(lo)))


def _attachment_size(rng: random.Random) -> int:
    """Decoded size: mostly 50 KB-2 MB, some small, a few of 5-25 MB."""
    r = rng.random()
    if r < 0.003:
        return _log_uniform(rng, 5 * _MB, 25 * _MB)
    if r < 0.60:
        return _log_uniform(rng, 4 * _KB, 50 * _KB)
    return _log_uniform(rng, 50 * _KB, 2 * _MB)


def _deflated(rng: random.Random, size: int) -> bytes:
    """Bytes like a deflate stream: incompressible."""
    return rng.randbytes(max(size, 0))


def _pdf(forge: _Forge, size: int) -> bytes:
    """A PDF as producers write them: Flate-compressed streams (incompressible) between
    a little plain object syntax (about 3 % of the bytes)."""
    rng = forge.rng
    out = [b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"]
    total = len(out[0])
    obj = 1
    while total < size:
        n = min(rng.randrange(8 * _KB, 96 * _KB), max(size - total, 64))
        head = (
            f"{obj} 0 obj\n<< /Length {n} /Filter /FlateDecode"
            f" /Type /{rng.choice(('XObject', 'Page', 'Font', 'Stream'))} >>\nstream\n"
        ).encode()
        chunk = head + _deflated(rng, n) + b"\nendstream\nendobj\n"
        out.append(chunk)
        total += len(chunk)
        obj += 1
    xref = "".join(f"{i * 40:010d} 00000 n \n" for i in range(min(obj, 400)))
    out.append(f"xref\n0 {obj}\n{xref}trailer\n<< /Size {obj} >>\n%%EOF\n".encode())
    return b"".join(out)


def _jpeg(rng: random.Random, size: int) -> bytes:
    exif = b"Exif\x00\x00MM\x00*" + b"\x00" * 64
    body = rng.randbytes(max(size - 100, 16))
    return b"\xff\xd8\xff\xe1" + len(exif).to_bytes(2, "big") + exif + body + b"\xff\xd9"


def _png(rng: random.Random, size: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.randbytes(max(size - 24, 16))


def _office(forge: _Forge, size: int) -> bytes:
    """A zip container (docx/xlsx/pptx): deflated members behind local headers, a
    central directory of names at the end."""
    rng = forge.rng
    names = ["[Content_Types].xml", "_rels/.rels", "docProps/core.xml", "docProps/app.xml"]
    names += [f"word/media/image{i}.png" for i in range(1, rng.randrange(2, 9))]
    out: list[bytes] = []
    per = max(size // len(names), 64)
    for name in names:
        out.append(b"PK\x03\x04\x14\x00\x06\x00\x08\x00" + name.encode() + _deflated(rng, per))
    out.append(b"".join(b"PK\x01\x02\x14\x00" + n.encode() for n in names) + b"PK\x05\x06")
    return b"".join(out)


def _text_file(forge: _Forge, size: int) -> bytes:
    lines: list[str] = []
    total = 0
    while total < size:
        line = ",".join(forge.words(6)) + f",{forge.rng.randrange(10**6)}"
        lines.append(line)
        total += len(line) + 2
    return ("\r\n".join(lines) + "\r\n").encode()


def _new_attachment(forge: _Forge) -> _Attachment:
    rng = forge.rng
    size = _attachment_size(rng)
    stem = "-".join(forge.words(2))
    r = rng.random()
    if r < 0.38:
        return _Attachment(f"{stem}.pdf", "application/pdf", _pdf(forge, size))
    if r < 0.66:
        return _Attachment(f"IMG_{rng.randrange(1000, 9999)}.jpg", "image/jpeg", _jpeg(rng, size))
    if r < 0.76:
        return _Attachment(f"screenshot-{stem}.png", "image/png", _png(rng, size))
    if r < 0.94:
        kind, mime = rng.choice(
            (
                ("docx", "vnd.openxmlformats-officedocument.wordprocessingml.document"),
                ("xlsx", "vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
                ("pptx", "vnd.openxmlformats-officedocument.presentationml.presentation"),
            )
        )
        return _Attachment(f"{stem}.{kind}", f"application/{mime}", _office(forge, size))
    small = min(size, 200 * _KB)
    if rng.random() < 0.5:
        return _Attachment(f"{stem}.csv", "text/csv", _text_file(forge, small))
    return _Attachment("invite.ics", "text/calendar", _text_file(forge, min(small, 8 * _KB)))


def _text_in(forge: _Forge, lines: list[str]) -> tuple[str, list[str]]:
    """A charset and the text with words of its script mixed in."""
    rng = forge.rng
    charset, words = rng.choice(_SCRIPTS)
    out = []
    for line in lines:
        if line and rng.random() < 0.3:
            line = f"{line} {rng.choice(words)}"
        out.append(line)
    return charset, out


def _part(forge: _Forge, lines: list[str], subtype: str) -> list[str]:
    """Headers and body of one text part in a charset and transfer encoding of its own."""
    rng = forge.rng
    charset, lines = _text_in(forge, lines)
    body = "\n".join(lines) + "\n"
    raw = body.encode(charset, "replace")
    if charset == "iso-2022-jp":  # 7-bit by construction
        cte = rng.choice(("7bit", "base64"))
    else:
        cte = rng.choice(("quoted-printable", "quoted-printable", "base64", "8bit"))
    head = [
        f'Content-Type: text/{subtype}; charset="{charset}"',
        f"Content-Transfer-Encoding: {cte}",
    ]
    if cte == "quoted-printable":
        out = _qp_lines(raw.decode(charset), charset)
    elif cte == "base64":
        out = _b64_lines(raw.replace(b"\n", b"\r\n"))
    else:
        out = raw.decode("latin-1").split("\n")
    if out and out[-1] == "":
        out.pop()
    return [*head, "", *out]


def _headers(forge: _Forge, subject: str) -> list[str]:
    rng = forge.rng
    owner = forge.owner
    assert owner is not None
    sender = rng.choice(forge.people[1:])
    date = forge.tick()
    return [
        f"Return-Path: <{sender.address}>",
        f"Delivered-To: {owner.address}",
        *forge.received_chain(date, owner.address),
        f"Date: {email.utils.format_datetime(date)}",
        f"From: {forge.mailbox(sender)}",
        f"To: {forge.mailbox(owner)}",
        *forge.subject_header(subject),
        f"Message-ID: {forge.message_id(sender.address.split('@', 1)[1])}",
        "MIME-Version: 1.0",
    ]


def _message(forge: _Forge, earlier: list[_Attachment], sent: list[bytes]) -> bytes:
    rng = forge.rng
    text = forge.paragraphs(rng.randrange(300, 6000))
    subject = " ".join(forge.words(rng.randrange(2, 8))).capitalize()
    boundary = "=_" + rng.randbytes(8).hex()
    alt = _multipart(
        "alternative",
        boundary + "alt",
        [_part(forge, text, "plain"), _part(forge, _html_of(text), "html")],
    )
    body = rng.choice((alt, alt, _part(forge, text, "plain"), _part(forge, _html_of(text), "html")))
    r = rng.random()
    if r < 0.04 and sent:
        original = rng.choice(sent[-200:])
        parts = [body, ["Content-Type: message/rfc822", "Content-Disposition: inline", ""]]
        head = _headers(forge, "Fwd: " + subject)
        lines = _multipart("mixed", boundary + "fwd", parts)
        raw = _encode([*head, *lines])
        # the forwarded message goes in as it was received, bytes and all
        cut = raw.rindex(b"\r\n--" + (boundary + "fwd").encode() + b"--")
        return raw[:cut] + b"\r\n" + original + raw[cut:]
    attachments: list[tuple[_Attachment, int]] = []
    if r < 0.10 and earlier:
        subject = "Fwd: " + subject
        for att in rng.sample(earlier[-300:], min(len(earlier[-300:]), rng.choice((1, 1, 2)))):
            attachments.append((att, rng.choice((76, 76, 72, 64))))
    elif r < 0.45:
        for _ in range(rng.choice((1, 1, 1, 1, 2, 2, 3, 4))):
            att = _new_attachment(forge)
            earlier.append(att)
            attachments.append((att, 76))
    head = _headers(forge, subject)
    if not attachments:
        return _encode([*head, *body])
    parts = [body, *(_attachment_lines(a, w) for a, w in attachments)]
    return _encode([*head, *_multipart("mixed", boundary + "mix", parts)])


def attachment_heavy(n: int, seed: int) -> Iterator[bytes]:
    """``n`` attachment-heavy messages (CRLF), the same for the same ``seed``."""
    forge = _Forge.create(seed)
    earlier: list[_Attachment] = []
    sent: list[bytes] = []
    for _ in range(n):
        message = _message(forge, earlier, sent)
        if len(message) < 2 * _MB:
            sent.append(message)
            del sent[:-200]
        del earlier[:-300]
        yield message
