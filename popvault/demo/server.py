"""A small scripted POP3 server of ours, for ``popvault demo`` and fault-injection tests.

:class:`ScriptedPop3Server` listens on 127.0.0.1 (a random port) in a background thread
and serves a :class:`Mailbox` of ``(uidl, bytes)`` messages to one user, one session at
a time per maildrop (a second concurrent login gets ``-ERR [IN-USE]``, as RFC 2449
describes). Each connection is a :class:`popvault.demo.session.Session`, which speaks the
protocol (RFC 1939, 2449, 2595, 5034, 6856) and serves the stored bytes verbatim,
dot-stuffed; deletions are applied only on QUIT. :class:`Faults` knobs make it drop, lie,
hang or misbehave on purpose; commands are recorded with secrets redacted. ``stop()``
closes every socket and joins every thread it started.
"""

from __future__ import annotations

import hmac
import socket
import ssl
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from popvault.demo.session import POLL, Closed, Session


@dataclass
class Faults:
    """Misbehaviour to inject; change fields between sessions from the test thread.

    - ``drop_retr``: (message number, N): close after sending N bytes of that RETR reply.
    - ``quit_drop``: ``"no_commit"`` closes on QUIT without applying deletions or
      replying; ``"commit_no_reply"`` applies them, then closes without replying;
      ``"after_reply"`` replies +OK, applies them and resets the connection.
    - ``login_error``: a response code (``"IN-USE"``, ``"LOGIN-DELAY"``, ``"SYS/TEMP"``,
      ``"AUTH"``, ``"SYS/PERM"``), or ``""`` for none: every login attempt gets -ERR.
    - ``malformed_status``: a command verb (or ``"greeting"``) whose status line is garbage.
    - ``omit_terminator``: message number whose RETR ends by closing instead of ``.CRLF``.
    - ``list_size_lies``: message number to the size LIST (and STAT) should claim.
    - ``duplicate_uidls``: UIDL lists message 1's id for every message.
    - ``no_uidl``: UIDL answers -ERR and CAPA omits it.
    - ``hang_on``: a command verb (or ``"greeting"``) that is never answered; the session
      waits until the server stops.
    - ``pipelining``: advertise PIPELINING in CAPA.
    """

    drop_retr: tuple[int, int] | None = None
    quit_drop: Literal["no_commit", "commit_no_reply", "after_reply"] | None = None
    login_error: str | None = None
    malformed_status: str | None = None
    omit_terminator: int | None = None
    list_size_lies: dict[int, int] = field(default_factory=dict)
    duplicate_uidls: bool = False
    no_uidl: bool = False
    hang_on: str | None = None
    pipelining: bool = True


class Mailbox:
    """The maildrop: an ordered list of ``(uidl, bytes)``, safe to read from any thread."""

    def __init__(self, messages: Iterable[tuple[str, bytes]] = ()) -> None:
        self._lock = threading.Lock()
        self._messages: list[tuple[str, bytes]] = list(messages)
        self._locked_by: int | None = None

    def messages(self) -> list[tuple[str, bytes]]:
        """A snapshot of the current messages, in order."""
        with self._lock:
            return list(self._messages)

    def uidls(self) -> list[str]:
        """The UIDLs of the current messages, in order."""
        with self._lock:
            return [uid for uid, _ in self._messages]

    def add(self, uidl: str, data: bytes) -> None:
        """Append a message (visible to sessions that start afterwards)."""
        with self._lock:
            self._messages.append((uidl, data))

    def _acquire(self, session: int) -> list[tuple[str, bytes]] | None:
        with self._lock:
            if self._locked_by is not None:
                return None
            self._locked_by = session
            return list(self._messages)

    def _release(self, session: int, deleted: Iterable[tuple[str, bytes]] = ()) -> None:
        with self._lock:
            if self._locked_by != session:
                return
            self._locked_by = None
            gone = {id(m) for m in deleted}
            self._messages = [m for m in self._messages if id(m) not in gone]


class ScriptedPop3Server:
    """POP3 server on 127.0.0.1 in background threads; a context manager.

    ``messages`` is a :class:`Mailbox` or ``(uidl, bytes)`` pairs. ``tls`` is ``"none"``,
    ``"implicit"`` or ``"starttls"`` (both need ``ssl_context``, a server context).
    ``apop`` adds a timestamp to the greeting. ``sasl`` lists mechanisms offered in CAPA
    and accepted by AUTH. For XOAUTH2/OAUTHBEARER the password is the expected token.
    """

    def __init__(
        self,
        messages: Mailbox | Iterable[tuple[str, bytes]] = (),
        *,
        user: str = "user",
        password: str,
        faults: Faults | None = None,
        tls: Literal["none", "implicit", "starttls"] = "none",
        ssl_context: ssl.SSLContext | None = None,
        apop: bool = False,
        sasl: Sequence[str] = ("PLAIN",),
        utf8: bool = False,
    ) -> None:
        if tls != "none" and ssl_context is None:
            raise ValueError("tls needs an ssl_context")
        self.mailbox = messages if isinstance(messages, Mailbox) else Mailbox(messages)
        self.user = user
        self._password = password
        self.faults = faults if faults is not None else Faults()
        self.tls = tls
        self._ssl_context = ssl_context
        self.apop = apop
        self.sasl = [m.upper() for m in sasl]
        self.utf8 = utf8
        self._lock = threading.Lock()
        self._commands: list[str] = []
        self._sessions = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.host = "127.0.0.1"
        self.port = 0

    def __repr__(self) -> str:
        return f"<ScriptedPop3Server 127.0.0.1:{self.port} user={self.user!r}>"

    # -- life cycle ---------------------------------------------------------------

    def start(self) -> ScriptedPop3Server:
        """Listen and serve in the background; return self. ``port`` is set on return."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(16)
            listener.settimeout(POLL)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"pop3-accept-{self.port}", daemon=True
        )
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop serving: close the listener and all sessions, join all threads."""
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join()
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join()

    def __enter__(self) -> ScriptedPop3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- inspection ---------------------------------------------------------------

    @property
    def commands(self) -> list[str]:
        """Commands received so far, in order, with passwords and SASL data redacted."""
        with self._lock:
            return list(self._commands)

    @property
    def sessions(self) -> int:
        """Number of connections accepted so far."""
        with self._lock:
            return self._sessions

    def _record(self, command: str) -> None:
        with self._lock:
            self._commands.append(command)

    # -- serving --------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._sessions += 1
                number = self._sessions
                t = threading.Thread(
                    target=self._serve, args=(conn, number), name=f"pop3-session-{number}"
                )
                self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        session = Session(self, conn, number)
        try:
            session.run()
        except (Closed, OSError, ssl.SSLError):
            pass
        finally:
            session.finish()

    def _check_password(self, user: str, password: str) -> bool:
        return hmac.compare_digest(user.encode(), self.user.encode()) and hmac.compare_digest(
            password.encode(), self._password.encode()
        )


__all__ = ["Faults", "Mailbox", "ScriptedPop3Server"]
