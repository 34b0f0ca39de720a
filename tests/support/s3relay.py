"""A fault-injecting HTTP relay in front of the private SeaweedFS (tests only).

The real server cannot be made to fail on cue, so the faults an object store produces
(/work/shared/notes/object-storage.md) are scripted here: a threaded proxy on 127.0.0.1
that reads each HTTP/1.1 request of a keep-alive connection, and either passes it on to
the server or, when a scripted :class:`Fault` matches it, answers or breaks instead:

- ``slowdown``: ``503 SlowDown`` with S3's XML error body (the server never sees it);
- ``cut_request``: half the request body is read, then both connections are closed (a
  PUT cut off mid-upload: the server stores nothing);
- ``cut_response``: the server's answer is passed on up to half its body (part of its
  status line when it has none), then the connection is closed (a GET cut off
  mid-download, a PUT stored whose answer is lost);
- ``stall``: the request is passed on, then nothing is sent back for ``seconds`` before
  the connection is closed (a silent stall; the client's read timeout must end it);
- ``late``: the whole request is held for ``seconds``, then passed on and answered — a
  request still on its way (in a proxy, in kernel buffers) when its client dies, which
  lands after it.

Two standing policies: ``deny_delete`` answers every DELETE ``403 AccessDenied`` except
for the writer lock (``.../lock``) and leases (``.../locks/...``) — what an append-only
bucket policy does (docs/storage.md); ``drop_conditional`` removes ``If-None-Match`` from
requests, so the server overwrites: a server that ignores conditional writes. (SeaweedFS
without ``-s3.config`` checks no signatures, so the changed request is still accepted.)

``log`` records every request seen as (method, path, outcome).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

FAULT_KINDS = ("slowdown", "cut_request", "cut_response", "stall", "late")


@dataclass
class Fault:
    """``times`` requests matching ``method`` (any if None) and whose path contains
    ``key`` (any if None) get ``kind``; ``every`` > 1 lets that many matching requests
    pass between two faults (the first matching one already fails)."""

    kind: str
    times: int = 1
    method: str | None = None
    key: str | None = None
    seconds: float = 0.0
    every: int = 1
    seen: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}")


@dataclass
class Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.target).path)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def without(self, name: str) -> Request:
        kept = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        return Request(self.method, self.target, kept, self.body)

    def raw(self, body: bytes | None = None) -> bytes:
        head = f"{self.method} {self.target} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in self.headers) + "\r\n"
        return head.encode("latin-1") + (self.body if body is None else body)


class _Closed(Exception):
    """The peer closed the connection between requests."""


def _read_head(f: BinaryIO) -> tuple[str, list[tuple[str, str]]]:
    first = f.readline(65536)
    if not first:
        raise _Closed
    headers: list[tuple[str, str]] = []
    while True:
        line = f.readline(65536)
        if not line:
            raise _Closed
        if line in (b"\r\n", b"\n"):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    return first.decode("latin-1").rstrip("\r\n"), headers


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name.lower()), None)


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) < n:
        raise _Closed
    return data


def _read_chunked(f: BinaryIO) -> bytes:
    """A chunked body, kept as sent (sizes and trailer included)."""
    out = bytearray()
    while True:
        line = f.readline(65536)
        if not line:
            raise _Closed
        out += line
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while True:
                trailer = f.readline(65536)
                if not trailer:
                    raise _Closed
                out += trailer
                if trailer in (b"\r\n", b"\n"):
                    return bytes(out)
        out += _read_exact(f, size + 2)


def _error(status: int, reason: str, code: str, message: str) -> bytes:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>relay</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


def _answer(uf: BinaryIO, method: str) -> tuple[bytes, bool]:
    """The server's whole answer (raw) and whether the connection stays open."""
    while True:
        line, headers = _read_head(uf)
        status = int(line.split(" ", 2)[1])
        if status != 100:
            break
    head = (line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode("latin-1")
    keep = (_get(headers, "Connection") or "").lower() != "close"
    if method == "HEAD" or status in (204, 304):
        return head, keep
    if (_get(headers, "Transfer-Encoding") or "").lower() == "chunked":
        return head + _read_chunked(uf), keep
    length = _get(headers, "Content-Length")
    if length is None:
        return head + uf.read(), False
    return head + _read_exact(uf, int(length)), keep


def delete_allowed(path: str) -> bool:
    """What the append-only policy lets through: the lock object and leases."""
    return path.endswith("/lock") or "/locks/" in path


class S3Relay:
    """The relay; see the module docstring. ``endpoint`` goes into AWS_ENDPOINT_URL."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.faults: list[Fault] = []
        self.deny_delete = False
        self.drop_conditional = False
        self.log: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._closed = False
        self._socks: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True, name="s3relay").start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def pending(self) -> int:
        """Faults not yet injected."""
        with self._lock:
            return sum(f.times for f in self.faults)

    def injected(self, kind: str | None = None) -> int:
        with self._lock:
            return sum(1 for _m, _p, o in self.log if o in FAULT_KINDS and kind in (None, o))

    def _take(self, req: Request) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.times <= 0:
                    continue
                if f.method is not None and f.method != req.method:
                    continue
                if f.key is not None and f.key not in req.path:
                    continue
                f.seen += 1
                if (f.seen - 1) % f.every:
                    continue
                f.times -= 1
                return f
        return None

    def _note(self, req: Request, outcome: str) -> None:
        with self._lock:
            self.log.append((req.method, req.path, outcome))

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        uf: BinaryIO | None = None
        with self._lock:
            self._socks.add(client)
        try:
            cf = client.makefile("rb")
            while not self._closed:
                line, headers = _read_head(cf)
                method, target, _version = line.split(" ", 2)
                if (_get(headers, "Expect") or "").lower() == "100-continue":
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    headers = [(k, v) for k, v in headers if k.lower() != "expect"]
                if (_get(headers, "Transfer-Encoding") or "").lower() == "chunked":
                    body = _read_chunked(cf)
                    length = len(body)
                else:
                    length = int(_get(headers, "Content-Length") or 0)
                    body = b""
                req = Request(method, target, headers, body)
                fault = self._take(req)
                if fault is not None and fault.kind == "cut_request":
                    self._note(req, "cut_request")
                    if length and not req.body:
                        half = _read_exact(cf, length // 2)
                        upstream = self._connect()
                        upstream.sendall(req.raw(half))
                    return
                if length and not req.body:
                    req.body = _read_exact(cf, length)
                if fault is not None and fault.kind == "late":
                    self._note(req, "late")
                    time.sleep(fault.seconds)
                if fault is not None and fault.kind == "slowdown":
                    self._note(req, "slowdown")
                    client.sendall(_error(503, "Slow Down", "SlowDown", "Please reduce rate."))
                    continue
                if req.method == "DELETE" and self.deny_delete and not delete_allowed(req.path):
                    self._note(req, "denied")
                    client.sendall(_error(403, "Forbidden", "AccessDenied", "Access Denied"))
                    continue
                if self.drop_conditional:
                    req = req.without("If-None-Match")
                if upstream is None:
                    upstream = self._connect()
                    uf = upstream.makefile("rb")
                assert uf is not None
                upstream.sendall(req.raw())
                answer, keep = _answer(uf, req.method)
                if fault is not None and fault.kind == "stall":
                    self._note(req, "stall")
                    time.sleep(fault.seconds)
                    return
                if fault is not None and fault.kind == "cut_response":
                    self._note(req, "cut_response")
                    head_end = answer.index(b"\r\n\r\n") + 4
                    rest = len(answer) - head_end  # no body: cut in the status line
                    client.sendall(answer[: head_end + rest // 2 if rest else 8])
                    return
                self._note(req, answer[9:12].decode())
                client.sendall(answer)
                if not keep:
                    return
        except (_Closed, OSError, ValueError):
            return
        finally:
            for s in (client, upstream):
                if s is not None:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()
            with self._lock:
                self._socks.discard(client)

    def _connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.target_port))
        with self._lock:
            self._socks.add(s)
        return s

    def __enter__(self) -> S3Relay:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
