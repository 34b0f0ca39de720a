"""A scripted IMAP server on 127.0.0.1 for the client tests: one connection at a time,
in-memory folders, plain, implicit TLS or STARTTLS with a fixed test certificate."""

from __future__ import annotations

import base64
import re
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

CERT = """-----BEGIN CERTIFICATE-----
MIIBpDCCAUmgAwIBAgIUdf4N63KwJe9CsPMlB0vDCHU4/eIwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNcG9wdmF1bHQtdGVzdDAgFw0yNjExMjcxNzU5MTNaGA8yMTI2
MTEwMzE3NTkxM1owGDEWMBQGA1UEAwwNcG9wdmF1bHQtdGVzdDBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABFTMXswMvtTPdEhyixHGpEzaXPlh8GnxUbFnBpfAKydO
qwwia4GhcUleUHdQQhMg8X4FvN8sVi+5z50jFJSl9EGjbzBtMB0GA1UdDgQWBBRV
GC7JYrsPU8m5rPJtluPtvs0xlDAfBgNVHSMEGDAWgBRVGC7JYrsPU8m5rPJtluPt
vs0xlDAPBgNVHRMBAf8EBTADAQH/MBoGA1UdEQQTMBGHBH8AAAGCCWxvY2FsaG9z
dDAKBggqhkjOPQQDAgNJADBGAiEAspawPftRxMj7Zz4jc0V659FmjzkZYheZTEdb
MKbGEkUCIQCEEAGgIdher4WO3NcCjFQimLKmaQTdSBJT9ZowMwsczg==
-----END CERTIFICATE-----
"""
KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgQPxHkBw53WdDLyN1
2yo9Df4Sj6SYdwvcDdbiPpKvayahRANCAARUzF7MDL7Uz3RIcosRxqRM2lz5YfBp
8VGxZwaXwCsnTqsMImuBoXFJXlB3UEITIPF+BbzfLFYvuc+dIxSUpfRB
-----END PRIVATE KEY-----
"""
# Computed with openssl: `x509 -outform der | sha256sum` and `-pubkey | pkey -pubin -outform der`.
CERT_SHA256 = "6e1e8ca17918881bdfe2618810c379d5ed81c27769dc7f7c25217a5ded8e7613"
SPKI_SHA256 = "44f91437ef28a5ed5eaf5e7c9e280300ad3b78bb4ff5625f10acf71cfcaaa332"

PASSWORD = 'pa ss"wörd'
FULL_CAPS = ("IMAP4rev1", "LITERAL+", "UIDPLUS", "AUTH=PLAIN", "SASL-IR")


@dataclass
class Stored:
    uid: int
    data: bytes
    flags: tuple[str, ...]
    date: str


@dataclass
class FakeImap:
    """A scripted IMAP server: one connection at a time, in-memory folders."""

    caps: tuple[str, ...] = FULL_CAPS
    user: str = "alice"
    password: str = PASSWORD
    max_size: int = 10_000_000
    tls: str = "none"  # "none", "implicit" or "starttls"
    cert_dir: Path | None = None
    folders: dict[str, list[Stored]] = field(default_factory=lambda: {"INBOX": []})
    log: list[bytes] = field(default_factory=list)
    continuations: int = 0
    next_uid: int = 1
    stopping: bool = False
    conn: socket.socket | None = None
    files: list[BinaryIO] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopping = True
        socket.create_connection(("127.0.0.1", self.port)).close()  # wake accept()
        self.thread.join(timeout=5)
        self.listener.close()
        assert not self.thread.is_alive()

    # --- server side
    def _ctx(self) -> ssl.SSLContext:
        assert self.cert_dir is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_dir / "cert.pem", self.cert_dir / "key.pem")
        return ctx

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.stopping:
                conn.close()
                return
            try:
                if self.tls == "implicit":
                    conn = self._ctx().wrap_socket(conn, server_side=True)
                self._session(conn)
            except (OSError, ssl.SSLError):
                pass
            finally:
                for f in self.files:
                    f.close()
                self.files.clear()
                if self.conn is not None:
                    self.conn.close()
                conn.close()

    def _session(self, conn: socket.socket) -> None:
        self.conn = conn
        self.rfile = conn.makefile("rb")
        self.files.append(self.rfile)
        caps = " ".join(self.caps + (("STARTTLS",) if self.tls == "starttls" else ()))
        self.send(f"* OK [CAPABILITY {caps}] fake ready")
        selected: str | None = None
        while True:
            line = self.rfile.readline()
            if not line:
                return
            segs = [line.rstrip(b"\r\n")]
            while m := re.search(rb"\{(\d+)(\+?)\}$", segs[-1]):
                n = int(m.group(1))
                if not m.group(2):
                    if segs[-1].split(b" ")[1].upper() == b"APPEND" and n > self.max_size:
                        tag = segs[0].split(b" ")[0].decode()
                        self.send(f"{tag} NO [TOOBIG] Message too large")
                        segs = []
                        break
                    self.continuations += 1
                    self.send("+ go ahead")
                segs.append(self.rfile.read(n))
                segs.append(self.rfile.readline().rstrip(b"\r\n"))
            if not segs:
                continue
            self.log.append(b"|".join(s if i % 2 == 0 else b"<lit>" for i, s in enumerate(segs)))
            tag, _, rest = segs[0].decode("utf-8", "replace").partition(" ")
            verb = rest.split(" ")[0].upper()
            args = tokens(segs)[2:] if verb != "UID" else tokens(segs)[3:]
            if verb == "CAPABILITY":
                self.send(f"* CAPABILITY {caps}")
                self.send(f"{tag} OK done")
            elif verb == "STARTTLS":
                self.send(f"{tag} OK begin TLS")
                conn = self._ctx().wrap_socket(conn, server_side=True)
                self.conn, self.rfile = conn, conn.makefile("rb")
                self.files.append(self.rfile)
                caps = " ".join(self.caps)
            elif verb == "LOGIN":
                ok = args == [self.user.encode(), self.password.encode()]
                self.send(f"{tag} OK logged in" if ok else f"{tag} NO [AUTHENTICATIONFAILED] bad")
            elif verb == "AUTHENTICATE":
                if len(args) == 2:
                    token = text(args[1])
                else:
                    self.send("+ ")
                    token = self.rfile.readline().strip()
                want = b"\0" + self.user.encode() + b"\0" + self.password.encode()
                ok = base64.b64decode(token) == want
                after = " ".join((*self.caps, "X-AFTER"))
                self.send(f"{tag} OK [CAPABILITY {after}] in" if ok else f"{tag} NO bad")
            elif verb == "CREATE":
                name = text(args[0]).decode()
                if name in self.folders:
                    self.send(f"{tag} NO [ALREADYEXISTS] Mailbox exists")
                else:
                    self.folders[name] = []
                    self.send(f"{tag} OK created")
            elif verb == "LIST":
                name = text(args[1]).decode()
                if name == "":
                    self.send('* LIST (\\Noselect) "/" ""')
                elif name in self.folders:
                    self.send(f'* LIST () "/" {name}')
                self.send(f"{tag} OK listed")
            elif verb == "APPEND":
                self._append(tag, args)
            elif verb in ("SELECT", "EXAMINE"):
                selected = text(args[0]).decode()
                self.send("* FLAGS (\\Seen \\Answered)")
                self.send(f"* {len(self.folders[selected])} EXISTS")
                self.send(f"{tag} OK [READ-WRITE] selected")
            elif verb == "UID" and rest.split(" ")[1].upper() == "FETCH":
                assert selected is not None
                self.send("* 1 FETCH (FLAGS (\\Seen))")  # unsolicited, no body
                for i, msg in enumerate(self.folders[selected], 1):
                    head = (
                        f"* {i} FETCH (UID {msg.uid} FLAGS ({' '.join(msg.flags)}) "
                        f'INTERNALDATE "{msg.date}" BODY[] {{{len(msg.data)}}}\r\n'
                    )
                    assert self.conn is not None
                    self.conn.sendall(head.encode() + msg.data + b")\r\n")
                self.send(f"{tag} OK fetched")
            elif verb == "LOGOUT":
                self.send("* BYE bye")
                self.send(f"{tag} OK logged out")
                return
            else:
                self.send(f"{tag} BAD unknown command")

    def _append(self, tag: str, args: list[object]) -> None:
        name = args[0]
        assert isinstance(name, bytes)
        flags: tuple[str, ...] = ()
        date = " 1-Jan-2000 00:00:00 +0000"
        for a in args[1:-1]:
            if isinstance(a, list):
                flags = tuple(x.decode() for x in a if isinstance(x, bytes))
            elif isinstance(a, bytes):
                date = a.decode()
        data = args[-1]
        assert isinstance(data, bytes)
        if name.decode() not in self.folders:
            self.send(f"{tag} NO [TRYCREATE] No such mailbox")
        elif len(data) > self.max_size:
            self.send(f"{tag} NO [OVERQUOTA] Quota exceeded (mailbox for user is full)")
        else:
            uid = self.next_uid
            self.next_uid += 1
            self.folders[name.decode()].append(Stored(uid, data, flags, date))
            if "UIDPLUS" in self.caps:
                self.send(f"{tag} OK [APPENDUID 1234 {uid}] Append completed.")
            else:
                self.send(f"{tag} OK Append completed.")

    def send(self, line: str) -> None:
        assert self.conn is not None
        self.conn.sendall(line.encode() + b"\r\n")


def text(value: object) -> bytes:
    assert isinstance(value, bytes), value
    return value


def tokens(segs: list[bytes]) -> list[object]:
    """Tokenize a command: atoms/quoted as bytes, literals as bytes, lists as lists."""
    out: list[object] = []
    stack: list[list[object]] = [out]
    for i, seg in enumerate(segs):
        if i % 2 == 1:
            stack[-1].append(seg)
            continue
        text = re.sub(rb"\{\d+\+?\}$", b"", seg)
        for m in re.finditer(rb'"((?:[^"\\]|\\.)*)"|(\()|(\))|([^\s()"]+)', text):
            if m.group(1) is not None:
                stack[-1].append(re.sub(rb"\\(.)", rb"\1", m.group(1)))
            elif m.group(2):
                new: list[object] = []
                stack[-1].append(new)
                stack.append(new)
            elif m.group(3):
                stack.pop()
            else:
                stack[-1].append(m.group(4))
    return out
