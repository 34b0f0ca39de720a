"""The encrypted index cache (SQLCipher) against a plaintext one (stdlib SQLite).

Two caches are filled with the same N messages (default 300,000; 30,000 with --quick;
``POPVAULT_BENCH_CACHE_MESSAGES`` or ``--messages`` to choose) straight through
``IndexCache.apply``, in commits of 1,000 messages as a backup makes them, with
realistic metadata: senders drawn from 5,000 addresses with a Zipf-like skew, a To on
every message and a Cc on a fifth, subjects of 20-90 characters, Message-IDs, Received
dates over ten years, one or two arrivals a message on three accounts with UIDLs, 2-4
blobs a message. Then ``popvault list --from X`` is timed as the command runs it: a new
``IndexCache`` (the encrypted one keyed, as ``Vault.open`` does) and
``list(cache.messages(Filter(from_=X)))``, median of 5, for the most frequent sender
(11% of the mail), a typical one (0.5%), a rare one and one nobody is. The OS page
cache is warm (the files were just written), as it is for a user who lists twice.
Target: the encrypted from-listing at most 1 s (the typical sender); each line has the
plaintext time of the same run beside it, and the ratio.

The time of ``list --from`` as a command adds the passphrase's Argon2id, Python's start,
the cache sync and the printing of the rows; none of them depends on the encryption.

    python3 -m benchmarks.cache_encryption                    # 300,000 messages
    python3 -m benchmarks.cache_encryption --messages 30000   # quicker
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import Bench, check_regular_fs, log, median
from popvault.vault.cache import Filter, IndexCache
from popvault.vault.cachekey import FILE_MAGIC, CacheKey
from popvault.vault.meta import MessageMeta
from popvault.vault.pack import BlobLocation
from popvault.vault.records import (
    MsgRecord,
    Pieces,
    Record,
    SourceInfo,
    SrcRecord,
    attachment_piece,
    blob_piece,
)

NAME = "cache_encryption"
TARGET = "<= 1"
ENV_MESSAGES = "POPVAULT_BENCH_CACHE_MESSAGES"
COMMIT_SIZE = 1000
ROUNDS = 5
FIRST_NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan"]
LAST_NAMES = ["Smith", "Jones", "Meyer", "Dubois", "Rossi", "Novak", "Silva", "Kowalski"]
DOMAINS = ["example.org", "mail.example.net", "lists.example.com", "corp.example", "uni.test"]
WORDS = (
    "re fwd quarterly report meeting invoice order shipped your account update notice "
    "project plan draft review minutes agenda weekly digest newsletter ticket build failed "
    "holiday photos dinner tomorrow question about the contract security alert password"
).split()


def sender(i: int) -> str:
    first = FIRST_NAMES[i % len(FIRST_NAMES)]
    last = LAST_NAMES[(i // len(FIRST_NAMES)) % len(LAST_NAMES)]
    return f"{first} {last} <{first.lower()}.{last.lower()}{i}@{DOMAINS[i % len(DOMAINS)]}>"


def records(n: int, seed: int = 7) -> Iterator[tuple[list[BlobLocation], list[Record]]]:
    """(blob locations, records) of one commit at a time, ``n`` messages in all."""
    rng = random.Random(seed)
    senders = [sender(i) for i in range(5000)]
    weights = [1 / (k + 1) for k in range(len(senders))]  # Zipf-like: a few write a lot
    accounts = ["me@example.org", "work@corp.example", "old@mail.example.net"]
    start = 1_400_000_000.0
    for first in range(0, n, COMMIT_SIZE):
        blobs: list[BlobLocation] = []
        recs: list[Record] = []
        pack = hashlib.sha256(str(first).encode()).hexdigest()
        for i in range(first, min(n, first + COMMIT_SIZE)):
            ids = [hashlib.sha256(f"{i}/{k}".encode()).digest() for k in range(4)]
            kinds = ["hdr", "txt"] + (["att", "att"] if i % 10 == 0 else [])
            for k, kind in enumerate(kinds):
                size = rng.randint(300, 40_000)
                blobs.append(BlobLocation(ids[k], kind, pack, i % 64, 0, 1 << 20, 0, size))
            pieces: Pieces = [blob_piece(ids[0].hex()), blob_piece(ids[1].hex())]
            if len(kinds) == 4:
                pieces.append(attachment_piece([ids[2].hex(), ids[3].hex()], 76, b"\r\n"))
            when = start + i * (315_360_000 / max(n, 1)) + rng.random() * 3600
            meta = MessageMeta(
                date=when - rng.random() * 600,
                received=when,
                from_=rng.choices(senders, weights)[0],
                to=accounts[i % 3] + (", team@corp.example" if i % 7 == 0 else ""),
                cc=rng.choice(senders) if i % 5 == 0 else "",
                subject=" ".join(rng.choices(WORDS, k=rng.randint(3, 12)))[:90],
                message_id=f"<{ids[0].hex()[:24]}@{DOMAINS[i % len(DOMAINS)]}>",
            )
            msg_id = hashlib.sha256(f"msg{i}".encode()).digest()
            recs.append(MsgRecord(msg_id, rng.randint(2_000, 120_000), pieces, meta))
            for a in range(1 + (i % 11 == 0)):
                src = SourceInfo(accounts[(i + a) % 3], "pop3", uidl=f"UID{i:08d}-{a}")
                recs.append(SrcRecord(msg_id, src, when + 60 + a))
        yield blobs, recs


def fill(path: Path, encrypted: bool, n: int) -> float:
    """Make the cache at ``path`` with ``n`` messages; seconds taken."""
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    cache = IndexCache(path, key_for(path) if encrypted else None)
    cache.reset("ab" * 16)
    for k, (blobs, recs) in enumerate(records(n)):
        cache.apply(f"commit-{k:06d}", blobs, recs)
    cache.close()
    return time.perf_counter() - t0


def key_for(path: Path) -> CacheKey:
    """A fixed key per benchmark file (the vault's would be derived the same way)."""
    digest = hashlib.sha256(str(path).encode()).digest()
    return CacheKey(digest, FILE_MAGIC + digest[:8])


def time_listing(path: Path, encrypted: bool, who: str) -> tuple[float, int]:
    """Median seconds of opening the cache and listing ``--from who``, rows found."""
    times: list[float] = []
    rows = 0
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        cache = IndexCache(path, key_for(path) if encrypted else None)
        rows = len(list(cache.messages(Filter(from_=who))))
        cache.close()
        times.append(time.perf_counter() - t0)
    return median(times), rows


def messages_wanted(bench: Bench | None, arg: int | None) -> int:
    if arg is not None:
        return arg
    if os.environ.get(ENV_MESSAGES):
        return int(os.environ[ENV_MESSAGES])
    return 30_000 if bench is not None and bench.quick else 300_000


def measure(work: Path, n: int) -> list[tuple[str, float, str, dict[str, object]]]:
    """Every number: (name, value, unit, details)."""
    enc, plain = work / "cache-encrypted.sqlite", work / "cache-plaintext.sqlite"
    log(f"  filling two caches with {n:,} messages each")
    fill_plain = fill(plain, False, n)
    fill_enc = fill(enc, True, n)
    sizes = {"encrypted_mb": enc.stat().st_size / 1e6, "plaintext_mb": plain.stat().st_size / 1e6}
    out: list[tuple[str, float, str, dict[str, object]]] = [
        (
            "fill: encrypted / plaintext",
            fill_enc / fill_plain,
            "ratio",
            {"encrypted_s": round(fill_enc, 2), "plaintext_s": round(fill_plain, 2), **sizes},
        ),
    ]
    for label, who in (
        ("frequent sender", sender(0).split("<")[1].rstrip(">")),
        ("typical sender", sender(20).split("<")[1].rstrip(">")),
        ("rare sender", sender(4000).split("<")[1].rstrip(">")),
        ("nobody", "nobody@nowhere.invalid"),
    ):
        t_plain, rows = time_listing(plain, False, who)
        t_enc, rows_enc = time_listing(enc, True, who)
        assert rows == rows_enc
        details: dict[str, object] = {"rows": rows, "messages": n, "rounds": ROUNDS}
        out.append((f"list --from ({label}): encrypted", t_enc, "s", details))
        out.append((f"list --from ({label}): plaintext", t_plain, "s", details))
        out.append(
            (f"list --from ({label}): encrypted / plaintext", t_enc / t_plain, "ratio", details)
        )
    return out


def run(bench: Bench) -> None:
    """For ``benchmarks.run`` (add ``cache_encryption`` to its BENCHMARKS to include it)."""
    n = messages_wanted(bench, None)
    for name, value, unit, details in measure(bench.fresh_dir(NAME), n):
        target = TARGET if name == "list --from (typical sender): encrypted" else ""
        bench.add(NAME, name, value, unit, target=target, **details)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m benchmarks.cache_encryption",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--messages", type=int, help=f"messages (default ${ENV_MESSAGES} or 300000)")
    ap.add_argument("--work", default="/var/tmp/popvault-bench", help="scratch directory")
    args = ap.parse_args(argv)
    work = Path(args.work) / NAME
    work.mkdir(parents=True, exist_ok=True)
    check_regular_fs(work)
    n = messages_wanted(None, args.messages)
    for name, value, unit, details in measure(work, n):
        extra = ", ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in details.items()
        )
        print(f"{name:<52} {value:8.3f} {unit:<5}  {extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
