"""Our POP3 client on ``socket`` + ``ssl``: typed results, streamed RETR, pipelining.

Implements RFC 1939 (POP3), RFC 2449 (CAPA, PIPELINING, response codes), RFC 2595
(STLS), RFC 3206 ([SYS/*], [AUTH]), RFC 5034 (SASL: PLAIN, LOGIN, XOAUTH2, OAUTHBEARER)
and RFC 6856 (UTF8) for the fetch side of popvault. Replies are parsed by
:mod:`popvault.pop3.parser`; message bodies go to a caller's sink chunk by chunk as they
arrive, dot-unstuffed and otherwise byte-exact (guarantee 1), in bounded memory for any
size and any line length (guarantee 7). TLS is verified by default or pinned (guarantee
8), see :mod:`popvault.tls`. Every failure is one of the :mod:`popvault.errors`
family (refined in :mod:`popvault.pop3.errors`); messages name the host, the command and
the server's reply, never a password, token or SASL string. Deletions (``dele``) only
take effect on a successful :meth:`Pop3Client.quit` (RFC 1939 section 6).
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType

from popvault.errors import NetworkError, PopvaultError, ProtocolError
from popvault.pop3.errors import TLS_WORDING, UidlNotSupported, error_for_reply
from popvault.pop3.limits import (
    CAPA_LIMITS,
    LISTING_LIMITS,
    MAX_TOP_BYTES,
    Deadline,
    collected_deadline,
    status_deadline,
)
from popvault.pop3.login import start_session
from popvault.pop3.numbers import ByNumber
from popvault.pop3.parser import (
    BodyChunk,
    BodyEnd,
    Event,
    Expect,
    LineCollector,
    LineLimits,
    ReplyTooLarge,
    ResponseParser,
    Status,
)
from popvault.pop3.settings import Pop3Settings, Pop3Url, parse_pop3_url
from popvault.tls import wrap_client

log = logging.getLogger("popvault.pop3")

Sink = Callable[[bytes], None]

# Aliases: inside Pop3Client the name ``list`` is the LIST command.
_Lines = list[str]
_Uidls = list[tuple[int, str]]
_Caps = dict[str, list[str]]

_RECV_SIZE = 256 * 1024
#: Bytes already received that one read gathers before parsing (see Pop3Client._gather).
_GATHER = 64 * 1024


class Pop3Client:
    """One POP3 session. Create with :meth:`connect`; use as a context manager.

    On leaving a ``with`` block normally the session ends with QUIT (so DELEs commit);
    when an exception propagates the connection is closed without QUIT, so the server
    discards pending deletions (RFC 1939 section 6). Not thread-safe.
    """

    def __init__(self, settings: Pop3Settings, sock: socket.socket) -> None:
        """Internal: use :meth:`connect`."""
        self._settings = settings
        self._sock: socket.socket | None = sock
        self._parser = ResponseParser()
        self._capabilities: _Caps = {}
        self._timestamp: str | None = None
        self._deletions = 0
        self._broken: PopvaultError | None = None
        self._greeting = ""
        # an end of stream or read error met while gathering, for the next read
        self._eof = False
        self._deferred: OSError | None = None

    def __repr__(self) -> str:
        state = "open" if self._sock is not None else "closed"
        return f"<Pop3Client {self._settings.user!r}@{self.host} {state}>"

    # -- life cycle ---------------------------------------------------------------

    @classmethod
    def connect(cls, settings: Pop3Settings) -> Pop3Client:
        """Connect, secure, read CAPA and log in; return a ready session.

        Raises :class:`NetworkError` (cannot connect, timeout, dropped),
        :class:`TLSError` (certificate refused, pin mismatch, STLS required but not
        offered), :class:`AuthenticationFailed` (exit 77), :class:`TemporaryFailure`
        ([IN-USE], [LOGIN-DELAY], [SYS/TEMP]: retry later), :class:`ProtocolError`.
        Nothing on the server changes; a retry is always safe.
        """
        host, port = settings.host, settings.effective_port
        try:
            sock = socket.create_connection((host, port), timeout=settings.connect_timeout)
        except TimeoutError:
            raise NetworkError(
                f"{host}:{port}: connect timed out after {settings.connect_timeout}s"
            ) from None
        except OSError as exc:
            raise NetworkError(f"{host}:{port}: cannot connect: {exc}") from None
        client: Pop3Client | None = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if settings.tls == "implicit":
                sock = cls._wrap_tls(sock, settings)
            sock.settimeout(settings.timeout)
            client = cls(settings, sock)
            client._start()
            return client
        except BaseException:
            if client is not None:
                client.close()
            else:
                sock.close()
            raise

    @staticmethod
    def _wrap_tls(sock: socket.socket, settings: Pop3Settings) -> ssl.SSLSocket:
        sock.settimeout(settings.connect_timeout)
        return wrap_client(
            sock, settings.host, settings.tls_ca_file, settings.tls_fingerprint, TLS_WORDING
        )

    def _start(self) -> None:
        start_session(self)

    def close(self) -> None:
        """Close the connection without QUIT; the server discards pending deletions.

        Idempotent; never raises.
        """
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def abort(self) -> None:
        """Make a read or write blocked in another thread fail at once (an interrupt
        while accounts run in parallel); the session then ends without QUIT, so the
        server applies no deletion. Never raises."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def quit(self) -> None:
        """End the session with QUIT, which is when the server applies deletions.

        If DELE was issued in this session, any failure (no reply, dropped connection,
        ``-ERR``) raises: the deletions may or may not have been applied, so the caller
        must treat them as not done and look at the server's UIDL list next time.
        Without deletions, a failing QUIT is ignored. Always closes the connection.
        """
        try:
            if self._sock is None:
                if self._deletions:
                    raise NetworkError(f"{self.host}: connection already closed before QUIT")
                return
            try:
                self._simple("QUIT")
            except PopvaultError:
                if self._deletions:
                    raise
        finally:
            self.close()

    def __enter__(self) -> Pop3Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self._broken is None:
            self.quit()
        else:
            self.close()

    # -- properties ---------------------------------------------------------------

    @property
    def host(self) -> str:
        """The server's host name, as configured."""
        return self._settings.host

    @property
    def capabilities(self) -> _Caps:
        """CAPA result (upper-case names to their arguments); empty if CAPA failed."""
        return {k: list(v) for k, v in self._capabilities.items()}

    @property
    def pipelining(self) -> bool:
        """True when the server advertises PIPELINING (RFC 2449)."""
        return "PIPELINING" in self._capabilities

    @property
    def greeting(self) -> str:
        """The text of the server's greeting."""
        return self._greeting

    # -- commands -----------------------------------------------------------------

    def stat(self) -> tuple[int, int]:
        """STAT: (message count, total size in octets as the server counts it)."""
        text = self._simple("STAT")
        fields = text.split()
        try:
            return int(fields[0]), int(fields[1])
        except (IndexError, ValueError):
            raise self._protocol("STAT", f"malformed reply {text[:80]!r}") from None

    def list(self) -> ByNumber:
        """LIST: message number to size. Sizes are a hint only (some servers count LF)."""
        result = ByNumber()
        for line in self._multi_lines("LIST", LISTING_LIMITS):
            fields = line.split()
            try:
                result[int(fields[0])] = int(fields[1])
            except (IndexError, ValueError):
                raise self._protocol("LIST", f"malformed line {line[:80]!r}") from None
        return result

    def uidl(self) -> _Uidls:
        """UIDL: (message number, unique id) pairs in server order.

        Raises :class:`UidlNotSupported` when the server refuses UIDL (without a
        temporary response code). Duplicate UIDLs (RFC 1939 allows them for identical
        copies) are returned as they are; the caller decides (backup never deletes them).
        """
        try:
            lines = self._multi_lines("UIDL", LISTING_LIMITS)
        except PopvaultError as exc:
            code = getattr(exc, "response_code", None)
            if isinstance(exc, ProtocolError | NetworkError) or code in (
                "IN-USE",
                "LOGIN-DELAY",
                "SYS/TEMP",
            ):
                raise
            raise UidlNotSupported(
                f"{self.host}: server does not support UIDL ({exc.message})",
                hint="popvault needs UIDL to know which messages it has archived",
                response_code=code,
            ) from None
        result: _Uidls = []
        for line in lines:
            fields = line.split()
            try:
                num, uid = int(fields[0]), fields[1]
            except (IndexError, ValueError):
                raise self._protocol("UIDL", f"malformed line {line[:80]!r}") from None
            result.append((num, uid))
        return result

    def retr(self, num: int, sink: Sink) -> int:
        """RETR ``num``: feed the message's dot-unstuffed bytes to ``sink``; return count.

        Bytes arrive exactly as the server sent them (CRLF kept) in chunks as they are
        received; the message is never held whole in memory. If the sink raises, the
        session is unusable afterwards (the rest of the reply is unread); close it.
        """
        label = f"RETR {num}"
        self._parser.expect(Expect.MULTI)
        self._send(f"RETR {num}\r\n".encode(), label)
        status = self._read_status(label)
        if not status.ok:
            raise error_for_reply(self.host, label, status.text)
        return self._read_body(label, sink)

    def retr_many(
        self,
        nums: Sequence[int],
        begin: Callable[[int], Sink],
        end: Callable[[int, int], None],
        window: int = 8,
    ) -> None:
        """RETR each of ``nums`` in order, up to ``window`` in flight with PIPELINING.

        For each message, ``begin(num)`` returns the sink for its bytes and
        ``end(num, nbytes)`` is called after its terminating dot. Without PIPELINING
        one command is sent at a time. If the server answers ``-ERR`` to one RETR, the
        replies already in flight are read and discarded, no further RETR is sent, and
        the error is raised; messages completed before it have had their ``end`` call.
        If a callback raises, the session is unusable afterwards.
        """
        self._pipelined(nums, "RETR {}", begin, end, window, lambda: None)

    def top_many(
        self,
        nums: Sequence[int],
        lines: int,
        got: Callable[[int, bytes], None],
        window: int = 8,
    ) -> None:
        """TOP each of ``nums`` with ``lines`` body lines, pipelined as :meth:`retr_many`
        (one round trip per window, not per message); ``got(num, reply)`` for each, in
        order. An ``-ERR`` is handled as there: no further TOP is sent, the error is
        raised. Each reply is held in memory (ProtocolError past MAX_TOP_BYTES)."""
        held: dict[int, bytearray] = {}

        def begin(num: int) -> Sink:
            out = held[num] = bytearray()

            def collect(data: bytes) -> None:
                if len(out) + len(data) > MAX_TOP_BYTES:
                    raise ReplyTooLarge(f"reply longer than {MAX_TOP_BYTES} bytes")
                out.extend(data)

            return collect

        def end(num: int, _nbytes: int) -> None:
            got(num, bytes(held.pop(num)))

        timeout = self._settings.timeout
        self._pipelined(
            nums, f"TOP {{}} {lines}", begin, end, window, lambda: collected_deadline(timeout)
        )

    def _pipelined(
        self,
        nums: Sequence[int],
        command: str,
        begin: Callable[[int], Sink],
        end: Callable[[int, int], None],
        window: int,
        body_deadline: Callable[[], Deadline | None],
    ) -> None:
        """``command`` (a format with one ``{}`` for the number) for each of ``nums``,
        multi-line replies, up to ``window`` in flight with PIPELINING (retr_many)."""
        limit = max(1, window) if self.pipelining else 1
        pending = iter(nums)
        inflight: deque[int] = deque()
        error: PopvaultError | None = None

        def fill() -> None:
            batch = []
            for num in pending:
                self._parser.expect(Expect.MULTI)
                batch.append(f"{command.format(num)}\r\n".encode())
                inflight.append(num)
                if len(inflight) >= limit:
                    break
            if batch:
                self._send(b"".join(batch), command.format(inflight[0]))

        fill()
        while inflight:
            num = inflight[0]
            label = command.format(num)
            status = self._read_status(label)
            if not status.ok:
                inflight.popleft()
                if error is None:
                    error = error_for_reply(self.host, label, status.text)
                continue
            if error is not None:
                self._read_body(label, lambda _data: None)
                inflight.popleft()
                continue
            try:
                sink = begin(num)
            except BaseException:
                self._broken = ProtocolError(f"{self.host}: session abandoned mid-reply")
                raise
            nbytes = self._read_body(label, sink, body_deadline())
            inflight.popleft()
            try:
                end(num, nbytes)
            except BaseException:
                if inflight:
                    self._broken = ProtocolError(f"{self.host}: session abandoned mid-reply")
                raise
            if len(inflight) <= limit // 2:
                fill()  # refill in batches: one write for many commands
        if error is not None:
            raise error

    def top(self, num: int, lines: int) -> bytes:
        """TOP ``num`` ``lines``: the headers, blank line and first ``lines`` body lines.

        Raises :class:`ProtocolError` past MAX_TOP_BYTES (it is held in memory).
        """
        out: list[bytes] = []
        self.top_many([num], lines, lambda _num, reply: out.append(reply))
        return out[0]

    def dele(self, num: int) -> None:
        """DELE ``num``: mark for deletion; it takes effect only on a successful QUIT."""
        self._simple(f"DELE {num}")
        self._deletions += 1

    def rset(self) -> None:
        """RSET: unmark all messages marked for deletion in this session."""
        self._simple("RSET")
        self._deletions = 0

    def noop(self) -> None:
        """NOOP: keep the session alive; raises if the server does not answer +OK."""
        self._simple("NOOP")

    # -- internals ----------------------------------------------------------------

    def _capa(self) -> _Caps:
        try:
            lines = self._multi_lines("CAPA", CAPA_LIMITS)
        except (ProtocolError, NetworkError):
            raise
        except PopvaultError:
            return {}
        caps: _Caps = {}
        for line in lines:
            fields = line.split()
            if fields:
                caps[fields[0].upper()] = fields[1:]
        return caps

    def _simple(self, command: str) -> str:
        self._parser.expect(Expect.SINGLE)
        self._send(command.encode() + b"\r\n", command)
        status = self._read_status(command)
        if not status.ok:
            raise error_for_reply(self.host, command, status.text)
        return status.text

    def _multi_lines(self, command: str, limits: LineLimits) -> _Lines:
        """Send ``command`` and collect its multi-line reply as text lines within
        ``limits`` and the collected-reply deadline (ProtocolError / NetworkError)."""
        deadline = collected_deadline(self._settings.timeout)
        self._parser.expect(Expect.MULTI)
        self._send(command.encode() + b"\r\n", command)
        status = self._read_status(command, deadline)
        if not status.ok:
            raise error_for_reply(self.host, command, status.text)
        collector = LineCollector(limits)
        self._read_body(command, collector, deadline)
        return collector.finish()

    def _read_status(self, label: str, deadline: Deadline | None = None) -> Status:
        """The next status line, complete by ``deadline`` (default: a status deadline)."""
        event = self._next_event(
            label, status_deadline(self._settings.timeout) if deadline is None else deadline
        )
        if not isinstance(event, Status):
            raise self._protocol(label, "expected a status line")
        return event

    def _read_body(self, label: str, sink: Sink, deadline: Deadline | None = None) -> int:
        """Feed a multi-line body to ``sink``; ``deadline`` None: no overall deadline
        (RETR). A :class:`ReplyTooLarge` from the sink becomes this session's error."""
        total = 0
        while True:
            event = self._next_event(label, deadline)
            if isinstance(event, BodyEnd):
                return total
            if not isinstance(event, BodyChunk):
                raise self._protocol(label, "unexpected event inside a multi-line reply")
            total += len(event.data)
            try:
                sink(event.data)
            except ReplyTooLarge as exc:
                raise self._protocol(label, exc.message) from None
            except BaseException:
                self._broken = ProtocolError(f"{self.host}: session abandoned mid-reply")
                raise

    def _next_event(self, label: str, deadline: Deadline | None = None) -> Event:
        """The next parser event, reading as needed; past ``deadline`` (None:
        none) a NetworkError, checked between reads."""
        while True:
            try:
                event = self._parser.next_event()
            except ProtocolError as exc:
                raise self._protocol(label, exc.message) from None
            if event is not None:
                return event
            if deadline is not None and time.monotonic() > deadline.at:
                err = NetworkError(
                    f"{self.host}: {label}: reply not complete within {deadline.seconds:g}s"
                    " (the server kept sending, too slowly or without end)"
                )
                self._broken = err
                raise err
            self._recv(label)

    def _recv(self, label: str) -> None:
        sock = self._check_open(label)
        try:
            if self._deferred is not None:
                exc, self._deferred = self._deferred, None
                raise exc
            data = b"" if self._eof else sock.recv(_RECV_SIZE)
            if data and len(data) < _GATHER:
                data = self._gather(sock, data)
        except TimeoutError:
            err: PopvaultError = NetworkError(
                f"{self.host}: no reply to {label} within {self._settings.timeout}s"
            )
            self._broken = err
            raise err from None
        except OSError as exc:
            err = NetworkError(f"{self.host}: connection lost while reading {label}: {exc}")
            self._broken = err
            raise err from None
        if not data:
            eof = self._parser.eof_error()
            err = type(eof)(f"{self.host}: {label}: {eof.message}", hint=eof.hint)
            self._broken = err
            raise err
        self._parser.feed(data)

    def _gather(self, sock: socket.socket, first: bytes) -> bytes:
        """``first`` plus whatever else has already arrived, up to about _GATHER bytes.

        Servers often send TLS records of a few KB and each ``recv`` returns one; parsing
        and storing them one by one costs more than the reads. Only bytes that are
        already here are taken (never a wait for more): the socket is switched to
        non-blocking for the gathering, so a read that would wait says so at once (one
        mode switch per gathering instead of a ``select`` per record). An end of stream
        or an error seen here is kept for the next read, so the bytes before it are
        parsed first.
        """
        parts = [first]
        total = len(first)
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            while total < _GATHER:
                try:
                    more = sock.recv(_RECV_SIZE)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    break  # nothing more has arrived yet
                except OSError as exc:  # e.g. a reset right after a reply: that reply counts
                    self._deferred = exc
                    break
                if not more:
                    self._eof = True
                    break
                parts.append(more)
                total += len(more)
        finally:
            sock.settimeout(timeout)
        return b"".join(parts) if len(parts) > 1 else first

    def _send(self, data: bytes, label: str) -> None:
        sock = self._check_open(label)
        log.debug("%s: > %s", self.host, label)
        try:
            sock.sendall(data)
        except TimeoutError:
            err: PopvaultError = NetworkError(f"{self.host}: timed out sending {label}")
            self._broken = err
            raise err from None
        except OSError as exc:
            err = NetworkError(f"{self.host}: connection lost while sending {label}: {exc}")
            self._broken = err
            raise err from None

    def _check_open(self, label: str) -> socket.socket:
        if self._broken is not None:
            raise NetworkError(
                f"{self.host}: cannot send {label}: session is unusable after an earlier "
                f"error ({self._broken.message})"
            )
        if self._sock is None:
            raise NetworkError(f"{self.host}: cannot send {label}: connection is closed")
        return self._sock

    def _protocol(self, label: str, what: str) -> ProtocolError:
        err = ProtocolError(f"{self.host}: {label}: {what}")
        self._broken = err
        return err


__all__ = [
    "Pop3Client",
    "Pop3Settings",
    "Pop3Url",
    "Sink",
    "UidlNotSupported",
    "parse_pop3_url",
]
