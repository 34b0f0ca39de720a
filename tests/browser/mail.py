"""The viewer tests' messages: plain ones to page through, one with an attachment and a
planted word, one HTML message with a ``cid:`` image, one hostile HTML message."""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from pathlib import Path

#: Plain messages (more than a page of the list).
PLAIN = 60
#: The word only the attachment message holds.
PLANTED = "quokkaparade"
#: Delivery time of the first message; each next one a day later.
START = 1_500_000_000


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A small solid-colour PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(row * height)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@dataclass
class ViewerMail:
    plain: list[bytes]
    attachment_msg: bytes
    attachment: bytes
    attachment_name: str
    cid_msg: bytes
    hostile: bytes

    def all(self) -> list[bytes]:
        return [*self.plain, self.attachment_msg, self.cid_msg, self.hostile]


def _message(n: int, subject: str, sender: str = "anna@example.org") -> EmailMessage:
    """A message delivered ``n`` days after :data:`START` (its Received header)."""
    m = EmailMessage()
    when = formatdate(START + n * 86400)
    m["Received"] = f"from mx.example.org by mail.example.net; {when}"
    m["From"] = f"Anna Example <{sender}>"
    m["To"] = "bob@example.net"
    m["Subject"] = subject
    m["Date"] = "Mon, 01 Jan 2018 12:00:00 +0000"
    m["Message-ID"] = f"<viewer{n}@example.org>"
    return m


def hostile_html(port: int) -> str:
    """Every trick names the listener on ``port``: any request it gets is a failure."""
    r = f"http://127.0.0.1:{port}"
    return f"""<html><head>
<meta http-equiv="refresh" content="0;url={r}/refresh">
<style>body {{ background: url({r}/css-style) }} @import url({r}/css-import);</style>
<link rel="stylesheet" href="{r}/css-link">
<script>document.title = "pwned"; fetch("{r}/script");</script>
<base href="{r}/base/">
</head><body>
<p id="hello">Hostile test message</p>
<img id="pixel" src="{r}/pixel.png" alt="tracking pixel" width="1" height="1">
<img src="x" onerror="document.title='pwned';new Image().src='{r}/onerror'">
<div style="background-image:url({r}/css-inline)">styled</div>
<a id="jslink" href="javascript:document.title='pwned';fetch('{r}/jslink')">click me</a>
<iframe src="{r}/iframe"></iframe>
<object data="{r}/object"></object>
<svg onload="document.title='pwned'"><image href="{r}/svg"/></svg>
<form action="{r}/form"><input name="a"><button id="formbtn">go</button></form>
<video src="{r}/video" poster="{r}/poster"></video>
<table background="{r}/table-bg"><tr><td>cell</td></tr></table>
<p>end of the hostile message</p>
</body></html>
"""


def make(port: int) -> ViewerMail:
    rnd = random.Random(13)
    plain = []
    for i in range(PLAIN):
        m = _message(i, f"weekly note {i:02d}")
        m.set_content(f"Hello Bob,\n\nthis is weekly note number {i}.\n\nAnna\n")
        plain.append(m.as_bytes(policy=SMTP))

    attachment = bytes(rnd.getrandbits(8) for _ in range(20_000)) + b"\r\n\x00\xff end"
    m = _message(PLAIN, "Quarterly figures")
    m.set_content(f"The figures are attached; the code word is {PLANTED}.\n")
    name = "figures 2024 (final).bin"
    m.add_attachment(attachment, maintype="application", subtype="octet-stream", filename=name)
    attachment_msg = m.as_bytes(policy=SMTP)

    m = _message(PLAIN + 1, "Our new logo")
    m.set_content("Our new logo (HTML mail).\n")
    m.add_alternative(
        '<p>Our new logo:</p><img id="logo" src="cid:logo@example.org" alt="logo">', subtype="html"
    )
    html_part = m.get_payload()[1]  # type: ignore[index]
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(
        png(24, 16, (200, 30, 30)), maintype="image", subtype="png", cid="<logo@example.org>"
    )
    cid_msg = m.as_bytes(policy=SMTP)

    m = _message(PLAIN + 2, "Hostile test message", sender="mallory@example.com")
    m.set_content(hostile_html(port), subtype="html")
    hostile = m.as_bytes(policy=SMTP)
    return ViewerMail(plain, attachment_msg, attachment, name, cid_msg, hostile)


def write_eml_folder(folder: Path, made: ViewerMail) -> Path:
    """The messages as .eml files."""
    folder.mkdir(parents=True)
    for i, data in enumerate(made.all()):
        (folder / f"{i:04d}.eml").write_bytes(data)
    return folder
