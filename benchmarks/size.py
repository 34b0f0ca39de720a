"""Size: vault bytes against solid zstd of all unique messages, with restic and borg.

The practical limit is ``zstd -19 --long=27`` (one thread) over every distinct message
(exact bytes) concatenated in mailbox order. For each mailbox the report gives
popvault's vault bytes, restic's (``--compression max``) and borg's (``zstd,19``)
repository bytes, each divided by that limit. Target: popvault at most 1.25.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.common import (
    MB,
    Bench,
    Dataset,
    borg_create,
    datasets,
    ensure_tool,
    log,
    popvault_import,
    restic_backup,
    tree_size,
)
from popvault.vault.crypto import parse_checksum_json

NAME = "size"
TARGET = "<= 1.25"


def zstd_limit(bench: Bench, ds: Dataset) -> tuple[int, int, int]:
    """(unique messages, unique bytes, bytes of zstd -19 --long=27 of them concatenated)."""
    zstd = ensure_tool("zstd", "zstd")
    concat = bench.work / "limit" / f"{ds.name}.unique"
    concat.parent.mkdir(parents=True, exist_ok=True)
    seen: set[bytes] = set()
    unique = nbytes = 0
    with concat.open("wb") as out:
        for data in ds.messages():
            h = hashlib.sha256(data).digest()
            if h in seen:
                continue
            seen.add(h)
            unique += 1
            nbytes += len(data)
            out.write(data)
    log(f"zstd -19 --long=27 of {ds.name} ({nbytes / MB:.1f} MiB unique) ...")
    compressed = concat.with_suffix(".zst")
    subprocess.run(
        [zstd, "-q", "-f", "-19", "--long=27", "-T1", str(concat), "-o", str(compressed)],
        check=True,
    )
    size = compressed.stat().st_size
    concat.unlink()
    compressed.unlink()
    return unique, nbytes, size


def run(bench: Bench) -> None:
    for ds in datasets(bench):
        unique, unique_bytes, limit = zstd_limit(bench, ds)
        imp = popvault_import(bench, ds)
        cache = sum(
            tree_size(p) if p.is_dir() else p.stat().st_size
            for p in bench.cache_dir.iterdir()
            if p.name.startswith(_vault_id(imp.vault))
        )
        common: dict[str, Any] = {
            "messages": ds.count,
            "unique_messages": unique,
            "raw_bytes": ds.size,
            "unique_bytes": unique_bytes,
            "zstd_limit_bytes": limit,
        }
        bench.add(
            NAME,
            f"{ds.name}: popvault vault / zstd limit",
            imp.vault_bytes / limit,
            "x",
            target=TARGET,
            vault_bytes=imp.vault_bytes,
            local_index_cache_bytes=cache,
            **common,
        )
        rst = restic_backup(bench, ds)
        bench.add(
            NAME,
            f"{ds.name}: restic --compression max / zstd limit",
            rst.repo_bytes / limit,
            "x",
            repo_bytes=rst.repo_bytes,
            **common,
        )
        brg = borg_create(bench, ds)
        bench.add(
            NAME,
            f"{ds.name}: borg zstd,19 / zstd limit",
            brg.repo_bytes / limit,
            "x",
            repo_bytes=brg.repo_bytes,
            **common,
        )
        bench.add(
            NAME,
            f"{ds.name}: zstd limit / raw (for reference)",
            limit / ds.size,
            "x",
            **common,
        )


def _vault_id(vault: Path) -> str:
    body = parse_checksum_json((vault / "config").read_bytes(), "vault config")
    return str(body["id"])
