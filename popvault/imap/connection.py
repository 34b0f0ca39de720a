"""One IMAP connection's wire (RFC 3501 sections 2.2 and 5.5): tags, commands, responses.

:class:`ImapConnection` sends tagged commands, with literals announced as ``{n}`` (and
sent after the server's ``+``) or, when the server offers LITERAL+ (RFC 7888), as
``{n+}`` without waiting; a streamed literal that gives another number of bytes than
announced abandons its command with the connection, so a half message is never stored.
It reads responses whole (:class:`Response`, literals included), files each tagged
status under its tag, so several commands can be in flight (pipelining), and keeps the
untagged data of the last command for its caller. Any broken read or write is a
:class:`NetworkError`, anything the protocol does not allow a :class:`ProtocolError`;
after either the connection is unusable. :class:`ImapClient` builds the commands on it.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from popvault.errors import IntegrityError, NetworkError, ProtocolError
from popvault.imap.command import Arg, LiteralArg, flat
from popvault.imap.response import LITERAL_TAIL, Response, Status, parse_status

#: The longest response line accepted, and the largest literal.
MAX_LINE = 1024 * 1024
MAX_LITERAL = 2 * 1024 * 1024 * 1024


class ImapConnection:
    """The wire of one IMAP connection to ``host``: not thread-safe, not for direct use.

    ``untagged`` holds the untagged responses read since the last command was sent;
    ``capabilities`` (upper-cased) follow every ``[CAPABILITY ...]`` response code.
    """

    def __init__(self, sock: socket.socket, host: str) -> None:
        self._sock = sock
        self._host = host
        self._buf = bytearray()
        self._tag_counter = 0
        self._completed: dict[str, Status] = {}
        self.untagged: list[Response] = []
        self.capabilities: frozenset[str] = frozenset()
        self._logout_sent = False
        self._closed = False

    def close(self) -> None:
        """Close the socket without LOGOUT."""
        self._closed = True
        try:
            self._sock.close()
        except OSError:
            pass

    def _caps_from(self, status: Status) -> bool:
        if status.code_name == "CAPABILITY" and status.code:
            self.capabilities = frozenset(c.upper() for c in status.code.split()[1:])
            return True
        return False

    # --------------------------------------------------------------- commands

    def _next_tag(self) -> str:
        self._tag_counter += 1
        return f"P{self._tag_counter:04d}"

    def _simple(self, *parts: Arg, what: str | None = None) -> Status:
        """Run a command that must succeed; untagged data stays in ``untagged``."""
        _, status = self._run(list(parts))
        if status.status != "OK":
            verb = what or flat(parts[0]).decode("ascii", "replace").strip()
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

    # ------------------------------------------------------------------ I/O

    def _send_pieces(self, part: LiteralArg) -> None:
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
            raise NetworkError(f"IMAP connection to {self._host} failed: {exc}") from exc

    def _fill(self) -> None:
        try:
            data = self._sock.recv(256 * 1024)
        except OSError as exc:
            self._closed = True
            raise NetworkError(f"IMAP connection to {self._host} failed: {exc}") from exc
        if not data:
            self._closed = True
            raise NetworkError(f"IMAP server {self._host} closed the connection")
        self._buf += data

    def _readline(self) -> bytes:
        start = 0
        while True:
            i = self._buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self._buf[: i + 1])
                del self._buf[: i + 1]
                return line
            if len(self._buf) > MAX_LINE:
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
                raise NetworkError(f"IMAP connection to {self._host} failed: {exc}") from exc
            if not chunk:
                self._closed = True
                raise NetworkError(f"IMAP server {self._host} closed the connection")
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
            m = LITERAL_TAIL.search(line)
            if m is None:
                segments.append(line)
                break
            size = int(m.group(1))
            if size > MAX_LITERAL:
                raise ProtocolError("IMAP literal too large")
            segments.append(line)
            segments.append(self._read_exact(size))
        first = segments[0]
        tag = first.split(b" ", 1)[0].decode("ascii", "replace")
        return Response(tag, tuple(segments))


__all__ = ["MAX_LINE", "MAX_LITERAL", "ImapConnection"]
