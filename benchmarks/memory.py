"""Memory: peak RSS of popvault handling one 100 MB message.

Two child processes, peak RSS from ``wait4`` (the child's own ``ru_maxrss``):
``popvault import`` of a Maildir holding one 100 MiB message, the same of an mbox file
holding it between two small messages, and ``popvault backup``
of the same message over POP3S from a private Dovecot on 127.0.0.1. For scale the report
also gives the RSS of a bare ``popvault --version`` (interpreter plus imports) and of
mpop fetching the same message. Target: under 200 MB.
"""

from __future__ import annotations

from benchmarks.common import (
    MAIL_PASSWORD,
    MB,
    Bench,
    BenchError,
    ChildRun,
    init_vault,
    popvault_argv,
    python_argv,
    run_child,
    write_maildir,
)
from benchmarks.pop3_tools import Server, mpop_fetch, popvault_backup
from popvault.mailboxes.mbox import MboxWriter

NAME = "memory"
TARGET = "< 200"
SIZE = 100 * MB


def _peak(bench: Bench, what: str, child: ChildRun, target: str = TARGET) -> None:
    bench.add(
        NAME, f"peak RSS: {what}", child.peak_mb, "MB", target=target, wall_s=round(child.wall, 2)
    )


def run(bench: Bench) -> None:
    from tests.support.generate import big_message

    base = bench.fresh_dir("memory")
    maildir = base / "Maildir"
    message = b"".join(big_message(SIZE, seed=100))
    write_maildir(maildir, [message])
    bare = run_child(python_argv("-m", "popvault", "--version"), env=bench.env())
    bench.add(NAME, "popvault --version (interpreter + imports)", bare.maxrss_mb, "MB")

    mbox = base / "big.mbox"
    with MboxWriter(mbox) as w:
        w.add(b"Subject: before\n\nsmall\n", when=0)
        w.add(message, when=0)
        w.add(b"Subject: after\n\nsmall\n", when=0)
    for label, source in (("one 100 MiB message", maildir), ("an mbox holding it", mbox)):
        vault = init_vault(bench, base / f"vault-{source.name}")
        imp = run_child(popvault_argv(vault, "import", str(source)), env=bench.env())
        _peak(bench, f"import of {label}", imp)

    with Server.start() as srv:
        srv.dc.add_user("big", MAIL_PASSWORD)
        srv.dc.deliver("big", [message])
        del message
        srv.warm("big")
        vault = init_vault(bench, base / "vault-pop3")
        _peak(
            bench, "POP3S backup of one 100 MiB message", popvault_backup(bench, srv, "big", vault)
        )
        srv.dc.add_user("restored", MAIL_PASSWORD)
        url = f"imaps://restored@{srv.host}:{srv.dc.imaps_port}/INBOX"
        rst = run_child(
            popvault_argv(vault, "restore", "--to", url, "--tls-ca-file", srv.ca_file),
            env=bench.env(POPVAULT_IMAP_PASSWORD=MAIL_PASSWORD),
        )
        if rst.returncode != 0 or srv.dc.message_count("restored") != 1:
            raise BenchError(f"restore of the 100 MiB message failed: {rst.stderr[-300:]}")
        _peak(bench, "restore of that message to IMAPS", rst)
        mp = mpop_fetch(bench, srv, "big", base / "mpop")
        _peak(bench, "mpop of the same message (reference)", mp.run, target="")
