"""A small IMAP4rev1 client (RFC 3501) on ``socket`` + ``ssl``, for restoring into a server.

It does what restore and its tests need and no more: implicit TLS or STARTTLS (TLS
verified by default, or pinned to a SHA-256 certificate/SPKI fingerprint), CAPABILITY,
LOGIN or AUTHENTICATE PLAIN (with SASL-IR when offered), CREATE, APPEND (with LITERAL+
when offered, and pipelined by :meth:`ImapClient.append_many`), SELECT/EXAMINE,
UID SEARCH HEADER, UID FETCH of whole messages, LOGOUT. Responses are parsed properly:
tags, untagged data, literals anywhere, response codes. ``imaplib`` is not used because
it buffers and reparses whole responses with regular expressions and cannot pipeline.
Mailbox names are sent in modified UTF-7 (RFC 3501 section 5.1.3). The password never
appears in a repr, an exception message or a log line.
"""

from __future__ import annotations

import base64
import calendar
import re
import socket
import ssl
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, TypeAlias
from urllib.parse import parse_qs, unquote, urlsplit

from popvault.errors import (
    AuthenticationFailed,
    IntegrityError,
    NetworkError,
    PermanentServerError,
    ProtocolError,
    TLSError,
    UsageError,
)
from popvault.tlspin import check_pin, make_context

TlsMode = Literal["implicit", "starttls", "none"]

_MAX_LINE = 1024 * 1024
_MAX_LITERAL = 2 * 1024 * 1024 * 1024
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class MessageRejected(PermanentServerError):
    """The server refused one APPEND (NO or BAD): too big, over quota, bad data, ...

    ``code`` is the response code (``"OVERQUOTA"``, ``"TOOBIG"``, ``"TRYCREATE"``, ...)
    or ``None``; ``server_text`` the server's human-readable text. The connection is
    still usable: the caller can report the message and go on with the next one.
    """

    def __init__(self, message: str, *, code: str | None, server_text: str) -> None:
        super().__init__(message, hint="the server refused this message; others may succeed")
        self.code = code
        self.server_text = server_text


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ImapSettings:
    """How to reach and log in to an IMAP server.

    ``tls``: ``"implicit"`` (port 993), ``"starttls"`` (required, never silently
    skipped) or ``"none"`` (plaintext; meant for loopback tests). ``tls_ca_file`` adds
    trust anchors for chain verification. ``tls_fingerprint`` (SHA-256 hex of the
    server certificate's DER, or of its SubjectPublicKeyInfo; ``:`` separators
    allowed) replaces chain and host name verification, and must match.
    """

    host: str
    port: int
    tls: TlsMode
    user: str
    password: str = field(repr=False)
    tls_ca_file: str | None = None
    tls_fingerprint: str | None = None
    timeout: float = 60.0


@dataclass(frozen=True)
class ImapTarget:
    """An ``imaps://`` / ``imap://`` URL taken apart: where to restore, without secrets."""

    host: str
    port: int
    tls: TlsMode
    user: str
    folder: str

    def settings(
        self,
        password: str,
        *,
        tls_ca_file: str | None = None,
        tls_fingerprint: str | None = None,
        timeout: float = 60.0,
    ) -> ImapSettings:
        """Combine the URL with the secrets and TLS options that never go into a URL."""
        return ImapSettings(
            host=self.host,
            port=self.port,
            tls=self.tls,
            user=self.user,
            password=password,
            tls_ca_file=tls_ca_file,
            tls_fingerprint=tls_fingerprint,
            timeout=timeout,
        )


def parse_imap_url(url: str) -> ImapTarget:
    """Parse ``imaps://USER@HOST[:PORT]/FOLDER`` or ``imap://USER@HOST[:PORT]/FOLDER[?tls=none]``.

    ``imaps`` means implicit TLS (default port 993); ``imap`` means STARTTLS, required
    (default port 143), unless ``?tls=none`` asks for plaintext. USER and FOLDER are
    percent-decoded (write ``@`` in a user name as ``%40``); an empty FOLDER is
    ``INBOX``. Raises :class:`UsageError` for anything else, including a password in
    the URL (it would be visible in the process list).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"invalid IMAP URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("imap", "imaps"):
        raise UsageError(
            "an IMAP URL must start with imaps:// or imap://",
            hint="example: imaps://user%40example.org@imap.example.org/Archive",
        )
    if parts.password is not None:
        raise UsageError(
            "do not put the password in the IMAP URL",
            hint="use the password file or prompt instead",
        )
    if not parts.hostname:
        raise UsageError("the IMAP URL has no host name")
    if not parts.username:
        raise UsageError("the IMAP URL has no user name (imaps://USER@HOST/FOLDER)")
    tls: TlsMode = "implicit" if scheme == "imaps" else "starttls"
    query = parse_qs(parts.query, keep_blank_values=True)
    for key, values in query.items():
        if key == "tls" and scheme == "imap" and values == ["none"]:
            tls = "none"
        else:
            raise UsageError(f"unsupported IMAP URL option {key}={','.join(values)}")
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    return ImapTarget(
        host=parts.hostname,
        port=port or (993 if scheme == "imaps" else 143),
        tls=tls,
        user=unquote(parts.username),
        folder=folder,
    )


# ------------------------------------------------------------------ modified UTF-7


def _b64_mutf7(text: str) -> str:
    raw = text.encode("utf-16-be")
    return base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")


def encode_mutf7(name: str) -> str:
    """Encode a mailbox name in IMAP modified UTF-7 (RFC 3501 section 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            if pending:
                out.append("&" + _b64_mutf7("".join(pending)) + "-")
                pending = []
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    if pending:
        out.append("&" + _b64_mutf7("".join(pending)) + "-")
    return "".join(out)


def decode_mutf7(name: str) -> str:
    """Decode an IMAP modified UTF-7 mailbox name; :class:`ProtocolError` if malformed."""
    out: list[str] = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ch != "&":
            if not 0x20 <= ord(ch) <= 0x7E:
                raise ProtocolError(f"invalid character in modified UTF-7 name {name!r}")
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise ProtocolError(f"unterminated shift in modified UTF-7 name {name!r}")
        chunk = name[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            try:
                raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
                if len(raw) % 2:
                    raise ValueError("odd length")
                out.append(raw.decode("utf-16-be"))
            except ValueError as exc:
                raise ProtocolError(f"invalid modified UTF-7 name {name!r}") from exc
        i = end + 1
    return "".join(out)


# ------------------------------------------------------------------- wire format

Value: TypeAlias = "str | bytes | list[Value] | None"
"""A parsed IMAP datum: atom (str), string (bytes, quoted or literal), NIL, list."""


@dataclass(frozen=True)
class Response:
    """One server response. ``tag`` is ``"*"`` (untagged), ``"+"`` or a command tag.

    ``segments`` alternate line text and literal bytes: the raw response as read.
    """

    tag: str
    segments: tuple[bytes, ...]

    @property
    def line(self) -> bytes:
        """The first line, without its trailing literal marker and CRLF."""
        return self.segments[0]


_STATUS_RE = re.compile(rb"^(\S+) (OK|NO|BAD|BYE|PREAUTH)(?: \[([^\]]*)\])? ?(.*)$", re.I | re.S)
_LITERAL_TAIL = re.compile(rb"\{(\d+)\+?\}$")
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]\r\n') | frozenset(range(0x20)) | {0x7F}


@dataclass(frozen=True)
class Status:
    """A status response: ``OK``/``NO``/``BAD``/``BYE``/``PREAUTH`` with code and text."""

    status: str
    code: str | None
    text: str

    @property
    def code_name(self) -> str | None:
        return self.code.split(" ", 1)[0].upper() if self.code else None


def parse_status(resp: Response) -> Status | None:
    """Return the status of a tagged or untagged status response, else ``None``."""
    m = _STATUS_RE.match(resp.line)
    if m is None:
        return None
    code = m.group(3).decode("utf-8", "replace") if m.group(3) is not None else None
    return Status(m.group(2).decode().upper(), code, m.group(4).decode("utf-8", "replace"))


class _Parser:
    """Tokenizes the data of a response (segments of text and literals) into Values."""

    def __init__(self, segments: Sequence[bytes], skip: int = 0) -> None:
        self.segs = segments
        self.seg = 0
        self.pos = skip

    def _text(self) -> bytes:
        return self.segs[self.seg]

    def at_end(self) -> bool:
        self._skip_space()
        return self.seg >= len(self.segs) - 1 and self.pos >= len(self._text())

    def _skip_space(self) -> None:
        text = self._text()
        while self.pos < len(text) and text[self.pos] == 0x20:
            self.pos += 1

    def values(self) -> list[Value]:
        out: list[Value] = []
        while not self.at_end():
            out.append(self.value())
        return out

    def value(self) -> Value:
        self._skip_space()
        text = self._text()
        if self.pos >= len(text):
            raise ProtocolError("unexpected end of IMAP response")
        c = text[self.pos]
        if c == ord("("):
            self.pos += 1
            items: list[Value] = []
            while True:
                self._skip_space()
                text = self._text()
                if self.pos < len(text) and text[self.pos] == ord(")"):
                    self.pos += 1
                    return items
                if self.pos >= len(text) and self.seg >= len(self.segs) - 1:
                    raise ProtocolError("unterminated list in IMAP response")
                items.append(self.value())
        if c == ord('"'):
            return self._quoted()
        if c == ord("{"):
            m = _LITERAL_TAIL.match(text, self.pos)
            if m is None or m.end() != len(text) or self.seg + 2 >= len(self.segs):
                raise ProtocolError("malformed literal in IMAP response")
            literal = self.segs[self.seg + 1]
            self.seg += 2
            self.pos = 0
            return literal
        return self._atom()

    def _quoted(self) -> bytes:
        text = self._text()
        out = bytearray()
        i = self.pos + 1
        while i < len(text):
            c = text[i]
            if c == ord("\\") and i + 1 < len(text):
                out.append(text[i + 1])
                i += 2
            elif c == ord('"'):
                self.pos = i + 1
                return bytes(out)
            else:
                out.append(c)
                i += 1
        raise ProtocolError("unterminated quoted string in IMAP response")

    def _atom(self) -> str | None:
        text = self._text()
        start = i = self.pos
        depth = 0
        while i < len(text):
            c = text[i]
            if c == ord("["):
                depth += 1
            elif c == ord("]") and depth:
                depth -= 1
            elif depth == 0 and c in b" ()":
                break
            i += 1
        if i == start:
            raise ProtocolError(f"unexpected {chr(text[start])!r} in IMAP response")
        self.pos = i
        atom = text[start:i].decode("utf-8", "replace")
        return None if atom.upper() == "NIL" else atom


def _is_atom(text: str) -> bool:
    return bool(text) and all(0x20 < ord(c) < 0x7F and ord(c) not in _ATOM_SPECIALS for c in text)


class _Literal:
    """A command argument sent as a literal (``{n}`` or ``{n+}``): ``data``, or ``size``
    bytes that ``pieces()`` yields (a large message, streamed instead of held)."""

    __slots__ = ("data", "pieces", "size")

    def __init__(
        self,
        data: bytes,
        pieces: Callable[[], Iterable[bytes]] | None = None,
        size: int | None = None,
    ) -> None:
        self.data = data
        self.pieces = pieces
        self.size = len(data) if size is None else size


Arg: TypeAlias = "bytes | _Literal"


def _astring(value: str) -> Arg:
    """An astring argument: atom, quoted string, or literal for anything else."""
    if _is_atom(value):
        return value.encode("ascii")
    if value.isascii() and not any(c in value for c in "\r\n\0") and len(value) < 1000:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'.encode("ascii")
    return _Literal(value.encode("utf-8"))


def _mailbox(name: str) -> Arg:
    if name.upper() == "INBOX":
        return b"INBOX"
    return _astring(encode_mutf7(name))


def format_internaldate(when: float) -> str:
    """Format epoch seconds as an IMAP date-time (UTC), locale-independent."""
    t = time.gmtime(when)
    return (
        f'"{t.tm_mday:2d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year:04d} '
        f'{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"'
    )


_DATE_TIME_RE = re.compile(
    r"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$"
)


def parse_internaldate(text: str) -> float:
    """Parse an IMAP date-time (``17-Jul-1996 02:44:25 -0700``) to epoch seconds."""
    m = _DATE_TIME_RE.match(text)
    if m is None or m.group(2).title() not in _MONTHS:
        raise ProtocolError(f"invalid INTERNALDATE {text!r}")
    day, mon, year = int(m.group(1)), _MONTHS.index(m.group(2).title()) + 1, int(m.group(3))
    hh, mm, ss = int(m.group(4)), int(m.group(5)), int(m.group(6))
    offset = (int(m.group(8)) * 60 + int(m.group(9))) * 60
    if m.group(7) == "-":
        offset = -offset
    return float(calendar.timegm((year, mon, day, hh, mm, ss, 0, 0, 0)) - offset)


# Maildir's T (trashed) is not restored as \Deleted: the next EXPUNGE would destroy it.
_MAILDIR_TO_IMAP = {"S": "\\Seen", "R": "\\Answered", "F": "\\Flagged"}
_MAILDIR_TO_IMAP |= {"D": "\\Draft", "P": "$Forwarded"}


def maildir_flags_to_imap(flags: str | None) -> list[str]:
    """Map Maildir info flags (``"FRS"``) to IMAP flags; unknown letters are dropped."""
    return [_MAILDIR_TO_IMAP[c] for c in sorted(set(flags or "")) if c in _MAILDIR_TO_IMAP]


# ---------------------------------------------------------------- TLS pinning


# ------------------------------------------------------------------------ client


@dataclass(frozen=True)
class AppendItem:
    """One message for :meth:`ImapClient.append_many`.

    A large message can come as ``stream`` instead of ``data``: a function giving its
    ``stream_size`` bytes in pieces, called once for each time the message is sent
    (bounded memory). If it raises, or gives another number of bytes, the APPEND is
    never completed: the connection is closed and nothing is stored."""

    data: bytes
    flags: Sequence[str] = ()
    internaldate: float | None = None
    stream: Callable[[], Iterable[bytes]] | None = None
    stream_size: int = 0

    @property
    def size(self) -> int:
        return self.stream_size if self.stream is not None else len(self.data)


@dataclass(frozen=True)
class AppendOutcome:
    """Result of one APPEND in :meth:`ImapClient.append_many`: a UID or a rejection."""

    index: int
    uid: int | None
    error: MessageRejected | None


def _message_args(item: AppendItem) -> list[Arg]:
    """`` [(flags)] [date] literal`` of one message in an APPEND command."""
    parts: list[Arg] = []
    clean = [f for f in item.flags if f.lower() != "\\recent"]
    for f in clean:
        if not _is_atom(f.lstrip("\\")):
            raise ValueError(f"invalid IMAP flag {f!r}")
    if clean:
        parts.append(b" (" + " ".join(clean).encode("ascii") + b")")
    if item.internaldate is not None:
        parts.append(b" " + format_internaldate(item.internaldate).encode("ascii"))
    parts += [b" ", _Literal(item.data, item.stream, item.size if item.stream else None)]
    return parts


class ImapClient:
    """One IMAP connection. Create with :meth:`connect`; close with :meth:`logout`.

    Not thread-safe. Every method raises :class:`NetworkError` when the connection
    fails or times out and :class:`ProtocolError` when the server breaks the protocol;
    after either, the client is unusable (connect again).
    """

    def __init__(self, sock: socket.socket, settings: ImapSettings) -> None:
        self._sock = sock
        self._settings = settings
        self._buf = bytearray()
        self._tag_counter = 0
        self._completed: dict[str, Status] = {}
        self.untagged: list[Response] = []
        self.capabilities: frozenset[str] = frozenset()
        self._logged_in = False
        self._logout_sent = False
        self._closed = False

    # -------------------------------------------------------------- connection

    @classmethod
    def connect(cls, settings: ImapSettings) -> ImapClient:
        """Connect, negotiate TLS as ``settings.tls`` says, read capabilities, log in.

        Raises :class:`NetworkError`, :class:`TLSError` (certificate not trusted, name
        or fingerprint mismatch, STARTTLS not offered), :class:`AuthenticationFailed`
        (credentials refused), :class:`ProtocolError`. Safe to retry.
        """
        try:
            sock = socket.create_connection((settings.host, settings.port), settings.timeout)
        except OSError as exc:
            raise NetworkError(
                f"cannot connect to IMAP server {settings.host}:{settings.port}: {exc}"
            ) from exc
        client: ImapClient | None = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if settings.tls == "implicit":
                sock = _wrap_tls(sock, settings)
            client = cls(sock, settings)
            client._greeting()
            if settings.tls == "starttls":
                client._starttls()
            if not client._logged_in:
                client._login()
            return client
        except BaseException:
            if client is not None:
                client.close()  # it may hold a newer (TLS) socket than ``sock``
            sock.close()
            raise

    def _greeting(self) -> None:
        resp = self._read_response()
        status = parse_status(resp)
        if resp.tag == "*" and status is not None and status.status == "BYE":
            raise NetworkError(f"IMAP server {self._settings.host} is not available: {status.text}")
        if resp.tag != "*" or status is None or status.status not in ("OK", "PREAUTH"):
            text = status.text if status else resp.line.decode("utf-8", "replace")
            raise ProtocolError(f"IMAP server {self._settings.host} refused us: {text}")
        self._logged_in = status.status == "PREAUTH"
        if not self._caps_from(status):
            self.capability()

    def _caps_from(self, status: Status) -> bool:
        if status.code_name == "CAPABILITY" and status.code:
            self.capabilities = frozenset(c.upper() for c in status.code.split()[1:])
            return True
        return False

    def _starttls(self) -> None:
        if "STARTTLS" not in self.capabilities:
            raise TLSError(
                f"IMAP server {self._settings.host} does not offer STARTTLS",
                hint="use imaps:// (port 993), or ?tls=none on a trusted network only",
            )
        self._simple(b"STARTTLS")
        if self._buf:
            raise ProtocolError("IMAP server sent data before the TLS handshake")
        self._sock = _wrap_tls(self._sock, self._settings)
        self.capability()

    def capability(self) -> frozenset[str]:
        """Ask the server for its capabilities (upper-cased); also stored in ``capabilities``."""
        self._simple(b"CAPABILITY")
        caps: set[str] = set()
        for resp in self._take_untagged(b"CAPABILITY"):
            caps.update(a.upper() for a in resp.line.decode("utf-8", "replace").split()[2:])
        self.capabilities = frozenset(caps)
        return self.capabilities

    def _login(self) -> None:
        s = self._settings
        if "AUTH=PLAIN" in self.capabilities:
            token = base64.b64encode(
                b"\0" + s.user.encode("utf-8") + b"\0" + s.password.encode("utf-8")
            )
            if "SASL-IR" in self.capabilities:
                _, status = self._run([b"AUTHENTICATE PLAIN " + token])
            else:
                _, status = self._run([b"AUTHENTICATE PLAIN"], continuation=token)
        elif "LOGINDISABLED" in self.capabilities:
            raise AuthenticationFailed(
                f"IMAP server {s.host} disallows login here",
                hint="use TLS (imaps:// or imap:// with STARTTLS)",
            )
        else:
            _, status = self._run([b"LOGIN ", _astring(s.user), b" ", _astring(s.password)])
        if status.status != "OK":
            raise AuthenticationFailed(
                f"IMAP server {s.host} refused login for {s.user}: {status.text}",
                hint="check the user name and password",
            )
        self._logged_in = True
        if not self._caps_from(status):
            self.capability()

    # ---------------------------------------------------------------- commands

    def create_folder(self, name: str) -> None:
        """Create folder ``name`` (modified UTF-7 on the wire); no error if it exists.

        Raises :class:`PermanentServerError` when the server refuses for another reason.
        """
        if name.upper() == "INBOX":
            return
        _, status = self._run([b"CREATE ", _mailbox(name)])
        if status.status == "OK" or status.code_name == "ALREADYEXISTS":
            return
        if self.folder_exists(name):
            return
        raise PermanentServerError(f"IMAP server refused to create folder {name!r}: {status.text}")

    def folder_exists(self, name: str) -> bool:
        """True if LIST finds a folder named exactly ``name``."""
        self._simple(b'LIST "" ', _mailbox(name), what=f"list folder {name!r}")
        return bool(self._take_untagged(b"LIST"))

    def hierarchy_delimiter(self) -> str | None:
        """The server's hierarchy delimiter (``LIST "" ""``), ``None`` if flat."""
        self._simple(b'LIST "" ""')
        for resp in self._take_untagged(b"LIST"):
            values = _Parser(resp.segments, len(b"* LIST")).values()
            if len(values) >= 2 and isinstance(values[1], bytes):
                return values[1].decode("utf-8", "replace")
        return None

    def append(
        self,
        folder: str,
        data: bytes,
        flags: Sequence[str] = (),
        internaldate: float | None = None,
    ) -> int | None:
        """Append one message to ``folder``; return its UID when the server says it.

        The UID comes from ``[APPENDUID]`` (UIDPLUS); ``None`` without it. When the
        server answers ``[TRYCREATE]`` the folder is created and the APPEND retried
        once. Raises :class:`MessageRejected` when the server refuses this message (NO
        or BAD, e.g. too big or over quota): the connection stays usable. The message
        is stored when this returns (as durable as the server makes it).
        """
        return self._append_item(folder, AppendItem(data, flags, internaldate))

    def _append_item(self, folder: str, item: AppendItem) -> int | None:
        status = self._wait(self._send_append(folder, item))
        if status.status != "OK" and status.code_name == "TRYCREATE":
            self.create_folder(folder)
            status = self._wait(self._send_append(folder, item))
        return self._append_result(folder, status)

    def append_many(
        self, folder: str, items: Iterable[AppendItem], window: int = 32
    ) -> Iterator[AppendOutcome]:
        """Append messages to ``folder``, pipelined when the server offers LITERAL+.

        Yields one :class:`AppendOutcome` per item, in order, at most ``window`` items
        behind what has been sent. A rejection is reported in ``error`` and does not
        stop the others. The folder must exist (see :meth:`create_folder`). Consume the
        iterator fully: stopping early leaves answers unread (the client then drains
        them before its next command).
        """
        if "LITERAL+" not in self.capabilities:
            for i, item in enumerate(items):
                try:
                    yield AppendOutcome(i, self._append_item(folder, item), None)
                except MessageRejected as exc:
                    yield AppendOutcome(i, None, exc)
            return
        pending: list[tuple[int, str]] = []

        def finish(index: int, tag: str) -> AppendOutcome:
            try:
                return AppendOutcome(index, self._append_result(folder, self._wait(tag)), None)
            except MessageRejected as exc:
                return AppendOutcome(index, None, exc)

        for i, item in enumerate(items):
            pending.append((i, self._send_append(folder, item)))
            while len(pending) >= window:
                yield finish(*pending.pop(0))
        while pending:
            yield finish(*pending.pop(0))

    def _send_append(self, folder: str, item: AppendItem) -> str:
        parts: list[Arg] = [b"APPEND ", _mailbox(folder)]
        parts += _message_args(item)
        return self._send(parts)

    def append_batches(
        self,
        folder: str,
        items: Iterable[AppendItem],
        *,
        batch_count: int = 64,
        batch_bytes: int = 16 << 20,
    ) -> Iterator[AppendOutcome]:
        """Append messages to ``folder`` in MULTIAPPEND batches (RFC 3502) when offered.

        One command per batch: the server stores the batch atomically (all or none), so
        a batch costs one round trip and one commit on the server instead of one each.
        If the server refuses a batch, its messages are appended one by one, so the
        refused one is reported alone and the others are stored. Without MULTIAPPEND
        this is :meth:`append_many`. Yields one outcome per item, in order; the folder
        must exist.
        """
        if "MULTIAPPEND" not in self.capabilities:
            yield from self.append_many(folder, items)
            return
        batch: list[AppendItem] = []
        size = 0
        index = 0
        for item in items:
            batch.append(item)
            size += item.size
            if len(batch) >= batch_count or size >= batch_bytes:
                yield from self._multiappend(folder, batch, index)
                index += len(batch)
                batch, size = [], 0
        if batch:
            yield from self._multiappend(folder, batch, index)

    def _multiappend(
        self, folder: str, batch: Sequence[AppendItem], first: int
    ) -> Iterator[AppendOutcome]:
        parts: list[Arg] = [b"APPEND ", _mailbox(folder)]
        for item in batch:
            parts += _message_args(item)
        status = self._wait(self._send(parts))
        if status.status == "OK":
            for i in range(len(batch)):
                yield AppendOutcome(first + i, None, None)
            return
        for i, item in enumerate(batch):  # refused as a whole: find the culprit(s)
            try:
                yield AppendOutcome(first + i, self._append_item(folder, item), None)
            except MessageRejected as exc:
                yield AppendOutcome(first + i, None, exc)

    def _append_result(self, folder: str, status: Status) -> int | None:
        if status.status != "OK":
            raise MessageRejected(
                f"IMAP server refused a message for {folder!r}: {status.text}",
                code=status.code_name,
                server_text=status.text,
            )
        if status.code_name == "APPENDUID" and status.code:
            fields = status.code.split()
            if len(fields) >= 3 and fields[2].isdigit():
                return int(fields[2])
        return None

    def select(self, folder: str, readonly: bool = False) -> int:
        """SELECT (or EXAMINE) ``folder``; return its message count (EXISTS)."""
        verb = b"EXAMINE " if readonly else b"SELECT "
        self._simple(verb, _mailbox(folder), what=f"open folder {folder!r}")
        exists = 0
        for resp in self.untagged:
            words = resp.line.split()
            if len(words) >= 3 and words[2].upper() == b"EXISTS" and words[1].isdigit():
                exists = int(words[1])
        self.untagged.clear()
        return exists

    def search_header(self, name: str, value: str) -> list[int]:
        """UIDs of messages in the selected folder whose header ``name`` contains ``value``."""
        parts: list[Arg] = [b"UID SEARCH "]
        if not value.isascii():
            parts.append(b"CHARSET UTF-8 ")
        parts += [b"HEADER ", _astring(name), b" ", _astring(value)]
        self._simple(*parts, what=f"search {name}")
        uids: list[int] = []
        for resp in self._take_untagged(b"SEARCH"):
            uids.extend(int(w) for w in resp.line.split()[2:] if w.isdigit())
        return sorted(uids)

    def uid_fetch_all(
        self, folder: str
    ) -> Generator[tuple[int, bytes, float, tuple[str, ...]], None, None]:
        """Yield (UID, exact bytes, INTERNALDATE, flags) for every message of ``folder``.

        Opens the folder read-only (EXAMINE) and fetches with ``BODY.PEEK[]``, so no
        flag changes. One message is held at a time. Meant for verification and tests.
        """
        if self.select(folder, readonly=True) == 0:
            return
        tag = self._send([b"UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])"])
        done = False
        try:
            while True:
                resp = self._read_response()
                if resp.tag == tag:
                    done = True
                    status = parse_status(resp)
                    if status is None or status.status != "OK":
                        raise ProtocolError(f"UID FETCH failed: {status.text if status else ''}")
                    return
                if resp.tag != "*":
                    self._note(resp)
                    continue
                item = _fetch_item(resp)
                if item is not None:
                    yield item
        finally:
            if not done:
                self._drain(tag)

    def uid_fetch_headers(self, folder: str) -> list[tuple[int, int, bytes]]:
        """(UID, RFC822.SIZE, header section) of every message of ``folder``, read-only.

        Restore uses it to recognise messages already on the target after an
        interruption. Headers only: one round trip, no message bodies.
        """
        if self.select(folder, readonly=True) == 0:
            return []
        tag = self._send([b"UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER])"])
        out: list[tuple[int, int, bytes]] = []
        while True:
            resp = self._read_response()
            if resp.tag == tag:
                status = parse_status(resp)
                if status is None or status.status != "OK":
                    raise ProtocolError(f"UID FETCH failed: {status.text if status else ''}")
                return out
            if resp.tag != "*":
                self._note(resp)
                continue
            attrs = _fetch_attrs(resp)
            if attrs is None:
                continue
            uid, size, head = attrs.get("UID"), attrs.get("RFC822.SIZE"), attrs.get("BODY[HEADER]")
            if isinstance(uid, str) and uid.isdigit() and isinstance(size, str) and size.isdigit():
                out.append((int(uid), int(size), head if isinstance(head, bytes) else b""))

    def logout(self) -> None:
        """Send LOGOUT and close the connection; never raises on a dead connection."""
        if self._closed:
            return
        self._logout_sent = True
        try:
            self._simple(b"LOGOUT")
        except (NetworkError, ProtocolError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Close the socket without LOGOUT."""
        self._closed = True
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> ImapClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.logout()
        else:
            self.close()

    # ----------------------------------------------------------------- engine

    def _next_tag(self) -> str:
        self._tag_counter += 1
        return f"P{self._tag_counter:04d}"

    def _simple(self, *parts: Arg, what: str | None = None) -> Status:
        """Run a command that must succeed; untagged data stays in ``untagged``."""
        _, status = self._run(list(parts))
        if status.status != "OK":
            verb = what or _flat(parts[0]).decode("ascii", "replace").strip()
            raise ProtocolError(f"IMAP {verb} failed: {status.status} {status.text}")
        return status

    def _run(self, parts: list[Arg], continuation: bytes | None = None) -> tuple[str, Status]:
        tag = self._send(parts)
        if continuation is not None:
            resp = self._read_until_continuation(tag)
            if resp is not None:
                self._sendall(continuation + b"\r\n")
        return tag, self._wait(tag)

    def _send(self, parts: Sequence[Arg]) -> str:
        """Send one command; wait for continuations of synchronizing literals."""
        if self._closed:
            raise ProtocolError("the IMAP connection is closed")
        tag = self._next_tag()
        self.untagged.clear()  # each command reads its own untagged data after it
        literal_plus = "LITERAL+" in self.capabilities
        chunk = bytearray(tag.encode("ascii") + b" ")
        for part in parts:
            if isinstance(part, bytes):
                chunk += part
                continue
            if literal_plus:
                chunk += b"{%d+}\r\n" % part.size
                self._sendall(bytes(chunk))
            else:
                chunk += b"{%d}\r\n" % part.size
                self._sendall(bytes(chunk))
                if self._read_until_continuation(tag) is None:
                    return tag  # refused before the literal; the status is stored
            if part.pieces is None:
                self._sendall(part.data)
            else:
                self._send_pieces(part)
            chunk = bytearray()
        chunk += b"\r\n"
        self._sendall(bytes(chunk))
        return tag

    def _read_until_continuation(self, tag: str) -> Response | None:
        """Read until ``+`` (returned) or the tagged answer to ``tag`` (``None``)."""
        while True:
            resp = self._read_response()
            if resp.tag == "+":
                return resp
            self._note(resp)
            if resp.tag == tag:
                return None

    def _wait(self, tag: str) -> Status:
        while tag not in self._completed:
            resp = self._read_response()
            if resp.tag == "+":
                raise ProtocolError("unexpected continuation request from IMAP server")
            self._note(resp)
        return self._completed.pop(tag)

    def _note(self, resp: Response) -> None:
        if resp.tag == "*":
            status = parse_status(resp)
            if status is not None and status.status == "BYE" and not self._expect_bye():
                self._closed = True
                raise NetworkError(f"IMAP server closed the connection: {status.text}")
            if status is not None and status.code_name == "CAPABILITY":
                self._caps_from(status)
            self.untagged.append(resp)
            return
        status = parse_status(resp)
        if status is None or status.status not in ("OK", "NO", "BAD"):
            raise ProtocolError(
                f"unexpected IMAP response {resp.line[:80].decode('utf-8', 'replace')!r}"
            )
        self._completed[resp.tag] = status

    def _expect_bye(self) -> bool:
        return self._closed or self._logout_sent

    def _drain(self, tag: str) -> None:
        try:
            while tag not in self._completed:
                self._note(self._read_response())
            self._completed.pop(tag)
        except (NetworkError, ProtocolError):
            self.close()

    def _take_untagged(self, kind: bytes) -> list[Response]:
        taken = [
            r
            for r in self.untagged
            if r.line[2 : 2 + len(kind) + 1].upper() == kind + b" " or r.line[2:].upper() == kind
        ]
        self.untagged.clear()
        return taken

    # ------------------------------------------------------------------- I/O

    def _send_pieces(self, part: _Literal) -> None:
        """Stream a literal's pieces. Any failure, or a byte count other than the one
        announced, leaves the command unfinished and closes the connection: the server
        then drops it, so a half or altered message is never stored."""
        assert part.pieces is not None
        sent = 0
        try:
            for piece in part.pieces():
                sent += len(piece)
                if sent > part.size:
                    break
                self._sendall(piece)
            if sent != part.size:
                raise IntegrityError(
                    f"a message gave {sent} bytes instead of the {part.size} announced;"
                    " its APPEND was abandoned"
                )
        except BaseException:
            self.close()
            raise

    def _sendall(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self._closed = True
            raise NetworkError(f"IMAP connection to {self._settings.host} failed: {exc}") from exc

    def _fill(self) -> None:
        try:
            data = self._sock.recv(256 * 1024)
        except OSError as exc:
            self._closed = True
            raise NetworkError(f"IMAP connection to {self._settings.host} failed: {exc}") from exc
        if not data:
            self._closed = True
            raise NetworkError(f"IMAP server {self._settings.host} closed the connection")
        self._buf += data

    def _readline(self) -> bytes:
        start = 0
        while True:
            i = self._buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self._buf[: i + 1])
                del self._buf[: i + 1]
                return line
            if len(self._buf) > _MAX_LINE:
                raise ProtocolError("IMAP response line too long")
            start = len(self._buf)
            self._fill()

    def _read_exact(self, n: int) -> bytes:
        if len(self._buf) >= n:
            data = bytes(self._buf[:n])
            del self._buf[:n]
            return data
        parts = [bytes(self._buf)]
        have = len(self._buf)
        self._buf.clear()
        while have < n:
            try:
                chunk = self._sock.recv(min(n - have, 1024 * 1024))
            except OSError as exc:
                self._closed = True
                raise NetworkError(
                    f"IMAP connection to {self._settings.host} failed: {exc}"
                ) from exc
            if not chunk:
                self._closed = True
                raise NetworkError(f"IMAP server {self._settings.host} closed the connection")
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts)

    def _read_response(self) -> Response:
        segments: list[bytes] = []
        while True:
            line = self._readline()
            if line.endswith(b"\r\n"):
                line = line[:-2]
            else:
                line = line[:-1]
            m = _LITERAL_TAIL.search(line)
            if m is None:
                segments.append(line)
                break
            size = int(m.group(1))
            if size > _MAX_LITERAL:
                raise ProtocolError("IMAP literal too large")
            segments.append(line)
            segments.append(self._read_exact(size))
        first = segments[0]
        tag = first.split(b" ", 1)[0].decode("ascii", "replace")
        return Response(tag, tuple(segments))


def _flat(part: Arg) -> bytes:
    return part if isinstance(part, bytes) else b"{%d}" % part.size


def _fetch_attrs(resp: Response) -> dict[str, Value] | None:
    """The attributes of ``* N FETCH (...)``; ``None`` for other untagged data."""
    words = resp.line.split(b" ", 3)
    if len(words) < 4 or words[2].upper() != b"FETCH":
        return None
    skip = len(words[0]) + len(words[1]) + len(words[2]) + 3
    values = _Parser(resp.segments, skip).values()
    if len(values) != 1 or not isinstance(values[0], list):
        raise ProtocolError("malformed FETCH response")
    items = values[0]
    attrs: dict[str, Value] = {}
    for i in range(0, len(items) - 1, 2):
        key = items[i]
        if isinstance(key, str):
            attrs[key.upper()] = items[i + 1]
    return attrs


def _fetch_item(resp: Response) -> tuple[int, bytes, float, tuple[str, ...]] | None:
    """Parse ``* N FETCH (...)``; ``None`` for other untagged data or a FETCH without a body."""
    attrs = _fetch_attrs(resp)
    if attrs is None:
        return None
    body = attrs.get("BODY[]")
    uid = attrs.get("UID")
    if body is None or not isinstance(uid, str) or not uid.isdigit():
        return None
    if not isinstance(body, bytes):
        raise ProtocolError("FETCH BODY[] is not a string")
    when = attrs.get("INTERNALDATE")
    flags = attrs.get("FLAGS")
    return (
        int(uid),
        body,
        parse_internaldate(when.decode("ascii", "replace")) if isinstance(when, bytes) else 0.0,
        tuple(f for f in flags if isinstance(f, str)) if isinstance(flags, list) else (),
    )


def _wrap_tls(sock: socket.socket, settings: ImapSettings) -> socket.socket:
    context = make_context(settings.tls_ca_file, settings.tls_fingerprint)
    try:
        tls = context.wrap_socket(sock, server_hostname=settings.host)
    except ssl.SSLCertVerificationError as exc:
        raise TLSError(
            f"TLS certificate of {settings.host} not trusted: {exc.verify_message}",
            hint="pass the server's CA file, or pin its certificate fingerprint",
        ) from exc
    except ssl.SSLError as exc:
        raise TLSError(f"TLS negotiation with {settings.host} failed: {exc}") from exc
    except OSError as exc:
        raise NetworkError(f"TLS connection to {settings.host} failed: {exc}") from exc
    if settings.tls_fingerprint:
        try:
            check_pin(settings.host, tls.getpeercert(binary_form=True), settings.tls_fingerprint)
        except TLSError:
            tls.close()
            raise
    return tls
