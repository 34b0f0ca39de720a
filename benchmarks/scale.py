"""Scale: a vault of N small messages, and what listing, export, check and stats cost on it.

``python3 -m benchmarks.run --only scale`` (N = 300,000; 30,000 with ``--quick``), or the
long run ``POPVAULT_BENCH_SCALE_N=1000000 python3 -m benchmarks.run --only scale`` (also
``python3 -m benchmarks.scale --n 1000000``). It generates an mbox of N small realistic
messages (1 to 4 KB, ``benchmarks.common.small_messages``) under the work directory,
imports it with ``popvault import`` into a fresh vault, then runs each command in a
child process (wall time, peak RSS from ``wait4``): ``list``, ``list --from``,
``list --json``, ``export --format mbox``, ``restore --to maildir:...`` (of at most
:data:`RESTORE` messages, every k-th of a larger vault by ``--ids``), ``check`` and
``stats``; then it imports a second mbox of :data:`MORE` other messages into the same
vault (issue 12: per message at most twice what the first import cost). Each runs with
the production key derivation (part of every command's time).

Last, the no-op backup (issue 12: "a no-op backup of a 100k-UIDL mailbox against a
1M-message vault stays within 2x mpop per 10k UIDLs plus the KDF"): a private Dovecot
serves a mailbox of M = N / 10 other small messages (``POPVAULT_BENCH_SCALE_UIDLS``
overrides M; 0 skips the step) and an empty one. popvault backs the mailbox up into the
big vault once, mpop fetches it once (it learns the UIDLs), then each runs its no-op
backup of the mailbox and of the empty mailbox :data:`NOOP_RUNS` times, alternating; the
cost per 10,000 UIDLs is (median no-op - median empty-mailbox run) * 10,000 / M, the way
``benchmarks.pop3_backup`` computes it, and the row is popvault's over mpop's (target at
most 2). Only the working tree runs this step, after the others (it adds M messages).

The same steps run on a baseline revision checked out in a git worktree
(``POPVAULT_BENCH_SCALE_BASE``, default the last revision before the listings streamed;
``none`` to skip), in the same command, each revision with its own vault: the table
shows both. Targets (issue 12): ``list --json`` of 300,000 rows in at most 8 s; peak RSS
at most 150 MB for list, export, restore, check and stats (on 1,000,000 messages).
Generated data, vaults, the export and the restored Maildir are deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.common import (
    MAIL_PASSWORD,
    PASSPHRASE,
    REPO,
    Bench,
    BenchError,
    ChildRun,
    log,
    median,
    run_child,
    small_messages,
)
from benchmarks.compare_revisions import _worktree
from benchmarks.pop3_backup import EMPTY, NOOP_RUNS, USER
from benchmarks.pop3_tools import Server, Tool, mpop_tool, popvault_tool
from popvault.vault import Vault

NAME = "scale"
#: The last revision whose listings loaded every row (issue 12).
BASE = "26d94e8"
RSS_TARGET = "<= 150"
#: Messages added to the full vault by the last step (issue 12: "adding 20,000 messages
#: to a vault of 300,000").
MORE = 20_000
#: Messages the restore step writes at most (``POPVAULT_BENCH_SCALE_RESTORE``): every
#: k-th message of a larger vault, by ``--ids``. Each restored file is fsynced (twice),
#: 2-7 ms a message on this machine, so a million would take over an hour; the listing
#: of the whole vault is still read.
RESTORE = 30_000


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


def _steps(
    mbox: Path, sender: str, export: Path, restored: Path
) -> Iterator[tuple[str, list[str]]]:
    yield "import", ["import", str(mbox)]
    yield "list", ["list"]
    yield "list --from", ["list", "--from", sender]
    yield "list --json", ["list", "--json"]
    yield "export --format mbox", ["export", "--format", "mbox", str(export)]
    yield "restore --to maildir", ["restore", "--to", f"maildir:{restored}"]
    yield "check", ["check"]
    yield "stats", ["stats"]
    yield "import more", ["import", str(mbox.with_name("more.mbox"))]


@dataclass
class NoOp:
    """The no-op backup step: medians of the runs, seconds."""

    uidls: int
    popvault_full: ChildRun
    mpop_full: ChildRun
    noop: dict[str, float]
    empty: dict[str, float]
    load: tuple[str, str]

    def per_10k(self, tool: str) -> float:
        return (self.noop[tool] - self.empty[tool]) * 10_000 / self.uidls


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _sample(argv0: list[str], env: dict[str, str], code: Path, base: Path, every: int) -> Path:
    """An ``--ids`` file of every ``every``-th message of the vault, in delivery order
    (``list --json`` lines, which ``--ids`` reads as they are); not timed."""
    listing = base / "listing.jsonl"
    with listing.open("wb") as f:
        subprocess.run([*argv0, "list", "--json"], env=env, cwd=code, stdout=f, check=True)
    ids = base / "restore-ids.jsonl"
    with listing.open("rb") as src, ids.open("wb") as dst:
        for i, line in enumerate(src):
            if i % every == 0:
                dst.write(line)
    listing.unlink()
    return ids


def _measure(
    bench: Bench,
    label: str,
    code: Path,
    base: Path,
    mbox: Path,
    sender: str,
    sizes: tuple[int, int, int],
) -> tuple[Measured, NoOp | None]:
    n, restore, uidls = sizes
    out = Measured(label)
    # each vault's cache in its own folder under ``base``: deleted with it (400 MB here)
    cache = base / f"cache-{label}"
    vault = base / f"vault-{label}"
    Vault.init(vault, PASSPHRASE.encode(), cache_dir=cache).close()
    export = base / f"export-{label}.mbox"
    restored = base / f"restored-{label}"
    env = bench.env(POPVAULT_CACHE_DIR=str(cache), PYTHONPATH=str(code))
    argv0 = [sys.executable, "-m", "popvault", "--vault", str(vault), "--quiet"]
    noop = None
    try:
        for step, args in _steps(mbox, sender, export, restored):
            if step.startswith("restore") and restore < n:
                args = [*args, "--ids", str(_sample(argv0, env, code, base, n // restore))]
            log(f"  {label}: {step} ... (load {_load()})")
            try:
                run = run_child([*argv0, *args], env=env, cwd=code)
            except BenchError as exc:
                if code == REPO:
                    raise
                # an older revision may lack a step's command or option: no row for it
                log(f"  {label}: {step}: failed, not reported: {exc}")
                continue
            log(f"  {label}: {step}: {run.wall:.1f} s, {run.peak_mb:.0f} MB")
            out.runs[step] = run
            export.unlink(missing_ok=True)
            shutil.rmtree(restored, ignore_errors=True)
        if uidls and code == REPO:
            noop = _noop(bench, env, vault, base / "pop3", uidls)
    finally:
        shutil.rmtree(vault, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(restored, ignore_errors=True)
        export.unlink(missing_ok=True)
    return out, noop


def _noop(bench: Bench, env: dict[str, str], vault: Path, base: Path, uidls: int) -> NoOp:
    """The no-op backup of a mailbox of ``uidls`` small messages into the big vault."""
    base.mkdir()
    start_load = _load()
    with Server.start() as srv:
        srv.dc.add_user(USER, MAIL_PASSWORD)
        srv.dc.add_user(EMPTY, MAIL_PASSWORD)
        log(f"  no-op: delivering {uidls} small messages to Dovecot ...")
        batch: list[bytes] = []
        for msg in small_messages(uidls, 20261206):
            batch.append(msg)
            if len(batch) == 2000:
                srv.dc.deliver(USER, batch)
                batch.clear()
        srv.dc.deliver(USER, batch)
        if srv.warm(USER) != uidls or srv.warm(EMPTY) != 0:
            raise BenchError("Dovecot does not list the mailboxes as delivered")

        def popvault(user: str) -> Tool:
            # the vault's own cache and code (env), not the benchmark's defaults
            tool = popvault_tool(bench, srv, user, vault)
            return replace(tool, env={**(tool.env or {}), **env}, timeout=3600.0)

        pv, pv_empty = popvault(USER), popvault(EMPTY)
        mp = replace(mpop_tool(bench, srv, USER, base / "mpop"), timeout=3600.0)
        mp_empty = mpop_tool(bench, srv, EMPTY, base / "mpop-empty")
        os.sync()
        pv_full = pv.fetch()
        log(f"  no-op: popvault's first backup {pv_full.wall:.1f} s, {pv_full.peak_mb:.0f} MB")
        os.sync()
        mp_full = mp.fetch()
        log(f"  no-op: mpop's first run {mp_full.wall:.1f} s")
        walls: dict[str, list[float]] = {"popvault": [], "mpop": []}
        empty: dict[str, list[float]] = {"popvault": [], "mpop": []}
        # big and empty mailbox alternating, NOOP_RUNS each: drift cancels in the medians
        for _ in range(NOOP_RUNS):
            for big, none in ((pv, pv_empty), (mp, mp_empty)):
                walls[big.name].append(big.fetch().wall)
                empty[big.name].append(none.fetch().wall)
        log(f"  no-op: runs {walls}, empty mailbox {empty}")
    shutil.rmtree(base, ignore_errors=True)
    return NoOp(
        uidls,
        pv_full,
        mp_full,
        {k: median(v) for k, v in walls.items()},
        {k: median(v) for k, v in empty.items()},
        (start_load, _load()),
    )


def run(bench: Bench, n: int | None = None) -> None:
    if n is None:
        n = int(os.environ.get("POPVAULT_BENCH_SCALE_N", "30000" if bench.quick else "300000"))
    rev = os.environ.get("POPVAULT_BENCH_SCALE_BASE", BASE)
    uidls = int(os.environ.get("POPVAULT_BENCH_SCALE_UIDLS", str(n // 10)))
    restore = max(int(os.environ.get("POPVAULT_BENCH_SCALE_RESTORE", str(RESTORE))), 1)
    base = bench.fresh_dir("scale")
    log(f"scale: load average at the start {_load()}")
    try:
        log(f"scale: generating an mbox of {n} small messages ...")
        mbox = base / "scale.mbox"
        sender = _mbox(mbox, n)
        _mbox(base / "more.mbox", MORE, seed=20261205)
        revs = [("new", REPO)]
        if rev.lower() != "none":
            revs.insert(0, ("base", _worktree(rev, bench.work)))
        sizes = (n, restore, uidls)
        done = [_measure(bench, label, code, base, mbox, sender, sizes) for label, code in revs]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    log(f"scale: load average at the end {_load()}")
    every = max(n // restore, 1)
    _report(bench, n, rev, [m for m, _ in done], (n + every - 1) // every)
    if done[-1][1] is not None:
        _report_noop(bench, n, done[-1][1])


def _report_noop(bench: Bench, n: int, r: NoOp) -> None:
    """The no-op backup's rows (see the module doc)."""
    pv, mp = r.per_10k("popvault"), r.per_10k("mpop")
    where = f"{r.uidls} UIDLs, vault of {n}"
    details: dict[str, Any] = {
        "popvault_noop_s": round(r.noop["popvault"], 3),
        "mpop_noop_s": round(r.noop["mpop"], 3),
        "popvault_empty_mailbox_s": round(r.empty["popvault"], 3),
        "mpop_empty_mailbox_s": round(r.empty["mpop"], 3),
        "load_start_end": r.load,
    }
    name = f"no-op backup ({where}): cost per 10,000 UIDLs popvault / mpop"
    if min(pv, mp) <= 0:
        bench.fail(NAME, name, f"not resolvable: no-op minus empty-mailbox run <= 0 ({details})")
    else:
        bench.add(
            NAME,
            name,
            pv / mp,
            "x",
            target="<= 2.0",
            popvault_s_per_10k=round(pv, 4),
            mpop_s_per_10k=round(mp, 4),
            **details,
        )
    bench.add(NAME, f"no-op backup ({where}): popvault", r.noop["popvault"], "s", **details)
    full = r.popvault_full
    bench.add(
        NAME,
        f"first backup of {r.uidls} small messages into a vault of {n}: popvault / mpop",
        full.wall / r.mpop_full.wall,
        "x",
        popvault_s=round(full.wall, 2),
        mpop_s=round(r.mpop_full.wall, 2),
        popvault_peak_mb=round(full.peak_mb),
    )
    print(
        f"no-op backup of {r.uidls} UIDLs against the vault of {n} (medians of {NOOP_RUNS}):"
        f" popvault {r.noop['popvault']:.2f} s (empty mailbox {r.empty['popvault']:.2f} s),"
        f" mpop {r.noop['mpop']:.2f} s (empty mailbox {r.empty['mpop']:.2f} s);"
        f" per 10,000 UIDLs {pv:.3f} / {mp:.3f} s = {pv / mp if mp > 0 else float('nan'):.2f}x"
        f" mpop (target <= 2); first backup {full.wall:.1f} s ({full.peak_mb:.0f} MB),"
        f" mpop's {r.mpop_full.wall:.1f} s; load {r.load[0]} -> {r.load[1]}",
        flush=True,
    )


def _report(bench: Bench, n: int, rev: str, measured: list[Measured], restored: int) -> None:
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
    for step in (
        "list",
        "list --from",
        "list --json",
        "export --format mbox",
        "restore --to maildir",
        "check",
        "stats",
    ):
        target = "<= 8" if step == "list --json" and n <= 300_000 else ""
        was = old.get(step)
        shown = f"{step} of {restored}" if step.startswith("restore") else step
        add(f"{shown} time", new[step].wall, "s", target, was.wall if was else None)
        add(f"{shown} peak RSS", new[step].peak_mb, "MB", RSS_TARGET, was.peak_mb if was else None)
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
    lines.append(f"restore: {restored} of the {n} messages (one in {n / restored:.0f}, by --ids)")
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
