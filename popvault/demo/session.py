"""One connection to the scripted POP3 server: the protocol state machine it speaks.

:class:`Session` runs RFC 1939's AUTHORIZATION, TRANSACTION and UPDATE states for one
client of :class:`popvault.demo.server.ScriptedPop3Server`: USER/PASS, APOP, STAT, LIST,
UIDL, RETR, TOP, DELE, RSET, NOOP and QUIT, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH
(PLAIN, LOGIN, XOAUTH2, OAUTHBEARER) and RFC 6856 UTF8. RETR serves the stored bytes
verbatim, dot-stuffed by :func:`popvault.pop3.parser.dot_stuff` (a line starts after any
LF; CRLF is added before the terminator only when the message does not end in LF). The
server's :class:`~popvault.demo.server.Faults` are applied here, command by command; a
session ends by raising :class:`Closed`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import select
import socket
import ssl
import struct
from typing import TYPE_CHECKING

from popvault.pop3.parser import dot_stuff

if TYPE_CHECKING:
    from popvault.demo.server import Faults, ScriptedPop3Server

POLL = 0.05  # seconds between checks of the stop flag
_SEND_TIMEOUT = 10.0  # a client that stops reading cannot block stop() for longer


class Closed(Exception):
    """The session ends (client gone, fault fired, or server stopping)."""


class Session:
    """One connection's state machine (RFC 1939 AUTHORIZATION, TRANSACTION, UPDATE)."""

    def __init__(self, server: ScriptedPop3Server, conn: socket.socket, number: int) -> None:
        self.server = server
        conn.settimeout(_SEND_TIMEOUT)  # reads poll via select; this bounds sendall
        self.sock: socket.socket = conn
        self.number = number
        self.buf = bytearray()
        self.user: str | None = None
        self.messages: list[tuple[str, bytes]] | None = None  # set once logged in
        self.deleted: set[int] = set()
        self.timestamp = f"<{os.getpid()}.{number}@popvault-scripted>"

    @property
    def faults(self) -> Faults:
        return self.server.faults

    # -- I/O ------------------------------------------------------------------------

    def finish(self) -> None:
        self.server.mailbox._release(self.number)
        try:
            self.sock.close()
        except OSError:
            pass

    def hang(self) -> None:
        self.server._stop.wait()
        raise Closed

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self, verb: str, line: str) -> None:
        if self.faults.hang_on is not None and self.faults.hang_on.upper() == verb:
            self.hang()
        malformed = self.faults.malformed_status
        if malformed is not None and malformed.upper() == verb:
            self.send(b"HELLO? this is not a status line\r\n")
            return
        self.send(line.encode() + b"\r\n")

    def read_line(self) -> bytes:
        while True:
            idx = self.buf.find(b"\n")
            if idx >= 0:
                line = bytes(self.buf[:idx])
                del self.buf[: idx + 1]
                return line.rstrip(b"\r")
            if len(self.buf) > 64 * 1024:
                raise Closed
            self.buf += self.recv()

    def recv(self) -> bytes:
        while True:
            if self.server._stop.is_set():
                raise Closed
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
            if not pending:
                ready, _, _ = select.select([self.sock], [], [], POLL)
                if not ready:
                    continue
            data = self.sock.recv(65536)
            if not data:
                raise Closed
            return data

    def start_tls(self) -> None:
        assert self.server._ssl_context is not None
        self.sock = self.server._ssl_context.wrap_socket(self.sock, server_side=True)
        self.sock.settimeout(_SEND_TIMEOUT)

    # -- protocol ---------------------------------------------------------------------

    def run(self) -> None:
        if self.server.tls == "implicit":
            self.start_tls()
        greeting = "+OK popvault scripted POP3 server ready"
        if self.server.apop:
            greeting += " " + self.timestamp
        self.reply("GREETING", greeting)
        while True:
            raw = self.read_line()
            text = raw.decode("utf-8", "replace")
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            self.server._record(_redact(verb, arg))
            handler = getattr(self, f"cmd_{verb.lower()}", None)
            if handler is None or not verb.isalpha():
                self.reply(verb, "-ERR unknown command")
                continue
            handler(arg)

    def need_login(self, verb: str) -> list[tuple[str, bytes]] | None:
        if self.messages is None:
            self.reply(verb, "-ERR not logged in")
        return self.messages

    def message(self, verb: str, arg: str) -> tuple[int, bytes] | None:
        messages = self.need_login(verb)
        if messages is None:
            return None
        try:
            num = int(arg.split()[0])
        except (IndexError, ValueError):
            self.reply(verb, "-ERR bad message number")
            return None
        if not 1 <= num <= len(messages) or num in self.deleted:
            self.reply(verb, f"-ERR no such message {num}")
            return None
        return num, messages[num - 1][1]

    def size(self, num: int, data: bytes) -> int:
        return self.faults.list_size_lies.get(num, len(data))

    def cmd_capa(self, arg: str) -> None:
        caps = ["TOP", "USER", "RESP-CODES", "AUTH-RESP-CODE", "EXPIRE NEVER"]
        if not self.faults.no_uidl:
            caps.append("UIDL")
        if self.faults.pipelining:
            caps.append("PIPELINING")
        if self.server.sasl:
            caps.append("SASL " + " ".join(self.server.sasl))
        if self.server.tls == "starttls" and not isinstance(self.sock, ssl.SSLSocket):
            caps.append("STLS")
        if self.server.utf8:
            caps.append("UTF8")
        self.reply("CAPA", "+OK capability list follows")
        self.send("".join(c + "\r\n" for c in caps).encode() + b".\r\n")

    def cmd_stls(self, arg: str) -> None:
        if self.server.tls != "starttls" or isinstance(self.sock, ssl.SSLSocket):
            self.reply("STLS", "-ERR STLS not available")
            return
        self.reply("STLS", "+OK begin TLS negotiation")
        self.buf.clear()
        self.start_tls()

    def cmd_utf8(self, arg: str) -> None:
        self.reply("UTF8", "+OK UTF8 enabled" if self.server.utf8 else "-ERR no UTF8")

    def cmd_user(self, arg: str) -> None:
        if self.messages is not None:
            self.reply("USER", "-ERR already logged in")
            return
        self.user = arg
        self.reply("USER", "+OK send PASS")

    def cmd_pass(self, arg: str) -> None:
        if self.user is None or self.messages is not None:
            self.reply("PASS", "-ERR send USER first")
            return
        self.login("PASS", self.user, self.server._check_password(self.user, arg))

    def cmd_apop(self, arg: str) -> None:
        user, _, digest = arg.partition(" ")
        want = hashlib.md5((self.timestamp + self.server._password).encode()).hexdigest()
        ok = self.server.apop and user == self.server.user and hmac.compare_digest(digest, want)
        self.login("APOP", user, ok)

    def cmd_auth(self, arg: str) -> None:
        mech, _, initial = arg.partition(" ")
        mech = mech.upper()
        if mech not in self.server.sasl:
            self.reply("AUTH", "-ERR unsupported mechanism")
            return
        try:
            user, ok = self.sasl_exchange(mech, initial.strip() or None)
        except ValueError:
            self.reply("AUTH", "-ERR bad SASL exchange")
            return
        self.login("AUTH", user, ok)

    def sasl_read(self, challenge: bytes) -> bytes:
        self.send(b"+ " + base64.b64encode(challenge) + b"\r\n")
        line = self.read_line()
        self.server._record("<sasl response>")
        if line == b"*":
            raise ValueError("cancelled")
        if not line:
            return b""
        try:
            return base64.b64decode(line, validate=True)
        except binascii.Error:
            raise ValueError("bad base64") from None

    def sasl_exchange(self, mech: str, initial: str | None) -> tuple[str, bool]:
        if mech == "LOGIN":
            user = self.sasl_read(b"Username:").decode()
            password = self.sasl_read(b"Password:").decode()
            return user, self.server._check_password(user, password)
        if initial is None:
            first = self.sasl_read(b"")
        elif initial == "=":
            first = b""
        else:
            try:
                first = base64.b64decode(initial, validate=True)
            except binascii.Error:
                raise ValueError("bad base64") from None
        if mech == "PLAIN":
            parts = first.split(b"\0")
            if len(parts) != 3:
                raise ValueError("bad PLAIN message")
            user, password = parts[1].decode(), parts[2].decode()
            return user, self.server._check_password(user, password)
        text = first.decode()
        if mech == "XOAUTH2":
            fields = text.split("\x01")
            user = fields[0].removeprefix("user=")
            token = fields[1].removeprefix("auth=Bearer ") if len(fields) > 1 else ""
            ok = self.server._check_password(user, token)
            if not ok:
                self.sasl_read(b'{"status":"401","schemes":"bearer"}')
            return user, ok
        if mech == "OAUTHBEARER":
            header, _, rest = text.partition("\x01")
            user = header.split(",")[1].removeprefix("a=").replace("=2C", ",")
            user = user.replace("=3D", "=")
            token = ""
            for kv in rest.split("\x01"):
                if kv.startswith("auth=Bearer "):
                    token = kv.removeprefix("auth=Bearer ")
            ok = self.server._check_password(user, token)
            if not ok:
                if self.sasl_read(b'{"status":"invalid_token"}') != b"\x01":
                    raise ValueError("expected ^A after the error challenge")
            return user, ok
        raise ValueError("unsupported")

    def login(self, verb: str, user: str, ok: bool) -> None:
        if self.messages is not None:
            self.reply(verb, "-ERR already logged in")
            return
        code = self.faults.login_error
        if code is not None:
            prefix = f"[{code}] " if code else ""
            self.reply(verb, f"-ERR {prefix}login refused by fault injection")
            return
        if not ok:
            self.reply(verb, "-ERR [AUTH] invalid credentials")
            return
        messages = self.server.mailbox._acquire(self.number)
        if messages is None:
            self.reply(verb, "-ERR [IN-USE] maildrop is locked by another session")
            return
        self.messages = messages
        self.reply(verb, f"+OK {user} has {len(messages)} messages")

    def cmd_stat(self, arg: str) -> None:
        messages = self.need_login("STAT")
        if messages is None:
            return
        live = [(i, m) for i, m in enumerate(messages, 1) if i not in self.deleted]
        total = sum(self.size(i, data) for i, (_, data) in live)
        self.reply("STAT", f"+OK {len(live)} {total}")

    def cmd_list(self, arg: str) -> None:
        if arg.strip():
            found = self.message("LIST", arg)
            if found is not None:
                self.reply("LIST", f"+OK {found[0]} {self.size(*found)}")
            return
        messages = self.need_login("LIST")
        if messages is None:
            return
        self.reply("LIST", "+OK scan listing follows")
        lines = [
            f"{i} {self.size(i, data)}\r\n"
            for i, (_, data) in enumerate(messages, 1)
            if i not in self.deleted
        ]
        self.send("".join(lines).encode() + b".\r\n")

    def cmd_uidl(self, arg: str) -> None:
        messages = self.need_login("UIDL")
        if messages is None:
            return
        if self.faults.no_uidl:
            self.reply("UIDL", "-ERR command not implemented")
            return

        def uid(i: int) -> str:
            return messages[0][0] if self.faults.duplicate_uidls else messages[i - 1][0]

        if arg.strip():
            found = self.message("UIDL", arg)
            if found is not None:
                self.reply("UIDL", f"+OK {found[0]} {uid(found[0])}")
            return
        self.reply("UIDL", "+OK unique-id listing follows")
        lines = [f"{i} {uid(i)}\r\n" for i in range(1, len(messages) + 1) if i not in self.deleted]
        self.send("".join(lines).encode() + b".\r\n")

    def cmd_retr(self, arg: str) -> None:
        found = self.message("RETR", arg)
        if found is None:
            return
        num, data = found
        if self.faults.hang_on == "RETR":
            self.hang()
        if self.faults.malformed_status == "RETR":
            self.reply("RETR", "")
            return
        body = dot_stuff(data)
        if self.faults.omit_terminator == num:
            self.send(f"+OK {self.size(num, data)} octets\r\n".encode() + body)
            raise Closed
        reply = f"+OK {self.size(num, data)} octets\r\n".encode() + body + b".\r\n"
        if self.faults.drop_retr is not None and self.faults.drop_retr[0] == num:
            self.send(reply[: self.faults.drop_retr[1]])
            raise Closed
        self.send(reply)

    def cmd_top(self, arg: str) -> None:
        found = self.message("TOP", arg)
        if found is None:
            return
        fields = arg.split()
        try:
            count = int(fields[1])
        except (IndexError, ValueError):
            self.reply("TOP", "-ERR TOP needs a line count")
            return
        data = found[1]
        sep = data.find(b"\r\n\r\n")
        head_end = len(data) if sep < 0 else sep + 4
        tail = data[head_end:].splitlines(keepends=True)[: max(count, 0)]
        self.reply("TOP", "+OK top of message follows")
        self.send(dot_stuff(data[:head_end] + b"".join(tail)) + b".\r\n")

    def cmd_dele(self, arg: str) -> None:
        found = self.message("DELE", arg)
        if found is not None:
            self.deleted.add(found[0])
            self.reply("DELE", f"+OK message {found[0]} deleted")

    def cmd_rset(self, arg: str) -> None:
        if self.need_login("RSET") is not None:
            self.deleted.clear()
            self.reply("RSET", "+OK")

    def cmd_noop(self, arg: str) -> None:
        if self.need_login("NOOP") is not None:
            self.reply("NOOP", "+OK")

    def cmd_quit(self, arg: str) -> None:
        if self.faults.hang_on == "QUIT":
            self.hang()  # before the UPDATE state: nothing is deleted
        drop = self.faults.quit_drop
        if drop == "no_commit":
            raise Closed
        if self.messages is not None:
            gone = [self.messages[i - 1] for i in self.deleted]
            self.server.mailbox._release(self.number, gone)
        if drop == "commit_no_reply":
            raise Closed
        self.reply("QUIT", "+OK bye")
        if drop == "after_reply":
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raise Closed


def _redact(verb: str, arg: str) -> str:
    if verb == "PASS":
        return "PASS ***"
    if verb == "APOP":
        return f"APOP {arg.partition(' ')[0]} ***"
    if verb == "AUTH":
        mech, _, initial = arg.partition(" ")
        return f"AUTH {mech} ***" if initial else f"AUTH {mech}"
    return f"{verb} {arg}".rstrip()


__all__ = ["POLL", "Closed", "Session"]
