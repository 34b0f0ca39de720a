"""Random access: in-process ``Vault.read_message`` of random messages.

On the realistic vault (5,000 messages; 1,000 with --quick): three measurements of the
time to get one verified message back.

- first read: a new `Vault` object for each message (keys reused, so no key
  derivation; pack readers, frame cache and SQLite statements all cold);
- steady: random messages on one long-lived `Vault` (pack headers known, frame cache
  rarely hit because messages are random);
- repeat: the same message read again right after (frame cache hit).

The OS page cache is warm (the vault was just written); it is not dropped, as that
would disturb other work on the machine. Target: median first read under 20 ms.
"""

from __future__ import annotations

import random
import time

from benchmarks.common import (
    PASSPHRASE,
    Bench,
    median,
    percentile,
    popvault_import,
    realistic_dataset,
)

NAME = "random_access"
TARGET = "< 20"


def run(bench: Bench) -> None:
    from popvault.vault.vault import Vault

    ds = realistic_dataset(bench)
    imp = popvault_import(bench, ds)
    t0 = time.perf_counter()
    with Vault.open(imp.vault, PASSPHRASE.encode(), cache_dir=bench.cache_dir) as v:
        open_s = time.perf_counter() - t0
        keys = v.keys
        ids = sorted(row.id for row in v.messages())
    rng = random.Random(42)
    n_first = 200 if bench.quick else 500
    first: list[float] = []
    sizes: list[int] = []
    for mid in rng.sample(ids, min(n_first, len(ids))):
        with Vault.open(imp.vault, keys=keys, cache_dir=bench.cache_dir) as v:
            t = time.perf_counter()
            data = v.read_message(mid)
            first.append((time.perf_counter() - t) * 1000)
            sizes.append(len(data))
    steady: list[float] = []
    repeat: list[float] = []
    with Vault.open(imp.vault, keys=keys, cache_dir=bench.cache_dir) as v:
        for mid in rng.choices(ids, k=1000 if bench.quick else 2000):
            t = time.perf_counter()
            v.read_message(mid)
            steady.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            v.read_message(mid)
            repeat.append((time.perf_counter() - t) * 1000)
    common = {"messages_in_vault": len(ids), "vault_open_with_kdf_s": round(open_s, 3)}
    bench.add(
        NAME,
        "first read (new Vault object): median",
        median(first),
        "ms",
        target=TARGET,
        samples=len(first),
        mean_message_bytes=sum(sizes) // len(sizes),
        **common,
    )
    bench.add(NAME, "first read: p99", percentile(first, 99), "ms", samples=len(first))
    bench.add(NAME, "first read: max", max(first), "ms", samples=len(first))
    bench.add(NAME, "steady random reads: median", median(steady), "ms", target=TARGET)
    bench.add(NAME, "steady random reads: p99", percentile(steady, 99), "ms")
    bench.add(NAME, "repeat read (frame cached): median", median(repeat), "ms")
    bench.add(NAME, "repeat read: p99", percentile(repeat, 99), "ms")
