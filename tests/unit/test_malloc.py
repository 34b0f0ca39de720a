"""popvault.malloc: glibc's thresholds are fixed in the popvault process (and its
helpers), and a value the user sets in the environment is left alone. (What that is
worth is measured by the benchmarks: docs/performance.md.)"""

from __future__ import annotations

import os
import subprocess
import sys

from popvault import malloc

PROBE = "from popvault import malloc\nprint(sorted(malloc.tune()))\n"


def _probe(**extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(extra)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_the_thresholds_are_set_on_glibc() -> None:
    assert _probe() == str(sorted([malloc.M_MMAP_THRESHOLD, malloc.M_TRIM_THRESHOLD]))


def test_a_value_from_the_environment_is_left_alone() -> None:
    assert _probe(MALLOC_MMAP_THRESHOLD_="4194304") == str([malloc.M_TRIM_THRESHOLD])
