"""The HTTP side of ``popvault serve``: a ``ThreadingHTTPServer`` on 127.0.0.1 only.

The standard library's server is enough here: one local user, a handful of requests a
page, no framework to keep up with, and nothing in it that binds anywhere but the
address given. Each request is handed to :class:`popvault.web.viewer.Viewer` (which
checks the method, the host and the token); this module only moves bytes, answers a
method it has never heard of with 405 like any other, never logs a request line (it
may hold the token), and gives even the server's own error answers the security
headers. Responses are HTTP/1.0-style: one request a connection, streamed bodies end
with the connection.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from popvault.errors import PopvaultError, UsageError
from popvault.vault import Vault
from popvault.web.viewer import PAGE_CSP, Viewer, security_headers

#: Seconds a connection may sit idle (a slow client cannot hold a thread for ever).
IDLE_TIMEOUT = 60


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = IDLE_TIMEOUT

    def version_string(self) -> str:
        return "popvault"

    def do_GET(self) -> None:
        self._respond()

    def do_HEAD(self) -> None:
        self._respond()

    def __getattr__(self, name: str) -> Callable[[], None]:
        if name.startswith("do_"):  # POST, PUT, DELETE, any other: the viewer says 405
            return self._respond
        raise AttributeError(name)

    def _respond(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        r = self.server.viewer.handle(self.command, self.path, headers)
        self.send_response(r.status)
        for name, value in [*security_headers(r.csp, r.corp), *r.headers]:
            self.send_header(name, value)
        self.send_header("Content-Type", r.content_type)
        if isinstance(r.body, bytes):
            self.send_header("Content-Length", str(len(r.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            if isinstance(r.body, bytes):
                self.wfile.write(r.body)
            else:
                for chunk in r.body:
                    self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away (a cancelled download)
        except Exception as exc:  # headers are sent: all that is left is to cut it short
            self.close_connection = True
            print(f"popvault serve: a download stopped: {_why(exc)}", file=sys.stderr)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The server's own errors (a malformed request, a line too long) in plain text,
        with the same security headers as every other answer."""
        self.close_connection = True
        status = HTTPStatus(code)
        body = f"{code} {status.phrase}\n".encode()
        self.send_response(code, status.phrase)
        for name, value in security_headers(PAGE_CSP):
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a request line may hold the token: nothing is logged


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    viewer: Viewer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line, never a traceback (the default prints one for any error)."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError | TimeoutError):
            print(f"popvault serve: a request failed: {_why(exc)}", file=sys.stderr)


def _why(exc: BaseException | None) -> str:
    if isinstance(exc, PopvaultError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


class Server:
    """``popvault serve``'s server, listening on 127.0.0.1 from construction on."""

    def __init__(self, vault: Vault, port: int = 0, token: str | None = None) -> None:
        try:
            self.httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} on 127.0.0.1 is in use",
                    hint="choose another --port, or leave --port out for a free one",
                ) from None
            if exc.errno == errno.EACCES:
                raise UsageError(
                    f"not allowed to listen on port {port}",
                    hint="ports below 1024 need root: choose one above 1024",
                ) from None
            raise PopvaultError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
        self.port = int(self.httpd.server_address[1])
        self.viewer = Viewer(vault, self.port, token)
        self.httpd.viewer = self.viewer

    @property
    def url(self) -> str:
        """The URL to open, with the access token."""
        return self.viewer.url

    def run(self) -> None:
        """Serve until interrupted (the signal's exception ends it)."""
        self.httpd.serve_forever(poll_interval=0.5)

    def close(self) -> None:
        """Stop listening; wait for a request that is reading the vault."""
        self.httpd.server_close()
        with self.viewer.lock:
            pass
