"""A small IMAP4rev1 client (RFC 3501) on ``socket`` + ``ssl``, for restoring into a server.

It does what restore needs and no more: implicit TLS or STARTTLS (verified or pinned,
see :mod:`popvault.tls`), CAPABILITY, LOGIN or AUTHENTICATE PLAIN (with SASL-IR when
offered), LIST, CREATE, APPEND (with LITERAL+ when offered, pipelined by
:meth:`ImapClient.append_many`, in MULTIAPPEND batches by
:meth:`ImapClient.append_batches`), SELECT/EXAMINE, UID FETCH, LOGOUT. ``imaplib`` is
not used because it buffers and reparses whole responses with regular expressions and
cannot pipeline. The wire (tags, literals, responses) is :mod:`popvault.imap.connection`.
The password never appears in a repr, an exception message or a log line.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

from popvault.errors import (
    AuthenticationFailed,
    NetworkError,
    PermanentServerError,
    ProtocolError,
    TLSError,
)
from popvault.imap.attributes import format_internaldate
from popvault.imap.command import Arg, LiteralArg, astring, is_atom, mailbox
from popvault.imap.connection import ImapConnection
from popvault.imap.response import ResponseParser, Status, Value, fetch_attrs, parse_status
from popvault.imap.settings import ImapSettings
from popvault.tls import HandshakeWording, wrap_client

_TLS_WORDING = HandshakeWording(
    untrusted="TLS certificate of {host} not trusted: {reason}",
    untrusted_hint="pass the server's CA file, or pin its certificate fingerprint",
    failed="TLS negotiation with {host} failed: {error}",
    timed_out="TLS connection to {host} failed: {error}",
    lost="TLS connection to {host} failed: {error}",
)


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
        if not is_atom(f.lstrip("\\")):
            raise ValueError(f"invalid IMAP flag {f!r}")
    if clean:
        parts.append(b" (" + " ".join(clean).encode("ascii") + b")")
    if item.internaldate is not None:
        parts.append(b" " + format_internaldate(item.internaldate).encode("ascii"))
    parts += [b" ", LiteralArg(item.data, item.stream, item.size if item.stream else None)]
    return parts


class ImapClient(ImapConnection):
    """One IMAP connection. Create with :meth:`connect`; close with :meth:`logout`.

    Not thread-safe. Every method raises :class:`NetworkError` when the connection
    fails or times out and :class:`ProtocolError` when the server breaks the protocol;
    after either, the client is unusable (connect again).
    """

    def __init__(self, sock: socket.socket, settings: ImapSettings) -> None:
        super().__init__(sock, settings.host)
        self._settings = settings
        self._logged_in = False

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
            _, status = self._run([b"LOGIN ", astring(s.user), b" ", astring(s.password)])
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
        _, status = self._run([b"CREATE ", mailbox(name)])
        if status.status == "OK" or status.code_name == "ALREADYEXISTS":
            return
        if self.folder_exists(name):
            return
        raise PermanentServerError(f"IMAP server refused to create folder {name!r}: {status.text}")

    def folder_exists(self, name: str) -> bool:
        """True if LIST finds a folder named exactly ``name``."""
        self._simple(b'LIST "" ', mailbox(name), what=f"list folder {name!r}")
        return bool(self._take_untagged(b"LIST"))

    def hierarchy_delimiter(self) -> str | None:
        """The server's hierarchy delimiter (``LIST "" ""``), ``None`` if flat."""
        self._simple(b'LIST "" ""')
        for resp in self._take_untagged(b"LIST"):
            values = ResponseParser(resp.segments, len(b"* LIST")).values()
            if len(values) >= 2 and isinstance(values[1], bytes):
                return values[1].decode("utf-8", "replace")
        return None

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
        parts: list[Arg] = [b"APPEND ", mailbox(folder)]
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
        parts: list[Arg] = [b"APPEND ", mailbox(folder)]
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
        self._simple(verb, mailbox(folder), what=f"open folder {folder!r}")
        exists = 0
        for resp in self.untagged:
            words = resp.line.split()
            if len(words) >= 3 and words[2].upper() == b"EXISTS" and words[1].isdigit():
                exists = int(words[1])
        self.untagged.clear()
        return exists

    def uid_fetch(self, folder: str, items: str) -> Generator[dict[str, Value], None, None]:
        """Yield the attributes of each ``* N FETCH`` of ``UID FETCH 1:* (items)`` on
        ``folder``, opened read-only (EXAMINE), keyed by upper-cased name (``"UID"``,
        ``"BODY[]"``, ...), one response at a time.

        Use ``BODY.PEEK[...]`` in ``items`` to leave the flags alone. Closing the
        iterator early is safe: the rest of the answer is read before the next command.
        """
        if self.select(folder, readonly=True) == 0:
            return
        tag = self._send([b"UID FETCH 1:* (" + items.encode("ascii") + b")"])
        try:
            while True:
                resp = self._read_response()
                if resp.tag == tag:
                    status = parse_status(resp)
                    if status is None or status.status != "OK":
                        raise ProtocolError(f"UID FETCH failed: {status.text if status else ''}")
                    return
                if resp.tag != "*":
                    self._note(resp)
                    continue
                attrs = fetch_attrs(resp)
                if attrs is not None:
                    yield attrs
        except GeneratorExit:
            self._drain(tag)
            raise

    def uid_fetch_headers(self, folder: str) -> list[tuple[int, int, bytes]]:
        """(UID, RFC822.SIZE, header section) of every message of ``folder``, read-only.

        Restore uses it to recognise messages already on the target after an
        interruption. Headers only: one round trip, no message bodies.
        """
        out: list[tuple[int, int, bytes]] = []
        for attrs in self.uid_fetch(folder, "UID RFC822.SIZE BODY.PEEK[HEADER]"):
            uid, size, head = attrs.get("UID"), attrs.get("RFC822.SIZE"), attrs.get("BODY[HEADER]")
            if isinstance(uid, str) and uid.isdigit() and isinstance(size, str) and size.isdigit():
                out.append((int(uid), int(size), head if isinstance(head, bytes) else b""))
        return out

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


def _wrap_tls(sock: socket.socket, settings: ImapSettings) -> socket.socket:
    return wrap_client(
        sock, settings.host, settings.tls_ca_file, settings.tls_fingerprint, _TLS_WORDING
    )


__all__ = ["AppendItem", "AppendOutcome", "ImapClient", "MessageRejected"]
