"""Run popvault's benchmarks: ``python3 -m benchmarks.run [--quick] [--only NAME] [--out DIR]``.

Benchmarks (one module each): size, import_speed, random_access, memory, pop3_backup,
restore_imap, cache_encryption, scale, search, serve, s3_backup. Prints a table and writes
``results.json`` (and ``results.md``) to --out.
Scratch data goes to --work (default /var/tmp/popvault-bench; must be a regular file
system, not tmpfs). Needs root for the private Dovecot; installs missing Debian packages
(restic, borgbackup, mpop, fetchmail, getmail6, zstd, dovecot-*) with apt-get.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, Bench, BenchError, Result, check_regular_fs, log

BENCHMARKS = (
    "size",
    "import_speed",
    "random_access",
    "memory",
    "pop3_backup",
    "restore_imap",
    "cache_encryption",
    "scale",
    "search",
    "serve",
    "s3_backup",
)


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / (1 << 20):.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def table(results: list[Result]) -> str:
    rows = [("benchmark", "measure", "value", "target", "")]
    for r in results:
        value = f"{r.value:.3f} {r.unit}" if r.unit else f"{r.value:.3f}"
        if r.value != r.value:  # NaN: failed
            value = "failed: " + str(r.details.get("error", ""))[:60]
        verdict = "" if r.ok is None else ("ok" if r.ok else "MISS")
        rows.append((r.benchmark, r.name, value, r.target, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(results: list[Result]) -> str:
    out = ["| benchmark | measure | value | target | |", "|---|---|---|---|---|"]
    for r in results:
        verdict = "" if r.ok is None else ("ok" if r.ok else "**miss**")
        value = f"{r.value:.3f} {r.unit}"
        if r.value != r.value:
            value = "failed: " + str(r.details.get("error", ""))
        out.append(f"| {r.benchmark} | {r.name} | {value} | {r.target} | {verdict} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m benchmarks.run", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller mailboxes (minutes, not hours)")
    ap.add_argument(
        "--only", action="append", choices=BENCHMARKS, metavar="NAME", help="run only NAME"
    )
    ap.add_argument("--out", default=str(REPO / "bench-out"), help="where results go")
    ap.add_argument(
        "--work", default="/var/tmp/popvault-bench", help="scratch directory (regular fs)"
    )
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        fstype = check_regular_fs(work)
    except BenchError as exc:
        print(f"benchmarks: error: {exc}", file=sys.stderr)
        return 2
    bench = Bench(quick=args.quick, work=work, out=Path(args.out))
    names = args.only or list(BENCHMARKS)
    failed: dict[str, str] = {}
    timings: dict[str, float] = {}
    started = time.time()
    for name in names:
        log(f"== {name}")
        t0 = time.perf_counter()
        try:
            importlib.import_module(f"benchmarks.{name}").run(bench)
        except BenchError as exc:
            failed[name] = str(exc)
            log(f"{name}: FAILED: {exc}")
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        timings[name] = round(time.perf_counter() - t0, 1)
    report = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "quick": args.quick,
        "machine": machine(),
        "work_dir": str(work),
        "work_fs": fstype,
        "benchmark_seconds": timings,
        "failed": failed,
        "results": [r.to_json() for r in bench.results],
    }
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "results.md").write_text(markdown(bench.results))
    print(table(bench.results))
    for name, why in failed.items():
        print(f"FAILED {name}: {why}")
    print(f"results: {out / 'results.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
