"""The IMAP client against a small scripted IMAP server on 127.0.0.1 (plain and TLS)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from popvault.errors import AuthenticationFailed, TLSError
from popvault.imap import AppendItem, ImapClient, ImapSettings, MessageRejected
from popvault.tls import check_pin, spki_der
from tests.support.imap_helpers import append, uid_fetch_all
from tests.unit.imap.fake_server import (
    CERT,
    CERT_SHA256,
    FULL_CAPS,
    KEY,
    PASSWORD,
    SPKI_SHA256,
    FakeImap,
)


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
            append(c, "Archive", m, ["\\Seen", "\\Recent", "$Forwarded"], 1_700_000_000.0 + i)
            for i, m in enumerate(MESSAGES)
        ]
        assert uids == [1, 2, 3]
        got = list(uid_fetch_all(c, "Archive"))
    assert server.continuations == 0
    assert any(b"{%d+}" % len(MESSAGES[0]) in line for line in server.log)
    assert [g[1] for g in got] == MESSAGES
    assert [g[0] for g in got] == [1, 2, 3]
    assert got[0][2] == 1_700_000_000.0
    assert got[2][3] == ("\\Seen", "$Forwarded")


def test_synchronizing_literals_and_login(make_server: type[FakeImap]) -> None:
    server = make_server(caps=("IMAP4rev1",))
    with ImapClient.connect(settings_for(server)) as c:
        assert append(c, "INBOX", MESSAGES[1]) is None  # no UIDPLUS: no UID
        assert [m[1] for m in uid_fetch_all(c, "INBOX")] == [MESSAGES[1]]
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
                append(c, "INBOX", b"x" * 101)
            assert append(c, "INBOX", b"small\r\n") is not None
        if "LITERAL+" in caps:
            assert info.value.code == "OVERQUOTA"
            assert "Quota exceeded" in info.value.server_text
        else:  # refused before the literal was sent
            assert info.value.code == "TOOBIG"
        assert [m.data for m in server.folders["INBOX"]] == [b"small\r\n"]


def test_trycreate_creates_and_retries(make_server: type[FakeImap]) -> None:
    server = make_server()
    with ImapClient.connect(settings_for(server)) as c:
        assert append(c, "New", b"m\r\n") == 1
    assert [m.data for m in server.folders["New"]] == [b"m\r\n"]


def test_trycreate_without_literal_plus(make_server: type[FakeImap]) -> None:
    """Without LITERAL+ the client itself creates the folder on [TRYCREATE] and retries."""
    server = make_server(caps=("IMAP4rev1", "UIDPLUS"))
    with ImapClient.connect(settings_for(server)) as c:
        [outcome] = c.append_many("New", [AppendItem(b"m\r\n")])
    assert outcome.uid == 1 and outcome.error is None
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


def test_select_counts_messages(make_server: type[FakeImap]) -> None:
    server = make_server()
    with ImapClient.connect(settings_for(server)) as c:
        for m in MESSAGES:
            append(c, "INBOX", m)
        assert c.select("INBOX") == 3


def test_abandoned_fetch_is_drained(make_server: type[FakeImap]) -> None:
    server = make_server()
    with ImapClient.connect(settings_for(server)) as c:
        for m in MESSAGES:
            append(c, "INBOX", m)
        it = uid_fetch_all(c, "INBOX")
        assert next(it)[1] == MESSAGES[0]
        it.close()
        assert append(c, "INBOX", b"after\r\n") == 4


def test_implicit_tls_pinned_and_ca(make_server: type[FakeImap], tmp_path: Path) -> None:
    server = make_server(tls="implicit")
    for pin in (CERT_SHA256, SPKI_SHA256.upper(), "sha256:" + SPKI_SHA256):
        with ImapClient.connect(settings_for(server, tls_fingerprint=pin)) as c:
            assert append(c, "INBOX", b"tls\r\n") is not None
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
        append(c, "INBOX", b"x\r\n")
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
