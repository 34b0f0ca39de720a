"""Import speed: ``popvault import`` of a Maildir against ``restic backup`` of it.

Both run as child processes on the same Maildir (page cache warm for both: the data
set was just written or read), each into a fresh repository/vault created beforehand
(vault key derivation at open is part of popvault's time). Target: ratio at most 0.5.
Data sets: the attachment-heavy mailbox first (what real mailboxes are made of), then
the realistic and the redundant ones.
"""

from __future__ import annotations

from benchmarks.common import (
    MB,
    Bench,
    attachment_dataset,
    popvault_import,
    realistic_dataset,
    redundant_dataset,
    restic_backup,
)

NAME = "import_speed"
TARGET = "<= 0.5"


def run(bench: Bench) -> None:
    for ds in (attachment_dataset(bench), realistic_dataset(bench), redundant_dataset(bench)):
        # restic first, then popvault: neither gets a colder cache than the other
        rst = restic_backup(bench, ds)
        imp = popvault_import(bench, ds)
        bench.add(
            NAME,
            f"{ds.name}: popvault import / restic backup (wall)",
            imp.run.wall / rst.run.wall,
            "x",
            target=TARGET,
            popvault_s=round(imp.run.wall, 3),
            restic_s=round(rst.run.wall, 3),
            popvault_mib_s=round(ds.size / MB / imp.run.wall, 2),
            restic_mib_s=round(ds.size / MB / rst.run.wall, 2),
            popvault_peak_rss_mb=round(imp.run.maxrss_mb, 1),
            restic_peak_rss_mb=round(rst.run.maxrss_mb, 1),
            messages=ds.count,
            raw_bytes=ds.size,
        )
