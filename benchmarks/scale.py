"""Scale: a vault of N small messages, and what listing, export, check and stats cost on it.

``python3 -m benchmarks.run --only scale`` (N = 300,000; 30,000 with ``--quick``), or the
long run ``POPVAULT_BENCH_SCALE_N=1000000 python3 -m benchmarks.run --only scale`` (also
``python3 -m benchmarks.scale --n 1000000``). It generates an mbox of N small realistic
messages (1 to 4 KB, ``benchmarks.common.small_messages``) under the work directory,
imports it with ``popvault import`` into a fresh vault, then runs each command in a
child process (wall time, peak RSS from ``wait4``): ``list --from``, ``list --json``,
``export --format mbox``, ``check`` and ``stats``; then it imports a second mbox of
:data:`MORE` other messages into the same vault (issue 12: per message at most twice what
the first import cost). Each runs with the production key derivation (part of every
command's time).

The same steps run on a baseline revision checked out in a git worktree
(``POPVAULT_BENCH_SCALE_BASE``, default the last revision before the listings streamed;
``none`` to skip), in the same command, each revision with its own vault: the table
shows both. Targets (issue 12): ``list --json`` of 300,000 rows in at most 8 s; peak RSS
at most 150 MB for list, export, check and stats (on 1,000,000 messages). Generated data,
vaults and the export are deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import (
    PASSPHRASE,
    REPO,
    Bench,
    ChildRun,
    log,
    run_child,
    small_messages,
)
from benchmarks.compare_revisions import _worktree
from popvault.vault import Vault

NAME = "scale"
#: The last revision whose listings loaded every row (issue 12).
BASE = "26d94e8"
RSS_TARGET = "<= 150"
#: Messages added to the full vault by the last step (issue 12: "adding 20,000 messages
#: to a vault of 300,000").
MORE = 20_000


@dataclass
class Measured:
    """One revision's runs, by step."""

    label: str
    runs: dict[str, ChildRun] = field(default_factory=dict)


def _mbox(path: Path, n: int, seed: int = 20261204) -> str:
    """Write ``n`` small messages as an mbox; a sender substring to filter on."""
    from popvault.mailboxes.mbox import MboxWriter

    sender = ""
    with MboxWriter(path) as w:
        for i, msg in enumerate(small_messages(n, seed)):
            if not sender:
                m = re.search(rb"^From: .*?([A-Za-z]+)@", msg, re.M)
                sender = m.group(1).decode() if m else "a"
            w.add(msg, sender="bench@example.org", when=1_500_000_000 + i * 60)
            if i and i % 100_000 == 0:
                log(f"  generated {i} messages")
    return sender


def _steps(mbox: Path, sender: str, export: Path) -> Iterator[tuple[str, list[str]]]:
    yield "import", ["import", str(mbox)]
    yield "list --from", ["list", "--from", sender]
    yield "list --json", ["list", "--json"]
    yield "export --format mbox", ["export", "--format", "mbox", str(export)]
    yield "check", ["check"]
    yield "stats", ["stats"]
    yield "import more", ["import", str(mbox.with_name("more.mbox"))]


def _measure(bench: Bench, label: str, code: Path, base: Path, mbox: Path, sender: str) -> Measured:
    out = Measured(label)
    # each vault's cache in its own folder under ``base``: deleted with it (400 MB here)
    cache = base / f"cache-{label}"
    vault = base / f"vault-{label}"
    Vault.init(vault, PASSPHRASE.encode(), cache_dir=cache).close()
    export = base / f"export-{label}.mbox"
    env = bench.env(POPVAULT_CACHE_DIR=str(cache), PYTHONPATH=str(code))
    argv0 = [sys.executable, "-m", "popvault", "--vault", str(vault), "--quiet"]
    try:
        for step, args in _steps(mbox, sender, export):
            log(f"  {label}: {step} ...")
            run = run_child([*argv0, *args], env=env, cwd=code)
            log(f"  {label}: {step}: {run.wall:.1f} s, {run.peak_mb:.0f} MB")
            out.runs[step] = run
            export.unlink(missing_ok=True)
    finally:
        shutil.rmtree(vault, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        export.unlink(missing_ok=True)
    return out


def run(bench: Bench, n: int | None = None) -> None:
    if n is None:
        n = int(os.environ.get("POPVAULT_BENCH_SCALE_N", "30000" if bench.quick else "300000"))
    rev = os.environ.get("POPVAULT_BENCH_SCALE_BASE", BASE)
    base = bench.fresh_dir("scale")
    try:
        log(f"scale: generating an mbox of {n} small messages ...")
        mbox = base / "scale.mbox"
        sender = _mbox(mbox, n)
        _mbox(base / "more.mbox", MORE, seed=20261205)
        revs = [("new", REPO)]
        if rev.lower() != "none":
            revs.insert(0, ("base", _worktree(rev, bench.work)))
        measured = [_measure(bench, label, code, base, mbox, sender) for label, code in revs]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    _report(bench, n, rev, measured)


def _report(bench: Bench, n: int, rev: str, measured: list[Measured]) -> None:
    new = measured[-1].runs
    old = measured[0].runs if len(measured) > 1 else {}

    def add(name: str, value: float, unit: str, target: str, was: float | None) -> None:
        extra = {} if was is None else {f"base_{rev}": round(was, 2)}
        bench.add(NAME, f"{name} ({n} msgs)", value, unit, target=target, **extra)

    imp = new["import"]
    was_rate = n / old["import"].wall if old else None
    add("import rate", n / imp.wall, "msg/s", "", was_rate)
    add("import peak RSS", imp.peak_mb, "MB", "", old["import"].peak_mb if old else None)
    if "import more" in new:

        def per_message(runs: dict[str, ChildRun]) -> float:
            """Time a message of the second import / of the first."""
            return (runs["import more"].wall / MORE) / (runs["import"].wall / n)

        was_ratio = per_message(old) if "import more" in old else None
        more = new["import more"]
        add(f"import of {MORE} more: rate", MORE / more.wall, "msg/s", "", None)
        add(
            f"import of {MORE} more: per message / first import's",
            per_message(new),
            "x",
            "<= 2",
            was_ratio,
        )
    for step in ("list --from", "list --json", "export --format mbox", "check", "stats"):
        target = "<= 8" if step == "list --json" and n <= 300_000 else ""
        was = old[step] if old else None
        add(f"{step} time", new[step].wall, "s", target, was.wall if was else None)
        add(f"{step} peak RSS", new[step].peak_mb, "MB", RSS_TARGET, was.peak_mb if was else None)
    lines = [f"scale, {n} messages: {'base ' + rev + ' beside ' if old else ''}the working tree"]
    lines.append(f"{'step':22} {'base s':>8} {'new s':>8} {'base MB':>8} {'new MB':>8}")
    for step, r in new.items():
        b = old.get(step)
        bs = f"{b.wall:8.1f}" if b else f"{'-':>8}"
        bm = f"{b.peak_mb:8.0f}" if b else f"{'-':>8}"
        lines.append(f"{step:22} {bs} {r.wall:8.1f} {bm} {r.peak_mb:8.0f}")
    if old:
        lines.append(
            f"import rate: base {n / old['import'].wall:.0f} msg/s, new {n / imp.wall:.0f} msg/s"
        )
    if "import more" in new:
        lines.append(
            f"import of {MORE} more into the full vault: {MORE / new['import more'].wall:.0f}"
            f" msg/s, {per_message(new):.2f}x the first import's time a message"
        )
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m benchmarks.scale", description=__doc__)
    ap.add_argument("--n", type=int, default=300_000, help="messages (1000000: the long run)")
    ap.add_argument("--work", default="/var/tmp/popvault-bench", help="scratch (regular fs)")
    args = ap.parse_args(argv)
    work = Path(args.work)
    bench = Bench(quick=False, work=work, out=work / "scale-out")
    run(bench, args.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
