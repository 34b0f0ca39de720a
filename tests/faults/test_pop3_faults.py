"""The POP3 client against each fault of the scripted server: right error, no hang.

Every case asserts the exception class and exit code the CLI will report, that it came
quickly (timeouts are small here), and, where deletions are involved, what the server's
mailbox holds afterwards (guarantee 2: nothing deleted unless QUIT succeeded).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from popvault.demo.server import Faults, ScriptedPop3Server
from popvault.errors import (
    AuthenticationFailed,
    NetworkError,
    PermanentServerError,
    PopvaultError,
    ProtocolError,
    TemporaryFailure,
)
from popvault.pop3.client import Pop3Client, Pop3Settings
from popvault.pop3.errors import MissingTerminator, UidlNotSupported

PASSWORD = "fault-secret-pw"
TIMEOUT = 0.5
MESSAGES = [
    ("a", b"Subject: a\r\n\r\n" + b"line of text\r\n" * 2000),
    ("b", b"Subject: b\r\n\r\nshort\r\n"),
    ("c", b"Subject: c\r\n\r\nthird\r\n"),
]


@pytest.fixture
def server() -> Iterator[ScriptedPop3Server]:
    with ScriptedPop3Server(MESSAGES, user="u", password=PASSWORD) as srv:
        yield srv


def settings(server: ScriptedPop3Server) -> Pop3Settings:
    return Pop3Settings(
        host="127.0.0.1",
        port=server.port,
        tls="none",
        user="u",
        password=PASSWORD,
        connect_timeout=TIMEOUT,
        timeout=TIMEOUT,
    )


def assert_clean(exc: PopvaultError) -> None:
    assert "127.0.0.1" in exc.message
    assert PASSWORD not in str(exc) + repr(exc) + (exc.hint or "")


def test_drop_mid_retr_is_network_error(server: ScriptedPop3Server) -> None:
    server.faults = Faults(drop_retr=(1, 5000))
    received = bytearray()
    with Pop3Client.connect(settings(server)) as client, pytest.raises(NetworkError) as info:
        client.retr(1, received.extend)
    assert info.value.exit_code == 75
    assert "RETR 1" in info.value.message
    assert_clean(info.value)
    assert 0 < len(received) < len(MESSAGES[0][1])


def test_drop_mid_pipelined_retr_many(server: ScriptedPop3Server) -> None:
    server.faults = Faults(drop_retr=(2, 20))
    ended: list[int] = []
    with Pop3Client.connect(settings(server)) as client, pytest.raises(NetworkError):
        client.retr_many([1, 2, 3], lambda n: lambda _: None, lambda n, b: ended.append(n))
    assert ended == [1]


def test_omitted_terminator_is_protocol_error(server: ScriptedPop3Server) -> None:
    server.faults = Faults(omit_terminator=2)
    with Pop3Client.connect(settings(server)) as client:
        client.retr(1, lambda _: None)
        with pytest.raises(MissingTerminator) as info:
            client.retr(2, lambda _: None)
    assert isinstance(info.value, ProtocolError) and info.value.exit_code == 1
    assert_clean(info.value)


@pytest.mark.parametrize("code", ["IN-USE", "LOGIN-DELAY", "SYS/TEMP"])
def test_temporary_login_codes(server: ScriptedPop3Server, code: str) -> None:
    server.faults = Faults(login_error=code)
    with pytest.raises(TemporaryFailure) as info:
        Pop3Client.connect(settings(server))
    assert info.value.exit_code == 75
    assert getattr(info.value, "response_code", None) == code
    assert f"[{code}]" in info.value.message
    assert_clean(info.value)


@pytest.mark.parametrize(
    ("code", "cls", "exit_code"),
    [
        ("AUTH", AuthenticationFailed, 77),
        ("", AuthenticationFailed, 77),
        ("SYS/PERM", PermanentServerError, 1),
    ],
)
def test_refusing_login_codes(
    server: ScriptedPop3Server, code: str, cls: type[PopvaultError], exit_code: int
) -> None:
    server.faults = Faults(login_error=code)
    with pytest.raises(cls) as info:
        Pop3Client.connect(settings(server))
    assert info.value.exit_code == exit_code
    assert not isinstance(info.value, TemporaryFailure)
    assert getattr(info.value, "response_code", "missing") == (code or None)
    assert_clean(info.value)


@pytest.mark.parametrize("verb", ["GREETING", "CAPA", "STAT", "RETR"])
def test_malformed_status_line(server: ScriptedPop3Server, verb: str) -> None:
    server.faults = Faults(malformed_status=verb)
    with pytest.raises(ProtocolError) as info:
        with Pop3Client.connect(settings(server)) as client:
            client.stat()
            client.retr(1, lambda _: None)
    assert "malformed" in info.value.message
    assert_clean(info.value)


def test_list_size_lie_does_not_change_retr(server: ScriptedPop3Server) -> None:
    server.faults = Faults(list_size_lies={2: 3, 3: 10_000})
    with Pop3Client.connect(settings(server)) as client:
        assert client.list()[2] == 3
        for num in (2, 3):
            out = bytearray()
            assert client.retr(num, out.extend) == len(MESSAGES[num - 1][1])
            assert bytes(out) == MESSAGES[num - 1][1]


def test_duplicate_uidls_are_returned_as_listed(server: ScriptedPop3Server) -> None:
    server.faults = Faults(duplicate_uidls=True)
    with Pop3Client.connect(settings(server)) as client:
        pairs = client.uidl()
    assert len(pairs) == len(MESSAGES)
    assert {u for _, u in pairs} == {MESSAGES[0][0]}
    assert [n for n, _ in pairs] == list(range(1, len(MESSAGES) + 1))


def test_no_uidl(server: ScriptedPop3Server) -> None:
    server.faults = Faults(no_uidl=True)
    with Pop3Client.connect(settings(server)) as client, pytest.raises(UidlNotSupported) as info:
        client.uidl()
    assert isinstance(info.value, PermanentServerError)
    assert info.value.hint is not None


@pytest.mark.parametrize("verb", ["GREETING", "CAPA", "PASS", "STAT", "RETR", "UIDL"])
def test_hang_times_out(verb: str) -> None:
    server = ScriptedPop3Server(
        MESSAGES, user="u", password=PASSWORD, faults=Faults(hang_on=verb), sasl=()
    )
    with server:
        started = time.monotonic()
        with pytest.raises(NetworkError) as info:
            with Pop3Client.connect(settings(server)) as client:
                client.stat()
                client.uidl()
                client.retr(1, lambda _: None)
        elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT * 6
    assert info.value.exit_code == 75
    assert "within" in info.value.message
    assert_clean(info.value)


def test_quit_dropped_before_commit_raises_and_keeps_mail(server: ScriptedPop3Server) -> None:
    server.faults = Faults(quit_drop="no_commit")
    client = Pop3Client.connect(settings(server))
    client.dele(1)
    with pytest.raises(NetworkError) as info:
        client.quit()
    assert "QUIT" in info.value.message
    assert server.mailbox.uidls() == ["a", "b", "c"]


def test_quit_committed_without_reply_still_raises(server: ScriptedPop3Server) -> None:
    # The deletion happened but the client cannot know: it must not claim success.
    server.faults = Faults(quit_drop="commit_no_reply")
    client = Pop3Client.connect(settings(server))
    client.dele(1)
    with pytest.raises(NetworkError):
        client.quit()
    assert server.mailbox.uidls() == ["b", "c"]


def test_quit_hang_with_deletions_raises(server: ScriptedPop3Server) -> None:
    server.faults = Faults(hang_on="QUIT")
    client = Pop3Client.connect(settings(server))
    client.dele(2)
    with pytest.raises(NetworkError):
        client.quit()
    assert server.mailbox.uidls() == ["a", "b", "c"]


def test_quit_failure_without_deletions_is_ignored(server: ScriptedPop3Server) -> None:
    server.faults = Faults(quit_drop="no_commit")
    with Pop3Client.connect(settings(server)) as client:
        assert client.stat()[0] == 3
    assert server.commands[-1] == "QUIT"


def test_reset_after_quit_reply_is_success(server: ScriptedPop3Server) -> None:
    server.faults = Faults(quit_drop="after_reply")
    client = Pop3Client.connect(settings(server))
    client.dele(3)
    client.quit()
    assert server.mailbox.uidls() == ["a", "b"]


def test_connection_refused_is_network_error() -> None:
    server = ScriptedPop3Server(MESSAGES, user="u", password=PASSWORD)
    with server:
        port = server.port
    s = Pop3Settings(host="127.0.0.1", port=port, tls="none", user="u", password=PASSWORD)
    with pytest.raises(NetworkError) as info:
        Pop3Client.connect(s)
    assert info.value.exit_code == 75


def test_session_unusable_after_drop(server: ScriptedPop3Server) -> None:
    server.faults = Faults(drop_retr=(1, 100))
    client = Pop3Client.connect(settings(server))
    with pytest.raises(NetworkError):
        client.retr(1, lambda _: None)
    with pytest.raises(NetworkError, match="unusable"):
        client.noop()
    client.close()


def test_server_stops_cleanly_while_client_hangs() -> None:
    server = ScriptedPop3Server(
        MESSAGES, user="u", password=PASSWORD, faults=Faults(hang_on="STAT")
    )
    server.start()
    client = Pop3Client.connect(settings(server))
    started = time.monotonic()
    server.stop()  # must not wait for the client
    assert time.monotonic() - started < 2.0
    with pytest.raises(PopvaultError):
        client.stat()
    client.close()
