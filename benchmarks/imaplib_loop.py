"""Baseline: a minimal stdlib IMAP APPEND loop (run as a child by restore_imap).

IMAPS with the given CA, LOGIN, then one APPEND per Maildir file (in name order) to the
folder, INTERNALDATE from the file's mtime, no flags; imapsync-style plain appends,
one round trip each.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import ssl
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--ca-file", required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--folder", default="INBOX")
    args = ap.parse_args()
    ctx = ssl.create_default_context(cafile=args.ca_file)
    imap = imaplib.IMAP4_SSL(args.host, args.port, ssl_context=ctx, timeout=300)
    imap.login(args.user, os.environ["BENCH_IMAP_PASSWORD"])
    box = Path(args.maildir)
    files = sorted(p for sub in ("cur", "new") for p in (box / sub).iterdir())
    for p in files:
        data = p.read_bytes()
        typ, resp = imap.append(args.folder, None, p.stat().st_mtime, data)
        if typ != "OK":
            raise SystemExit(f"APPEND {p.name} failed: {resp!r}")
    imap.logout()


if __name__ == "__main__":
    main()
