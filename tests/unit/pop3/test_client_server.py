"""The client against our scripted server, end to end on 127.0.0.1."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from popvault.demo.server import Faults, ScriptedPop3Server
from popvault.errors import AuthenticationFailed, PopvaultError, TemporaryFailure, TLSError
from popvault.pop3.client import Pop3Client, Pop3Settings
from popvault.pop3.errors import Pop3CommandFailed, UidlNotSupported
from tests.unit.pop3.certs import SelfSignedCert, make_cert

PASSWORD = "hunter2-secret"

MESSAGES: list[tuple[str, bytes]] = [
    ("uid-1", b"From: a@example\r\nSubject: one\r\n\r\nhello\r\n.dotted\r\n..\r\n.\r\n"),
    ("uid-2", b"Subject: lf only\n\nbare\nlf\n.\n"),
    ("uid-3", b"Subject: 8bit\r\n\r\n\x00\xff\xfe caf\xc3\xa9\r\nno final newline"),
    ("uid-4", b"Subject: long\r\n\r\n" + b"x" * 300_000 + b"\r\n"),
    ("uid-5", b""),
]


def served(data: bytes) -> bytes:
    """What a byte-exact client must return: stored bytes, CRLF added if no final LF."""
    return data if data.endswith(b"\n") else data + b"\r\n"


def settings_for(server: ScriptedPop3Server, **kwargs: object) -> Pop3Settings:
    options: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "tls": "none",
        "user": "alice",
        "password": PASSWORD,
        "connect_timeout": 5.0,
        "timeout": 5.0,
    }
    options.update(kwargs)
    return Pop3Settings(**options)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[ScriptedPop3Server]:
    with ScriptedPop3Server(
        MESSAGES,
        user="alice",
        password=PASSWORD,
        apop=True,
        sasl=("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"),
        utf8=True,
    ) as srv:
        yield srv


def fetch_all(client: Pop3Client) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for num in client.list():
        buf = bytearray()
        assert client.retr(num, buf.extend) == len(served(MESSAGES[num - 1][1]))
        out[num] = bytes(buf)
    return out


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (None, "AUTH PLAIN ***"),
        ("user", "PASS ***"),
        ("apop", "APOP alice ***"),
        ("plain", "AUTH PLAIN ***"),
        ("login", "AUTH LOGIN"),
        ("xoauth2", "AUTH XOAUTH2 ***"),
        ("oauthbearer", "AUTH OAUTHBEARER ***"),
    ],
)
def test_login_variants(server: ScriptedPop3Server, auth: str | None, expected: str) -> None:
    with Pop3Client.connect(settings_for(server, auth=auth)) as client:
        assert client.stat()[0] == len(MESSAGES)
    commands = server.commands
    assert expected in commands
    assert commands[-1] == "QUIT"
    assert "UTF8" in commands
    assert not any(PASSWORD in c for c in commands)


@pytest.mark.parametrize("auth", [None, "user", "apop", "plain", "login", "xoauth2", "oauthbearer"])
def test_wrong_password_is_authentication_failed(
    server: ScriptedPop3Server, auth: str | None
) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        Pop3Client.connect(settings_for(server, auth=auth, password="wrong-pw-xyz"))
    assert info.value.exit_code == 77
    assert "127.0.0.1" in info.value.message
    assert "wrong-pw-xyz" not in str(info.value) + repr(info.value)


def test_long_token_uses_two_step_sasl(server: ScriptedPop3Server) -> None:
    token = "t" * 400
    srv = ScriptedPop3Server(MESSAGES, user="alice", password=token, sasl=("XOAUTH2",))
    with srv, Pop3Client.connect(settings_for(srv, password=token, auth="xoauth2")) as client:
        assert client.stat()[0] == len(MESSAGES)
    assert "AUTH XOAUTH2" in srv.commands  # no initial response on the AUTH line
    assert "<sasl response>" in srv.commands


def test_user_pass_without_pipelining(server: ScriptedPop3Server) -> None:
    server.faults = Faults(pipelining=False)
    server.sasl = []
    with Pop3Client.connect(settings_for(server)) as client:
        assert not client.pipelining
        assert client.stat()[0] == len(MESSAGES)
    assert "PASS ***" in server.commands


def test_capabilities_and_listings(server: ScriptedPop3Server) -> None:
    with Pop3Client.connect(settings_for(server)) as client:
        assert client.pipelining
        assert client.host == "127.0.0.1"
        assert "UIDL" in client.capabilities
        assert client.capabilities["SASL"][0] == "PLAIN"
        assert client.uidl() == [(i, uid) for i, (uid, _) in enumerate(MESSAGES, 1)]
        assert client.list() == {i: len(data) for i, (_, data) in enumerate(MESSAGES, 1)}
        assert client.stat() == (len(MESSAGES), sum(len(d) for _, d in MESSAGES))
        client.noop()


def test_retr_is_byte_exact(server: ScriptedPop3Server) -> None:
    with Pop3Client.connect(settings_for(server)) as client:
        got = fetch_all(client)
    assert got == {i: served(data) for i, (_, data) in enumerate(MESSAGES, 1)}


def test_retr_streams_in_chunks() -> None:
    big = b"Subject: big\r\n\r\n" + (b"y" * 999 + b"\r\n") * 8000  # ~8 MB
    with ScriptedPop3Server([("big", big)], user="alice", password=PASSWORD) as srv:
        chunks: list[int] = []
        digest = hashlib.sha256()

        def sink(data: bytes) -> None:
            chunks.append(len(data))
            digest.update(data)

        with Pop3Client.connect(settings_for(srv)) as client:
            assert client.retr(1, sink) == len(big)
    assert digest.digest() == hashlib.sha256(big).digest()
    assert len(chunks) > 4 and max(chunks) < len(big) // 4


def test_retr_missing_message_is_command_failed(server: ScriptedPop3Server) -> None:
    with Pop3Client.connect(settings_for(server)) as client:
        with pytest.raises(Pop3CommandFailed, match="RETR 99"):
            client.retr(99, lambda _: None)
        assert client.stat()[0] == len(MESSAGES)  # the session is still usable


@pytest.mark.parametrize("pipelining", [True, False])
def test_retr_many(pipelining: bool) -> None:
    messages = [(f"u{i}", f"Subject: {i}\r\n\r\n.body {i}\r\n".encode() * i) for i in range(1, 31)]
    with ScriptedPop3Server(
        messages, user="alice", password=PASSWORD, faults=Faults(pipelining=pipelining)
    ) as srv:
        got: dict[int, bytearray] = {}
        order: list[tuple[str, int]] = []

        def begin(num: int) -> Callable[[bytes], None]:
            order.append(("begin", num))
            got[num] = bytearray()
            return got[num].extend

        def end(num: int, nbytes: int) -> None:
            order.append(("end", num))
            assert nbytes == len(got[num])

        with Pop3Client.connect(settings_for(srv)) as client:
            sends: list[bytes] = []
            real_send = client._send

            def counting_send(data: bytes, label: str) -> None:
                sends.append(data)
                real_send(data, label)

            client._send = counting_send  # type: ignore[method-assign]
            client.retr_many(list(range(1, 31)), begin, end, window=8)
    assert {n: bytes(b) for n, b in got.items()} == {
        i: data for i, (_, data) in enumerate(messages, 1)
    }
    assert order == [(kind, n) for n in range(1, 31) for kind in ("begin", "end")]
    retr_sends = [s for s in sends if s.startswith(b"RETR")]
    if pipelining:
        assert retr_sends[0].count(b"RETR") == 8
        assert len(retr_sends) < 30
    else:
        assert len(retr_sends) == 30


def test_retr_many_error_drains_and_raises(server: ScriptedPop3Server) -> None:
    ended: list[int] = []
    with Pop3Client.connect(settings_for(server)) as client:
        with pytest.raises(Pop3CommandFailed, match="RETR 77"):
            client.retr_many(
                [1, 77, 2], lambda n: lambda _: None, lambda n, b: ended.append(n), window=8
            )
        assert ended == [1]
        assert client.stat()[0] == len(MESSAGES)


def test_top(server: ScriptedPop3Server) -> None:
    with Pop3Client.connect(settings_for(server)) as client:
        assert client.top(1, 0) == b"From: a@example\r\nSubject: one\r\n\r\n"
        assert client.top(1, 2) == b"From: a@example\r\nSubject: one\r\n\r\nhello\r\n.dotted\r\n"


def test_dele_applies_only_on_quit(server: ScriptedPop3Server) -> None:
    client = Pop3Client.connect(settings_for(server))
    client.dele(1)
    client.close()  # no QUIT: the server must forget the deletion
    assert server.mailbox.uidls() == [u for u, _ in MESSAGES]

    with pytest.raises(RuntimeError), Pop3Client.connect(settings_for(server)) as client:
        client.dele(1)
        raise RuntimeError("crash before QUIT")
    assert server.mailbox.uidls() == [u for u, _ in MESSAGES]

    with Pop3Client.connect(settings_for(server)) as client:
        client.dele(1)
        client.dele(3)
    assert server.mailbox.uidls() == ["uid-2", "uid-4", "uid-5"]


def test_rset_unmarks(server: ScriptedPop3Server) -> None:
    with Pop3Client.connect(settings_for(server)) as client:
        client.dele(2)
        client.rset()
        client.quit()
    assert len(server.mailbox.uidls()) == len(MESSAGES)


def test_second_session_gets_in_use(server: ScriptedPop3Server) -> None:
    with Pop3Client.connect(settings_for(server)):
        with pytest.raises(TemporaryFailure) as info:
            Pop3Client.connect(settings_for(server))
        assert info.value.exit_code == 75
        assert getattr(info.value, "response_code", None) == "IN-USE"


def test_uidl_not_supported(server: ScriptedPop3Server) -> None:
    server.faults = Faults(no_uidl=True)
    with Pop3Client.connect(settings_for(server)) as client:
        with pytest.raises(UidlNotSupported):
            client.uidl()


def test_apop_without_timestamp_is_refused_before_sending() -> None:
    with ScriptedPop3Server(MESSAGES, user="alice", password=PASSWORD) as srv:
        with pytest.raises(Pop3CommandFailed, match="timestamp"):
            Pop3Client.connect(settings_for(srv, auth="apop"))
    assert not any(c.startswith("APOP") for c in srv.commands)


def test_commands_after_close_fail_cleanly(server: ScriptedPop3Server) -> None:
    client = Pop3Client.connect(settings_for(server))
    client.close()
    with pytest.raises(PopvaultError, match="closed"):
        client.stat()
    assert "closed" in repr(client)


# -- TLS ---------------------------------------------------------------------------


@pytest.fixture
def cert(tmp_path: Path) -> SelfSignedCert:
    return make_cert(tmp_path)


def tls_server(cert: SelfSignedCert, mode: str) -> ScriptedPop3Server:
    return ScriptedPop3Server(
        MESSAGES,
        user="alice",
        password=PASSWORD,
        tls=mode,  # type: ignore[arg-type]
        ssl_context=cert.server_context(),
    )


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_tls_with_ca_file(cert: SelfSignedCert, mode: str) -> None:
    with tls_server(cert, mode) as srv:
        settings = settings_for(srv, tls=mode, tls_ca_file=str(cert.cert_file))
        with Pop3Client.connect(settings) as client:
            assert fetch_all(client)[1] == MESSAGES[0][1]
            assert "STLS" not in client.capabilities
        if mode == "starttls":
            assert srv.commands[:3] == ["CAPA", "STLS", "CAPA"]


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_tls_untrusted_certificate_is_refused(cert: SelfSignedCert, mode: str) -> None:
    with tls_server(cert, mode) as srv, pytest.raises(TLSError, match="certificate"):
        Pop3Client.connect(settings_for(srv, tls=mode))
    assert "PASS ***" not in srv.commands and not any("AUTH" in c for c in srv.commands)


def test_tls_hostname_mismatch_is_refused(tmp_path: Path) -> None:
    other = make_cert(tmp_path, "other.example", ip="10.9.9.9")
    with tls_server(other, "implicit") as srv, pytest.raises(TLSError):
        Pop3Client.connect(settings_for(srv, tls="implicit", tls_ca_file=str(other.cert_file)))


@pytest.mark.parametrize("which", ["cert", "spki"])
def test_tls_fingerprint_pin(cert: SelfSignedCert, which: str) -> None:
    der = cert.der if which == "cert" else cert.spki
    hexdigest = hashlib.sha256(der).hexdigest()
    pin = ":".join(hexdigest[i : i + 2] for i in range(0, 64, 2))
    with tls_server(cert, "implicit") as srv:
        with Pop3Client.connect(settings_for(srv, tls="implicit", tls_fingerprint=pin)) as client:
            assert client.stat()[0] == len(MESSAGES)


def test_tls_wrong_pin_is_refused_even_with_valid_ca(cert: SelfSignedCert) -> None:
    pin = hashlib.sha256(b"not this one").hexdigest()
    with tls_server(cert, "implicit") as srv, pytest.raises(TLSError, match="pinned"):
        Pop3Client.connect(
            settings_for(srv, tls="implicit", tls_fingerprint=pin, tls_ca_file=str(cert.cert_file))
        )
    assert srv.commands == []


def test_starttls_required_but_not_offered(server: ScriptedPop3Server) -> None:
    with pytest.raises(TLSError, match="STLS"):
        Pop3Client.connect(settings_for(server, tls="starttls"))
    assert "PASS ***" not in server.commands


def test_reads_gather_what_has_arrived(cert: SelfSignedCert) -> None:
    """A reply that arrived as many small TLS records (one ``recv`` each) is parsed in
    few chunks, byte-exact; an end of stream right behind it does not hide the reply."""
    import socket
    import ssl
    import threading

    body = b"".join(b"line %05d with .dots\r\n" % i for i in range(2000))
    pieces = [b"+OK\r\n", *(body[i : i + 40] for i in range(0, len(body), 40))]
    pieces.append(b".\r\n+OK bye\r\n")
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            with cert.server_context().wrap_socket(conn, server_side=True) as tls:
                for piece in pieces:
                    tls.sendall(piece)  # one TLS record each

        server = threading.Thread(target=serve)
        server.start()
        ctx = ssl.create_default_context(cafile=str(cert.cert_file))
        raw = socket.create_connection(listener.getsockname())
        ours = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        server.join(10)  # every record is on its way or here; the server has closed
    with ours:
        client = Pop3Client(settings_for_host("127.0.0.1"), ours)
        chunks: list[bytes] = []
        assert client.retr(1, chunks.append) == len(body)
        assert b"".join(chunks) == body
        assert len(chunks) < len(pieces) // 10  # gathered: not one chunk per record
        client.quit()  # its +OK was read before the end of stream


def settings_for_host(host: str) -> Pop3Settings:
    return Pop3Settings(host=host, user="alice", password=PASSWORD, tls="none", timeout=5.0)
