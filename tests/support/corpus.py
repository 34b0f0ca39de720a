"""Where the shared real-world corpus is (``../shared/corpus`` beside the checkout,
or ``POPVAULT_TEST_CORPUS``): mail nobody here wrote, read in place, never copied into
the repository. Tests that need it exist only where it is (a test is never skipped)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def find_corpus() -> Path | None:
    explicit = os.environ.get("POPVAULT_TEST_CORPUS")
    for where in ([Path(explicit)] if explicit else []) + [REPO.parent / "shared" / "corpus"]:
        if where.is_dir() and any(where.rglob("*.eml")):
            return where
    return None
