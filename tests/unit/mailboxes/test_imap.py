"""The IMAP client against a small scripted IMAP server on 127.0.0.1 (plain and TLS)."""

from __future__ import annotations

import base64
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pytest

from popvault.errors import AuthenticationFailed, ProtocolError, TLSError, UsageError
from popvault.mailboxes import (
    ImapClient,
    ImapSettings,
    ImapTarget,
    MessageRejected,
    decode_mutf7,
    encode_mutf7,
    parse_imap_url,
)
from popvault.mailboxes.imap import (
    AppendItem,
    format_internaldate,
    maildir_flags_to_imap,
    parse_internaldate,
)
from popvault.tlspin import check_pin, spki_der

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
            elif verb == "UID" and rest.split(" ")[1].upper() == "SEARCH":
                assert selected is not None
                name, value = text(args[-2]).decode(), text(args[-1])
                pattern = re.escape(name.encode() + b": ") + b".*" + re.escape(value)
                hits = [s.uid for s in self.folders[selected] if re.search(pattern, s.data, re.I)]
                self.send("* SEARCH" + "".join(f" {u}" for u in hits))
                self.send(f"{tag} OK searched")
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


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[type[FakeImap]]:
    (tmp_path / "cert.pem").write_text(CERT)
    (tmp_path / "key.pem").write_text(KEY)
    servers: list[FakeImap] = []

    class Bound(FakeImap):
        def __post_init__(self) -> None:
            self.cert_dir = tmp_path
            super().__post_init__()
            servers.append(self)

    yield Bound
    for s in servers:
        s.close()


def settings_for(server: FakeImap, **kw: object) -> ImapSettings:
    base: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "tls": server.tls,
        "user": "alice",
        "password": PASSWORD,
        "timeout": 10.0,
    }
    base.update(kw)
    return ImapSettings(**base)  # type: ignore[arg-type]


MESSAGES = [
    b'Subject: one\r\nMessage-ID: <1@x>\r\n\r\nbody with {5}\r\n) and ( and "quotes"\r\n',
    b"Subject: two\r\n\r\n8-bit \xe9\xff NUL \x00 bare LF\n",
    b"",
]


def test_append_literal_plus_and_fetch_back(make_server: type[FakeImap]) -> None:
    server = make_server()
    with ImapClient.connect(settings_for(server)) as c:
        assert "LITERAL+" in c.capabilities
        assert "X-AFTER" in c.capabilities  # capabilities re-read from the login answer
        c.create_folder("Archive")
        uids = [
            c.append("Archive", m, ["\\Seen", "\\Recent", "$Forwarded"], 1_700_000_000.0 + i)
            for i, m in enumerate(MESSAGES)
        ]
        assert uids == [1, 2, 3]
        got = list(c.uid_fetch_all("Archive"))
    assert server.continuations == 0
    assert any(b"{%d+}" % len(MESSAGES[0]) in line for line in server.log)
    assert [g[1] for g in got] == MESSAGES
    assert [g[0] for g in got] == [1, 2, 3]
    assert got[0][2] == 1_700_000_000.0
    assert got[2][3] == ("\\Seen", "$Forwarded")


def test_synchronizing_literals_and_login(make_server: type[FakeImap]) -> None:
    server = make_server(caps=("IMAP4rev1",))
    with ImapClient.connect(settings_for(server)) as c:
        assert c.append("INBOX", MESSAGES[1]) is None  # no UIDPLUS: no UID
        assert [m[1] for m in c.uid_fetch_all("INBOX")] == [MESSAGES[1]]
    # LOGIN sent the non-ASCII password as a literal after a continuation, then APPEND
    assert server.continuations == 2
    assert server.log[0].startswith(b"P0001 LOGIN alice {")
    assert PASSWORD.encode() not in b"".join(server.log)  # the log hides literal contents


def test_authenticate_plain_without_sasl_ir(make_server: type[FakeImap]) -> None:
    server = make_server(caps=("IMAP4rev1", "AUTH=PLAIN"))
    with ImapClient.connect(settings_for(server)) as c:
        assert "X-AFTER" in c.capabilities
    assert server.log[0] == b"P0001 AUTHENTICATE PLAIN"


def test_wrong_password_is_authentication_failed(make_server: type[FakeImap]) -> None:
    for caps in (FULL_CAPS, ("IMAP4rev1",)):
        server = make_server(caps=caps)
        with pytest.raises(AuthenticationFailed) as info:
            ImapClient.connect(settings_for(server, password="wrong secret"))
        assert "wrong secret" not in str(info.value)
        assert "alice" in str(info.value)


def test_rejected_message_does_not_stop_the_next(make_server: type[FakeImap]) -> None:
    for caps in (FULL_CAPS, ("IMAP4rev1", "UIDPLUS")):
        server = make_server(caps=caps, max_size=100)
        with ImapClient.connect(settings_for(server)) as c:
            with pytest.raises(MessageRejected) as info:
                c.append("INBOX", b"x" * 101)
            assert c.append("INBOX", b"small\r\n") is not None
        if "LITERAL+" in caps:
            assert info.value.code == "OVERQUOTA"
            assert "Quota exceeded" in info.value.server_text
        else:  # refused before the literal was sent
            assert info.value.code == "TOOBIG"
        assert [m.data for m in server.folders["INBOX"]] == [b"small\r\n"]


def test_trycreate_creates_and_retries(make_server: type[FakeImap]) -> None:
    server = make_server()
    with ImapClient.connect(settings_for(server)) as c:
        assert c.append("New", b"m\r\n") == 1
    assert [m.data for m in server.folders["New"]] == [b"m\r\n"]


def test_create_folder_mutf7_and_existing(make_server: type[FakeImap]) -> None:
    server = make_server()
    with ImapClient.connect(settings_for(server)) as c:
        c.create_folder("Archiv/Entwürfe & Co")
        c.create_folder("Archiv/Entwürfe & Co")  # exists: no error
        c.create_folder("INBOX")
        assert c.folder_exists("Archiv/Entwürfe & Co")
        assert not c.folder_exists("Nope")
        assert c.hierarchy_delimiter() == "/"
    assert "Archiv/Entw&APw-rfe &- Co" in server.folders


def test_append_many_pipelined_in_order(make_server: type[FakeImap]) -> None:
    for caps in (FULL_CAPS, ("IMAP4rev1", "UIDPLUS")):
        server = make_server(caps=caps, max_size=50)
        items = [AppendItem(b"m%d\r\n" % i if i != 3 else b"y" * 60, ("\\Seen",)) for i in range(7)]
        with ImapClient.connect(settings_for(server)) as c:
            outcomes = list(c.append_many("INBOX", items, window=3))
        assert [o.index for o in outcomes] == list(range(7))
        assert [o.uid for o in outcomes] == [1, 2, 3, None, 4, 5, 6]
        assert isinstance(outcomes[3].error, MessageRejected)
        assert [m.data for m in server.folders["INBOX"]] == [
            i.data for n, i in enumerate(items) if n != 3
        ]


def test_search_header(make_server: type[FakeImap]) -> None:
    server = make_server()
    with ImapClient.connect(settings_for(server)) as c:
        for m in MESSAGES:
            c.append("INBOX", m)
        assert c.select("INBOX") == 3
        assert c.search_header("Message-ID", "<1@x>") == [1]
        assert c.search_header("Subject", "nothing") == []


def test_abandoned_fetch_is_drained(make_server: type[FakeImap]) -> None:
    server = make_server()
    with ImapClient.connect(settings_for(server)) as c:
        for m in MESSAGES:
            c.append("INBOX", m)
        it = c.uid_fetch_all("INBOX")
        assert next(it)[1] == MESSAGES[0]
        it.close()
        assert c.append("INBOX", b"after\r\n") == 4


def test_implicit_tls_pinned_and_ca(make_server: type[FakeImap], tmp_path: Path) -> None:
    server = make_server(tls="implicit")
    for pin in (CERT_SHA256, SPKI_SHA256.upper(), "sha256:" + SPKI_SHA256):
        with ImapClient.connect(settings_for(server, tls_fingerprint=pin)) as c:
            assert c.append("INBOX", b"tls\r\n") is not None
    with ImapClient.connect(settings_for(server, tls_ca_file=str(tmp_path / "cert.pem"))):
        pass
    with pytest.raises(TLSError, match="does not match"):
        ImapClient.connect(settings_for(server, tls_fingerprint="00" * 32))
    with pytest.raises(TLSError, match="not trusted"):
        ImapClient.connect(settings_for(server))


def test_starttls(make_server: type[FakeImap], tmp_path: Path) -> None:
    server = make_server(tls="starttls")
    with ImapClient.connect(settings_for(server, tls_fingerprint=CERT_SHA256)) as c:
        assert "STARTTLS" not in c.capabilities
        c.append("INBOX", b"x\r\n")
    assert server.log[0] == b"P0001 STARTTLS"
    plain = make_server(tls="none")
    with pytest.raises(TLSError, match="STARTTLS"):
        ImapClient.connect(settings_for(plain, tls="starttls"))


def test_fingerprint_helpers() -> None:
    der = ssl.PEM_cert_to_DER_cert(CERT)
    assert spki_der(der)[:2] == b"\x30\x59"
    check_pin("h", der, CERT_SHA256)
    check_pin("h", der, ":".join(SPKI_SHA256[i : i + 2] for i in range(0, 64, 2)))
    with pytest.raises(TLSError):
        check_pin("h", der, "ab" * 32)


def test_parse_imap_url() -> None:
    assert parse_imap_url("imaps://bob%40example.org@mail.example.org/Archive/2024") == ImapTarget(
        "mail.example.org", 993, "implicit", "bob@example.org", "Archive/2024"
    )
    assert parse_imap_url("imap://bob@h:1143") == ImapTarget("h", 1143, "starttls", "bob", "INBOX")
    assert parse_imap_url("imap://bob@127.0.0.1/X?tls=none").tls == "none"
    assert parse_imap_url("imaps://bob@h/Entw%C3%BCrfe").folder == "Entwürfe"
    for bad in (
        "pop3://a@h/",
        "imaps://h/",
        "imaps://a:secret@h/",
        "imaps://a@h/?tls=none",
        "imaps://a@/",
    ):
        with pytest.raises(UsageError) as info:
            parse_imap_url(bad)
        assert "secret" not in str(info.value)


def test_settings_repr_hides_password() -> None:
    s = parse_imap_url("imaps://bob@h/").settings("hunter2")
    assert s.password == "hunter2" and "hunter2" not in repr(s)


def test_mutf7_vectors() -> None:
    vectors = {
        "~peter/mail/台北/日本語": "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
        "&": "&-",
        "Hi Mom -☺-!": "Hi Mom -&Jjo--!",
        "日本語": "&ZeVnLIqe-",
        "😀 x": "&2D3eAA- x",
        "INBOX": "INBOX",
    }
    for text, wire in vectors.items():
        assert encode_mutf7(text) == wire
        assert decode_mutf7(wire) == text
    for bad in ("&Jjo", "&A-", "é", "&!!-"):
        with pytest.raises(ProtocolError):
            decode_mutf7(bad)


def test_internaldate_and_flags() -> None:
    assert format_internaldate(0) == '" 1-Jan-1970 00:00:00 +0000"'
    assert parse_internaldate("17-Jul-1996 02:44:25 -0700") == 837596665.0
    assert parse_internaldate(" 1-Jan-1970 00:00:00 +0000") == 0.0
    with pytest.raises(ProtocolError):
        parse_internaldate("yesterday")
    assert maildir_flags_to_imap("SRFxP") == ["\\Flagged", "$Forwarded", "\\Answered", "\\Seen"]
    assert maildir_flags_to_imap(None) == []
