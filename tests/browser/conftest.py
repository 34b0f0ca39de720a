"""Fixtures of the viewer tests: a test vault made with the CLI, ``popvault serve`` on it
as a child process, a listener on 127.0.0.1 that counts every request a hostile message
tries to make, and headless Chromium (Debian's ``/usr/bin/chromium``, driven by
Playwright; no browser is downloaded).

The vault (made once a session) holds :data:`PLAIN` messages plus three built to
be found: one with a binary attachment and a planted word, an HTML message with a
``cid:`` inline image, and a hostile HTML message whose every trick names the listener.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.browser import mail
from tests.cli.helpers import PASSPHRASE, REPO, make_vault

CHROMIUM = "/usr/bin/chromium"


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str]

    def _any(self) -> None:
        self.server.hits.append(f"{self.command} {self.path}")  # type: ignore[attr-defined]
        body = b"remote"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Listener:
    """A web server on 127.0.0.1 standing in for the sender's tracking server."""

    port: int
    hits: list[str]


@pytest.fixture(scope="session")
def listener() -> Iterator[Listener]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    httpd.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield Listener(int(httpd.server_address[1]), httpd.hits)  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


def serve_env(home: Path) -> dict[str, str]:
    """The environment of a popvault child: passphrase, private cache/config/state."""
    env = dict(os.environ)
    for name in ("POPVAULT_VAULT", "POPVAULT_CONFIG", "POPVAULT_CACHE", "POPVAULT_DEBUG"):
        env.pop(name, None)
    env.update(
        POPVAULT_PASSPHRASE=PASSPHRASE,
        POPVAULT_CACHE_DIR=str(home / "cache"),
        XDG_CONFIG_HOME=str(home / "xdg-config"),
        XDG_STATE_HOME=str(home / "xdg-state"),
        PYTHONPATH=str(REPO),
    )
    return env


@dataclass
class Served:
    """A running ``popvault serve``."""

    proc: subprocess.Popen[str]
    url: str  # the first line it printed
    vault: Path
    env: dict[str, str]

    @property
    def base(self) -> str:
        return self.url.split("/?", 1)[0]

    @property
    def token(self) -> str:
        return self.url.rsplit("token=", 1)[1]

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _out, err = self.proc.communicate(timeout=20)  # closes the pipes
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        return self.proc.returncode, err


def start_serve(vault: Path, env: dict[str, str], *args: str) -> Served:
    """Start ``popvault --vault VAULT serve ARGS`` and wait for its first line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "popvault", "--vault", str(vault), "serve", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("http://127.0.0.1:"):
        proc.kill()
        _out, err = proc.communicate()
        raise AssertionError(f"serve printed {line!r} first; stderr: {err}")
    return Served(proc, line, vault, env)


@dataclass
class Site:
    """The test vault, its messages and the server on it."""

    served: Served
    mail: mail.ViewerMail
    home: Path
    ids: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory, listener: Listener) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("viewer")
    env = serve_env(home)
    vault = make_vault(home / "vault")
    made = mail.make(listener.port)
    folder = mail.write_eml_folder(home / "mail", made)
    proc = subprocess.run(
        [sys.executable, "-m", "popvault", "--vault", str(vault), "import", str(folder)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    served = start_serve(vault, env)
    yield Site(served, made, home)
    served.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian (tests run as root: no sandbox of its own)."""
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as p:
        args = ["--no-sandbox", "--disable-dev-shm-usage"]  # root; small /dev/shm in CI
        b = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser profile (no cookie yet) and one page in it."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 720})
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture
def logged_in(page: Any, site: Site) -> Any:
    """A page that has opened the token URL (and so holds the cookie)."""
    response = page.goto(site.served.url)
    assert response is not None and response.status == 200
    return page
