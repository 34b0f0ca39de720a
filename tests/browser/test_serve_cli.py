"""``popvault serve`` as a command: its first line, a port in use, a vault a writer
holds, Ctrl-C, and what it never prints (no browser needed here)."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from popvault.vault.vault import Vault
from tests.browser.conftest import Site, serve_env, start_serve
from tests.cli.helpers import PASSPHRASE, make_vault


def _get(url: str, cookie: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=20) as r:  # noqa: S310
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _small_vault(home: Path) -> Path:
    vault = make_vault(home / "vault")
    env = serve_env(home)
    folder = home / "mail"
    folder.mkdir()
    (folder / "a.eml").write_bytes(b"From: a@example.org\r\nSubject: only one\r\n\r\nhello\r\n")
    subprocess.run(
        [sys.executable, "-m", "popvault", "--vault", str(vault), "import", str(folder)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return vault


def test_first_line_is_the_url_and_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    vault = _small_vault(tmp_path)
    served = start_serve(vault, serve_env(tmp_path), "-q")
    assert re.fullmatch(r"http://127\.0\.0\.1:[0-9]+/\?token=[A-Za-z0-9_-]{32}", served.url)
    cookie = f"popvault_{served.base.rsplit(':', 1)[1]}={served.token}"
    status, body = _get(f"{served.base}/", cookie)
    assert status == 200 and b"only one" in body
    code, err = served.stop(signal.SIGINT)
    assert code == 0
    assert err == ""  # -q: nothing but errors; and never the token
    code, err = start_serve(vault, serve_env(tmp_path)).stop(signal.SIGTERM)
    assert code == 0
    assert "serve stopped (SIGTERM)" in err
    assert "token" not in err and "Traceback" not in err


def test_a_port_in_use_is_one_clear_line(tmp_path: Path, site: Site) -> None:
    port = site.served.base.rsplit(":", 1)[1]
    proc = subprocess.run(
        [sys.executable, "-m", "popvault", "--vault", str(site.served.vault), "serve",
         "--port", port],
        env=site.served.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines()[0] == f"popvault: error: port {port} on 127.0.0.1 is in use"
    assert "Traceback" not in proc.stderr


def test_a_given_port_is_used(tmp_path: Path) -> None:
    vault = _small_vault(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    served = start_serve(vault, serve_env(tmp_path), "--port", str(port))
    try:
        assert served.url.startswith(f"http://127.0.0.1:{port}/?token=")
    finally:
        served.stop()


def test_a_vault_held_by_a_writer_is_still_shown(tmp_path: Path) -> None:
    vault = _small_vault(tmp_path)
    writer = Vault.open(vault, PASSPHRASE.encode(), write=True, cache_dir=tmp_path / "writer-cache")
    try:
        served = start_serve(vault, serve_env(tmp_path))
        try:
            status, body = _get(served.url)  # follows the redirect; no cookie jar: 403
            assert status == 403
            cookie = f"popvault_{served.base.rsplit(':', 1)[1]}={served.token}"
            status, body = _get(f"{served.base}/", cookie)
            assert status == 200 and b"only one" in body
        finally:
            assert served.stop()[0] == 0
    finally:
        writer.close()
    assert not writer.writable


def test_no_vault_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "popvault", "--vault", str(tmp_path / "none"), "serve"],
        env=serve_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 10
    assert proc.stderr.startswith("popvault: error: ")
    assert "Traceback" not in proc.stderr


def test_a_malformed_request_gets_the_security_headers_too(site: Site) -> None:
    port = int(site.served.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n")
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    head = answer.decode("latin-1")
    assert head.startswith("HTTP/1.0 431")
    assert "Content-Security-Policy: default-src 'none'" in head
    assert "X-Content-Type-Options: nosniff" in head
    assert site.served.proc.poll() is None  # still serving
