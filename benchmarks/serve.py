"""Serve: how fast ``popvault serve`` answers its list and search pages on a big vault.

``python3 -m benchmarks.run --only serve`` (N = 300,000; 30,000 with ``--quick``;
``POPVAULT_BENCH_SCALE_N`` sets N), or ``python3 -m benchmarks.serve --n 50000``. The
vault is made as the scale benchmark makes its vault (``benchmarks.scale``: an mbox
of N small messages, one a minute, imported with ``popvault import``); then
``popvault serve`` runs as a child and each page is fetched over HTTP (the whole body
read) :data:`REPEAT` times; the median is reported. Pages: the list newest first (first
page, the next one, the middle, the last), oldest first (first, on from the middle and
back from it), filtered by sender (both orders) and by account,
searches (a word by relevance, newest first, a later page; a word every message holds)
and one message. The first search also brings the search index up to date if import did not;
its time is reported apart. Target (issue 13): every page in at most 300 ms.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from benchmarks.common import PASSPHRASE, REPO, Bench, log, run_child
from benchmarks.scale import _mbox
from popvault.vault import Vault

NAME = "serve"
TARGET = "<= 300"
REPEAT = 5


class _Client:
    """GETs with the viewer's cookie, timed."""

    def __init__(self, url: str) -> None:
        self.base, token = url.split("/?token=")
        self.cookie = f"popvault_{self.base.rsplit(':', 1)[1]}={token}"

    def get(self, path: str) -> tuple[float, str]:
        req = urllib.request.Request(self.base + path, headers={"Cookie": self.cookie})  # noqa: S310
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=600) as r:  # noqa: S310 (127.0.0.1)
            body = r.read().decode("utf-8")
            if r.status != 200:
                raise RuntimeError(f"{path}: HTTP {r.status}")
        return time.perf_counter() - t0, body

    def median(self, path: str) -> tuple[float, str]:
        times = []
        body = ""
        for _ in range(REPEAT):
            t, body = self.get(path)
            times.append(t)
        return statistics.median(times), body


def _middle(vault: Path, cache: Path, n: int) -> str:
    """The list position of the vault's middle message (oldest first)."""
    from popvault.web.listing import Cursor

    with Vault.open(vault, PASSPHRASE.encode(), cache_dir=cache) as v:
        row = next(itertools.islice(v.messages(), n // 2, None))
    return Cursor.of(row).text()


def _pages(n: int, sender: str, middle: str, client: _Client) -> list[tuple[str, str]]:
    """(name, path) of every page measured; links and words read from the first page."""
    _, first = client.get("/")
    ids = re.findall(r'href="/m/([0-9a-f]{64})">([^<]*)<', first)
    words = [w for _, subject in ids for w in re.findall(r"[A-Za-z]{6,}", subject)]
    word = urllib.parse.quote(words[0] if words else "the")
    sender_q = urllib.parse.quote(sender)
    mid = urllib.parse.quote(middle)
    return [
        ("list, newest first", "/"),
        ("list, next page", "/?page=1"),
        ("list, a page in the middle", f"/?page={n // 100}"),
        ("list, the last page", f"/?page={(n - 1) // 50}"),
        ("list, oldest first", "/?sort=oldest"),
        ("list, oldest first, the middle", f"/?sort=oldest&after={mid}"),
        ("list, oldest first, back from the middle", f"/?sort=oldest&before={mid}"),
        ("list, from filter", f"/?from={sender_q}"),
        ("list, from filter, oldest first", f"/?from={sender_q}&sort=oldest"),
        ("list, account filter", "/?account=import"),
        ("search, a word, by relevance", f"/?q={word}"),
        ("search, a word, newest first", f"/?q={word}&sort=newest"),
        ("search, a word, page 5", f"/?q={word}&page=4"),
        ("search, a word in every message", "/?q=the"),
        ("message page", f"/m/{ids[0][0]}" if ids else "/"),
    ]


def run(bench: Bench, n: int | None = None) -> None:
    if n is None:
        n = int(os.environ.get("POPVAULT_BENCH_SCALE_N", "30000" if bench.quick else "300000"))
    base = bench.fresh_dir("serve")
    cache = base / "cache"
    vault = base / "vault"
    server: subprocess.Popen[str] | None = None
    try:
        log(f"serve: generating and importing {n} small messages ...")
        mbox = base / "serve.mbox"
        sender = _mbox(mbox, n)
        Vault.init(vault, PASSPHRASE.encode(), cache_dir=cache).close()
        env = bench.env(POPVAULT_CACHE_DIR=str(cache))
        argv0 = [sys.executable, "-m", "popvault", "--vault", str(vault), "--quiet"]
        imp = run_child([*argv0, "import", str(mbox)], env=env, cwd=REPO)
        log(f"  import: {imp.wall:.1f} s")
        mbox.unlink()
        server = subprocess.Popen(
            [*argv0, "serve"], env=env, cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        assert server.stdout is not None
        client = _Client(server.stdout.readline().strip())
        t, _ = client.get("/?q=the")
        bench.add(NAME, f"first search, indexing what import left ({n} msgs)", t, "s")
        for name, path in _pages(n, sender, _middle(vault, cache, n), client):
            t, body = client.median(path)
            rows = body.count('<td class="when">')
            bench.add(NAME, f"{name} ({n} msgs)", t * 1000, "ms", target=TARGET, rows=rows)
    finally:
        if server is not None:
            # SIGTERM: a job started in the background by a shell ignores SIGINT
            server.send_signal(signal.SIGTERM)
            server.communicate(timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m benchmarks.serve", description=__doc__)
    ap.add_argument("--n", type=int, default=300_000, help="messages in the vault")
    ap.add_argument("--work", default="/var/tmp/popvault-bench", help="scratch (regular fs)")
    args = ap.parse_args(argv)
    work = Path(args.work)
    bench = Bench(quick=False, work=work, out=work / "serve-out")
    run(bench, args.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
