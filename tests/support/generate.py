"""Deterministic test mail: realistic mailboxes, redundant ones, adversarial cases, giants.

Everything here is seeded and reproducible: the same call gives the same bytes on every
machine and Python 3.11+ (only `random.Random` methods whose output is stable across
versions are used: ``random``, ``randrange``, ``choice``, ``choices``, ``randbytes``,
``shuffle``). Messages are bytes with CRLF line endings, as a POP3 server delivers them
after dot-unstuffing, except where an adversarial case says otherwise.

- `realistic` gives mail shaped like a real mailbox: plain text, multipart/alternative,
  multipart/mixed with base64 attachments (incompressible JPEG-like and compressible
  PDF-like), quoted-printable, RFC 2047 headers (UTF-8 and ISO-8859-1, B and Q), Received
  chains, threads that quote earlier text, mailing-list footers. Words come from a
  vocabulary built here from syllables, not from any corpus. Sizes are long-tailed.
- `redundant` adds the redundancy a vault must deduplicate: exact duplicates, one message
  received by two routes, one attachment forwarded in many messages.
- `adversarial` names the cases that break naive clients and stores.
- `big_message` streams a message of an exact size in bounded memory.
"""

from __future__ import annotations

import base64
import datetime
import email.base64mime
import email.quoprimime
import email.utils
import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ADVERSARIAL_NAMES",
    "adversarial",
    "big_message",
    "realistic",
    "redundant",
    "vocabulary",
]

CRLF = "\r\n"
_KB = 1024
_MB = 1024 * 1024

# ------------------------------------------------------------------------ vocabulary

_ONSETS = (
    "b c d f g h j k l m n p r s t v w z bl br ch cl cr dr fl fr gl gr kl pl pr "
    "sh sk sl sm sn sp st str th tr tw"
).split()
_VOWELS = "a e i o u a e i o ea ai ou io ie".split()
_CODAS = ("", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "rt", "ng", "ck", "x")
_ACCENTED = {"a": "á", "e": "é", "i": "í", "o": "ö", "u": "ü", "n": "ñ"}
_FUNCTION_WORDS = (
    "the of and to a in is it that for on was with as be at by this have from or "
    "are not but had they you we his her which one all were there their can will "
    "if more when no out so up what about who into than them some could time only "
    "new would other my may these also any our after first well just should"
).split()


def vocabulary(size: int = 4000) -> list[str]:
    """A fixed list of ``size`` made-up words, most frequent first (the same every call).

    Function words of English lead the list so text has a realistic skeleton; the rest
    are built from syllables with a fixed seed.
    """
    rng = random.Random(0x564F4341)  # "VOCA"
    words = list(_FUNCTION_WORDS)
    seen = set(words)
    while len(words) < size:
        n = rng.choice((1, 2, 2, 2, 3, 3, 4))
        word = "".join(
            rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(n)
        )
        if 2 <= len(word) <= 14 and word not in seen:
            seen.add(word)
            words.append(word)
    return words


_VOCAB = vocabulary()
# Zipf-like frequencies: weight 1/rank, as cumulative weights for random.choices.
_CUM_WEIGHTS: list[float] = list(itertools.accumulate(1.0 / (r + 1) for r in range(len(_VOCAB))))

# A fixed epoch so dates never depend on the clock.
_EPOCH = datetime.datetime(2019, 3, 4, 8, 15, 0, tzinfo=datetime.UTC)
_TIMEZONES = [datetime.timezone(datetime.timedelta(hours=h)) for h in (-8, -5, 0, 1, 2, 5.5, 9)]


# ------------------------------------------------------------------------ helpers


def _b64_lines(data: bytes, width: int = 76) -> list[str]:
    text = base64.b64encode(data).decode("ascii")
    return [text[i : i + width] for i in range(0, len(text), width)] or [""]


def _qp_lines(text: str, charset: str) -> list[str]:
    raw = text.encode(charset).decode("latin-1")
    return email.quoprimime.body_encode(raw, maxlinelen=76, eol="\n").split("\n")


def _encoded_word(text: str, charset: str, mode: str) -> str:
    data = text.encode(charset)
    if mode == "B":
        return email.base64mime.header_encode(data, charset)
    return email.quoprimime.header_encode(data, charset)


def _fold(name: str, items: Sequence[str], width: int = 78) -> list[str]:
    """A header of space-separated ``items`` folded at whitespace (RFC 5322 2.2.3)."""
    lines: list[str] = []
    current = f"{name}:"
    for item in items:
        if len(current) + 1 + len(item) > width and current != f"{name}:":
            lines.append(current)
            current = "\t" + item
        else:
            current += " " + item
    lines.append(current)
    return lines


def _wrap(words: Sequence[str], width: int = 72) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines


@dataclass
class _Person:
    display: str
    address: str
    charset: str  # "ascii", "utf-8" or "iso-8859-1": how the display name is written


@dataclass
class _Sent:
    """What a later reply in the same thread needs of a message."""

    message_id: str
    references: list[str]
    subject: str
    sender: _Person
    date: datetime.datetime
    text: list[str]


@dataclass
class _MailingList:
    name: str
    address: str
    footer: list[str]


@dataclass
class _Forge:
    """The state of one generated mailbox: people, lists, threads, the clock."""

    rng: random.Random
    people: list[_Person] = field(default_factory=list)
    lists: list[_MailingList] = field(default_factory=list)
    recent: list[_Sent] = field(default_factory=list)
    clock: datetime.datetime = _EPOCH
    counter: int = 0
    owner: _Person | None = None

    @classmethod
    def create(cls, seed: int) -> _Forge:
        forge = cls(random.Random(seed))
        rng = forge.rng
        domains = [
            forge.word() + rng.choice((".org", ".com", ".net", ".de", ".fr")) for _ in range(12)
        ]
        for i in range(60):
            first, last = forge.word().title(), forge.word().title()
            charset = "ascii"
            if i % 5 == 0:
                first = _accent(first, rng)
                charset = "utf-8" if i % 10 == 0 else "iso-8859-1"
            if i % 17 == 0:
                last += " 山田" if rng.random() < 0.5 else " Ωμέγα"
                charset = "utf-8"
            address = f"{first.lower()[:1]}{forge.word()}@{rng.choice(domains)}"
            address = address.encode("ascii", "ignore").decode()
            forge.people.append(_Person(f"{first} {last}", address, charset))
        forge.owner = forge.people[0]
        for _ in range(4):
            name = forge.word() + "-" + rng.choice(("users", "devel", "announce", "talk"))
            domain = rng.choice(domains)
            footer = [
                "_______________________________________________",
                f"{name} mailing list",
                f"{name}@lists.{domain}",
                f"https://lists.{domain}/mailman/listinfo/{name}",
                "To unsubscribe send an email to " + f"{name}-leave@lists.{domain}",
            ]
            forge.lists.append(_MailingList(name, f"{name}@lists.{domain}", footer))
        return forge

    # -- words and text

    def word(self) -> str:
        return self.rng.choices(_VOCAB[40:], k=1)[0]

    def words(self, n: int) -> list[str]:
        return self.rng.choices(_VOCAB, cum_weights=_CUM_WEIGHTS, k=n)

    def sentence(self) -> str:
        ws = self.words(self.rng.randrange(4, 18))
        if self.rng.random() < 0.08:
            i = self.rng.randrange(len(ws))
            ws[i] = _accent(ws[i], self.rng)
        return " ".join(ws).capitalize() + self.rng.choice((".", ".", ".", "?", "!", ":"))

    def paragraphs(self, target_chars: int) -> list[str]:
        """Wrapped text lines (no line endings) of about ``target_chars`` characters."""
        lines: list[str] = []
        total = 0
        while total < target_chars:
            para: list[str] = []
            for _ in range(self.rng.randrange(1, 7)):
                para.extend(self.sentence().split(" "))
            wrapped = _wrap(para, self.rng.choice((66, 72, 76)))
            lines.extend(wrapped)
            lines.append("")
            total += sum(len(w) + 2 for w in wrapped) + 2
        return lines[:-1]

    # -- headers

    def tick(self) -> datetime.datetime:
        self.clock += datetime.timedelta(seconds=self.rng.randrange(30, 6 * 3600))
        return self.clock.astimezone(self.rng.choice(_TIMEZONES))

    def message_id(self, domain: str) -> str:
        self.counter += 1
        token = self.rng.randbytes(9).hex()
        return f"<{token}.{self.counter}@{domain}>"

    def mailbox(self, person: _Person) -> str:
        if person.charset == "ascii":
            return f'"{person.display}" <{person.address}>'
        mode = "B" if person.charset == "utf-8" else "Q"
        try:
            encoded = _encoded_word(person.display, person.charset, mode)
        except UnicodeEncodeError:
            encoded = _encoded_word(person.display, "utf-8", "B")
        return f"{encoded} <{person.address}>"

    def subject_header(self, subject: str) -> list[str]:
        if subject.isascii():
            return [f"Subject: {subject}"]
        charset, mode = self.rng.choice((("utf-8", "B"), ("utf-8", "Q"), ("iso-8859-1", "Q")))
        try:
            words = [_encoded_word(subject, charset, mode)]
        except UnicodeEncodeError:
            words = [_encoded_word(subject, "utf-8", "B")]
        return _fold("Subject", words)

    def received_chain(self, date: datetime.datetime, recipient: str) -> list[str]:
        lines: list[str] = []
        hop_time = date
        my_domain = recipient.split("@", 1)[1]
        for hop in range(self.rng.randrange(2, 6)):
            hop_time = hop_time + datetime.timedelta(seconds=self.rng.randrange(1, 90))
            host = f"{self.rng.choice(('mx', 'smtp', 'relay', 'mail'))}{hop}.{self.word()}.net"
            # Documentation address ranges (RFC 5737): header text only, never contacted.
            net = self.rng.choice(("192.0.2", "198.51.100", "203.0.113"))
            ip = f"{net}.{self.rng.randrange(1, 255)}"
            queue = self.rng.randbytes(6).hex().upper()
            lines = [
                f"Received: from {host} ({host} [{ip}])",
                f"\tby mail.{my_domain} (Postfix) with ESMTPS id {queue}",
                f"\tfor <{recipient}>; {email.utils.format_datetime(hop_time)}",
                *lines,
            ]
        return lines


def _accent(word: str, rng: random.Random) -> str:
    chars = list(word)
    spots = [i for i, c in enumerate(chars) if c in _ACCENTED]
    if spots:
        i = rng.choice(spots)
        chars[i] = _ACCENTED[chars[i]]
    return "".join(chars)


# ------------------------------------------------------------------------ bodies


def _jpeg_like(rng: random.Random, size: int) -> bytes:
    """Incompressible bytes with a JPEG's magic numbers at both ends."""
    size = max(size, 8)
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + rng.randbytes(size - 13) + b"\xff\xd9"


def _pdf_like(forge: _Forge, size: int) -> bytes:
    """Compressible bytes shaped like an uncompressed PDF: text objects, repeated layout."""
    parts = [b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"]
    total = len(parts[0])
    obj = 1
    while total < size:
        text = " ".join(forge.words(forge.rng.randrange(20, 60)))
        stream = f"BT /F1 11 Tf 72 {700 - obj % 50 * 12} Td ({text}) Tj ET\n"
        chunk = (
            f"{obj} 0 obj\n<< /Length {len(stream)} >>\nstream\n{stream}endstream\nendobj\n"
        ).encode()
        parts.append(chunk)
        total += len(chunk)
        obj += 1
    parts.append(b"trailer\n<< /Root 1 0 R >>\n%%EOF\n")
    return b"".join(parts)


def _text_part_lines(forge: _Forge, text: list[str], *, subtype: str = "plain") -> list[str]:
    """Headers and body of one text part, choosing charset and transfer encoding."""
    body = "\n".join(text) + "\n"
    rng = forge.rng
    if body.isascii():
        cte = rng.choice(("7bit", "7bit", "7bit", "quoted-printable"))
        charset = rng.choice(("us-ascii", "utf-8"))
    else:
        charset = "utf-8"
        try:
            body.encode("iso-8859-1")
            if rng.random() < 0.4:
                charset = "iso-8859-1"
        except UnicodeEncodeError:
            pass
        cte = rng.choice(("quoted-printable", "quoted-printable", "base64", "8bit"))
    head = [f'Content-Type: text/{subtype}; charset="{charset}"']
    if subtype == "plain" and rng.random() < 0.3:
        head[0] += "; format=flowed"
    head.append(f"Content-Transfer-Encoding: {cte}")
    if cte == "quoted-printable":
        lines = _qp_lines(body, charset)
    elif cte == "base64":
        lines = _b64_lines(body.encode(charset))
    elif cte == "8bit":
        # 8-bit text stays text; callers encode the finished message as UTF-8/latin-1 below.
        lines = body.encode(charset).decode("latin-1").split("\n")
    else:
        lines = body.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [*head, "", *lines]


def _html_of(text: list[str]) -> list[str]:
    out = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8"></head>', "<body>"]
    para: list[str] = []
    for line in [*text, ""]:
        if line:
            escaped = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            para.append(escaped)
        elif para:
            out.append('<p style="margin:0 0 1em 0;font-family:Arial,sans-serif">')
            out.extend(para)
            out.append("</p>")
            para = []
    out.extend(["</body>", "</html>"])
    return out


@dataclass(frozen=True)
class _Attachment:
    filename: str
    content_type: str
    data: bytes


def _attachment_lines(att: _Attachment, width: int = 76) -> list[str]:
    return [
        f'Content-Type: {att.content_type}; name="{att.filename}"',
        f'Content-Disposition: attachment; filename="{att.filename}"',
        "Content-Transfer-Encoding: base64",
        "",
        *_b64_lines(att.data, width),
    ]


def _multipart(subtype: str, boundary: str, parts: Sequence[list[str]]) -> list[str]:
    lines = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"', ""]
    if subtype == "mixed":
        lines += ["This is a multi-part message in MIME format.", ""]
    for part in parts:
        lines.append(f"--{boundary}")
        lines.extend(part)
    lines.append(f"--{boundary}--")
    return lines


def _encode(lines: Sequence[str]) -> bytes:
    # Every line is ASCII (encoded headers, QP, base64) or an 8-bit body already mapped
    # byte for byte through latin-1, so latin-1 gives back exactly the intended octets.
    return (CRLF.join(lines) + CRLF).encode("latin-1")


# ------------------------------------------------------------------------ realistic


def _target_size(rng: random.Random, avg_size: int) -> int:
    """Long-tailed: mostly 2-20 KB, some 20-100 KB, a few 100 KB-5 MB (log-uniform)."""
    small = (20 * _KB - 2 * _KB) / math.log(10)
    medium = (100 * _KB - 20 * _KB) / math.log(5)
    large = (5 * _MB - 100 * _KB) / math.log(50)
    p_medium = 0.15
    p_large = (avg_size - p_medium * medium - (1 - p_medium) * small) / (large - small)
    p_large = min(max(p_large, 0.0), 0.5)
    r = rng.random()
    if r < p_large:
        lo, hi = 100 * _KB, 5 * _MB
    elif r < p_large + p_medium:
        lo, hi = 20 * _KB, 100 * _KB
    else:
        lo, hi = 2 * _KB, 20 * _KB
    return int(math.exp(rng.random() * (math.log(hi) - math.log(lo)) + math.log(lo)))


def _compose(forge: _Forge, target: int) -> bytes:
    rng = forge.rng
    owner = forge.owner
    assert owner is not None
    date = forge.tick()
    ml = rng.choice(forge.lists) if rng.random() < 0.25 else None
    parent = rng.choice(forge.recent[-30:]) if forge.recent and rng.random() < 0.35 else None
    if parent is not None:
        sender = rng.choice([p for p in forge.people[:20] if p is not parent.sender])
        base = parent.subject
        subject = base if base.lower().startswith("re:") else f"Re: {base}"
        references = [*parent.references[-12:], parent.message_id]
    else:
        sender = rng.choice(forge.people[1:])
        subject = " ".join(forge.words(rng.randrange(2, 9))).capitalize()
        if rng.random() < 0.15:
            subject = _accent(subject, rng) + rng.choice(("", " ✓", " €"))
        references = []
    domain = sender.address.split("@", 1)[1]
    mid = forge.message_id(domain)

    # Text: a fresh part, then (for replies) the quoted earlier text (real redundancy).
    approx_text = min(target, 12 * _KB) if target > 30 * _KB else target
    fresh = forge.paragraphs(max(int(approx_text * rng.uniform(0.3, 0.8)) - 900, 60))
    text = list(fresh)
    if parent is not None:
        text += [
            "",
            f"On {email.utils.format_datetime(parent.date)}, {parent.sender.display} wrote:",
        ]
        text += [f"> {line}" if line else ">" for line in parent.text[:400]]
    text += ["", "-- ", sender.display, forge.sentence()]
    if ml is not None:
        text += ["", *ml.footer]

    headers: list[str] = []
    headers += [f"Return-Path: <{sender.address}>", f"Delivered-To: {owner.address}"]
    headers += forge.received_chain(date, owner.address)
    headers.append(f"Date: {email.utils.format_datetime(date)}")
    headers.append(f"From: {forge.mailbox(sender)}")
    to = forge.mailbox(owner) if ml is None else f"<{ml.address}>"
    headers.append(f"To: {to}")
    if rng.random() < 0.2:
        headers += _fold("Cc", [forge.mailbox(p) + "," for p in rng.sample(forge.people, 3)])
        headers[-1] = headers[-1].rstrip(",")
    headers += forge.subject_header(subject)
    headers.append(f"Message-ID: {mid}")
    if parent is not None:
        headers.append(f"In-Reply-To: {parent.message_id}")
        headers += _fold("References", references)
    if ml is not None:
        headers += [
            f"List-Id: {ml.name.title()} <{ml.address.replace('@', '.')}>",
            f"List-Unsubscribe: <mailto:{ml.address.replace('@', '-leave@')}>",
            f"List-Post: <mailto:{ml.address}>",
            "Precedence: list",
        ]
    headers.append(
        "User-Agent: "
        + rng.choice(("Mutt/2.2.9", "Thunderbird/115.4", "Roundcube Webmail/1.6", "K-9 Mail"))
    )
    headers.append("MIME-Version: 1.0")

    # Body structure.
    size_so_far = sum(len(h) + 2 for h in headers) + sum(len(t) + 2 for t in text)
    attachments: list[_Attachment] = []
    remaining = target - size_so_far
    while remaining > 3 * _KB and (target > 30 * _KB or rng.random() < 0.2):
        share = rng.uniform(0.5, 1.0) if attachments else 0.95
        raw = int(remaining * 0.75 * share)
        if rng.random() < 0.5:
            att = _Attachment(
                f"IMG_{rng.randrange(1000, 9999)}.jpg", "image/jpeg", _jpeg_like(rng, raw)
            )
        else:
            name = "-".join(forge.words(2)) + ".pdf"
            att = _Attachment(name, "application/pdf", _pdf_like(forge, raw))
        attachments.append(att)
        remaining -= len(att.data) * 4 // 3 + 300
        if len(attachments) >= 4:
            break

    boundary_base = "=_" + rng.randbytes(8).hex()
    if not attachments and rng.random() < 0.5:
        body = _text_part_lines(forge, text)
        body_lines = body  # headers of the single part become message headers
    else:
        if rng.random() < 0.55:
            inner = _multipart(
                "alternative",
                boundary_base + "alt",
                [
                    _text_part_lines(forge, text),
                    _text_part_lines(forge, _html_of(text), subtype="html"),
                ],
            )
        else:
            inner = _text_part_lines(forge, text)
        if attachments:
            body_lines = _multipart(
                "mixed",
                boundary_base + "mix",
                [inner, *(_attachment_lines(a) for a in attachments)],
            )
        else:
            body_lines = inner
    forge.recent.append(_Sent(mid, references, subject, sender, date, fresh))
    if len(forge.recent) > 200:
        del forge.recent[:100]
    return _encode([*headers, *body_lines])


def realistic(n: int, seed: int, *, avg_size: int = 50 * _KB) -> Iterator[bytes]:
    """``n`` varied, realistic messages (CRLF), the same for the same ``seed``.

    Sizes are long-tailed: most 2-20 KB, some 20-100 KB and a few 100 KB-5 MB, the share
    of large ones chosen so the mean is near ``avg_size`` (default 50 KiB).
    """
    forge = _Forge.create(seed)
    sizes = random.Random(seed ^ 0x5A5A5A5A)
    for _ in range(n):
        yield _compose(forge, _target_size(sizes, avg_size))


# ------------------------------------------------------------------------ redundant


_ROUTE_HEADERS = ("received:", "return-path:", "delivered-to:", "x-", "authentication-results:")


def _split_headers(message: bytes) -> tuple[list[bytes], bytes]:
    head, sep, body = message.partition(b"\r\n\r\n")
    lines: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and lines:
            lines[-1] += b"\r\n" + line
        else:
            lines.append(line)
    return lines, sep + body


def _reroute(forge: _Forge, message: bytes) -> bytes:
    """The same message as received by a second route: new trace headers, same body."""
    headers, body = _split_headers(message)
    kept = [
        h for h in headers if not h.lower().startswith(tuple(x.encode() for x in _ROUTE_HEADERS))
    ]
    second = forge.people[forge.rng.randrange(1, 10)]
    trace = forge.received_chain(forge.tick(), second.address)
    extra = [
        f"Delivered-To: {second.address}",
        f"X-Original-To: {second.address}",
        "Authentication-Results: mail.example.net; dkim=pass header.d=example.net",
    ]
    new = [line.encode("utf-8") for line in [*extra, *trace]]
    return b"\r\n".join(new + kept) + body


def _forward(forge: _Forge, shared: Sequence[_Attachment]) -> bytes:
    """A new message carrying one or two of the ``shared`` attachments, base64 re-wrapped."""
    rng = forge.rng
    owner = forge.owner
    assert owner is not None
    sender = rng.choice(forge.people[1:])
    date = forge.tick()
    picks = rng.sample(list(shared), rng.choice((1, 1, 2)))
    text = ["Forwarding this, see attached.", "", *forge.paragraphs(rng.randrange(100, 1500))]
    width = rng.choice((76, 76, 76, 72, 64, 60))
    boundary = "=_fwd" + rng.randbytes(8).hex()
    headers = [
        *forge.received_chain(date, owner.address),
        f"Date: {email.utils.format_datetime(date)}",
        f"From: {forge.mailbox(sender)}",
        f"To: {forge.mailbox(owner)}",
        *forge.subject_header("Fwd: " + " ".join(forge.words(4))),
        f"Message-ID: {forge.message_id(sender.address.split('@')[1])}",
        "MIME-Version: 1.0",
    ]
    parts = [_text_part_lines(forge, text), *(_attachment_lines(a, width) for a in picks)]
    return _encode([*headers, *_multipart("mixed", boundary, parts)])


def redundant(n: int, seed: int) -> Iterator[bytes]:
    """``n`` messages with heavy redundancy, the same for the same ``seed``.

    Mixed in about equal measure: fresh realistic messages; exact duplicates of earlier
    ones; an earlier message as received by a second route (other Received/Delivered-To
    headers, same body); new messages forwarding one of a few shared attachments (same
    decoded bytes, base64 wrapped at 76, 72, 64 or 60 characters).
    """
    forge = _Forge.create(seed)
    rng = forge.rng
    shared = [
        _Attachment("report-q3.pdf", "application/pdf", _pdf_like(forge, 300 * _KB)),
        _Attachment("photo.jpg", "image/jpeg", _jpeg_like(rng, 180 * _KB)),
        _Attachment("slides.pdf", "application/pdf", _pdf_like(forge, 60 * _KB)),
        _Attachment("scan.jpg", "image/jpeg", _jpeg_like(rng, 1200 * _KB)),
        _Attachment("logo.jpg", "image/jpeg", _jpeg_like(rng, 12 * _KB)),
    ]
    sizes = random.Random(seed ^ 0x5A5A5A5A)
    earlier: list[bytes] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.25 or not earlier:
            message = _compose(forge, min(_target_size(sizes, 20 * _KB), 400 * _KB))
        elif r < 0.5:
            message = rng.choice(earlier)
        elif r < 0.7:
            message = _reroute(forge, rng.choice(earlier))
        else:
            message = _forward(forge, shared)
        earlier.append(message)
        yield message


# ------------------------------------------------------------------------ adversarial

ADVERSARIAL_NAMES = (
    "long-line-over-2048",
    "long-line-over-1mb",
    "from-line",
    "quoted-from-line",
    "dot-lines",
    "lone-dot-line",
    "lone-dot-last-line",
    "bare-lf",
    "lone-cr",
    "nul-byte",
    "8bit-garbage",
    "no-message-id",
    "duplicate-message-id-a",
    "duplicate-message-id-b",
    "headers-only",
    "no-final-newline",
    "empty",
    "not-rfc5322",
    "huge-header",
    "mixed-line-endings",
)


def _simple(subject: str, body: bytes, *, mid: str | None = None, eol: bytes = b"\r\n") -> bytes:
    headers = [
        b"From: Adversary <adversary@example.org>",
        b"To: victim@example.net",
        b"Date: Mon, 04 Mar 2019 08:15:00 +0000",
        b"Subject: " + subject.encode(),
    ]
    if mid is not None:
        headers.append(f"Message-ID: {mid}".encode())
    return eol.join(headers) + eol + eol + body


def adversarial() -> list[tuple[str, bytes]]:
    """Named messages that break naive clients and stores, in `ADVERSARIAL_NAMES` order.

    Each is bytes as a server would send them after dot-unstuffing (so a "." line here
    goes over the wire as ".."); all but ``bare-lf``/``mixed-line-endings`` use CRLF.
    """
    rng = random.Random(0xAD)
    garbage = bytes(b for b in rng.randbytes(4096) if b not in (0x0A, 0x0D))
    many_ids = [f"<{rng.randbytes(12).hex()}@thread.example.org>" for _ in range(4000)]
    cases: dict[str, bytes] = {
        "long-line-over-2048": _simple(
            "long line", b"start\r\n" + b"x" * 5000 + b"\r\nend\r\n", mid="<long1@example.org>"
        ),
        "long-line-over-1mb": _simple(
            "very long line",
            b"start\r\n" + (b"0123456789abcdef" * 65600) + b"\r\nend\r\n",
            mid="<long2@example.org>",
        ),
        "from-line": _simple(
            "from lines",
            b"From the start\r\nFrom here on\r\nnot From here\r\n",
            mid="<from1@example.org>",
        ),
        "quoted-from-line": _simple(
            "quoted from lines",
            b">From the start\r\n>>From quoted twice\r\n>>>From thrice\r\n",
            mid="<from2@example.org>",
        ),
        "dot-lines": _simple(
            "dot lines",
            b".hidden\r\n..two dots\r\n. space\r\n...\r\nend\r\n",
            mid="<dot1@example.org>",
        ),
        "lone-dot-line": _simple(
            "lone dot", b"before\r\n.\r\nafter the lone dot\r\n", mid="<dot2@example.org>"
        ),
        "lone-dot-last-line": _simple(
            "lone dot last", b"before\r\n.\r\n", mid="<dot3@example.org>"
        ),
        "bare-lf": _simple(
            "bare LF", b"line one\nline two\n\nline four\n", mid="<lf1@example.org>", eol=b"\n"
        ),
        "lone-cr": _simple(
            "lone CR",
            b"carriage\rreturn alone\r\nend with CR\r\r\nCR CR\r\r\r\n",
            mid="<cr1@example.org>",
        ),
        "nul-byte": _simple(
            "NUL", b"before\x00after\r\n\x00\x00\r\nend\r\n", mid="<nul1@example.org>"
        ),
        "8bit-garbage": (
            b"From: \xc3\x28 \xff\xfe <odd@example.org>\r\nSubject: caf\xe9 \xe2\x82\r\n"
            b"Message-ID: <garbage1@example.org>\r\n\r\n" + garbage + b"\r\n"
        ),
        "no-message-id": _simple("no message id", b"nothing to identify me\r\n"),
        "duplicate-message-id-a": _simple(
            "same id, first", b"first content\r\n", mid="<dup@example.org>"
        ),
        "duplicate-message-id-b": _simple(
            "same id, second", b"second, different content\r\n", mid="<dup@example.org>"
        ),
        "headers-only": (
            b"From: a@example.org\r\nSubject: headers only\r\nMessage-ID: <ho@example.org>\r\n"
        ),
        "no-final-newline": _simple(
            "no final newline", b"last line without end", mid="<nfn@example.org>"
        ),
        "empty": b"",
        "not-rfc5322": (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
            + rng.randbytes(300).replace(b"\n", b" ")
            + b"\r\nthis is not a mail message at all\r\n"
        ),
        "huge-header": b"\r\n".join(
            line.encode()
            for line in [
                "From: a@example.org",
                "Subject: huge header",
                "Message-ID: <huge@example.org>",
                *_fold("References", many_ids),
                "X-Unfolded: " + "y" * 100_000,
                "",
                "small body",
                "",
            ]
        ),
        "mixed-line-endings": _simple(
            "mixed", b"crlf\r\nlf\nlf again\ncrlf\r\n\nend\n", mid="<mixed@example.org>"
        ),
    }
    assert tuple(cases) == ADVERSARIAL_NAMES
    return list(cases.items())


# ------------------------------------------------------------------------ big


def big_message(size_bytes: int, *, seed: int = 0, chunk_size: int = _MB) -> Iterator[bytes]:
    """Yield one message of exactly ``size_bytes`` octets in chunks of about ``chunk_size``.

    A small text part and one base64 attachment of incompressible deterministic bytes
    (76-character lines, CRLF); memory stays around ``chunk_size`` whatever the size.
    Needs ``size_bytes >= 2048``.
    """
    if size_bytes < 2048:
        raise ValueError("big_message needs at least 2048 bytes")
    rng = random.Random(seed)
    boundary = "=_big" + rng.randbytes(8).hex()
    head = (
        CRLF.join(
            [
                "From: Big Sender <big@example.org>",
                "To: receiver@example.net",
                "Date: Mon, 04 Mar 2019 08:15:00 +0000",
                f"Subject: a message of {size_bytes} bytes",
                f"Message-ID: <big.{size_bytes}.{seed}@example.org>",
                "MIME-Version: 1.0",
                f'Content-Type: multipart/mixed; boundary="{boundary}"',
                "",
                f"--{boundary}",
                'Content-Type: text/plain; charset="us-ascii"',
                "",
                "The attachment is large.",
                f"--{boundary}",
                'Content-Type: application/octet-stream; name="big.bin"',
                "Content-Transfer-Encoding: base64",
                "",
                "",
            ]
        )
    ).encode()
    tail = f"--{boundary}--".encode()
    yield head
    remaining = size_bytes - len(head) - len(tail) - 2  # the closing CRLF
    lines_per_chunk = max(chunk_size // 78, 1)
    while remaining >= 78 * 2:
        k = min(lines_per_chunk, remaining // 78 - 1)
        raw = rng.randbytes(57 * k)
        encoded = base64.b64encode(raw)
        yield b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))
        remaining -= 78 * k
    # 78 <= remaining < 156: one last base64 line (length a multiple of 4), and the rest
    # as transport padding after the closing delimiter (RFC 2046 5.1.1 allows it).
    last = (remaining - 2) // 4 * 4
    pad = remaining - 2 - last
    yield base64.b64encode(rng.randbytes(last // 4 * 3)) + b"\r\n" + tail + b" " * pad + b"\r\n"
