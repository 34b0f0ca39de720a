"""A hostile POP3 server cannot make the client use unbounded memory or time (issue 10).

A raw socket server plays the hostile part (a real Dovecot cannot send an endless CAPA
line): it answers the greeting and the commands it is scripted for, then sends one reply
without end, and counts the bytes it managed to send. Each case asserts the error class,
that it came quickly, and that the client stopped reading soon after the limit (the
bytes sent, which bound what the client could have received, and the client's peak
allocation measured with tracemalloc).
"""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

import popvault.pop3.client as client_mod
import popvault.pop3.limits as limits_mod
from popvault.demo.server import ScriptedPop3Server
from popvault.errors import NetworkError, ProtocolError
from popvault.pop3.client import Pop3Client, Pop3Settings
from popvault.pop3.parser import LineCollector, LineLimits, ReplyTooLarge

MiB = 1024 * 1024
TIMEOUT = 2.0
#: Socket buffers on both sides (plus our read-ahead) hold at most a few MiB in flight.
SLACK = 8 * MiB

Reply = Callable[[socket.socket], None]


class HostileServer:
    """Greets, answers USER/PASS/QUIT, and sends ``replies[command]`` to a command."""

    def __init__(self, replies: dict[str, Reply], capa: bytes = b"+OK\r\nUSER\r\n.\r\n"):
        self.replies = replies
        self.capa = capa
        self.sent = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        self._thread.join(10)

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def endless(self, conn: socket.socket, first: bytes, piece: bytes) -> None:
        """Send ``first`` then ``piece`` over and over until the client goes away."""
        try:
            self.send(conn, first)
            while True:
                self.send(conn, piece)
        except OSError:
            return

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            conn.settimeout(30)
            reader = conn.makefile("rb")
            self.send(conn, b"+OK hostile\r\n")
            for raw in reader:
                command = raw.decode().split(" ", 1)[0].strip().upper()
                if command in self.replies:
                    self.replies[command](conn)
                    return
                if command == "CAPA":
                    self.send(conn, self.capa)
                elif command == "QUIT":
                    self.send(conn, b"+OK bye\r\n")
                    return
                else:
                    self.send(conn, b"+OK\r\n")


@pytest.fixture
def small_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits_mod, "COLLECTED_DEADLINE_MIN", 0.0)


def settings(port: int, timeout: float = TIMEOUT) -> Pop3Settings:
    return Pop3Settings(
        host="127.0.0.1",
        port=port,
        tls="none",
        user="u",
        password="pw",
        auth="user",
        connect_timeout=timeout,
        timeout=timeout,
    )


def run(
    server: HostileServer, action: Callable[[Pop3Client], object], timeout: float = TIMEOUT
) -> tuple[BaseException, float, int]:
    """Run ``action`` on a fresh session; return the error, seconds taken and peak bytes
    allocated (tracemalloc) while it ran."""
    with server:
        tracemalloc.start()
        start = time.monotonic()
        try:
            with Pop3Client.connect(settings(server.port, timeout)) as client:
                action(client)
        except (ProtocolError, NetworkError) as exc:
            error: BaseException = exc
        else:
            pytest.fail("the hostile reply was accepted")
        finally:
            elapsed = time.monotonic() - start
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    return error, elapsed, peak


def test_endless_status_line_is_protocol_error() -> None:
    server = HostileServer({"STAT": lambda c: server.endless(c, b"+OK ", b"9" * 65536)})
    error, elapsed, peak = run(server, lambda c: c.stat())
    assert isinstance(error, ProtocolError)
    assert error.message == "127.0.0.1: STAT: status line longer than 65536 bytes"
    assert elapsed < 5
    assert server.sent < 64 * 1024 + SLACK
    assert peak < 4 * MiB


def test_endless_capa_line_is_protocol_error() -> None:
    endless_capa: Reply = lambda c: server.endless(c, b"+OK\r\nSASL ", b"X" * 65536)  # noqa: E731
    server = HostileServer({"CAPA": endless_capa})
    error, elapsed, peak = run(server, lambda c: None)
    assert isinstance(error, ProtocolError)
    assert error.message == "127.0.0.1: CAPA: reply line longer than 65536 bytes"
    assert elapsed < 5
    assert server.sent < 64 * 1024 + SLACK
    assert peak < 4 * MiB


def test_endless_capa_listing_is_protocol_error() -> None:
    server = HostileServer({"CAPA": lambda c: server.endless(c, b"+OK\r\n", b"X-CAP y\r\n" * 1000)})
    error, elapsed, _ = run(server, lambda c: None)
    assert isinstance(error, ProtocolError)
    assert error.message == "127.0.0.1: CAPA: reply has more than 1000 lines"
    assert elapsed < 5
    assert server.sent < 1 * MiB + SLACK


def test_endless_uidl_line_is_protocol_error() -> None:
    server = HostileServer({"UIDL": lambda c: server.endless(c, b"+OK\r\n1 ", b"u" * 65536)})
    error, elapsed, peak = run(server, lambda c: c.uidl())
    assert isinstance(error, ProtocolError)
    assert error.message == "127.0.0.1: UIDL: reply line longer than 65536 bytes"
    assert elapsed < 5
    assert server.sent < 64 * 1024 + SLACK
    assert peak < 4 * MiB


def test_endless_uidl_listing_stops_at_the_line_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real cap is 10 M lines (about 1 GB held as strings); a lower one shows the
    # mechanism in a second. The bytes sent bound what the client could hold.
    limits = LineLimits(max_line=65536, max_lines=100_000, max_bytes=1024 * MiB)
    monkeypatch.setattr(client_mod, "LISTING_LIMITS", limits)
    lines = b"".join(b"%d uid-%08d\r\n" % (n, n) for n in range(1, 1001))
    server = HostileServer({"UIDL": lambda c: server.endless(c, b"+OK\r\n", lines)})
    error, elapsed, peak = run(server, lambda c: c.uidl())
    assert isinstance(error, ProtocolError)
    assert error.message == "127.0.0.1: UIDL: reply has more than 100000 lines"
    assert elapsed < 10
    assert server.sent < 100_000 * len(lines) // 1000 + SLACK
    assert peak < 40 * MiB


def test_endless_list_listing_stops_at_the_byte_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = LineLimits(max_line=65536, max_lines=10_000_000, max_bytes=4 * MiB)
    monkeypatch.setattr(client_mod, "LISTING_LIMITS", limits)
    server = HostileServer(
        {"LIST": lambda c: server.endless(c, b"+OK\r\n", b"1 " + b"9" * 60000 + b"\r\n")}
    )
    error, elapsed, peak = run(server, lambda c: c.list())
    assert isinstance(error, ProtocolError)
    assert error.message == f"127.0.0.1: LIST: reply longer than {4 * MiB} bytes"
    assert elapsed < 5
    assert server.sent < 4 * MiB + SLACK
    assert peak < 24 * MiB


def test_endless_top_stops_at_its_byte_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_mod, "MAX_TOP_BYTES", 4 * MiB)
    server = HostileServer({"TOP": lambda c: server.endless(c, b"+OK\r\n", b"H" * 65536)})
    error, elapsed, _ = run(server, lambda c: c.top(1, 0))
    assert isinstance(error, ProtocolError)
    assert error.message == f"127.0.0.1: TOP 1 0: reply longer than {4 * MiB} bytes"
    assert elapsed < 5
    assert server.sent < 4 * MiB + SLACK


def trickle(server: HostileServer, first: bytes, piece: bytes, every: float) -> Reply:
    def reply(conn: socket.socket) -> None:
        try:
            server.send(conn, first)
            while True:
                time.sleep(every)
                server.send(conn, piece)
        except OSError:
            return

    return reply


def test_trickling_uidl_line_ends_at_the_deadline(small_deadlines: None) -> None:
    # Each byte comes well within the read timeout, so only the overall deadline
    # (10 x 0.3 s here) can end the reply; before, it ran as long as the server liked.
    server = HostileServer({})
    server.replies["UIDL"] = trickle(server, b"+OK\r\n1 ", b"u", 0.05)
    error, elapsed, _ = run(server, lambda c: c.uidl(), timeout=0.3)
    assert isinstance(error, NetworkError)
    assert error.message.startswith("127.0.0.1: UIDL: reply not complete within 3s")
    assert 3 <= elapsed < 3 + 0.3 + 2


def test_trickling_status_line_ends_at_the_deadline() -> None:
    server = HostileServer({})
    server.replies["STAT"] = trickle(server, b"+OK ", b"1", 0.05)
    error, elapsed, _ = run(server, lambda c: c.stat(), timeout=0.3)
    assert isinstance(error, NetworkError)
    assert error.message.startswith("127.0.0.1: STAT: reply not complete within 0.6s")
    assert 0.6 <= elapsed < 0.6 + 0.3 + 2


def test_retr_body_has_no_line_or_size_limit() -> None:
    # Guarantee 1: a message body is streamed, whatever its line length and size.
    body = b"Subject: long\r\n\r\n" + b"x" * (3 * MiB) + b"\r\n"
    with ScriptedPop3Server([("a", body)], user="u", password="pw") as srv:
        with Pop3Client.connect(settings(srv.port)) as client:
            got = bytearray()
            client.retr(1, got.extend)
    assert bytes(got) == body


def test_normal_listings_are_unchanged() -> None:
    messages = [(f"uid-{n}", b"Subject: %d\r\n\r\nhi\r\n" % n) for n in range(1, 51)]
    with ScriptedPop3Server(messages, user="u", password="pw") as srv:
        with Pop3Client.connect(settings(srv.port)) as client:
            assert client.uidl() == [(n, f"uid-{n}") for n in range(1, 51)]
            assert sorted(client.list()) == list(range(1, 51))
            assert "UIDL" in client.capabilities
            assert client.top(1, 0).startswith(b"Subject: 1\r\n")


@pytest.mark.parametrize("split", [1, 2, 3, 7, 64])
def test_collector_matches_splitlines(split: int) -> None:
    body = "CAPA\r\nSASL PLAIN\r\nIMPLEMENTATION é x\r\n\r\nlast\n\r\nx\x0cy\r\n".encode()
    collector = LineCollector(LineLimits(max_line=100, max_lines=100, max_bytes=1000))
    for i in range(0, len(body), split):
        collector(body[i : i + split])
    assert collector.finish() == body.decode().splitlines()


def test_collector_limits() -> None:
    def feed(data: bytes, **limits: int) -> None:
        values = {"max_line": 10, "max_lines": 3, "max_bytes": 100} | limits
        collector = LineCollector(LineLimits(**values))
        for i in range(0, len(data), 4):
            collector(data[i : i + 4])

    feed(b"012345678\r\n")  # 10 bytes: the CR counts, the LF does not
    with pytest.raises(ReplyTooLarge, match="line longer than 10 bytes"):
        feed(b"0123456789ab\r\n")
    with pytest.raises(ReplyTooLarge, match="line longer than 10 bytes"):
        feed(b"a\r\n" + b"z" * 11)
    feed(b"a\nb\nc\n")
    with pytest.raises(ReplyTooLarge, match="more than 3 lines"):
        feed(b"a\nb\nc\nd\n")
    with pytest.raises(ReplyTooLarge, match="longer than 100 bytes"):
        feed(b"abcdefg\n" * 13, max_lines=1000)


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    before = threading.active_count()
    yield
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
