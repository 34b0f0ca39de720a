"""The viewer behind ``popvault serve``: requests in, responses out, nothing written.

:class:`Viewer` answers one request at a time (``handle``) and knows no sockets; the
HTTP glue is :mod:`popvault.web.server`. Every request is checked in this order:
a method other than GET and HEAD gets 405; a ``Host`` other than the server's own
address gets 403 (a DNS-rebinding page cannot talk to it); then the access token, given
as ``?token=`` (answered with a cookie, ``HttpOnly; SameSite=Strict``, and a redirect to
the same URL without it, so the token stays out of history and bookmarks) or by that
cookie, else 403. The sanitized HTML of a message and its inline images are also served
to a *capability*: an HMAC of the token and the message id in their URL, since a
sandboxed frame (an opaque origin) does not send the cookie. Every response carries the
security headers of :func:`security_headers`; pages are never cached by the browser.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from urllib.parse import parse_qsl, urlencode, urlsplit

from popvault.errors import IntegrityError, PopvaultError, UsageError
from popvault.vault import Vault
from popvault.web import mime, pages

#: The Content-Security-Policy of every page: nothing but this server, no script at all.
PAGE_CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'self'; frame-src 'self';"
    " form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
#: The policy of a message's sanitized HTML (shown in a frame of the message page):
#: a sandbox without scripts even when opened alone, images only from this server or
#: data: URLs, inline styles (mail needs them) but no style sheets from anywhere.
HTML_CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; base-uri 'none';"
    " form-action 'none'; frame-ancestors 'self'; sandbox allow-popups"
    " allow-popups-to-escape-sandbox"
)
#: Downloads: nothing in them may run or load when a browser opens one after all.
DOWNLOAD_CSP = "default-src 'none'; sandbox"
#: Messages larger than this are not parsed for the message page (download the .eml).
VIEW_LIMIT = 32 << 20
#: Recently read messages kept for their inline images (a page asks for several).
RECENT = 4
#: ... if they are no larger than this.
RECENT_SIZE = 8 << 20
_MSG_PATH = re.compile(r"/m/([0-9a-f]{64})(?:/(eml|html|part/([0-9]{1,4})|img/([0-9]{1,4})))?")


@dataclass
class Response:
    status: int
    content_type: str = "text/html; charset=utf-8"
    body: bytes | Iterator[bytes] = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    csp: str = PAGE_CSP
    #: Cross-Origin-Resource-Policy: an inline image is fetched by the HTML's sandboxed
    #: (opaque, so cross-origin) frame; it needs its capability URL anyway.
    corp: str = "same-origin"


def security_headers(csp: str, corp: str = "same-origin") -> list[tuple[str, str]]:
    """The headers every response carries."""
    framing = "SAMEORIGIN" if csp == HTML_CSP else "DENY"
    return [
        ("Content-Security-Policy", csp),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", framing),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Resource-Policy", corp),
        ("Cache-Control", "no-store"),
    ]


class Viewer:
    """A read-only view of an open vault, for one server on ``port``."""

    def __init__(self, vault: Vault, port: int, token: str | None = None) -> None:
        self.vault = vault
        self.port = port
        self.token = token or secrets.token_urlsafe(24)
        self.cookie = f"popvault_{port}"
        self.lock = threading.RLock()  # one vault, one cache connection: one user at a time
        self._recent: OrderedDict[bytes, bytes] = OrderedDict()
        self.pages = pages.Pages(self)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    # ------------------------------------------------------------------ requests

    def handle(self, method: str, target: str, headers: dict[str, str]) -> Response:
        """The response to one request (``headers`` with lower-case names)."""
        if method not in ("GET", "HEAD"):
            r = self._error(HTTPStatus.METHOD_NOT_ALLOWED, "this viewer only reads")
            r.headers.append(("Allow", "GET, HEAD"))
            return r
        if not self._host_ok(headers.get("host", "")):
            return self._error(HTTPStatus.FORBIDDEN, "wrong host name")
        parts = urlsplit(target)
        path = parts.path
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        given = params.pop("token", None)
        if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
            rest = urlencode(params)
            here = "/" + path.lstrip("/")  # never "//host": a redirect stays on this server
            r = Response(HTTPStatus.SEE_OTHER)
            r.headers.append(("Location", here + (f"?{rest}" if rest else "")))
            r.headers.append(
                (
                    "Set-Cookie",
                    f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict",
                )
            )
            return r
        m = _MSG_PATH.fullmatch(path)
        capable = m is not None and (m.group(2) == "html" or m.group(4) is not None)
        allowed = self._cookie_ok(headers.get("cookie", ""))
        if not (allowed or (capable and self._cap_ok(m, params))):
            return self._error(
                HTTPStatus.FORBIDDEN,
                "this page needs the access token",
                "open the URL that 'popvault serve' printed (http://127.0.0.1:PORT/?token=...)",
            )
        try:
            return self._route(path, params, m)
        except UsageError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, exc.message, exc.hint)
        except IntegrityError as exc:
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, exc.message, exc.hint)
        except PopvaultError as exc:
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, exc.message, exc.hint)
        except Exception as exc:  # a page must not take the server down
            print(f"popvault serve: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    def _host_ok(self, host: str) -> bool:
        return host in (f"127.0.0.1:{self.port}", f"localhost:{self.port}")

    def _cookie_ok(self, header: str) -> bool:
        try:
            jar = SimpleCookie(header)
        except CookieError:
            return False
        morsel = jar.get(self.cookie)
        return morsel is not None and hmac.compare_digest(
            morsel.value.encode(), self.token.encode()
        )

    def capability(self, msg_id: bytes) -> str:
        """What lets the HTML of ``msg_id`` and its inline images be fetched alone."""
        key = hashlib.sha256(b"popvault serve capability\0" + self.token.encode()).digest()
        return hmac.new(key, msg_id, hashlib.sha256).hexdigest()[:32]

    def _cap_ok(self, m: re.Match[str] | None, params: dict[str, str]) -> bool:
        if m is None:
            return False
        given = params.get("k", "")
        want = self.capability(bytes.fromhex(m.group(1)))
        return hmac.compare_digest(given.encode(), want.encode())

    def _route(self, path: str, params: dict[str, str], m: re.Match[str] | None) -> Response:
        if path == "/":
            return self.pages.listing(params)
        if path == "/mbox":
            return self.pages.mbox(params)
        if path == "/static/style.css":
            css = resources.files("popvault.web").joinpath("static/style.css").read_bytes()
            return Response(HTTPStatus.OK, "text/css; charset=utf-8", css)
        if m is None:
            return self._error(HTTPStatus.NOT_FOUND, f"no page {path}")
        msg_id = bytes.fromhex(m.group(1))
        with self.lock:
            known = self.vault.has_message(msg_id)
        if not known:
            return self._error(HTTPStatus.NOT_FOUND, f"no message {m.group(1)[:12]} in the vault")
        what = m.group(2)
        if what is None:
            return self.pages.message(msg_id, params)
        if what == "eml":
            return self._eml(msg_id)
        if what == "html":
            return self._html(msg_id)
        if m.group(3) is not None:
            return self._part(msg_id, int(m.group(3)), inline=False)
        return self._part(msg_id, int(m.group(4)), inline=True)

    # ------------------------------------------------------------------ messages

    def read(self, msg_id: bytes) -> bytes:
        """A message's verified bytes (the last few are kept for their images)."""
        with self.lock:
            data = self._recent.get(msg_id)
            if data is None:
                self.vault.message(msg_id)  # UsageError (400) for an id not in the vault
                data = self.vault.read_message(msg_id)
                if len(data) > RECENT_SIZE:
                    return data
                self._recent[msg_id] = data
                while len(self._recent) > RECENT:
                    self._recent.popitem(last=False)
            self._recent.move_to_end(msg_id)
            return data

    def _eml(self, msg_id: bytes) -> Response:
        data = self.read(msg_id)
        r = Response(HTTPStatus.OK, "message/rfc822", data, csp=DOWNLOAD_CSP)
        r.headers.append(("Content-Disposition", f'attachment; filename="{msg_id.hex()[:16]}.eml"'))
        return r

    def _html(self, msg_id: bytes) -> Response:
        row = self.vault.message(msg_id)
        if row.size > VIEW_LIMIT:
            return self._error(HTTPStatus.NOT_FOUND, "this message is too large to show")
        cap = self.capability(msg_id)
        view = mime.view(self.read(msg_id), lambda n: f"/m/{msg_id.hex()}/img/{n}?k={cap}")
        if view.html is None:
            return self._error(HTTPStatus.NOT_FOUND, "this message has no HTML part")
        doc = (
            '<!doctype html><html><head><meta charset="utf-8">'
            '<meta name="referrer" content="no-referrer"></head><body>'
            f"{view.html}</body></html>"
        )
        return Response(HTTPStatus.OK, body=doc.encode("utf-8"), csp=HTML_CSP)

    def _part(self, msg_id: bytes, number: int, *, inline: bool) -> Response:
        found = mime.part_bytes(self.read(msg_id), number)
        if found is None:
            return self._error(HTTPStatus.NOT_FOUND, f"no part {number} in this message")
        part, data = found
        if inline:
            if part.content_type not in mime.INLINE_IMAGES:
                return self._error(HTTPStatus.NOT_FOUND, f"part {number} is not an image")
            return Response(
                HTTPStatus.OK, part.content_type, data, csp=DOWNLOAD_CSP, corp="cross-origin"
            )
        name = part.filename or f"part-{number}"
        r = Response(HTTPStatus.OK, "application/octet-stream", data, csp=DOWNLOAD_CSP)
        r.headers.append(("Content-Disposition", content_disposition(name)))
        return r

    def _error(self, status: HTTPStatus, message: str, hint: str | None = None) -> Response:
        body = self.pages.render(
            "error.html", status=int(status), reason=status.phrase, message=message, hint=hint
        )
        return Response(int(status), body=body)


def content_disposition(filename: str) -> str:
    """``attachment`` with ``filename`` as RFC 6266 wants it: an ASCII fallback and the
    UTF-8 name (no quote, backslash or control character can break out of either)."""
    from urllib.parse import quote

    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    ascii_name = ascii_name.strip() or "attachment"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


__all__ = ["Response", "Viewer", "content_disposition", "security_headers"]
