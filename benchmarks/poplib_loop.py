"""Baseline: the simplest stdlib POP3 backup loop (run as a child by pop3_backup).

POP3S with the given CA, USER/PASS, UIDL, then RETR of every UIDL not in the seen file,
each written to the Maildir (tmp/ then new/), and the seen file rewritten at the end.
poplib's 2,048-byte line limit is raised so long lines do not abort the baseline.
"""

from __future__ import annotations

import argparse
import os
import poplib
import ssl
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--ca-file", required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--seen", required=True)
    args = ap.parse_args()
    poplib._MAXLINE = 1 << 30  # type: ignore[attr-defined]
    seen_file = Path(args.seen)
    seen = set(seen_file.read_text().split()) if seen_file.exists() else set()
    ctx = ssl.create_default_context(cafile=args.ca_file)
    pop = poplib.POP3_SSL(args.host, args.port, context=ctx, timeout=300)
    pop.user(args.user)
    pop.pass_(os.environ["BENCH_POP3_PASSWORD"])
    _resp, lines, _octets = pop.uidl()
    box = Path(args.maildir)
    pid = os.getpid()
    for line in lines:
        num, uidl = line.decode().split()
        if uidl in seen:
            continue
        _resp, body, _octets = pop.retr(int(num))
        name = f"{uidl}.P{pid}.poplib"
        tmp = box / "tmp" / name
        tmp.write_bytes(b"\r\n".join(body) + b"\r\n")
        os.rename(tmp, box / "new" / name)
        seen.add(uidl)
    pop.quit()
    seen_file.write_text("\n".join(sorted(seen)) + "\n")


if __name__ == "__main__":
    main()
