"""A message as the viewer shows it: decoded headers, its text, its HTML made safe, and
its parts to download, from the message's exact bytes (``popvault serve``).

Parts are numbered in ``email``'s walk order (the message itself is part 0), so a part's
number in a URL names the same bytes every time. HTML is sanitized with nh3 (the Rust
``ammonia`` sanitizer): an allow-list of tags and attributes, no scripts, no event
handlers, no forms, frames, ``<meta>``, ``<base>`` or ``<style>`` elements, ``style``
attributes reduced to harmless properties (none that can name a URL), links only to
``http``, ``https`` and ``mailto``, and images only from the message itself (``cid:``,
rewritten to a URL of the part) or ``data:`` raster images; a remote image is dropped and
counted. The Content-Security-Policy the server sends with it is the second wall.
Broken MIME never raises: what cannot be read is left out and noted in ``problems``.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message

import nh3

from popvault.app.searchtext import decode_text

#: Parts looked at per message (a message of thousands of parts is a bomb, not mail).
MAX_PARTS = 500
#: Image types served inline to the HTML view (never SVG, which can carry script).
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
#: The headers shown above a message, in this order.
SHOWN_HEADERS = ("From", "To", "Cc", "Date", "Subject", "Reply-To", "Message-ID")

_TAGS = set(nh3.ALLOWED_TAGS) | {"font"}
_ATTRIBUTES: dict[str, set[str]] = {k: set(v) for k, v in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES.setdefault("font", set()).update({"color", "face", "size"})
for _tag in ("table", "td", "th", "tr", "tbody", "thead"):
    _ATTRIBUTES.setdefault(_tag, set()).update(
        {"align", "valign", "width", "height", "bgcolor", "border", "cellpadding", "cellspacing"}
    )
_ATTRIBUTES["*"] = {"style", "dir", "lang", "title"}
#: CSS properties kept in ``style`` attributes: none of them takes a URL.
_STYLE_PROPERTIES = frozenset(
    {
        "color", "background-color", "font", "font-family", "font-size", "font-style",
        "font-weight", "text-align", "text-decoration", "text-indent", "text-transform",
        "line-height", "letter-spacing", "white-space", "vertical-align", "margin",
        "margin-top", "margin-right", "margin-bottom", "margin-left", "padding",
        "padding-top", "padding-right", "padding-bottom", "padding-left", "border",
        "border-top", "border-right", "border-bottom", "border-left", "border-color",
        "border-style", "border-width", "border-collapse", "border-spacing", "width",
        "height", "max-width", "min-width", "display",
    }
)  # fmt: skip
_DATA_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp|bmp)[;,]", re.I)


@dataclass(frozen=True)
class Part:
    """A leaf part of a message: its number, type, name and decoded size."""

    number: int
    content_type: str
    filename: str | None
    size: int
    content_id: str | None
    inline: bool


@dataclass
class MessageView:
    """What the message page shows."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    text: str | None = None
    html: str | None = None
    attachments: list[Part] = field(default_factory=list)
    blocked_images: int = 0
    problems: list[str] = field(default_factory=list)


def parse(data: bytes) -> Message:
    """The message's structure (``email``'s lenient parser; never raises)."""
    return email.message_from_bytes(data, policy=email.policy.default)


def _leaves(msg: Message) -> list[tuple[int, Message]]:
    out = []
    for n, part in enumerate(msg.walk()):
        if n >= MAX_PARTS:
            break
        if not part.is_multipart():
            out.append((n, part))
    return out


def _header(msg: Message, name: str) -> str | None:
    try:
        values = msg.get_all(name)
        if not values:
            return None
        return " ".join(" ".join(str(v).split()) for v in values)
    except Exception:  # a header the policy cannot parse: its raw text
        raw = [v for k, v in msg.raw_items() if k.lower() == name.lower()]
        return " ".join(" ".join(str(v).split()) for v in raw) or None


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    return " ".join(name.split()) if name else None


def _content_id(part: Message) -> str | None:
    cid = str(part.get("Content-ID", "") or "").strip()
    return cid[1:-1] if cid.startswith("<") and cid.endswith(">") else (cid or None)


def _payload(part: Message) -> bytes:
    raw = part.get_payload(decode=True)
    return raw if isinstance(raw, bytes) else b""


def _describe(n: int, part: Message) -> Part:
    name = _filename(part)
    try:
        disposition = part.get_content_disposition()
    except Exception:
        disposition = None
    return Part(
        number=n,
        content_type=part.get_content_type(),
        filename=name,
        size=len(_payload(part)),
        content_id=_content_id(part),
        inline=disposition != "attachment",
    )


def part_bytes(data: bytes, number: int) -> tuple[Part, bytes] | None:
    """Leaf part ``number`` of the message and its decoded bytes, or None."""
    for n, part in _leaves(parse(data)):
        if n == number:
            return _describe(n, part), _payload(part)
    return None


def find_cid(data: bytes, content_id: str) -> int | None:
    """The number of the part whose Content-ID is ``content_id``."""
    for n, part in _leaves(parse(data)):
        if _content_id(part) == content_id:
            return n
    return None


def view(data: bytes, image_url: Callable[[int], str]) -> MessageView:
    """The message page's content. ``image_url(n)`` is where part ``n`` is served for
    the HTML view (``cid:`` references are rewritten to it)."""
    out = MessageView()
    try:
        msg = parse(data)
    except Exception:
        out.problems.append("the message could not be parsed; download the .eml to see it")
        return out
    for name in SHOWN_HEADERS:
        value = _header(msg, name)
        if value:
            out.headers.append((name, value))
    texts: list[str] = []
    html: str | None = None
    cids: dict[str, int] = {}
    leaves = _leaves(msg)
    for n, part in leaves:
        try:
            desc = _describe(n, part)
        except Exception:
            out.problems.append(f"part {n} could not be read")
            continue
        if desc.content_id:
            cids[desc.content_id] = n
        body = desc.content_type in ("text/plain", "text/html") and not (
            desc.filename and not desc.inline
        )
        if body:
            try:
                text = decode_text(_payload(part), part.get_content_charset())
            except Exception:
                out.problems.append(f"part {n} ({desc.content_type}) could not be decoded")
                continue
            if desc.content_type == "text/plain":
                texts.append(text)
            elif html is None:
                html = text
            continue
        if desc.content_id and desc.inline and not desc.filename:
            continue  # an inline image of the HTML, served to it
        out.attachments.append(desc)
    if len(leaves) < sum(1 for _ in msg.walk()) and len(leaves) >= MAX_PARTS:
        out.problems.append(f"only the first {MAX_PARTS} parts are shown")
    out.text = "\n\n".join(texts) if texts else None
    if html is not None:
        out.html, out.blocked_images = sanitize(html, cids, image_url)
    return out


def sanitize(html: str, cids: dict[str, int], image_url: Callable[[int], str]) -> tuple[str, int]:
    """``html`` made safe to show (see the module doc) and the remote images dropped."""
    blocked = 0

    def keep(tag: str, attr: str, value: str) -> str | None:
        nonlocal blocked
        if tag == "img" and attr == "src":
            v = value.strip()
            if v.lower().startswith("cid:"):
                n = cids.get(v[4:])
                return image_url(n) if n is not None else None
            if _DATA_IMAGE.match(v):
                return v
            blocked += 1
            return None
        if attr == "href" and not re.match(r"\s*(https?|mailto):", value, re.I):
            return None  # no javascript:, data: or relative links
        if attr == "style" and re.search(r"url\s*\(|expression|@import|\\", value, re.I):
            return None
        return value

    clean = nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        attribute_filter=keep,
        url_schemes={"http", "https", "mailto", "cid", "data"},
        filter_style_properties=set(_STYLE_PROPERTIES),
        set_tag_attribute_values={"a": {"target": "_blank"}},
        link_rel="noopener noreferrer",
        strip_comments=True,
    )
    return clean, blocked
