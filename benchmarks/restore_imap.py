"""Restore to IMAP: ``popvault restore`` against a minimal imaplib APPEND loop.

A private Dovecot on 127.0.0.1; two empty users. The baseline appends every file of the
realistic Maildir to one user's INBOX over IMAPS with stdlib imaplib (one APPEND, one
round trip each); popvault restores the vault made by importing that same Maildir to
the other user's INBOX over IMAPS. Both child processes, same server, same messages.
Target: popvault / baseline at most 1.0.
"""

from __future__ import annotations

from benchmarks.common import (
    MAIL_PASSWORD,
    MB,
    Bench,
    BenchError,
    popvault_argv,
    popvault_import,
    python_argv,
    realistic_dataset,
    run_child,
)
from benchmarks.pop3_tools import Server

NAME = "restore_imap"


def run(bench: Bench) -> None:
    ds = realistic_dataset(bench)
    imp = popvault_import(bench, ds)
    with Server.start() as srv:
        srv.dc.add_user("baseline", MAIL_PASSWORD)
        srv.dc.add_user("restored", MAIL_PASSWORD)
        base = run_child(
            python_argv(
                "-m",
                "benchmarks.imaplib_loop",
                "--host",
                srv.host,
                "--port",
                str(srv.dc.imaps_port),
                "--user",
                "baseline",
                "--ca-file",
                srv.ca_file,
                "--maildir",
                str(ds.maildir),
            ),
            env=bench.env(BENCH_IMAP_PASSWORD=MAIL_PASSWORD),
        )
        url = f"imaps://restored@{srv.host}:{srv.dc.imaps_port}/INBOX"
        rst = run_child(
            popvault_argv(imp.vault, "restore", "--to", url, "--tls-ca-file", srv.ca_file),
            env=bench.env(POPVAULT_IMAP_PASSWORD=MAIL_PASSWORD),
        )
        got = srv.dc.message_count("restored"), srv.dc.message_count("baseline")
    if got != (ds.count, ds.count):
        raise BenchError(f"restored/baseline hold {got} messages, expected {ds.count} each")
    bench.add(
        NAME,
        "restore to IMAPS: popvault / imaplib APPEND loop (wall)",
        rst.wall / base.wall,
        "x",
        target="<= 1.0",
        popvault_s=round(rst.wall, 2),
        imaplib_s=round(base.wall, 2),
        popvault_mib_s=round(ds.size / MB / rst.wall, 1),
        imaplib_mib_s=round(ds.size / MB / base.wall, 1),
        popvault_peak_rss_mb=round(rst.maxrss_mb, 1),
        messages=ds.count,
    )
